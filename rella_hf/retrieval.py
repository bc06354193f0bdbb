"""Which K history items a prompt shows: the K most recent, or SUBR's K most similar to the target.

Semantic user behaviour retrieval (SUBR) ranks a sample's history items by the cosine similarity
of their text embeddings to the target item's and keeps the top K. Embeddings are L2-normalised
into a FAISS inner-product index attached to a :class:`datasets.Dataset` of the items, and the
similarities of each sample's own history are computed exactly by FAISS
(``compute_distance_subset``) for a whole batch of samples at once.

Every index here is explicit: ``item_row`` is a row of the items table (and of the embedding
matrix), ``log position`` a row of :attr:`rella_hf.samples.LifelongSamples.log`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

RETRIEVALS = ("recent", "semantic")
ORDERS = ("chronological", "similarity")

# Bounds one FAISS call's padded (samples x history) block, hence peak memory.
_MAX_BLOCK_PAIRS = 4_000_000


@dataclass
class HistorySelection:
    """The history items each sample shows, as log positions in shown order.

    Attributes:
        positions: ``[n_samples, K]`` int64 log positions, ``-1`` where a history is shorter than K.
        lengths: ``[n_samples]`` how many positions of each row are used (``min(K, history_length)``).
    """

    positions: np.ndarray
    lengths: np.ndarray

    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        """The used positions concatenated row by row, and list offsets (length n + 1) into them."""
        mask = np.arange(self.positions.shape[1])[None, :] < self.lengths[:, None]
        offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=offsets[1:])
        return self.positions[mask], offsets


def _check(K: int, order: str) -> None:
    if not isinstance(K, (int, np.integer)) or K <= 0:
        raise ConfigError(f"K={K!r} must be a positive number of history items")
    if order not in ORDERS:
        raise ConfigError(f"order={order!r} is not one of {', '.join(ORDERS)}")


def recent_history(offsets: np.ndarray, lengths: np.ndarray, K: int) -> HistorySelection:
    """The K most recent history items of each sample, oldest first (the plain ReLLa prompt).

    Args:
        offsets: ``history_offset`` of each sample.
        lengths: ``history_length`` of each sample.
        K: how many items to show; shorter histories show all their items.
    """
    _check(K, "chronological")
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    shown = np.minimum(lengths, K)
    columns = np.arange(K)[None, :]
    positions = (offsets + lengths - shown)[:, None] + columns
    return HistorySelection(np.where(columns < shown[:, None], positions, -1), shown)


def _top_k_recent_first(scores: np.ndarray, K: int) -> np.ndarray:
    """Column indices of each row's K largest scores, best first; ties go to the smaller column.

    A linear-time partition finds each row's K-th largest score; everything above it is kept,
    and of the scores equal to it, the leftmost columns fill the remaining places. Only the K
    kept columns are then sorted.
    """
    n, width = scores.shape
    if width <= K:
        columns = np.broadcast_to(np.arange(width), (n, width))
    else:
        kth = np.partition(scores, width - K, axis=1)[:, width - K][:, None]
        chosen = scores > kth
        equal = scores == kth
        places_left = K - chosen.sum(axis=1)
        crowded = equal.sum(axis=1) > places_left  # rows where the tie at the threshold must be broken
        chosen |= equal
        if crowded.any():
            rows = np.flatnonzero(crowded)
            ranks = np.cumsum(equal[rows], axis=1, dtype=np.int32)
            chosen[rows] = (scores[rows] > kth[rows]) | (equal[rows] & (ranks <= places_left[rows][:, None]))
        columns = np.nonzero(chosen)[1].reshape(n, K)
    picked = np.take_along_axis(scores, columns, axis=1)
    best_first = np.argsort(-picked, axis=1, kind="stable")  # columns ascend within a row: ties keep the left one
    return np.take_along_axis(columns, best_first, axis=1)


class SemanticRetriever:
    """Exact SUBR over L2-normalised item embeddings held in a FAISS inner-product index.

    Args:
        item_embeddings: ``[n_items, d]`` float matrix, row ``i`` embedding item row ``i``.
        item_ids: optional ids of the rows, stored beside the vectors in the items Dataset.
    """

    def __init__(self, item_embeddings: np.ndarray, item_ids=None):
        import datasets
        import faiss

        vectors = np.ascontiguousarray(item_embeddings, dtype=np.float32).copy()
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ConfigError(f"item_embeddings must be a non-empty [n_items, dim] matrix, got shape {vectors.shape}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.where(norms > 0, norms, 1.0)
        rows = np.arange(len(vectors))
        self.items = datasets.Dataset.from_dict({"item_row": rows, "item_id": rows if item_ids is None else list(item_ids)})
        self.items.add_faiss_index_from_external_arrays(vectors, index_name="embedding",
                                                        metric_type=faiss.METRIC_INNER_PRODUCT)
        self._index = self.items.get_index("embedding").faiss_index
        self.vectors = vectors

    def similarities(self, target_rows: np.ndarray, candidate_rows: np.ndarray) -> np.ndarray:
        """Cosine similarity of each target item to each of its candidate items.

        Args:
            target_rows: ``[n]`` item rows.
            candidate_rows: ``[n, m]`` item rows (every entry must be a valid row).
        """
        import faiss

        queries = np.ascontiguousarray(self.vectors[target_rows])
        labels = np.ascontiguousarray(candidate_rows, dtype=np.int64)
        out = np.empty(labels.shape, dtype=np.float32)
        self._index.compute_distance_subset(
            len(queries), faiss.swig_ptr(queries), labels.shape[1], faiss.swig_ptr(out), faiss.swig_ptr(labels)
        )
        return out

    def nearest_items(self, item_row: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k items most similar to ``item_row`` over the whole catalogue: (scores, item rows)."""
        scores, examples = self.items.get_nearest_examples("embedding", self.vectors[item_row], k=k)
        return np.asarray(scores), np.asarray(examples["item_row"])

    def select(
        self,
        log_item_rows: np.ndarray,
        target_rows: np.ndarray,
        offsets: np.ndarray,
        lengths: np.ndarray,
        K: int,
        order: str = "chronological",
    ) -> HistorySelection:
        """The K history items most similar to each sample's target (ties: the more recent first).

        Args:
            log_item_rows: ``item_row`` of every log position.
            target_rows: the target ``item_row`` of each sample.
            offsets: ``history_offset`` of each sample.
            lengths: ``history_length`` of each sample.
            K: how many items to keep.
            order: ``"chronological"`` shows the kept items oldest first (ReLLa's default);
                ``"similarity"`` shows them least similar first, the most similar last (nearest
                the question).
        """
        _check(K, order)
        offsets = np.asarray(offsets, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        target_rows = np.asarray(target_rows, dtype=np.int64)
        n = len(offsets)
        positions = np.full((n, K), -1, dtype=np.int64)
        shown = np.minimum(lengths, K)
        # Histories of similar length share a block, so padding stays small. Lengths ascend along
        # by_length, so a block is padded to its last history's length: grow it while
        # (samples x that length) stays within _MAX_BLOCK_PAIRS.
        by_length = np.argsort(lengths, kind="stable")
        sorted_lengths = np.maximum(lengths[by_length], 1)
        start = 0
        while start < n:
            window = sorted_lengths[start:start + max(1, _MAX_BLOCK_PAIRS // int(sorted_lengths[start]))]
            padded_pairs = np.arange(1, len(window) + 1) * window
            stop = start + max(1, int(np.searchsorted(padded_pairs, _MAX_BLOCK_PAIRS, side="right")))
            block = by_length[start:stop]
            width = int(lengths[block].max()) if len(block) else 0
            start = stop
            if width == 0:
                continue
            # Column j holds the j-th most recent item, so a stable sort keeps recent items first on ties.
            back = np.arange(width)[None, :]
            valid = back < lengths[block][:, None]
            log_positions = (offsets[block] + lengths[block] - 1)[:, None] - back
            candidates = np.where(valid, log_item_rows[np.where(valid, log_positions, 0)], target_rows[block][:, None])
            scores = self.similarities(target_rows[block], candidates)
            scores[~valid] = -np.inf
            ranked = _top_k_recent_first(scores, K)
            chosen = np.take_along_axis(log_positions, ranked, axis=1)
            keep = np.arange(chosen.shape[1])[None, :] < shown[block][:, None]
            if order == "chronological":
                chosen = np.sort(np.where(keep, chosen, np.iinfo(np.int64).max), axis=1)
            else:
                # least similar first: reverse the used part of each ranked row
                reversed_index = np.clip(shown[block][:, None] - 1 - np.arange(chosen.shape[1])[None, :], 0, None)
                chosen = np.take_along_axis(chosen, reversed_index, axis=1)
            positions[block, : chosen.shape[1]] = np.where(keep, chosen, -1)
        return HistorySelection(positions, shown)
