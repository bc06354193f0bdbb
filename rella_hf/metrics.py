"""CTR metrics as reported in the ReLLa paper: AUC, LogLoss and accuracy at threshold 0.5, plus the
Brier score and the expected calibration error (ECE, equal-mass bins) that say whether the scores
can be read as probabilities (:func:`ece_consistency_band` gives the ECE a perfectly calibrated
model with the same predictions would show by chance).

:func:`ctr_metrics` is the library function. ``evaluate`` cannot download its "roc_auc" module
offline, so the package ships its own module; load it with
``evaluate.load(rella_hf.metrics.EVALUATE_METRIC_PATH)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rella_hf.errors import MetricError

EVALUATE_METRIC_PATH = str(Path(__file__).resolve().parent / "evaluate_modules" / "ctr_metrics")
DEFAULT_EPS = 1e-7
ACC_THRESHOLD = 0.5
#: Equal-mass bins of the expected calibration error.
ECE_BINS = 10


def _as_labels(labels) -> np.ndarray:
    values = np.asarray(labels)
    if values.ndim != 1:
        raise MetricError(f"labels have shape {values.shape}, expected one label per sample (1-D); flatten them.")
    if values.dtype == bool:
        return values.astype(np.int64)
    if not np.issubdtype(values.dtype, np.number) or not np.isin(values, (0, 1)).all():
        found = np.unique(values)[:5].tolist()
        raise MetricError(f"labels must be 0 or 1 (click / no click), found values such as {found}; binarize them first.")
    return values.astype(np.int64)


def _as_scores(scores, expected: int) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    if values.shape != (expected,):
        raise MetricError(f"scores have shape {values.shape}, expected ({expected},) to match the labels.")
    if not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
        raise MetricError(
            "scores must be probabilities in [0, 1] without NaN; pass P(yes) / (P(yes) + P(no)), not logits."
        )
    return values


def _checked(labels, scores, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The labels and scores as int64 / float64 arrays, checked once: binary labels, one probability each,
    at least one sample (``what`` names the metric in the error)."""
    y = _as_labels(labels)
    p = _as_scores(scores, len(y))
    if len(y) == 0:
        raise MetricError(f"{what} needs at least one sample, got none.")
    return y, p


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve.

    Args:
        labels: 0/1 labels.
        scores: probabilities (any monotone score works).

    Raises:
        MetricError: when only one class is present (AUC is undefined there).
    """
    return _auc(*_checked(labels, scores, "AUC"))


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        raise MetricError(
            f"AUC needs both classes, but all {len(y)} labels are {int(y[0]) if len(y) else 'missing'}; "
            f"evaluate on a split that holds clicks and non-clicks."
        )
    return float(roc_auc_score(y, p))


def log_loss(labels, scores, eps: float = DEFAULT_EPS) -> float:
    """Binary cross-entropy, with probabilities clipped to ``[eps, 1 - eps]`` so that it stays finite.

    Args:
        labels: 0/1 labels.
        scores: probabilities of the positive class.
        eps: clipping margin.
    """
    return _log_loss(*_checked(labels, scores, "LogLoss"), eps)


def _log_loss(y: np.ndarray, p: np.ndarray, eps: float) -> float:
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def accuracy(labels, scores, threshold: float = ACC_THRESHOLD) -> float:
    """Share of samples where ``score > threshold`` equals the label (a score of exactly 0.5 counts as "no").

    Args:
        labels: 0/1 labels.
        scores: probabilities of the positive class.
        threshold: decision threshold.
    """
    y, p = _checked(labels, scores, "accuracy")
    return float(np.mean(_predicted_yes(p, threshold) == y))


def _predicted_yes(scores: np.ndarray, threshold: float = ACC_THRESHOLD) -> np.ndarray:
    """The 0/1 decision ACC counts: a score strictly above the threshold; one place so the point
    estimate and its bootstrap cannot disagree on ties (a score of exactly 0.5 is common for
    constant or rating-derived scorers)."""
    return (scores > threshold).astype(np.int64)


def brier_score(labels, scores) -> float:
    """Mean squared difference between the predicted probability and the 0/1 label.

    Args:
        labels: 0/1 labels.
        scores: probabilities of the positive class.
    """
    y, p = _checked(labels, scores, "the Brier score")
    return float(np.mean((p - y) ** 2))


def _equal_mass_bins(scores: np.ndarray, bins: int) -> np.ndarray:
    """Bin index of each sample: samples sorted by score, cut into ``bins`` groups of (nearly) equal size.

    Equal-mass bins keep every bin populated when scores are squeezed into a narrow range (equal-width
    bins would put a tuned model's 200 scores into two or three bins). The stable sort makes ties
    deterministic.
    """
    order = np.argsort(scores, kind="stable")
    which = np.empty(len(scores), dtype=np.int64)
    # The first n % bins bins take one sample more, as numpy.array_split cuts.
    sizes = len(scores) // bins + (np.arange(bins) < len(scores) % bins)
    which[order] = np.repeat(np.arange(bins), sizes)
    return which


def _ece_of(labels: np.ndarray, scores: np.ndarray, which: np.ndarray, bins: int) -> np.ndarray:
    """ECE of each row of ``labels`` (``[..., n]``) against fixed scores and bins, vectorised over rows."""
    # (bin share) x |rate - mean score| = |sum of labels - sum of scores| / n, bin by bin.
    score_sums = np.bincount(which, weights=scores, minlength=bins)
    one_hot = np.zeros((len(scores), bins))
    one_hot[np.arange(len(scores)), which] = 1.0
    label_sums = labels @ one_hot  # [..., bins]
    return np.abs(label_sums - score_sums).sum(axis=-1) / len(scores)


def expected_calibration_error(labels, scores, bins: int = ECE_BINS) -> float:
    """ECE with equal-mass bins: sum over bins of (bin share) x |positive rate - mean score|.

    Args:
        labels: 0/1 labels.
        scores: probabilities of the positive class.
        bins: number of equal-mass bins (at most the number of samples).
    """
    return _ece(*_checked(labels, scores, "ECE"), bins)


def _ece(y: np.ndarray, p: np.ndarray, bins: int) -> float:
    bins = min(bins, len(y))
    return float(_ece_of(y.astype(np.float64), p, _equal_mass_bins(p, bins), bins))


def ece_consistency_band(scores, bins: int = ECE_BINS, n_resamples: int = 1000, level: float = 0.95,
                         seed: int = 0) -> float:
    """Upper end of the ECE a perfectly calibrated model with these predictions shows by chance.

    Consistency resampling (Bröcker & Smith 2007): draw labels from the predicted probabilities
    themselves ``n_resamples`` times and compute each draw's ECE with the same bins; an observed ECE
    at or below the ``level`` quantile is consistent with calibration. ECE is never negative, so
    the band is one-sided.

    Args:
        scores: probabilities of the positive class.
        bins: equal-mass bins (as in :func:`expected_calibration_error`).
        n_resamples: label draws.
        level: quantile of the band.
        seed: seed of the draws.
    """
    p = _as_scores(scores, len(np.asarray(scores)))
    if len(p) == 0:
        raise MetricError("the ECE consistency band needs at least one sample, got none.")
    bins = min(bins, len(p))
    rng, which = np.random.default_rng(seed), _equal_mass_bins(p, bins)
    # Blocks of draws bound the memory of the [draws, samples] label matrix on large test splits.
    block = max(1, min(n_resamples, 2_000_000 // len(p)))
    eces = np.concatenate([_ece_of((rng.random((min(block, n_resamples - start), len(p))) < p).astype(np.float64),
                                   p, which, bins) for start in range(0, n_resamples, block)])
    return float(np.quantile(eces, level))


def best_threshold_accuracy(labels, scores) -> float:
    """The highest accuracy any threshold reaches on these samples (a yardstick that peeks at the labels).

    Args:
        labels: 0/1 labels.
        scores: any monotone score.
    """
    y, p = _checked(labels, scores, "accuracy")
    order = np.argsort(-p, kind="stable")
    sorted_scores, sorted_labels = p[order], y[order]
    # Predicting "yes" for the top k samples; only cuts between distinct scores are thresholds.
    true_positives = np.concatenate([[0], np.cumsum(sorted_labels)])
    k = np.arange(len(y) + 1)
    correct = true_positives + (len(y) - y.sum()) - (k - true_positives)
    valid = np.concatenate([[True], sorted_scores[1:] != sorted_scores[:-1], [True]])
    return float(correct[valid].max() / len(y))


def ctr_metrics(labels, scores, eps: float = DEFAULT_EPS) -> dict:
    """AUC, LogLoss and ACC (threshold 0.5) like the paper, the Brier score and ECE (10 equal-mass
    bins), plus the sample and positive counts.

    Args:
        labels: 0/1 labels (one per sample).
        scores: predicted click probabilities in [0, 1].
        eps: LogLoss clipping margin.

    Returns:
        ``{"auc", "logloss", "acc", "brier", "ece", "n", "positives"}``.

    Raises:
        MetricError: on mismatched lengths, non-binary labels, scores outside [0, 1], or a single
            class (AUC undefined).
    """
    y, p = _checked(labels, scores, "CTR evaluation")  # checked once; the metrics below take the arrays as they are
    return {
        "auc": _auc(y, p),
        "logloss": _log_loss(y, p, eps),
        "acc": float(np.mean(_predicted_yes(p) == y)),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": _ece(y, p, ECE_BINS),
        "n": int(len(y)),
        "positives": int(y.sum()),
    }


def _fast_auc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUC of each row of ``[resamples, n]`` label and score matrices (ties count one half).

    Mann-Whitney U from average ranks, vectorised over the resamples; NaN where a row has one class.
    """
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=1)
    positives = labels.sum(axis=1)
    negatives = labels.shape[1] - positives
    rank_sum = (ranks * labels).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def paired_bootstrap_samples(labels, scores_by_setting: dict, n_resamples: int = 1000, seed: int = 0,
                             eps: float = DEFAULT_EPS) -> dict[str, dict[str, np.ndarray]]:
    """Bootstrap distributions of AUC, LogLoss and ACC, resampling the same samples for every setting.

    Paired resampling makes differences between settings scored on the same test samples
    comparable: their bootstrap distribution is the difference of these arrays.

    Args:
        labels: 0/1 labels of the scored samples.
        scores_by_setting: setting name -> scores of the same samples, in the same order.
        n_resamples: bootstrap resamples.
        seed: seed of the resampled indices.
        eps: LogLoss clipping margin.

    Returns:
        setting -> {"auc", "logloss", "acc"} -> ``[n_resamples]`` array (AUC is NaN for a
        resample that drew one class only).
    """
    y = _as_labels(labels)
    indices = np.random.default_rng(seed).integers(0, len(y), size=(n_resamples, len(y)))
    drawn_labels = y[indices]
    result = {}
    for name, scores in scores_by_setting.items():
        p = _as_scores(scores, len(y))[indices]
        clipped = np.clip(p, eps, 1 - eps)
        result[name] = {
            "auc": _fast_auc(drawn_labels, p),
            "logloss": -(drawn_labels * np.log(clipped) + (1 - drawn_labels) * np.log(1 - clipped)).mean(axis=1),
            "acc": (_predicted_yes(p) == drawn_labels).mean(axis=1),
        }
    return result


def paired_difference(labels, scores_a, scores_b, metric: str = "auc", n_resamples: int = 1000,
                      seed: int = 0) -> dict:
    """Paired bootstrap of ``metric(a) - metric(b)`` on the same samples.

    A difference is a win for ``a`` only if its 95 % interval excludes 0 on the better side
    (higher AUC / ACC, lower LogLoss).

    Returns:
        ``{"difference", "ci": (low, high), "win": "a" | "b" | None}``.
    """
    draws = paired_bootstrap_samples(labels, {"a": scores_a, "b": scores_b}, n_resamples, seed)
    deltas = draws["a"][metric] - draws["b"][metric]
    low, high = np.nanpercentile(deltas, [2.5, 97.5])
    point = ctr_metrics(labels, scores_a)[metric] - ctr_metrics(labels, scores_b)[metric]
    lower_is_better = metric == "logloss"
    win = None
    if low > 0:
        win = "b" if lower_is_better else "a"
    elif high < 0:
        win = "a" if lower_is_better else "b"
    return {"difference": float(point), "ci": (float(low), float(high)), "win": win}
