"""Lifelong CTR samples: each user's interactions stored once, samples pointing into them.

A sample is (user, target item, rating, label, timestamp) plus a reference ``(history_offset,
history_length)`` into :attr:`LifelongSamples.log`, the interactions of every user laid out user
by user in the user's own order (chronological, or shuffled for Book-Crossing). A sample's
history is ``log[history_offset : history_offset + history_length]`` and its own interaction sits
right after it, so memory stays proportional to the number of interactions however long the
histories are. Lists of history items are materialised only once K of them are selected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .corpora import Corpus, CorpusTables, get_corpus
from .errors import ConfigError, DataFormatError


@dataclass
class SampleProtocol:
    """How a corpus becomes labelled samples and splits (ReLLa's protocol, every number a field).

    Args:
        label_threshold: label = rating > threshold; None takes the corpus default (MovieLens 3,
            so 3.5 stars is positive; Book-Crossing 4, i.e. rating >= 5 with 0s negative).
        min_history: chronological corpora drop samples with fewer earlier ratings than this.
        min_user_ratings: shuffled-user corpora (Book-Crossing) keep users with at least this
            many ratings (6 = "more than 5").
        train_fraction: share of samples in the train split (None: 0.8 chronological, 0.9 shuffled).
        validation_fraction: share in validation (None: 0.1 chronological, 0 shuffled); the rest is test.
        seed: seed of the Book-Crossing per-user shuffle and sample shuffle.
        train_sample_size: keep a seeded random subset of this many train samples (None = all;
            the paper uses 90,000 on ML-25M).
        validation_sample_size: likewise for validation.
        test_sample_size: likewise for test (the paper uses 70,000 on ML-25M).
        sample_seed: seed of those subsets (paper: 42).
    """

    label_threshold: float | None = None
    min_history: int = 5
    min_user_ratings: int = 6
    train_fraction: float | None = None
    validation_fraction: float | None = None
    seed: int = 42
    train_sample_size: int | None = None
    validation_sample_size: int | None = None
    test_sample_size: int | None = None
    sample_seed: int = 42

    def __post_init__(self):
        if self.min_history < 0 or self.min_user_ratings < 2:
            raise ConfigError(
                f"min_history={self.min_history} / min_user_ratings={self.min_user_ratings} out of range; "
                "expected min_history >= 0 and min_user_ratings >= 2"
            )
        for name in ("train_sample_size", "validation_sample_size", "test_sample_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name}={value} must be a positive number of samples or None for all")


@dataclass
class LifelongSamples:
    """Samples of one corpus, split, with their histories stored once.

    Attributes:
        corpus: the :class:`~rella_hf.corpora.Corpus` they came from.
        users: ``user_id`` + profile columns.
        items: ``item_id`` + text columns; a sample's ``item_row`` indexes this table (and the
            item embedding matrix built from it), explicitly, never by id arithmetic.
        log: every kept interaction, user by user in the user's order: ``item_row`` (int32),
            ``rating`` (float32), ``timestamp`` (int64, -1 when unknown).
        splits: split name -> samples with ``sample_id``, ``user_id``, ``item_id``, ``item_row``,
            ``rating``, ``label``, ``timestamp``, ``history_offset``, ``history_length``.
        protocol: the :class:`SampleProtocol` used.
    """

    corpus: Corpus
    users: pd.DataFrame
    items: pd.DataFrame
    log: pd.DataFrame
    splits: dict[str, pd.DataFrame]
    protocol: SampleProtocol = field(default_factory=SampleProtocol)

    def statistics(self) -> dict:
        """Counts for reports: users, items, samples per split and history-length quantiles."""
        lengths = np.concatenate([frame["history_length"].to_numpy() for frame in self.splits.values()])
        quantiles = np.percentile(lengths, [0, 25, 50, 75, 90, 100]) if len(lengths) else np.zeros(6)
        return {
            "corpus": self.corpus.name,
            "users": int(self.users.shape[0]),
            "items": int(self.items.shape[0]),
            "interactions": int(self.log.shape[0]),
            "samples": {name: int(frame.shape[0]) for name, frame in self.splits.items()},
            "history_length": dict(zip(["min", "p25", "median", "p75", "p90", "max"], map(float, quantiles))),
        }


def _item_rows(corpus: Corpus, items: pd.DataFrame, item_ids: pd.Series) -> np.ndarray:
    rows = pd.Index(items["item_id"]).get_indexer(item_ids)
    if (rows < 0).any():
        first = int(np.flatnonzero(rows < 0)[0])
        raise DataFormatError(
            corpus.name, f"interaction {first + 1} rates item {item_ids.iat[first]!r}, which the item file does not list"
        )
    return rows.astype(np.int32)


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """For keys sorted into groups, the index where each element's group starts."""
    index = np.arange(len(sorted_keys))
    is_first = np.ones(len(sorted_keys), dtype=bool)
    is_first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return np.maximum.accumulate(np.where(is_first, index, 0))


