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
import pyarrow as pa

from .corpora import Corpus, CorpusTables, get_corpus
from .errors import ConfigError, DataFormatError
from .last_out import last_out_codes, last_out_plan, last_out_ranks, last_out_subsets  # noqa: F401 - re-exported
from .subsets import seeded_positions, seeded_subset  # noqa: F401 - re-exported


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
        seed: key of the Book-Crossing per-user shuffle and sample shuffle (see :func:`shuffle_keys`).
        train_sample_size: keep a seeded random subset of this many train samples (None = all;
            the paper uses 90,000 on ML-25M).
        validation_sample_size: likewise for validation. None keeps all of it, except when both
            ``train_sample_size`` and ``test_sample_size`` are set: then validation is sampled too,
            to ``test_sample_size`` samples (so a sampled ML-25M build does not render 2.4 M
            validation prompts); pass a number at least the split's size to keep all of it.
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

    def threshold_for(self, corpus: Corpus) -> float:
        """The label threshold in force: ``label_threshold``, or the corpus's default when it is None."""
        corpus.check_label_threshold(self.label_threshold)
        return corpus.label_threshold if self.label_threshold is None else self.label_threshold

    def sample_sizes(self) -> dict[str, int | None]:
        """Split name -> sampled size (None = all), with validation's default applied (see the fields)."""
        validation = self.validation_sample_size
        if validation is None and self.train_sample_size is not None and self.test_sample_size is not None:
            validation = self.test_sample_size
        return {"train": self.train_sample_size, "validation": validation, "test": self.test_sample_size}


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


#: Version of each protocol's sampler; a changed sampler makes new rows, so it enters the dataset
#: cache key (:func:`sampler_version`). "keyed-hash-1": Book-Crossing's shuffles became
#: :func:`shuffle_keys` (they were one sequential numpy stream, which Spark cannot replay).
SAMPLER_VERSIONS = {"chronological": None, "shuffled_user": "keyed-hash-1", "user_last_out": None}

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# Domain tags: the within-user order and the user order are two independent streams of one seed.
_RATING_STREAM = np.uint64(0x5241544E47000001)
_USER_STREAM = np.uint64(0x5553455253000002)


def sampler_version(corpus: Corpus) -> str | None:
    """The version of ``corpus``'s sampler (:data:`SAMPLER_VERSIONS`), None for one that never changed."""
    return SAMPLER_VERSIONS[corpus.protocol]


