"""The experiment scripts' results bookkeeping: a run's line rebuilt from what the run saved (``recipe.py --restore_row``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
NAME = "lc-K5-full15-mixed-N64-seed42"
ARGS = ["--name", NAME, "--dataset", "ml-latest-small", "--K", "5", "--train_type", "mixed", "--shots", "64",
        "--lr", "5e-05", "--targets", "all", "--lora_r", "16", "--finetuning", "full", "--top_layers", "15",
        "--eval_every", "4", "--eval_size", "1000"]


@pytest.fixture
def recipe(monkeypatch, tmp_path):
    """experiments/recipe.py with its runs folder in tmp_path."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    for module in ("recipe", "common"):
        sys.modules.pop(module, None)
    import recipe as module

    monkeypatch.setattr(module, "RUNS", tmp_path / "runs")
    return module


def _saved_run(runs: Path, scored_kinds=("recent", "semantic")) -> dict:
    from rella_hf.report import pack_scores, write_scores

    run_dir = runs / "ml-latest-small"
    adapter_dir = run_dir / "recipe" / NAME
    adapter_dir.mkdir(parents=True)
    history = [{"step": 4, "eval_auc": 0.61, "epoch": 0.5}, {"step": 8, "eval_auc": 0.66, "epoch": 1.0}]
    metrics = {"eval_history": history, "train_rows": 128, "total_batch_size": 16, "global_step": 8,
               "train": {"train_loss": 0.65}}
    (adapter_dir / "metrics.json").write_text(json.dumps(metrics))
    reit = {"K": 5, "shots": 64, "train_type": "mixed", "finetuning": "full", "top_layers": 15,
            "collaborative": "none", "eval_size": 1000, "compute_dtype": "bfloat16"}
    (adapter_dir / "training_config.json").write_text(json.dumps({"reit": reit, "training_arguments": {}}))
    rng = np.random.default_rng(0)
    scores = {}
    for kind in scored_kinds:
        labels, values = rng.integers(0, 2, 50), rng.random(50)
        write_scores(run_dir, f"recipe-{NAME}-test-{kind}", labels, values, {"stage": "test"})
        scores[kind] = (labels, values)
    pack_scores(run_dir)
    return scores


def test_restore_row_rebuilds_the_line_from_the_saved_metrics_and_scores(recipe, tmp_path):
    from rella_hf.metrics import ctr_metrics

    scores = _saved_run(tmp_path / "runs")
    results = tmp_path / "recipe.jsonl"
    args = recipe.parse_args([*ARGS, "--restore_row"])
    recipe.restore_row(args, f"ml-latest-small/ctr/{NAME}", results)

    (row,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert row["setting"] == f"ml-latest-small/ctr/{NAME}" and row["steps"] == 8 and row["train_rows"] == 128
    assert row["best_validation"]["step"] == 8 and row["compute_dtype"] == "bfloat16"
    for kind, (labels, values) in scores.items():
        assert row[f"test_{kind}"]["auc"] == pytest.approx(ctr_metrics(labels, values)["auc"])
    assert row["train_seconds"] is None and "restored" in row and "test_factorization" not in row


def test_restore_row_refuses_other_arguments_and_unscored_runs(recipe, tmp_path):
    _saved_run(tmp_path / "runs", scored_kinds=("recent",))
    results = tmp_path / "recipe.jsonl"
    key = f"ml-latest-small/ctr/{NAME}"
    other_eval_size = recipe.parse_args([*ARGS[:-2], "--eval_size", "200", "--restore_row"])
    with pytest.raises(SystemExit, match=r"trained with other arguments.*eval_size"):
        recipe.restore_row(other_eval_size, key, results)
    with pytest.raises(SystemExit, match=f"no saved scores named recipe-{NAME}-test-semantic"):
        recipe.restore_row(recipe.parse_args([*ARGS, "--restore_row"]), key, results)
    assert not results.exists()
