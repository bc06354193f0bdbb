"""The end-to-end demo on a small ml-latest-format corpus and the tiny random Llama: steps, report, rerun."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # builds prompts, trains and scores (about a minute)


def _write_small_ml_latest(folder):
    """40 users x 30 ratings of 60 movies, ml-latest's CSV layout (CRLF, quoted titles), seeded."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    movies = ["movieId,title,genres"] + [f'{item},"Movie {item}, The ({1950 + item})",Drama|Comedy'
                                         for item in range(1, 61)]
    ratings = ["userId,movieId,rating,timestamp"]
    for user in range(1, 41):
        for offset, item in enumerate(rng.choice(np.arange(1, 61), size=30, replace=False)):
            ratings.append(f"{user},{item},{rng.integers(1, 11) / 2:.1f},{1_000_000 + 1000 * user + offset}")
    (folder / "movies.csv").write_bytes(("\r\n".join(movies) + "\r\n").encode())
    (folder / "ratings.csv").write_bytes(("\r\n".join(ratings) + "\r\n").encode())
    return folder


@pytest.mark.parametrize("finetuning, weights", [("lora", "adapter_model.safetensors"), ("full", "model.safetensors")])
def test_demo_scores_trains_compares_and_reruns_without_work(tmp_path, models_in_isolated_cache, tiny_model_dir,
                                                             finetuning, weights):
    from rella_hf.demo import DemoConfig, run_demo

    config = DemoConfig(output_dir=str(tmp_path / "demo"), data_dir=str(_write_small_ml_latest(tmp_path / "data")),
                        model=str(tiny_model_dir), K=3, test_size=24, shots=8, train_batch_size=4, total_batch_size=4,
                        eval_size=16, eval_every=1, lora_r=4, finetuning=finetuning, top_layers=1)
    report = run_demo(config)
    run_dir = report.parent
    text = report.read_text()
    assert "## Paired comparisons" in text and "## Validation AUC during training" in text
    assert (run_dir / "validation_auc.png").is_file() and (run_dir / "loss.png").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"zero-shot-recent", "zero-shot-semantic", "ReiT-recent", "ReiT-semantic"}
    assert all(values["n"] == 24 for values in metrics.values())
    comparisons = json.loads((run_dir / "comparisons.json").read_text())
    assert [(row["a"], row["b"]) for row in comparisons] == [("ReiT-recent", "zero-shot-recent"),
                                                             ("ReiT-semantic", "zero-shot-semantic")]
    for row in comparisons:
        low, high = row["ci"]
        assert low <= row["difference"] <= high and row["excludes_zero"] == (low > 0 or high < 0)
    training = json.loads((run_dir / "train" / "reit" / "metrics.json").read_text())
    assert training["eval_history"] and training["best_checkpoint"]  # validation AUC chose the adapter
    assert not list((run_dir / "train" / "reit").glob("checkpoint-*"))  # kept only while training could resume

    def scores(setting):
        lines = (run_dir / "scores" / f"{setting}.jsonl").read_text().splitlines()
        return np.array([json.loads(line)["score"] for line in lines])

    assert not np.allclose(scores("ReiT-recent"), scores("zero-shot-recent"))  # the tuned model scored, not the base
    # The run fitted calibration.json on validation rows (16 are too few: it scored more of the split)
    # and the ReiT settings carry calibrated scores beside the raw ones; zero-shot has none.
    from rella_hf.calibration import load_calibration

    calibration = load_calibration(run_dir / "train" / "reit")
    assert calibration.fitted_on == "validation split" and calibration.n > 16
    for setting in ("ReiT-recent", "ReiT-semantic"):
        rows = [json.loads(line) for line in (run_dir / "scores" / f"{setting}.jsonl").read_text().splitlines()]
        np.testing.assert_allclose([row["score_calibrated"] for row in rows],
                                   calibration.transform(scores(setting)), rtol=0, atol=1e-12)
        assert metrics[setting]["calibrated"]["auc"] == pytest.approx(metrics[setting]["auc"], abs=1e-9)
    assert "calibrated" not in metrics["zero-shot-recent"]
    adapter = run_dir / "train" / "reit" / weights
    stamp = adapter.stat().st_mtime_ns
    run_demo(config)  # a rerun skips every finished step
    assert adapter.stat().st_mtime_ns == stamp
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics


def test_demo_defaults_are_the_measured_recipe_and_match_the_cpu_trainer_config():
    """`make demo` and trainer_configs/demo-cpu.yaml train the recipe whose gain was measured (README)."""
    import yaml

    from rella_hf.demo import DemoConfig

    demo = DemoConfig()
    assert (demo.K, demo.shots, demo.total_batch_size, demo.learning_rate) == (5, 768, 16, 5e-5)
    assert (demo.finetuning, demo.top_layers, demo.eval_every, demo.test_size) == ("full", 15, 48, 200)
    reit = demo.reit_config("unused")
    assert reit.shots == 768 and reit.eval_steps == 48 and reit.metric_for_best_model == "auc"
    assert (reit.finetuning, reit.top_layers, reit.base_dtype) == ("full", 15, "float32")

    shipped = yaml.safe_load((Path(__file__).resolve().parents[1] / "trainer_configs" / "demo-cpu.yaml").read_text())
    assert shipped["shots"] == demo.shots and shipped["K"] == demo.K
    assert shipped["eval_steps"] == demo.eval_every == shipped["save_steps"]
    assert (shipped["finetuning"], shipped["top_layers"]) == (demo.finetuning, demo.top_layers)
    assert (shipped["total_batch_size"], shipped["learning_rate"]) == (demo.total_batch_size, demo.learning_rate)