def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 (golden-ratio increment, then its finalizer) of each uint64: a bijection whose every
    output bit depends on every input bit. uint64 arrays wrap on overflow, as the algorithm needs."""
    z = values + _GOLDEN
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return z


def id_hash(ids) -> np.ndarray:
    """A uint64 per id, a function of the id's value alone (the same on every machine and run).

    Integer ids hash their int64 value; string ids (Book-Crossing ISBNs) their UTF-8 bytes, read
    as little-endian 8-byte words and folded through :func:`_mix64`, then their byte length.

    Args:
        ids: integer ids (numpy or pyarrow), or strings (numpy object/str array, pandas Series,
            pyarrow string array); nulls are refused.
    """
    if isinstance(ids, pd.Series):
        ids = ids.to_numpy()
    if len(ids) == 0:
        return np.zeros(0, dtype=np.uint64)
    if isinstance(ids, np.ndarray) and np.issubdtype(ids.dtype, np.integer):
        return _mix64(ids.astype(np.int64).view(np.uint64))
    array = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(ids, dtype=object))
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_integer(array.type):
        return id_hash(array.to_numpy(zero_copy_only=False))
    array = array.cast(pa.large_string())
    if array.null_count:
        raise ValueError("id_hash: ids must not be null")
    n = len(array)
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[array.offset: array.offset + n + 1]
    lengths = np.diff(offsets)
    width = -(-int(lengths.max(initial=0)) // 8) * 8
    # Each string's bytes, zero-padded into one row of a (n, width) matrix, without a Python loop.
    padded = np.zeros((n, max(width, 8)), dtype=np.uint8)
    total = int(lengths.sum())
    if total:
        data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0]: offsets[0] + total]
        rows = np.repeat(np.arange(n), lengths)
        padded[rows, np.arange(total) - np.repeat(offsets[:-1] - offsets[0], lengths)] = data
    words = padded.view("<u8").astype(np.uint64)
    needed = (lengths + 7) // 8
    key = np.zeros(n, dtype=np.uint64)
    for column in range(width // 8):
        # Only an id's own words are folded: its hash must not depend on the longest id beside it.
        key = np.where(column < needed, _mix64(key ^ words[:, column]), key)
    # The length tells "AB" from "AB\0" and every id from the empty one.
    return _mix64(key ^ lengths.astype(np.uint64))


def shuffle_keys(seed: int, user_ids, item_ids=None, *, item_hashes: np.ndarray | None = None) -> np.ndarray:
    """Keyed-hash order keys of the shuffled-user protocol (Book-Crossing): non-negative int64.

    With ``item_ids``, a key per rating (user, item): sorting a user's ratings by it shuffles them.
    Without, a key per user: sorting the users' samples by it shuffles the samples. A key is a
    splitmix64 hash of (seed, stream, user id, item id), so it depends on the rating's identity and
    the seed only, never on the rating's line in the file or on the other ratings; both engines
    (and any split of the work into pieces) compute the same keys. Keys take 63 bits, so they
    order alike as int64 (Spark's ``long``) and as uint64. Equal keys (a 2**-63 chance per pair)
    are broken by item id, then user id.

    Args:
        seed: the protocol's ``seed``.
        user_ids: user id per rating (or per user), integers.
        item_ids: item id per rating (integers or strings, see :func:`id_hash`), or None for user keys.
        item_hashes: ``id_hash(item_ids)`` when the caller has it (hashing each distinct item once
            and gathering is much cheaper than hashing a string per rating); replaces ``item_ids``.
    """
    users = id_hash(np.asarray(user_ids))
    stream = _USER_STREAM if item_ids is None and item_hashes is None else _RATING_STREAM
    start = _mix64(np.array([seed % 2**64], dtype=np.uint64) ^ stream)
    key = _mix64(users ^ start)
    if item_hashes is None and item_ids is not None:
        item_hashes = id_hash(item_ids)
    if item_hashes is not None:
        key = _mix64(key ^ item_hashes)
    return (key >> np.uint64(1)).view(np.int64)


def item_rows(corpus: Corpus, items: pd.DataFrame, item_ids: pd.Series) -> np.ndarray:
    """Row of ``items`` of each id of ``item_ids`` (int32).

    Raises:
        DataFormatError: for an id the item table does not list, naming the interaction.
    """
    rows = pd.Index(items["item_id"]).get_indexer(item_ids)
    if (rows < 0).any():
        first = int(np.flatnonzero(rows < 0)[0])
        raise DataFormatError(
            corpus.name, f"interaction {first + 1} rates item {item_ids.iat[first]!r}, which the item file does not list"
        )
    return rows.astype(np.int32)


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """For keys sorted into groups, the position where each group starts (ascending, one per group)."""
    is_first = np.ones(len(sorted_keys), dtype=bool)
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=is_first[1:])
    return np.flatnonzero(is_first)


def _start_of_group(starts: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The start of the group each of ``positions`` lies in, given the groups' ``starts``."""
    return starts[np.searchsorted(starts, positions, side="right") - 1]


def _positions_after(starts: np.ndarray, n: int, skip: int) -> np.ndarray:
    """All positions ``0..n-1`` except the first ``skip`` of each group (ascending)."""
    keep = np.ones(n, dtype=bool)
    counts = np.minimum(np.diff(np.append(starts, n)), skip)
    if counts.sum():
        keep[np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())] = False
    return np.flatnonzero(keep)


def _pack_keys(columns: list) -> np.ndarray | None:
    """One uint64 key per row whose order is the lexicographic order of ``columns`` (first = most significant).

    Each integer column is offset by its minimum and given the bits its range needs; None when
    the columns together need more than 64 bits or one is not an integer column. A column may be
    given as a function returning it, so only one column is materialised at a time.
    """
    key = None
    used = 0
    for column in columns:
        column = column() if callable(column) else column
        if not np.issubdtype(column.dtype, np.integer) or not len(column):
            return None
        low = int(column.min())
        bits = (int(column.max()) - low).bit_length()
        used += bits
        if used > 64:
            return None
        if key is None:
            key = np.zeros(len(column), dtype=np.uint64)
        np.left_shift(key, np.uint64(bits), out=key)
        # Two's-complement wrap-around makes the difference exact for any int64 range.
        part = column.astype(np.uint64)
        del column
        np.subtract(part, np.uint64(low % 2**64), out=part)
        np.bitwise_or(key, part, out=key)
        del part
    return key


