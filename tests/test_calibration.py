"""Calibration of CTR scores: fits, AUC invariance, refusals, files, the content-free correction, end of training."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from rella_hf.calibration import (
    CALIBRATION_FILE,
    Calibration,
    CalibrationError,
    content_free_prompt,
    content_free_prompts,
    fit_after_training,
    fit_calibration,
    fit_content_free,
    load_calibration,
    log_odds,
    model_fingerprint,
)
from rella_hf.metrics import ctr_metrics, roc_auc


def squeezed_scores(n=600, seed=0, bias=1.0, slope=0.25):
    """Labels and raw scores like a tuned model's: good ranking, log-odds shrunk towards a yes-bias."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0, 1.5, n)  # true log-odds of a click
    labels = (rng.random(n) < 1 / (1 + np.exp(-truth))).astype(np.int64)
    raw = 1 / (1 + np.exp(-(slope * truth + bias)))
    return labels, raw


@pytest.mark.parametrize("method", ["platt", "temperature", "isotonic"])
def test_fit_improves_logloss_and_monotone_maps_keep_auc(method):
    labels, raw = squeezed_scores()
    test_labels, test_raw = squeezed_scores(seed=1)
    calibration = fit_calibration(labels, raw, method, fingerprint="name:m")
    calibrated = calibration.transform(test_raw)
    before, after = ctr_metrics(test_labels, test_raw), ctr_metrics(test_labels, calibrated)
    base_rate = test_labels.mean()
    constant = -(base_rate * np.log(base_rate) + (1 - base_rate) * np.log(1 - base_rate))
    assert after["logloss"] < before["logloss"] and after["ece"] < before["ece"]
    if method != "temperature":  # one parameter cannot move the yes-bias, so only it may stay above the constant
        assert after["logloss"] < constant
    if method in ("platt", "temperature"):
        assert abs(after["auc"] - before["auc"]) < 1e-9
    np.testing.assert_array_equal(test_raw, squeezed_scores(seed=1)[1])  # the raw scores are not touched


def test_temperature_undoes_a_pure_squeeze():
    labels, raw = squeezed_scores(n=4000, bias=0.0)
    assert fit_calibration(labels, raw, "temperature", fingerprint="name:m").parameters["temperature"] == pytest.approx(
        0.25, rel=0.15)


def test_platt_recovers_the_squeeze_and_the_fit_is_deterministic():
    labels, raw = squeezed_scores(n=4000)
    first = fit_calibration(labels, raw, fingerprint="name:m")
    # raw log-odds z = 0.25 t + 1, so t = 4 z - 4.
    assert first.parameters["a"] == pytest.approx(4.0, rel=0.15) and first.parameters["b"] == pytest.approx(-4.0, rel=0.2)
    assert fit_calibration(labels, raw, fingerprint="name:m").to_dict() == first.to_dict()
    assert first.n == 4000 and first.positive_rate == pytest.approx(labels.mean())


def test_isotonic_reports_its_auc_change_and_stays_inside_zero_one():
    labels, raw = squeezed_scores()
    calibrated = fit_calibration(labels, raw, "isotonic", fingerprint="name:m").transform(raw)
    assert 0 < calibrated.min() and calibrated.max() < 1
    assert (np.diff(calibrated[np.argsort(raw)]) >= 0).all()  # monotone: ties possible, no reversals
    # Steps tie neighbouring scores, which can move AUC either way; by little for a monotone map.
    assert abs(roc_auc(labels, calibrated) - roc_auc(labels, raw)) < 0.02


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([1] * 80, [0.6] * 80, "all positive"),
        ([0, 1] * 10, [0.4, 0.6] * 10, "at least 50"),
        ([0] * 75 + [1] * 5, [0.5] * 80, "5 of the rarer class"),
        ([0, 1] * 40, [np.nan] + [0.5] * 79, "NaN"),
        ([0, 1] * 40, [1.5] + [0.5] * 79, "outside \\[0, 1\\]"),
        ([0, 1] * 40, [0.5] * 79 + [-0.1], "outside \\[0, 1\\]"),
    ],
)
def test_bad_fitting_sets_are_refused_in_one_line(labels, scores, message):
    with pytest.raises(CalibrationError, match=message) as error:
        fit_calibration(labels, scores, fingerprint="name:m")
    assert "\n" not in str(error.value)


def test_inverse_ranking_is_refused_rather_than_flipped():
    labels, raw = squeezed_scores()
    with pytest.raises(CalibrationError, match="slope"):
        fit_calibration(labels, 1 - raw, fingerprint="name:m")


