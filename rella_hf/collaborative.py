"""Leak-free collaborative statistics of lifelong samples: what everyone else thought of an item, as numbers.

A 135M model cannot know from a title how well a movie is liked; a classical CTR model learns it
from the item id. These statistics hand that signal over as numbers (dataset columns) and, with
``collaborative`` != ``"none"``, as short sentences in the prompt (:func:`collaborative_notes`).

Every statistic of a sample is computed from interactions **strictly before** it, never from the
sample itself or anything later:

- Chronological corpora (MovieLens): an item's ratings with a timestamp strictly below the
  sample's timestamp. **Tie rule:** ratings in the same second as the sample never count, whoever
  made them (the sample's own rating among them), so no order inside a second leaks into them.
- Shuffled-user corpora (Book-Crossing, no timestamps): the interactions of the train split's
  users (histories and targets, as built: the sampled subset when ``train_sample_size`` is set),
  minus the sample's own rating; test users' ratings never count.

The user statistics are those of the sample's own history (every earlier rating of the user, as
the protocol defines it: not only the K shown). Means are smoothed towards the mean of all
earlier ratings with the weight of ``prior_strength`` pseudo-ratings (positive rates likewise),
so an item with three ratings does not read as certain.

Everything is vectorised: one sort of the log and ``searchsorted`` lookups, no loop over samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import ConfigError

#: The prompt option's values: which statistics the prompt states (the columns are added for all but "none").
COLLABORATIVE_MODES = ("none", "item", "item+user", "all")

__all__ = ["COLLABORATIVE_MODES", "CollaborativeIndex", "ReferenceRatings", "CollaborativeStatistics", "check_collaborative",
           "collaborative_notes", "collaborative_statistics"]


def check_collaborative(collaborative: str, prior_strength: float) -> None:
    """Raise :class:`ConfigError` for an unknown ``collaborative`` value or a negative prior strength."""
    if collaborative not in COLLABORATIVE_MODES:
        raise ConfigError(f"collaborative={collaborative!r} is not one of {', '.join(COLLABORATIVE_MODES)}")
    if not np.isfinite(prior_strength) or prior_strength < 0:
        raise ConfigError(f"prior_strength={prior_strength!r} must be a finite number of pseudo-ratings >= 0")


@dataclass
class _EarlierRatings:
    """Cumulative sums of ratings sorted by (item, time): answers "item i's ratings before time t" by search.

    Times enter as their rank among the distinct times, so the packed int64 key ``item_row * span +
    rank`` cannot overflow (``span`` is the number of distinct times, at most the number of
    ratings). ``totals`` / ``positives`` hold a leading 0 then running sums, so the ratings of item
    ``i`` before ``t`` are the key range ``[key(i, 0), key(i, rank of t))`` and their sums are differences.
    """

    keys: np.ndarray
    totals: np.ndarray
    positives: np.ndarray
    distinct_times: np.ndarray

    @classmethod
    def build(cls, item_rows: np.ndarray, times: np.ndarray, ratings: np.ndarray, threshold: float) -> _EarlierRatings:
        distinct_times, ranks = np.unique(times.astype(np.int64), return_inverse=True)
        keys = item_rows.astype(np.int64) * (len(distinct_times) + 1) + ranks.reshape(-1)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        sorted_ratings = ratings[order].astype(np.float64)
        totals = np.concatenate([[0.0], np.cumsum(sorted_ratings)])
        positives = np.concatenate([[0], np.cumsum(sorted_ratings > threshold)])
        return cls(keys, totals, positives, distinct_times)

    def before(self, item_rows: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(count, rating sum, positives)`` of each item's ratings strictly before each time."""
        span = len(self.distinct_times) + 1
        base = item_rows.astype(np.int64) * span
        # The number of distinct times below t: exactly the ranks that count as "earlier".
        earlier_ranks = np.searchsorted(self.distinct_times, times.astype(np.int64), side="left")
        first = np.searchsorted(self.keys, base, side="left")
        stop = np.searchsorted(self.keys, base + earlier_ranks, side="left")
        return stop - first, self.totals[stop] - self.totals[first], self.positives[stop] - self.positives[first]