def _subsample(frame: pd.DataFrame, size: int | None, seed: int) -> pd.DataFrame:
    if size is None or size >= len(frame):
        return frame
    chosen = np.sort(np.random.default_rng(seed).choice(len(frame), size=size, replace=False))
    return frame.iloc[chosen].reset_index(drop=True)


def _split(samples: pd.DataFrame, train_fraction: float, validation_fraction: float) -> dict[str, pd.DataFrame]:
    n_train = int(train_fraction * len(samples))
    n_validation = int(validation_fraction * len(samples))
    bounds = {"train": (0, n_train), "validation": (n_train, n_train + n_validation),
              "test": (n_train + n_validation, len(samples))}
    return {name: samples.iloc[start:stop].reset_index(drop=True) for name, (start, stop) in bounds.items()}


def _finish(corpus, tables, log_order, item_rows, ratings, timestamps, sample_positions, group_start, threshold):
    """Assemble the sample frame for the log positions ``sample_positions`` (already in split order)."""
    inter = tables.interactions
    original = log_order[sample_positions]
    samples = pd.DataFrame({
        "sample_id": np.arange(len(sample_positions), dtype=np.int64),
        "user_id": inter["user_id"].to_numpy()[original],
        "item_id": inter["item_id"].to_numpy()[original],
        "item_row": item_rows[sample_positions],
        "rating": ratings[sample_positions],
        "label": (ratings[sample_positions] > threshold).astype(np.int8),
        "timestamp": timestamps[sample_positions],
        "history_offset": group_start[sample_positions].astype(np.int64),
        "history_length": (sample_positions - group_start[sample_positions]).astype(np.int32),
    })
    log = pd.DataFrame({"item_row": item_rows, "rating": ratings, "timestamp": timestamps})
    return samples, log