def test_saved_calibration_round_trips_and_a_foreign_one_is_refused(tmp_path):
    mine, other = tmp_path / "mine", tmp_path / "other"
    for folder, content in ((mine, b"weights A"), (other, b"weights B")):
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(content)
    copy = tmp_path / "exported"
    copy.mkdir()
    (copy / "adapter_model.safetensors").write_bytes(b"weights A")
    assert model_fingerprint(mine) == model_fingerprint(copy) != model_fingerprint(other)
    assert model_fingerprint("org/base-model") == "name:org/base-model"

    labels, raw = squeezed_scores()
    calibration = fit_calibration(labels, raw, fingerprint=model_fingerprint(mine), model="mine")
    calibration.save(mine)
    loaded = load_calibration(mine, expected_fingerprint=model_fingerprint(copy))
    np.testing.assert_array_equal(loaded.transform(raw), calibration.transform(raw))
    with pytest.raises(CalibrationError, match="fitted for another model") as error:
        load_calibration(mine, expected_fingerprint=model_fingerprint(other))
    assert "\n" not in str(error.value)
    assert load_calibration(other) is None  # no file: no calibration


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "does not parse"),
        ('{"method": "platt"}', "not a rella-hf calibration"),
        ('{"format": "rella-hf-calibration", "version": 99}', "version 99"),
        ('{"format": "rella-hf-calibration", "version": 1, "method": "platt", "parameters": {"a": -1, "b": 0}, '
         '"n": 100, "positive_rate": 0.5, "fingerprint": "name:m"}', "must be positive"),
        ('{"format": "rella-hf-calibration", "version": 1, "method": "platt", "parameters": {"a": 1}, '
         '"n": 100, "positive_rate": 0.5, "fingerprint": "name:m"}', "expected \\['a', 'b'\\]"),
    ],
)
def test_unparsable_calibration_files_are_refused_in_one_line(tmp_path, content, message):
    (tmp_path / CALIBRATION_FILE).write_text(content)
    with pytest.raises(CalibrationError, match=message) as error:
        load_calibration(tmp_path)
    assert "\n" not in str(error.value)


def test_log_odds_are_finite_for_saturated_scores():
    assert np.isfinite(log_odds([0.0, 1.0, 0.5])).all()
    assert log_odds([0.5])[0] == 0.0


def test_content_free_prompts_replace_history_and_target():
    from rella_hf.prompts import render_prompt

    prompts = [render_prompt("ml-latest", None, titles, [4.0, 2.5], target, "float1")
               for titles, target in ((["Heat (1995)", "Up (2009)"], "Alien (1979)"),
                                      (["Fargo (1996)", "Jaws (1975)"], "Casino (1995)"))]
    free = content_free_prompt(prompts[0])
    assert "Heat" not in free and "Alien" not in free and "4.0 stars" not in free and "***N/A***" in free
    assert content_free_prompt(prompts[1]) == free  # no profile in ml-latest: all collapse
    assert len(content_free_prompts(prompts)) == 3  # one per placeholder
    lines = render_prompt("ml-latest", None, ["Heat (1995)"], [4.0], "Alien (1979)", "float1", history_format="lines")
    assert "Heat" not in content_free_prompt(lines) and "Alien" not in content_free_prompt(lines)
    with pytest.raises(CalibrationError, match="target"):
        content_free_prompt("no template here")


def test_content_free_prompts_carry_the_tokens_of_an_unknown_user_and_item():
    from rella_hf.collaborative_ids import id_sentence
    from rella_hf.prompts import render_prompt

    def with_tokens(user_row, item_row, titles, target):
        head, _, question = render_prompt("ml-latest", None, titles, [4.0], target, "float1").rpartition("\n")
        return f"{head}\n{id_sentence(user_row, item_row, 'movie')}\n{question}"

    prompts = [with_tokens(7, 12, ["Heat (1995)"], "Alien (1979)"), with_tokens(3, 40, ["Up (2009)"], "Jaws (1975)")]
    free = content_free_prompt(prompts[0])
    assert "<rella_user_0> <rella_item_0>" in free and "<rella_user_7>" not in free and "<rella_item_12>" not in free
    assert content_free_prompt(prompts[1]) == free
    assert len(content_free_prompts(prompts)) == 3


def test_content_free_correction_moves_the_neutral_input_to_one_half():
    calibration = fit_content_free([0.7, 0.8, 0.75], fingerprint="name:m")
    assert calibration.transform([0.75])[0] == pytest.approx(0.5)
    assert calibration.positive_rate is None and calibration.n == 3
    raw = np.array([0.2, 0.6, 0.9])
    assert (np.diff(calibration.transform(raw)) > 0).all() and (calibration.transform(raw) < raw).all()
    with pytest.raises(CalibrationError, match="NaN"):
        fit_content_free([np.nan], fingerprint="name:m")


class _FakeScorer:
    """Stands in for CTRScorer: the score is read off the prompt (``"... p=0.73"``)."""

    def __init__(self, model, tokenizer, batch_size=8, **kwargs):
        self.tokenizer = tokenizer

    def score(self, prompts, progress=True):
        return np.array([float(prompt.rsplit("p=", 1)[1]) for prompt in prompts])