@dataclass
class CollaborativeStatistics:
    """The statistics of one split's samples (row ``i`` belongs to the split's ``i``-th sample).

    Attributes:
        item_prior_ratings: earlier ratings of the target item.
        item_mean_rating: their mean, smoothed towards ``prior_mean`` with ``prior_strength`` pseudo-ratings.
        item_positive_rate: the share of them above the label threshold, smoothed towards ``prior_positive_rate``.
        user_history_length: the user's earlier ratings (the whole history, not only the K shown).
        user_mean_rating: their mean (NaN for an empty history).
        prior_mean, prior_positive_rate: per sample, the mean / positive rate of all earlier ratings.
    """

    item_prior_ratings: np.ndarray
    item_mean_rating: np.ndarray
    item_positive_rate: np.ndarray
    user_history_length: np.ndarray
    user_mean_rating: np.ndarray
    prior_mean: np.ndarray
    prior_positive_rate: np.ndarray

    #: Dataset column -> attribute (the statistics a built dataset carries; the priors are not columns).
    COLUMNS = ("item_prior_ratings", "item_mean_rating", "item_positive_rate", "user_history_length", "user_mean_rating")

    def frame(self) -> pd.DataFrame:
        """The statistics as a DataFrame (columns :attr:`COLUMNS`)."""
        return pd.DataFrame({name: getattr(self, name) for name in self.COLUMNS})


def _smoothed(total, count, prior, strength: float) -> np.ndarray:
    """(total + strength * prior) / (count + strength); the plain mean when strength is 0 (NaN for no data)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((total + strength * prior) / (count + strength)).astype(np.float32)


@dataclass
class ReferenceRatings:
    """The ratings a build's statistics may draw on, sorted once, and who may find their own rating among them.

    Built from a whole build (:meth:`from_samples`) or from the reference ratings themselves
    (:meth:`from_ratings`: the Spark engine collects them on the driver and broadcasts this object,
    so every executor answers with the in-process arithmetic). Sums of ratings are float64 running
    sums of values on a half-star grid, exact in any order, so both engines give identical numbers.

    Attributes:
        index: the per-item running sums.
        global_times, global_totals, global_positives: all reference ratings' running sums in time order (the priors).
        threshold: label threshold (rating > threshold is positive).
        train_sample_ids: shuffled-user corpora only: the samples whose own rating is a reference rating
            (the train split's); None for chronological corpora.
        midpoint: the prior mean where nothing came earlier: the middle of the corpus's observed scale.
    """

    index: _EarlierRatings
    global_times: np.ndarray
    global_totals: np.ndarray
    global_positives: np.ndarray
    threshold: float
    train_sample_ids: np.ndarray | None
    midpoint: float

    @property
    def chronological(self) -> bool:
        return self.train_sample_ids is None

    @classmethod
    def from_ratings(cls, item_rows: np.ndarray, ratings: np.ndarray, times: np.ndarray | None, *, threshold: float,
                     midpoint: float, train_sample_ids: np.ndarray | None = None) -> ReferenceRatings:
        """The reference of chronological corpora (``times`` given: every rating of the log) or of
        shuffled-user corpora (``times`` None, ``train_sample_ids`` given: the train samples'
        histories and targets, all before any query)."""
        if (times is None) == (train_sample_ids is None):
            raise ValueError("pass times (chronological corpora) or train_sample_ids (shuffled-user corpora), not both")
        if times is None:
            times = np.zeros(len(item_rows), dtype=np.int64)
            train_sample_ids = np.sort(np.asarray(train_sample_ids, dtype=np.int64))
        times = np.asarray(times, dtype=np.int64)
        index = _EarlierRatings.build(np.asarray(item_rows), times, np.asarray(ratings), threshold)
        order = np.argsort(times, kind="stable")
        sorted_ratings = np.asarray(ratings)[order].astype(np.float64)
        return cls(index=index, global_times=times[order],
                   global_totals=np.concatenate([[0.0], np.cumsum(sorted_ratings)]),
                   global_positives=np.concatenate([[0], np.cumsum(sorted_ratings > threshold)]),
                   threshold=float(threshold), train_sample_ids=train_sample_ids, midpoint=float(midpoint))

    @classmethod
    def from_samples(cls, samples, threshold: float) -> ReferenceRatings:
        """The reference of one in-process build (:class:`~rella_hf.samples.LifelongSamples`)."""
        log = samples.log
        rows = log["item_row"].to_numpy()
        ratings = log["rating"].to_numpy()
        midpoint = float((ratings.min() + ratings.max()) / 2) if len(ratings) else 0.0
        if samples.corpus.protocol in ("chronological", "user_last_out"):
            return cls.from_ratings(rows, ratings, log["timestamp"].to_numpy(np.int64), threshold=threshold,
                                    midpoint=midpoint)
        # Book-Crossing: the train users' interactions; its samples' own ratings are among them.
        train = samples.splits.get("train")
        train = train if train is not None else pd.DataFrame({"sample_id": [], "history_offset": [],
                                                              "history_length": []})
        starts = train["history_offset"].to_numpy(np.int64)
        lengths = train["history_length"].to_numpy(np.int64) + 1  # the history and the target after it
        keep = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
        return cls.from_ratings(rows[keep], ratings[keep], None, threshold=threshold, midpoint=midpoint,
                                train_sample_ids=train["sample_id"].to_numpy(np.int64))

    def query_times(self, frame: pd.DataFrame) -> np.ndarray:
        if self.chronological:
            return frame["timestamp"].to_numpy(np.int64)
        return np.ones(len(frame), dtype=np.int64)

    def own_rating_counted(self, frame: pd.DataFrame) -> np.ndarray:
        """Per sample, whether its own rating is among the reference ratings (then it is subtracted)."""
        if self.chronological:
            return np.zeros(len(frame), dtype=bool)
        return np.isin(frame["sample_id"].to_numpy(np.int64), self.train_sample_ids)

    def priors(self, times: np.ndarray, own: np.ndarray, own_ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and positive rate of all reference ratings before each time (the sample's own removed);
        the mean is :attr:`midpoint` where nothing came earlier."""
        stop = np.searchsorted(self.global_times, times, side="left")
        count = stop - own
        total = self.global_totals[stop] - np.where(own, own_ratings, 0.0)
        positive = self.global_positives[stop] - (own & (own_ratings > self.threshold))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / np.maximum(count, 1), self.midpoint)
            rate = np.where(count > 0, positive / np.maximum(count, 1), 0.5)
        return mean, rate