def _has_equal_neighbours(key: np.ndarray, order: np.ndarray, block: int = 1 << 20) -> bool:
    """Whether ``key[order]`` has two equal consecutive values (checked in blocks, without a sorted copy)."""
    for start in range(0, len(order) - 1, block):
        values = key[order[start:start + block + 1]]
        if (values[1:] == values[:-1]).any():
            return True
    return False


def _lexicographic_order(columns: list) -> np.ndarray:
    """``np.lexsort(columns[::-1])``: rows ordered by ``columns[0]``, then ``columns[1]``, ..., ties stably.

    When the columns pack into one uint64 key (:func:`_pack_keys`) this is a single argsort of
    that key, about 5x faster than the multi-key lexsort on tens of millions of rows; the plain
    (unstable) sort is used when the keys are all distinct, which gives the same permutation, and
    a stable one otherwise. Columns that need more than 64 bits fall back to ``np.lexsort``.
    Columns may be functions returning them (see :func:`_pack_keys`).
    """
    key = _pack_keys(columns)
    if key is None:
        return np.lexsort([column() if callable(column) else column for column in columns][::-1])
    order = np.argsort(key)
    if _has_equal_neighbours(key, order):
        order = np.argsort(key, kind="stable")
    return order


def _by_time_then_position(timestamps: np.ndarray, positions: np.ndarray) -> np.ndarray | None:
    """``positions`` (ascending log positions) ordered by (their timestamp, position), or None when it does not fit 64 bits.

    The log is ordered by (user, timestamp, item), so among equal timestamps the log position
    orders by (user, item): this is the global (timestamp, user, item) order. Timestamp and
    position share one uint64 that is sorted in place (no argsort) and the positions read back
    from its low bits.
    """
    if not len(positions):
        return positions.copy()
    low = int(timestamps.min())
    position_bits = int(positions[-1]).bit_length()
    if (int(timestamps.max()) - low).bit_length() + position_bits > 63:
        return None
    key = timestamps.astype(np.uint64)
    np.subtract(key, np.uint64(low % 2**64), out=key)
    np.left_shift(key, np.uint64(position_bits), out=key)
    np.bitwise_or(key, positions.astype(np.uint64), out=key)
    key.sort()
    np.bitwise_and(key, np.uint64((1 << position_bits) - 1), out=key)
    return key.view(np.int64)


def _item_ranks(items: pd.DataFrame) -> np.ndarray:
    """Rank of each item row's ``item_id`` among all item ids (same order as the ids, small integers)."""
    ranks = np.empty(len(items), dtype=np.int32 if len(items) < 2**31 else np.int64)
    ranks[np.argsort(items["item_id"].to_numpy(), kind="stable")] = np.arange(len(items))
    return ranks


def split_plan(n: int, train_fraction: float, validation_fraction: float, sizes: dict, seed: int,
               keep_validation: bool) -> dict[str, tuple[int, int, np.ndarray | None]]:
    """Split name -> ``(start, stop, chosen)``: which ranks of the protocol's global order it keeps.

    Splits are contiguous ranges ``[start, stop)`` of the global order (train, validation, the rest
    test); a split with a sample size keeps a seeded random subset of its range, ``chosen`` (sorted
    offsets from ``start``); ``chosen`` is None where the whole range is kept. Only ``n`` enters,
    so an engine that counts the samples without holding them (Spark) draws the same subsets.
    """
    n_train = int(train_fraction * n)
    n_validation = int(validation_fraction * n)
    bounds = {"train": (0, n_train), "validation": (n_train, n_train + n_validation),
              "test": (n_train + n_validation, n)}
    if not keep_validation:
        del bounds["validation"]
    plan = {}
    for name, (start, stop) in bounds.items():
        plan[name] = (start, stop, seeded_positions(stop - start, sizes[name], seed))
    return plan


