"""Tests of rella_hf.metrics: AUC / LogLoss / ACC against sklearn and by hand, errors, evaluate module."""

from __future__ import annotations

import numpy as np
import pytest

from rella_hf.errors import MetricError, RellaError
from rella_hf.metrics import EVALUATE_METRIC_PATH, accuracy, ctr_metrics, log_loss, roc_auc


def test_small_example_by_hand():
    labels = [1, 0, 0, 1]
    scores = [0.9, 0.2, 0.6, 0.4]
    result = ctr_metrics(labels, scores)
    # Positive/negative pairs ranked right: (0.9>0.2), (0.9>0.6), (0.4>0.2); wrong: (0.4<0.6) -> 3/4.
    assert result["auc"] == pytest.approx(0.75)
    expected_logloss = -np.mean(np.log([0.9, 0.8, 0.4, 0.4]))
    assert result["logloss"] == pytest.approx(expected_logloss)
    assert result["acc"] == pytest.approx(0.5)  # 0.9 and 0.2 right; 0.6 and 0.4 wrong
    assert result["n"] == 4 and result["positives"] == 2
    assert isinstance(result["n"], int) and isinstance(result["positives"], int)


def test_matches_sklearn_on_random_data():
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.metrics import log_loss as sk_log_loss

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.clip(0.3 * labels + rng.random(500) * 0.7, 0, 1)
    scores[:10] = np.round(scores[:10], 1)  # some ties
    result = ctr_metrics(labels, scores)
    assert result["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert result["logloss"] == pytest.approx(sk_log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7)))
    assert result["acc"] == pytest.approx(accuracy_score(labels, scores > 0.5))


def test_logloss_clips_certain_mistakes_and_accuracy_threshold():
    assert np.isfinite(log_loss([1, 0], [0.0, 1.0]))
    assert log_loss([1, 0], [0.0, 1.0]) == pytest.approx(-np.log(1e-7))
    assert log_loss([1, 0], [0.0, 1.0], eps=1e-3) == pytest.approx(-np.log(1e-3))
    assert accuracy([1, 0], [0.5, 0.5]) == 0.5  # exactly 0.5 predicts "no"
    assert accuracy([True, False], [0.51, 0.49]) == 1.0  # bool labels are accepted


def test_single_class_is_a_clear_error_not_nan():
    with pytest.raises(MetricError, match="AUC needs both classes"):
        roc_auc([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(MetricError, match="AUC needs both classes"):
        ctr_metrics([0, 0], [0.2, 0.5])


@pytest.mark.parametrize(
    "labels, scores, message",
    [
        ([1, 0, 2], [0.1, 0.2, 0.3], "labels must be 0 or 1"),
        ([1, 0], [0.1, 0.2, 0.3], r"expected \(2,\)"),
        ([1, 0], [0.1, float("nan")], "without NaN"),
        ([1, 0], [1.5, -2.0], "not logits"),
        ([[1, 0]], [[0.1, 0.2]], "1-D"),
    ],
)
def test_bad_inputs_raise_metric_errors(labels, scores, message):
    with pytest.raises(MetricError, match=message):
        ctr_metrics(labels, scores)
    assert issubclass(MetricError, RellaError) and issubclass(MetricError, ValueError)


def test_evaluate_module_loads_offline_by_path_and_agrees():
    import evaluate

    metric = evaluate.load(EVALUATE_METRIC_PATH)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 64)
    scores = rng.random(64)
    computed = metric.compute(predictions=scores.tolist(), references=labels.tolist())
    assert computed == pytest.approx(ctr_metrics(labels, scores))
    # Incremental use as in evaluation loops.
    for start in range(0, 64, 16):
        metric.add_batch(predictions=scores[start : start + 16], references=labels[start : start + 16])
    assert metric.compute() == pytest.approx(ctr_metrics(labels, scores))
    with pytest.raises(MetricError):
        metric.compute(predictions=[0.2, 0.4], references=[1, 1])
    from rella_hf.metrics import ece_consistency_band

    banded = metric.compute(predictions=scores.tolist(), references=labels.tolist(), ece_band=True)
    assert banded["ece_band"] == pytest.approx(ece_consistency_band(scores)) and banded["ece"] == computed["ece"]


def test_evaluate_module_is_shipped_with_the_package():
    import configparser
    from pathlib import Path

    import rella_hf

    package_dir = Path(rella_hf.__file__).parent
    module_file = Path(EVALUATE_METRIC_PATH) / "ctr_metrics.py"
    assert module_file.is_file()
    config = configparser.ConfigParser()
    config.read(package_dir.parent / "setup.cfg")
    patterns = config["options.package_data"]["rella_hf"].split()
    relative = module_file.relative_to(package_dir)
    assert any(relative.match(pattern) for pattern in patterns)


def test_bootstrap_matches_the_plain_metrics():
    import numpy as np

    from rella_hf.metrics import ctr_metrics, paired_bootstrap_samples, paired_difference

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    good = np.clip(labels * 0.3 + rng.random(400) * 0.7, 0, 1)
    # Scores at exactly the threshold must count the same way in the bootstrap as in the point ACC.
    good[::5] = 0.5
    noise = rng.random(400)
    draws = paired_bootstrap_samples(labels, {"good": good}, n_resamples=1, seed=0)
    index = np.random.default_rng(0).integers(0, 400, size=(1, 400))[0]
    expected = ctr_metrics(labels[index], good[index])
    for key in ("auc", "logloss", "acc"):
        assert abs(draws["good"][key][0] - expected[key]) < 1e-9
    verdict = paired_difference(labels, good, noise, n_resamples=300)
    assert verdict["win"] == "a" and verdict["ci"][0] > 0
    assert paired_difference(labels, noise, noise, n_resamples=300)["win"] is None


def test_brier_and_ece_match_their_definitions():
    from sklearn.metrics import brier_score_loss

    from rella_hf.metrics import brier_score, expected_calibration_error

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 103)
    scores = rng.random(103)
    assert brier_score(labels, scores) == pytest.approx(brier_score_loss(labels, scores), abs=1e-12)
    # Equal-mass bins by hand: sort, cut into 10 groups of 10 or 11, weight |rate - mean| by group size.
    order = np.argsort(scores, kind="stable")
    expected = sum(len(group) / 103 * abs(labels[group].mean() - scores[group].mean())
                   for group in np.array_split(order, 10))
    assert expected_calibration_error(labels, scores) == pytest.approx(expected, abs=1e-12)
    result = ctr_metrics(labels, scores)
    assert result["brier"] == pytest.approx(brier_score(labels, scores)) and result["ece"] == pytest.approx(expected)


def test_ece_band_holds_calibrated_predictions_and_rejects_squeezed_ones():
    from rella_hf.metrics import ece_consistency_band, expected_calibration_error

    rng = np.random.default_rng(4)
    truth = rng.random(1000)
    labels = (rng.random(1000) < truth).astype(int)
    band = ece_consistency_band(truth)
    assert 0.02 < band < 0.08  # the "about 0.05 on 1,000 samples"
    assert band == ece_consistency_band(truth)  # seeded: deterministic
    assert expected_calibration_error(labels, truth) <= band
    squeezed = 0.6 + 0.1 * (truth - 0.5)  # every prediction in [0.55, 0.65]: ranks the same, badly calibrated
    assert expected_calibration_error(labels, squeezed) > ece_consistency_band(squeezed)


def test_best_threshold_accuracy_matches_a_brute_force_scan():
    from rella_hf.metrics import best_threshold_accuracy

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60), 1)  # many ties: a cut may not split equal scores
    candidates = np.concatenate([[-1.0], np.unique(scores)])
    brute = max(np.mean((scores > threshold) == labels) for threshold in candidates)
    assert best_threshold_accuracy(labels, scores) == pytest.approx(brute)