class CollaborativeIndex:
    """The reference ratings of one build, sorted once; answers the statistics of any of its samples.

    Args:
        samples: the :class:`~rella_hf.samples.LifelongSamples` (its log and, for Book-Crossing, its train split).
        prior_strength: pseudo-ratings of the prior in the smoothed item means and positive rates.
        threshold: label threshold (rating > threshold is positive); None takes the protocol's / corpus's.
        reference: the reference ratings, when they were sorted elsewhere (the Spark driver); None
            sorts those of ``samples``.
    """

    def __init__(self, samples, prior_strength: float = 10.0, threshold: float | None = None,
                 reference: ReferenceRatings | None = None):
        check_collaborative("none", prior_strength)
        self.samples = samples
        self.prior_strength = float(prior_strength)
        if reference is None:
            if threshold is None:
                threshold = samples.protocol.threshold_for(samples.corpus)
            reference = ReferenceRatings.from_samples(samples, threshold)
        self.reference = reference
        # The user statistics read the samples' own log (a Spark batch of whole users holds their histories).
        self.running = np.concatenate([[0.0], np.cumsum(samples.log["rating"].to_numpy().astype(np.float64))])

    def statistics(self, frame: pd.DataFrame) -> CollaborativeStatistics:
        """The statistics of the samples in ``frame`` (rows of one split: ``item_row``, ``rating``,
        ``timestamp``, ``history_offset``, ``history_length``)."""
        reference, strength = self.reference, self.prior_strength
        times = reference.query_times(frame)
        own = reference.own_rating_counted(frame)
        own_ratings = frame["rating"].to_numpy(np.float64)
        count, total, positive = reference.index.before(frame["item_row"].to_numpy(), times)
        count = count - own
        total = total - np.where(own, own_ratings, 0.0)
        positive = positive - (own & (own_ratings > reference.threshold))
        prior_mean, prior_rate = reference.priors(times, own, own_ratings)
        offsets = frame["history_offset"].to_numpy(np.int64)
        lengths = frame["history_length"].to_numpy(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            user_mean = ((self.running[offsets + lengths] - self.running[offsets]) / lengths).astype(np.float32)
        return CollaborativeStatistics(
            item_prior_ratings=count.astype(np.int64),
            item_mean_rating=_smoothed(total, count, prior_mean, strength),
            item_positive_rate=_smoothed(positive, count, prior_rate, strength),
            user_history_length=lengths,
            user_mean_rating=user_mean,
            prior_mean=prior_mean.astype(np.float32),
            prior_positive_rate=prior_rate.astype(np.float32),
        )

    def shown_item_means(self, frame: pd.DataFrame, shown_positions: np.ndarray, list_offsets: np.ndarray) -> np.ndarray:
        """The community mean rating of each shown history item as of its sample's time (smoothed, leak-free).

        Args:
            frame: the split rows the shown lists belong to.
            shown_positions: log positions of the shown items, all samples concatenated.
            list_offsets: ``len(frame) + 1`` offsets into ``shown_positions``.
        """
        reference = self.reference
        lengths = np.diff(np.asarray(list_offsets, dtype=np.int64))
        times = np.repeat(reference.query_times(frame), lengths)
        own = np.repeat(reference.own_rating_counted(frame), lengths)
        own_ratings = np.repeat(frame["rating"].to_numpy(np.float64), lengths)
        rows = self.samples.log["item_row"].to_numpy()[np.asarray(shown_positions, dtype=np.int64)]
        # A user rates an item once, so a sample's own target is never one of its shown items: only
        # the prior needs the own-rating correction.
        count, total, _ = reference.index.before(rows, times)
        prior_mean, _ = reference.priors(times, own, own_ratings)
        return _smoothed(total, count, prior_mean, self.prior_strength)


def collaborative_statistics(samples, frame: pd.DataFrame, prior_strength: float = 10.0,
                             threshold: float | None = None) -> CollaborativeStatistics:
    """The leak-free collaborative statistics of the samples in ``frame``; see :class:`CollaborativeIndex`."""
    return CollaborativeIndex(samples, prior_strength, threshold).statistics(frame)


def _format_count(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count != 1 else f"1 {noun[:-1]}"


def collaborative_notes(statistics: CollaborativeStatistics, collaborative: str, item_noun: str,
                        scale_high: float) -> list[str] | None:
    """The sentences the prompt states for ``collaborative`` (one string per sample; None for ``"none"``).

    Args:
        statistics: the samples' statistics.
        collaborative: ``"item"`` (the target's community mean and count), ``"item+user"`` (and the
            user's history length and mean) or ``"all"`` (the same; the shown items' means go into
            the history items, see :meth:`CollaborativeIndex.shown_item_means`).
        item_noun: ``"movie"`` or ``"book"``.
        scale_high: the top of the rating scale (5 stars, 10 for Book-Crossing).
    """
    check_collaborative(collaborative, 0.0)
    if collaborative == "none":
        return None
    high = f"{scale_high:g}"
    counts = statistics.item_prior_ratings.tolist()
    means = statistics.item_mean_rating.tolist()
    item = [
        f"Other users rated this {item_noun} {mean:.1f} out of {high} on average ({_format_count(count, 'ratings')})."
        if count else f"No other user has rated this {item_noun} yet."
        for count, mean in zip(counts, means)
    ]
    if collaborative == "item":
        return item
    user = [
        f"The user has rated {_format_count(length, item_noun + 's')} so far, {mean:.1f} out of {high} on average. "
        if length else f"The user has rated no {item_noun} so far. "
        for length, mean in zip(statistics.user_history_length.tolist(), statistics.user_mean_rating.tolist())
    ]
    return [head + tail for head, tail in zip(user, item)]