def _sampled_ranks(n: int, train_fraction: float, validation_fraction: float, sizes: dict, seed: int,
                   keep_validation: bool) -> dict[str, np.ndarray]:
    """Split name -> the ranks (positions in the protocol's global order) of the samples it keeps (see :func:`split_plan`)."""
    plan = split_plan(n, train_fraction, validation_fraction, sizes, seed, keep_validation)
    return {name: np.arange(start, stop, dtype=np.int64) if chosen is None else start + chosen
            for name, (start, stop, chosen) in plan.items()}


def split_fractions(corpus: Corpus, protocol: SampleProtocol) -> tuple[float, float]:
    """``(train_fraction, validation_fraction)`` of ``protocol`` with the corpus's defaults applied, checked.

    Raises:
        ConfigError: for negative fractions or fractions summing above 1.
    """
    default_fractions = (0.8, 0.1) if corpus.protocol == "chronological" else (0.9, 0.0)
    train_fraction = default_fractions[0] if protocol.train_fraction is None else protocol.train_fraction
    validation_fraction = default_fractions[1] if protocol.validation_fraction is None else protocol.validation_fraction
    if train_fraction < 0 or validation_fraction < 0 or train_fraction + validation_fraction > 1:
        raise ConfigError(
            f"train_fraction={train_fraction} and validation_fraction={validation_fraction} must be >= 0 and sum to <= 1"
        )
    return train_fraction, validation_fraction


def split_names(corpus: Corpus, protocol: SampleProtocol) -> list[str]:
    """The splits a build of ``corpus`` under ``protocol`` has: train, validation (unless its fraction is 0), test.

    A tiny corpus may leave one of them without samples; it is still one of the build's splits.
    """
    _, validation_fraction = split_fractions(corpus, protocol)
    return ["train", "validation", "test"] if validation_fraction != 0 else ["train", "test"]