def test_ctr_metrics_checks_its_inputs_once_and_agrees_with_each_metric(monkeypatch):
    from rella_hf import metrics

    calls = []
    original = metrics._as_labels
    monkeypatch.setattr(metrics, "_as_labels", lambda labels: calls.append(1) or original(labels))
    labels, scores = [0, 1, 1, 0, 1], [0.1, 0.8, 0.6, 0.4, 0.3]
    result = ctr_metrics(labels, scores)
    assert len(calls) == 1
    assert result["auc"] == roc_auc(labels, scores) and result["logloss"] == log_loss(labels, scores)
    assert result["acc"] == accuracy(labels, scores) == 0.8
    assert result["brier"] == metrics.brier_score(labels, scores)
    assert result["ece"] == metrics.expected_calibration_error(labels, scores)


@pytest.mark.parametrize("name, what", [("roc_auc", "AUC"), ("log_loss", "LogLoss"), ("accuracy", "accuracy"),
                                        ("brier_score", "the Brier score"), ("expected_calibration_error", "ECE"),
                                        ("ctr_metrics", "CTR evaluation")])
def test_no_samples_is_an_error_naming_the_metric(name, what):
    from rella_hf import metrics

    with pytest.raises(MetricError, match=f"^{what} needs at least one sample"):
        getattr(metrics, name)([], [])


def test_one_rella_citation_for_the_metric_module_and_the_cards():
    import evaluate

    from rella_hf.citation import RELLA_CITATION
    from rella_hf.hub import cards

    assert cards.RELLA_CITATION is RELLA_CITATION
    assert evaluate.load(EVALUATE_METRIC_PATH).citation == RELLA_CITATION
    assert "2308.11131" in RELLA_CITATION