def build_samples(
    corpus: Corpus | str,
    tables: CorpusTables,
    protocol: SampleProtocol | None = None,
) -> LifelongSamples:
    """Turn a corpus's tables into ReLLa's lifelong CTR samples and splits.

    Chronological corpora (MovieLens): all ratings ordered by (timestamp, user, item), stably; a
    sample's history is every earlier rating of its user in that order; samples with fewer than
    ``min_history`` history items are dropped; the remaining samples, in that global order, are
    split 80/10/10 (train = int(0.8 n), validation = int(0.1 n), test = the rest).

    Shuffled-user corpora (Book-Crossing, no timestamps): users with at least ``min_user_ratings``
    ratings; each user's ratings shuffled (seed); the last is the target, the others its history;
    the samples shuffled (seed) and split 90/10 into train/test.

    Args:
        corpus: the corpus (or its registered name) the tables came from.
        tables: what :meth:`Corpus.read` returned.
        protocol: protocol fields; defaults reproduce the paper.
    """
    corpus = get_corpus(corpus) if isinstance(corpus, str) else corpus
    protocol = protocol or SampleProtocol()
    threshold = corpus.label_threshold if protocol.label_threshold is None else protocol.label_threshold
    inter = tables.interactions
    users = inter["user_id"].to_numpy()
    item_rows_all = _item_rows(corpus, tables.items, inter["item_id"])

    if corpus.protocol == "chronological":
        timestamps_all = inter["timestamp"].to_numpy(np.int64)
        # Within a user, (timestamp, item) is the global (timestamp, user, item) order restricted to the user.
        log_order = np.lexsort((inter["item_id"].to_numpy(), timestamps_all, users))
        group_start = _group_starts(users[log_order])
        positions = np.arange(len(log_order))
        eligible = positions[positions - group_start >= protocol.min_history]
        item_key = inter["item_id"].to_numpy()[log_order][eligible]
        global_order = np.lexsort((item_key, users[log_order][eligible], timestamps_all[log_order][eligible]))
        sample_positions = eligible[global_order]
        default_fractions = (0.8, 0.1)
    elif corpus.protocol == "shuffled_user":
        counts = pd.Series(users).map(pd.Series(users).value_counts()).to_numpy()
        kept = np.flatnonzero(counts >= protocol.min_user_ratings)
        rng = np.random.default_rng(protocol.seed)
        shuffle_key = rng.random(len(kept))
        log_order = kept[np.lexsort((shuffle_key, users[kept]))]
        sorted_users = users[log_order]
        group_start = _group_starts(sorted_users)
        is_last = np.ones(len(log_order), dtype=bool)
        is_last[:-1] = sorted_users[1:] != sorted_users[:-1]
        sample_positions = np.flatnonzero(is_last)
        sample_positions = sample_positions[rng.permutation(len(sample_positions))]
        default_fractions = (0.9, 0.0)
        timestamps_all = inter["timestamp"].to_numpy(np.int64)
    else:  # pragma: no cover - registry guards this
        raise ConfigError(f"corpus {corpus.name} declares unknown protocol {corpus.protocol!r}")

    ratings = inter["rating"].to_numpy(np.float32)[log_order]
    samples, log = _finish(
        corpus, tables, log_order, item_rows_all[log_order], ratings, timestamps_all[log_order],
        sample_positions, group_start, threshold,
    )
    train_fraction = default_fractions[0] if protocol.train_fraction is None else protocol.train_fraction
    validation_fraction = default_fractions[1] if protocol.validation_fraction is None else protocol.validation_fraction
    if train_fraction < 0 or validation_fraction < 0 or train_fraction + validation_fraction > 1:
        raise ConfigError(
            f"train_fraction={train_fraction} and validation_fraction={validation_fraction} must be >= 0 and sum to <= 1"
        )
    splits = _split(samples, train_fraction, validation_fraction)
    if validation_fraction == 0:
        del splits["validation"]
    sizes = {"train": protocol.train_sample_size, "validation": protocol.validation_sample_size,
             "test": protocol.test_sample_size}
    splits = {name: _subsample(frame, sizes[name], protocol.sample_seed) for name, frame in splits.items()}
    return LifelongSamples(corpus=corpus, users=tables.users, items=tables.items, log=log, splits=splits, protocol=protocol)


def load_samples(name: str, data_dir=None, protocol: SampleProtocol | None = None, cache_dir=None) -> LifelongSamples:
    """Read a corpus (``data_dir`` or the download cache) and build its samples in one call.

    Args:
        name: a registered corpus name ("ml-1m", "ml-latest-small", "BookCrossing", ...).
        data_dir: folder of the release files; None downloads (ml-latest-small: the bundled copy).
        protocol: protocol fields (defaults reproduce the paper).
        cache_dir: download cache.
    """
    corpus = get_corpus(name)
    return build_samples(corpus, corpus.read(data_dir, cache_dir=cache_dir), protocol)