def _sample_frame(tables, log_order, item_rows, ratings, timestamps, group_starts, sample_positions, ranks,
                  threshold) -> pd.DataFrame:
    """The sample frame of the samples at ``ranks`` of the global order ``sample_positions`` (log positions)."""
    inter = tables.interactions
    positions = sample_positions[ranks]
    original = log_order[positions]
    starts = _start_of_group(group_starts, positions)
    return pd.DataFrame({
        "sample_id": ranks.astype(np.int64),
        "user_id": inter["user_id"].to_numpy()[original],
        "item_id": inter["item_id"].to_numpy()[original],
        "item_row": item_rows[positions],
        "rating": ratings[positions],
        "label": (ratings[positions] > threshold).astype(np.int8),
        "timestamp": timestamps[positions],
        "history_offset": starts.astype(np.int64),
        "history_length": (positions - starts).astype(np.int32),
    })


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

    Sample sizes (``train_sample_size`` ...) keep a seeded subset of a split, in order; when train
    and test are sampled and ``validation_sample_size`` is None, validation is sampled to
    ``test_sample_size`` (see :class:`SampleProtocol`). Frames are built only for the kept samples,
    and the two orderings are single packed-key sorts when the keys fit 64 bits.

    Shuffled-user corpora (Book-Crossing, no timestamps): users with at least ``min_user_ratings``
    ratings; each user's ratings shuffled (ordered by :func:`shuffle_keys` of (seed, user, item));
    the last is the target, the others its history; the samples shuffled (ordered by the user's
    key) and split 90/10 into train/test. The keys are hashes, not a random stream, so the order
    does not depend on the order of the file's lines, and a distributed build computes it too.

    Args:
        corpus: the corpus (or its registered name) the tables came from.
        tables: what :meth:`Corpus.read` returned.
        protocol: protocol fields; defaults reproduce the paper.
    """
    corpus = get_corpus(corpus) if isinstance(corpus, str) else corpus
    protocol = protocol or SampleProtocol()
    threshold = protocol.threshold_for(corpus)
    inter = tables.interactions
    users = inter["user_id"].to_numpy()
    if not np.issubdtype(users.dtype, np.integer):
        # String user ids sort by their rank among the ids: the same order, one packed integer key.
        users = np.unique(users, return_inverse=True)[1].reshape(-1).astype(np.int64)
    item_rows_all = item_rows(corpus, tables.items, inter["item_id"])

    if corpus.protocol in ("chronological", "user_last_out"):
        timestamps_all = inter["timestamp"].to_numpy(np.int64)
        # Item ids enter the sort keys as their rank among the catalogue's ids: same order, fewer bits.
        item_ranks = _item_ranks(tables.items)[item_rows_all]
        # Within a user, (timestamp, item) is the global (timestamp, user, item) order restricted to the user.
        log_order = _lexicographic_order([users, timestamps_all, item_ranks])
        group_starts = _group_starts(users[log_order])
        eligible = _positions_after(group_starts, len(log_order), protocol.min_history)
        sample_positions = _by_time_then_position(timestamps_all[log_order[eligible]], eligible)
        if sample_positions is None:
            # The global order of the eligible samples; each key column is gathered only when packed.
            global_order = _lexicographic_order([lambda: timestamps_all[log_order[eligible]],
                                                 lambda: users[log_order[eligible]],
                                                 lambda: item_ranks[log_order[eligible]]])
            sample_positions = eligible[global_order]
            del global_order
        del item_ranks, eligible
    elif corpus.protocol == "shuffled_user":
        counts = pd.Series(users).map(pd.Series(users).value_counts()).to_numpy()
        kept = np.flatnonzero(counts >= protocol.min_user_ratings)
        # Keyed hashes, not a random stream: a rating's place depends on (seed, user, item) only.
        item_keys = shuffle_keys(protocol.seed, users[kept],
                                 item_hashes=id_hash(tables.items["item_id"])[item_rows_all[kept]])
        item_ranks = _item_ranks(tables.items)[item_rows_all[kept]]
        log_order = kept[np.lexsort((item_ranks, item_keys, users[kept]))]
        del item_keys, item_ranks
        sorted_users = users[log_order]
        group_starts = _group_starts(sorted_users)
        is_last = np.ones(len(log_order), dtype=bool)
        is_last[:-1] = sorted_users[1:] != sorted_users[:-1]
        sample_positions = np.flatnonzero(is_last)
        sample_users = sorted_users[sample_positions]
        sample_positions = sample_positions[np.lexsort((sample_users, shuffle_keys(protocol.seed, sample_users)))]
        timestamps_all = inter["timestamp"].to_numpy(np.int64)
    else:  # pragma: no cover - registry guards this
        raise ConfigError(f"corpus {corpus.name} declares unknown protocol {corpus.protocol!r}")

    log = pd.DataFrame({
        "item_row": item_rows_all[log_order],
        "rating": inter["rating"].to_numpy(np.float32)[log_order],
        "timestamp": timestamps_all[log_order],
    })
    # Only the sampled positions become frames: the samples of the whole corpus are never materialised.
    if corpus.protocol == "user_last_out":
        ranks = last_out_ranks(sample_positions, group_starts, len(log_order), protocol)
    else:
        train_fraction, validation_fraction = split_fractions(corpus, protocol)
        ranks = _sampled_ranks(len(sample_positions), train_fraction, validation_fraction, protocol.sample_sizes(),
                               protocol.sample_seed, keep_validation=validation_fraction != 0)
    log_item_rows, log_ratings, log_timestamps = (log[column].to_numpy() for column in ("item_row", "rating", "timestamp"))
    splits = {
        name: _sample_frame(tables, log_order, log_item_rows, log_ratings, log_timestamps, group_starts,
                            sample_positions, split_ranks, threshold)
        for name, split_ranks in ranks.items()
    }
    return LifelongSamples(corpus=corpus, users=tables.users, items=tables.items, log=log, splits=splits, protocol=protocol)


def load_samples(name: str, data_dir=None, protocol: SampleProtocol | None = None, cache_dir=None,
                 settings=None) -> LifelongSamples:
    """Read a corpus (``data_dir`` or the download cache) and build its samples in one call.

    Args:
        name: a registered corpus name ("ml-1m", "ml-latest-small", "BookCrossing", "interactions", ...).
        data_dir: folder of the release files; None downloads (ml-latest-small: the bundled copy).
        protocol: protocol fields (defaults reproduce the paper).
        cache_dir: download cache.
        settings: the source fields of a corpus read from your files (a config or a mapping; see :func:`get_corpus`).
    """
    corpus = get_corpus(name, settings)
    return build_samples(corpus, corpus.read(data_dir, cache_dir=cache_dir), protocol)