def _rows(labels, raw):
    return {"prompt": [f"prompt p={float(value)!r}" for value in raw], "label": list(labels)}


def _fake_trainer(output_dir):
    (output_dir / "model.safetensors").write_bytes(b"full fine-tune")
    args = SimpleNamespace(per_device_eval_batch_size=8, model_name_or_path="tiny")
    return SimpleNamespace(model=None, processing_class=None, args=args, is_world_process_zero=lambda: True)


def test_end_of_training_fits_on_validation_and_tops_up_a_small_subset(tmp_path, monkeypatch):
    monkeypatch.setattr("rella_hf.scoring.CTRScorer", _FakeScorer)
    labels, raw = squeezed_scores(n=300)
    trainer = _fake_trainer(tmp_path)

    data = SimpleNamespace(eval=_rows(labels[:100], raw[:100]), eval_split="validation")
    calibration = fit_after_training(trainer, data, tmp_path, more_rows=lambda size: pytest.fail("not too small"))
    assert calibration.n == 100 and load_calibration(tmp_path, model_fingerprint(tmp_path)).n == 100
    kept = [json.loads(line) for line in (tmp_path / "validation_scores.jsonl").read_text().splitlines()]
    assert [row["score"] for row in kept] == raw[:100].tolist() and [row["label"] for row in kept] == labels[:100].tolist()

    asked = []
    small = SimpleNamespace(eval=_rows(labels[:20], raw[:20]), eval_split="validation")
    calibration = fit_after_training(trainer, small, tmp_path,
                                     more_rows=lambda size: asked.append(size) or _rows(labels[:size], raw[:size]))
    assert asked == [200] and calibration.n == 200


def test_end_of_training_reuses_the_final_models_validation_scores_instead_of_scoring_again(tmp_path, monkeypatch):
    def no_scoring(*args, **kwargs):
        pytest.fail("the final model's validation scores were given; nothing should be scored")

    monkeypatch.setattr("rella_hf.scoring.CTRScorer", no_scoring)
    labels, raw = squeezed_scores(n=300)
    trainer = _fake_trainer(tmp_path)
    data = SimpleNamespace(eval=_rows(labels[:100], np.full(100, 0.5)), eval_split="validation")  # prompts say 0.5
    calibration = fit_after_training(trainer, data, tmp_path, scores=raw[:100],
                                     more_rows=lambda size: pytest.fail("100 samples are enough"))
    kept = [json.loads(line)["score"] for line in (tmp_path / "validation_scores.jsonl").read_text().splitlines()]
    assert calibration.n == 100 and kept == raw[:100].tolist()  # the given scores, not the prompts' 0.5
    # A subset too small to fit is topped up, and the rows it scores are not the ones the given scores belong to.
    monkeypatch.setattr("rella_hf.scoring.CTRScorer", _FakeScorer)
    small = SimpleNamespace(eval=_rows(labels[:20], raw[:20]), eval_split="validation")
    calibration = fit_after_training(trainer, small, tmp_path, scores=raw[:20],
                                     more_rows=lambda size: _rows(labels[:size], raw[:size]))
    kept = [json.loads(line)["score"] for line in (tmp_path / "validation_scores.jsonl").read_text().splitlines()]
    assert calibration.n == 200 and kept == raw[:200].tolist()


def test_end_of_training_never_fits_on_test_and_writes_nothing_for_one_class(tmp_path, monkeypatch):
    monkeypatch.setattr("rella_hf.scoring.CTRScorer", _FakeScorer)
    labels, raw = squeezed_scores(n=100)
    trainer = _fake_trainer(tmp_path)
    on_test = SimpleNamespace(eval=_rows(labels, raw), eval_split="test")
    assert fit_after_training(trainer, on_test, tmp_path) is None
    one_class = SimpleNamespace(eval=_rows([1] * 100, raw), eval_split="validation")
    assert fit_after_training(trainer, one_class, tmp_path, more_rows=lambda size: _rows([1] * size, raw)) is None
    assert not (tmp_path / CALIBRATION_FILE).exists()


def test_calibration_json_is_small_and_names_what_it_was_fitted_on(tmp_path):
    labels, raw = squeezed_scores()
    path = fit_calibration(labels, raw, fingerprint="sha256:abc", model="m", fitted_on="validation split").save(tmp_path)
    payload = json.loads(path.read_text())
    assert payload["method"] == "platt" and payload["n"] == 600 and payload["fitted_on"] == "validation split"
    assert payload["fingerprint"] == "sha256:abc" and 0 < payload["positive_rate"] < 1
    assert payload["extra"]["fit_metrics"]["calibrated"]["logloss"] < payload["extra"]["fit_metrics"]["raw"]["logloss"]
    assert path.stat().st_size < 2000
    assert Calibration.from_dict(payload).to_dict() == payload
