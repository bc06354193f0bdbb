import json

import pytest
from corpus_fixtures import write_ml1m

from rella_hf.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage" in out.lower() and "--" in out


def test_top_level_usage(capsys):
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert "commands:" in capsys.readouterr().out


def _one_line_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_input_exits_2_with_one_line(capsys, tmp_path):
    assert "unknown dataset 'ml-3m'" in _one_line_error(capsys, ["build", "--dataset", "ml-3m"])
    assert "K must be a positive" in _one_line_error(capsys, ["build", "--K", "0"])
    assert "no such folder" in _one_line_error(capsys, ["build", "--dataset", "ml-1m", "--data_dir", str(tmp_path / "missing")])
    unreadable = tmp_path / "model"
    unreadable.mkdir()
    assert "--model" in _one_line_error(capsys, ["score", "--model", str(unreadable), "--chat_model", "none"])
    assert "unknown command" in _one_line_error(capsys, ["bulid"])
    # a corpus file that is broken names the file and line
    folder = write_ml1m(tmp_path / "data", ratings=["1::1::5::100", "1::2::x::101"])
    assert "ratings.dat, line 2" in _one_line_error(capsys, ["build", "--dataset", "ml-1m", "--data_dir", str(folder), "--chat_model", "none"])


def test_unknown_option_is_a_usage_error(capsys):
    assert main(["build", "--no_such_option", "1"]) == 2


def test_build_score_evaluate_report_end_to_end(tmp_path, capsys, models_in_isolated_cache, tiny_model_dir):
    model_dir = tiny_model_dir
    data = write_ml1m(tmp_path / "data")
    common = ["--dataset", "ml-1m", "--data_dir", str(data), "--K", "3", "--cache_dir", str(tmp_path / "cache")]
    assert main(["build", *common, "--output_dir", str(tmp_path / "built")]) == 0
    assert (tmp_path / "built" / "dataset_dict.json").exists()
    run = tmp_path / "run"
    assert main(["score", *common, "--model", str(model_dir), "--split", "train", "--output_dir", str(run)]) == 0
    lines = (run / "scores" / "K3-recent.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(0.0 <= json.loads(line)["score"] <= 1.0 for line in lines)
    capsys.readouterr()
    assert main(["evaluate", "--scores", str(run / "scores" / "K3-recent.jsonl"), "--bootstrap", "0"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["K3-recent"]["n"] == 4
    assert main(["report", "--run_dir", str(run), "--bootstrap", "50"]) == 0
    assert (run / "report.md").exists() and (run / "roc.png").exists() and (run / "calibration.png").exists()



def _validation_scores(path, n=200, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = 1 / (1 + np.exp(-(0.3 * (2 * labels - 1) + 0.3 * rng.normal(0, 1, n) + 1.0)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"label": int(y), "score": float(p)}) + "\n" for y, p in zip(labels, scores)))
    return path


def test_calibrate_fits_saved_validation_scores_and_refuses_bad_input(tmp_path, capsys):
    from rella_hf.calibration import load_calibration, model_fingerprint

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    scores = _validation_scores(tmp_path / "run" / "scores" / "validation.jsonl")
    assert main(["calibrate", "--adapter", str(adapter), "--scores", str(scores)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["method"] == "platt" and printed["n"] == 200
    assert load_calibration(adapter, expected_fingerprint=model_fingerprint(adapter)).n == 200

    assert "never on the test split" in _one_line_error(capsys, ["calibrate", "--adapter", str(adapter), "--split", "test"])
    one_class = tmp_path / "one.jsonl"
    one_class.write_text("".join(json.dumps({"label": 1, "score": 0.6}) + "\n" for _ in range(80)))
    out = tmp_path / "out"
    assert "all positive" in _one_line_error(capsys, ["calibrate", "--scores", str(one_class), "--output_dir", str(out)])
    few = _validation_scores(tmp_path / "few.jsonl", n=20)
    assert "at least 50" in _one_line_error(capsys, ["calibrate", "--scores", str(few), "--output_dir", str(out)])
    nan = tmp_path / "nan.jsonl"
    nan.write_text(few.read_text().replace('"score": ', '"score": NaN, "x": ', 1))
    assert "NaN" in _one_line_error(capsys, ["calibrate", "--scores", str(nan), "--output_dir", str(out)])
    assert not out.exists()  # nothing written for a refused fit
    assert "--output_dir" in _one_line_error(capsys, ["calibrate", "--model", "org/base", "--scores", str(scores)])


def test_content_free_calibration_of_a_base_model_then_score_and_evaluate_both(tmp_path, capsys, models_in_isolated_cache,
                                                                               tiny_model_dir):
    from rella_hf.calibration import load_calibration

    data = write_ml1m(tmp_path / "data")
    common = ["--dataset", "ml-1m", "--data_dir", str(data), "--K", "3", "--cache_dir", str(tmp_path / "cache")]
    folder = tmp_path / "calibration"
    assert main(["calibrate", *common, "--model", str(tiny_model_dir), "--method", "content_free", "--split", "train",
                 "--output_dir", str(folder)]) == 0
    calibration = load_calibration(folder)
    assert calibration.method == "content_free" and calibration.positive_rate is None
    capsys.readouterr()
    run = tmp_path / "run"
    assert main(["score", *common, "--model", str(tiny_model_dir), "--split", "train", "--output_dir", str(run),
                 "--calibration", str(folder)]) == 0
    rows = [json.loads(line) for line in (run / "scores" / "K3-recent.jsonl").read_text().splitlines()]
    assert [row["score_calibrated"] for row in rows] == calibration.transform([row["score"] for row in rows]).tolist()
    capsys.readouterr()
    assert main(["evaluate", "--scores", str(run), "--bootstrap", "0"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"K3-recent", "K3-recent (calibrated)"}
    assert metrics["K3-recent (calibrated)"]["auc"] == metrics["K3-recent"]["auc"] and "ece_band" in metrics["K3-recent"]
    # A calibration of another model is refused in one line, before anything is scored.
    foreign = json.loads((folder / "calibration.json").read_text()) | {"fingerprint": "sha256:" + "0" * 64}
    (folder / "calibration.json").write_text(json.dumps(foreign))
    assert "fitted for another model" in _one_line_error(capsys, ["score", *common, "--model", str(tiny_model_dir),
                                                                  "--split", "train", "--output_dir", str(tmp_path / "r2"),
                                                                  "--calibration", str(folder)])


def test_demo_prints_raw_and_calibrated_rows(tmp_path, capsys, monkeypatch):
    import rella_hf.demo

    row = {"auc": 0.85, "logloss": 0.667, "acc": 0.535, "ece": 0.26, "ece_band": 0.11}

    def fake_run_demo(config):
        metrics = {"zero-shot-recent": row, "ReiT-recent": {**row, "calibrated": {**row, "logloss": 0.48, "ece": 0.05}}}
        (tmp_path / "metrics.json").write_text(json.dumps(metrics))
        return tmp_path / "report.md"

    monkeypatch.setattr(rella_hf.demo, "run_demo", fake_run_demo)
    assert main(["demo", "--output_dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum("ReiT-recent" in line for line in lines) == 2 and sum("zero-shot-recent" in line for line in lines) == 1
    calibrated = next(line for line in lines if "calibrated" in line)
    assert "LogLoss 0.4800" in calibrated and "ECE 0.0500 (95 % band 0.1100)" in calibrated
