"""The run-folder report: metrics with intervals, AUC bars, ROC of the best settings, AUC vs K."""

import json

import numpy as np

from rella_hf.report import load_settings, write_report, write_scores


def _write_setting(run_dir, name, signal, meta, n=300, seed=0):
    """A setting whose scores separate the labels with strength ``signal`` (0 = chance)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = 1 / (1 + np.exp(-(signal * (2 * labels - 1) + rng.normal(0, 1, n))))
    write_scores(run_dir, name, labels, scores, meta)


def test_report_ranks_settings_and_limits_the_roc(tmp_path):
    strengths = {"zero-shot-K5-recent": 0.0, "zero-shot-K10-recent": 0.3, "simple-K10-test-recent": 1.0,
                 "lightgbm-K10": 2.0}
    for index, (name, signal) in enumerate(strengths.items()):
        stage = name.split("-K")[0]
        K = int(name.split("-K")[1].split("-")[0])
        _write_setting(tmp_path, name, signal, {"stage": stage, "K": K, "retrieval": "recent"}, seed=index)

    report = write_report(tmp_path, n_resamples=100, roc_limit=2).read_text()

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == set(strengths)
    assert metrics["lightgbm-K10"]["auc"] > metrics["simple-K10-test-recent"]["auc"] > metrics["zero-shot-K5-recent"]["auc"]
    low, high = metrics["lightgbm-K10"]["auc_ci"]
    assert low < metrics["lightgbm-K10"]["auc"] < high
    assert "ROC curves of the 2 best settings by AUC" in report
    for plot in ("auc_bars.png", "roc.png", "calibration.png", "auc_vs_k.png"):
        assert (tmp_path / plot).stat().st_size > 1000 and f"]({plot})" in report


def test_auc_vs_k_needs_a_setting_measured_at_several_k(tmp_path):
    _write_setting(tmp_path, "mixed-K10-test-recent", 1.0, {"stage": "few-shot", "K": 10, "retrieval": "recent"})
    _write_setting(tmp_path, "mixed-K10-test-semantic", 1.0, {"stage": "few-shot", "K": 10, "retrieval": "semantic"}, seed=1)

    report = write_report(tmp_path, n_resamples=0).read_text()

    assert not (tmp_path / "auc_vs_k.png").exists() and "AUC vs K" not in report
    assert "ROC curves of" not in report  # two settings are under the default limit: all drawn
    assert len(load_settings(tmp_path)) == 2


def test_settings_are_listed_in_numeric_k_order(tmp_path):
    for index, K in enumerate((30, 5, 10)):
        _write_setting(tmp_path, f"zero-shot-K{K}-recent", 0.5, {"stage": "zero-shot", "K": K}, n=50, seed=index)

    assert list(load_settings(tmp_path)) == ["zero-shot-K5-recent", "zero-shot-K10-recent", "zero-shot-K30-recent"]


def test_calibrated_scores_get_their_own_row_group_and_reliability_panel(tmp_path):
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 400)
    raw = 1 / (1 + np.exp(-(0.3 * (2 * labels - 1) + 0.3 * rng.normal(0, 1, 400) + 1.0)))  # squeezed, yes-biased
    calibrated = 1 / (1 + np.exp(-(4 * np.log(raw / (1 - raw)) - 4.0)))
    write_scores(tmp_path, "ReiT-recent", labels, raw, {"stage": "ReiT"}, calibrated_scores=calibrated)
    _write_setting(tmp_path, "zero-shot-recent", 0.2, {"stage": "zero-shot"}, n=400)

    report = write_report(tmp_path, n_resamples=50).read_text()

    rows = [json.loads(line) for line in (tmp_path / "scores" / "ReiT-recent.jsonl").read_text().splitlines()]
    assert [row["score"] for row in rows] == raw.tolist()  # raw scores written unchanged
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "calibrated" in metrics["ReiT-recent"] and "calibrated" not in metrics["zero-shot-recent"]
    raw_metrics, tuned = metrics["ReiT-recent"], metrics["ReiT-recent"]["calibrated"]
    assert tuned["auc"] == raw_metrics["auc"] and tuned["ece"] < raw_metrics["ece"]
    assert raw_metrics["ece"] > raw_metrics["ece_band"]  # the squeezed raw scores fail the consistency band
    assert "**Calibrated (map fitted on validation samples, applied to these)**" in report
    assert report.count("| ReiT-recent |") == 2 and report.count("| zero-shot-recent |") == 1
    assert "Reliability diagram" in report and (tmp_path / "calibration.png").stat().st_size > 1000


def test_pack_scores_keeps_every_score_file_of_a_run_in_one_parquet_and_is_idempotent(tmp_path):
    import pyarrow.parquet as pq
    import pytest

    from rella_hf.errors import DataFormatError
    from rella_hf.report import PACKED_SCORES, load_score_files, pack_scores, read_score_pairs

    run = tmp_path / "ml-1m"
    write_scores(run, "zero-shot-K5-recent", [0, 1, 1], [0.2, 0.7, 0.5], {"stage": "zero-shot", "K": 5},
                 raw_prompts=["a", "b", "c"])
    write_scores(run, "recipe-lc-test-recent", [1, 0], [0.9, 0.1], {"K": 5}, calibrated_scores=[0.8, 0.3])
    kept = run / "recipe" / "lc" / "validation_scores.jsonl"  # the training run's own validation scores
    kept.parent.mkdir(parents=True)
    kept.write_text('{"label": 1, "score": 0.6}\n{"label": 0, "score": 0.4}\n')
    (run / "recipe" / "lc" / "config.json").write_text("{}")  # a model file: never packed
    before_settings, before_files = load_settings(run), load_score_files(run)

    packed = pack_scores(run)
    assert packed == run / PACKED_SCORES
    assert not list(run.glob("scores/*")) and not kept.exists() and (run / "recipe" / "lc" / "config.json").exists()
    assert pq.read_table(packed).num_rows == 3 + 2 + 2
    after_settings, after_files = load_settings(run), load_score_files(run)
    assert list(after_settings) == list(before_settings) == ["recipe-lc-test-recent", "zero-shot-K5-recent"]
    assert sorted(after_files) == sorted(before_files) == [
        "recipe/lc/validation_scores.jsonl", "scores/recipe-lc-test-recent.jsonl", "scores/zero-shot-K5-recent.jsonl"]
    for name, before in before_files.items():
        after = after_files[name]
        assert after["labels"].tolist() == before["labels"].tolist() and after["scores"].tolist() == before["scores"].tolist()
        assert after["prompts"] == before["prompts"] and after["meta"] == before["meta"]
        assert (after["calibrated"] is None) == (before["calibrated"] is None)
    assert after_settings["recipe-lc-test-recent"]["calibrated"].tolist() == [0.8, 0.3]
    assert after_settings["zero-shot-K5-recent"]["prompts"] == ["a", "b", "c"]

    # Idempotent: nothing loose, nothing rewritten; a new loose file is merged in, replacing its packed copy.
    stamp = packed.stat().st_mtime_ns
    assert pack_scores(run) == packed and packed.stat().st_mtime_ns == stamp
    write_scores(run, "zero-shot-K5-recent", [1, 0], [0.6, 0.3], {"stage": "again"})
    write_scores(run, "lightgbm-K10", [0, 1], [0.1, 0.9], {})
    assert load_settings(run)["zero-shot-K5-recent"]["meta"] == {"stage": "again"}  # loose wins before packing
    pack_scores(run)
    settings = load_settings(run)
    assert list(settings) == ["lightgbm-K10", "recipe-lc-test-recent", "zero-shot-K5-recent"]
    assert settings["zero-shot-K5-recent"]["scores"].tolist() == [0.6, 0.3]
    assert read_score_pairs(run)["lightgbm-K10"][1].tolist() == [0.1, 0.9]
    with pytest.raises(DataFormatError, match="pass the run folder"):
        read_score_pairs(packed)
    assert write_report(run, n_resamples=0).exists()
    assert pack_scores(tmp_path / "empty") is None
