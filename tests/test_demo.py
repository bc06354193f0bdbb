"""The end-to-end demo on a small ml-latest-format corpus and the tiny random Llama: steps, report, rerun."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

#: History items of the float32 recipe (trainer_configs/demo-cpu-float32.yaml): shorter prompts to fit the budget.
FLOAT32_K = 4


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


@pytest.mark.slow  # builds prompts, trains and scores (about a minute)
@pytest.mark.parametrize("finetuning, weights", [("lora", "adapter_model.safetensors"), ("full", "model.safetensors")])
def test_demo_scores_trains_compares_and_reruns_without_work(tmp_path, models_in_isolated_cache, tiny_model_dir,
                                                             finetuning, weights, caplog):
    import logging

    from rella_hf.demo import STAGES, DemoConfig, run_demo

    caplog.set_level(logging.INFO, logger="rella_hf.frozen_states")

    config = DemoConfig(output_dir=str(tmp_path / "demo"), data_dir=str(_write_small_ml_latest(tmp_path / "data")),
                        model=str(tiny_model_dir), K=3, test_size=24, shots=8, train_batch_size=4, total_batch_size=4,
                        eval_size=16, eval_every=1, lora_r=4, finetuning=finetuning, top_layers=1,
                        learning_rate=5e-5, probe_host=finetuning == "full")
    report = run_demo(config)
    # A full fine-tune of the top layer scores the test subset from the zero-shot pass's frozen-layer states.
    replayed = [record for record in caplog.records if "replaying the recorded output" in record.getMessage()]
    assert len(replayed) == (2 if finetuning == "full" else 0)  # recent-K and SUBR subsets
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
    timing = json.loads((run_dir / "run.json").read_text())["timing"]
    assert timing["budget_seconds"] == 900 and timing["host"]["kind"] in ("bf16-native", "float32-only")
    assert set(timing["stages"]) == set(STAGES) and all(seconds >= 0 for seconds in timing["stages"].values())
    assert timing["stages"]["validation scoring"] > 0
    assert sum(timing["stages"].values()) <= timing["wall_seconds"] + 0.05 * len(STAGES)  # each rounded to 0.1 s
    adapter = run_dir / "train" / "reit" / weights
    stamp = adapter.stat().st_mtime_ns
    run_demo(config)  # a rerun skips every finished step
    assert adapter.stat().st_mtime_ns == stamp
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics


@pytest.mark.parametrize("native_bf16, recipe, yaml_name, K, top_layers, shots, eval_every, learning_rate", [
    (True, "bfloat16", "demo-cpu.yaml", 5, 15, 768, 48, 5e-5),
    (False, "float32", "demo-cpu-float32.yaml", FLOAT32_K, 10, 640, 80, 5e-5),
])
def test_demo_defaults_are_the_measured_recipe_of_the_host_kind_and_match_its_trainer_config(
        monkeypatch, native_bf16, recipe, yaml_name, K, top_layers, shots, eval_every, learning_rate):
    """`make demo` and trainer_configs/demo-cpu*.yaml train the recipe measured for the host kind (README)."""
    import yaml

    import rella_hf.models
    from rella_hf.demo import RECIPE_FILES, DemoConfig

    monkeypatch.setattr(rella_hf.models, "cpu_has_native_bf16", lambda: native_bf16)
    monkeypatch.setattr(rella_hf.models, "resolve_device", lambda device=None: torch.device("cpu"))
    demo = DemoConfig()
    assert demo.recipe == recipe and RECIPE_FILES[recipe] == f"trainer_configs/{yaml_name}"
    assert (demo.K, demo.shots, demo.total_batch_size, demo.learning_rate) == (K, shots, 16, learning_rate)
    assert (demo.finetuning, demo.top_layers, demo.eval_every, demo.test_size) == ("full", top_layers, eval_every, 200)
    reit = demo.reit_config("unused")
    assert reit.shots == shots and reit.eval_steps == eval_every and reit.metric_for_best_model == "auc"
    assert (reit.finetuning, reit.top_layers, reit.base_dtype) == ("full", top_layers, "float32")
    assert reit.bf16 is native_bf16  # bf16 autocast only where the CPU computes bf16

    shipped = yaml.safe_load((Path(__file__).resolve().parents[1] / RECIPE_FILES[recipe]).read_text())
    assert shipped["shots"] == demo.shots and shipped["K"] == demo.K and shipped["eval_size"] == demo.eval_size
    assert shipped["eval_steps"] == demo.eval_every == shipped["save_steps"]
    assert (shipped["finetuning"], shipped["top_layers"]) == (demo.finetuning, demo.top_layers)
    assert (shipped["total_batch_size"], shipped["learning_rate"]) == (demo.total_batch_size, demo.learning_rate)


def test_the_demo_keeps_the_papers_prompts_by_default_and_hands_collaborative_to_its_training(monkeypatch):
    """Measured (experiments/reading.md): at the demo's N=768 the statistics sentences lose to the paper's prompts."""
    import rella_hf.models
    from rella_hf.demo import DemoConfig
    from rella_hf.errors import ConfigError

    monkeypatch.setattr(rella_hf.models, "resolve_device", lambda device=None: torch.device("cpu"))
    default = DemoConfig()
    assert default.collaborative == "none" and default.reit_config("unused").collaborative == "none"
    chosen = DemoConfig(collaborative="item+user", prior_strength=4.0)
    reit = chosen.reit_config("unused")
    assert (reit.collaborative, reit.prior_strength) == ("item+user", 4.0)
    with pytest.raises(ConfigError, match="collaborative"):
        DemoConfig(collaborative="items")


def test_the_float32_switch_picks_the_float32_recipe_and_given_options_override_it(monkeypatch):
    import rella_hf.models
    from rella_hf.demo import RECIPES, DemoConfig
    from rella_hf.errors import ConfigError

    monkeypatch.setattr(rella_hf.models, "resolve_device", lambda device=None: torch.device("cpu"))
    monkeypatch.setenv("RELLA_HF_FORCE_FLOAT32", "1")
    assert DemoConfig().recipe == "float32" and DemoConfig().shots == RECIPES["float32"]["shots"]
    assert (DemoConfig(K=5).K, DemoConfig(top_layers=30).top_layers) == (5, 30)  # given fields win
    chosen = DemoConfig(recipe="bfloat16", shots=32, eval_every=4)  # named recipe, two fields given
    assert (chosen.shots, chosen.eval_every, chosen.learning_rate) == (32, 4, RECIPES["bfloat16"]["learning_rate"])
    with pytest.raises(ConfigError, match="recipe='fp8' is not one of auto, bfloat16, float32"):
        DemoConfig(recipe="fp8")


def test_the_timing_table_gives_every_stage_the_host_the_budget_and_the_verdict():
    from rella_hf.demo import STAGES, timing_table

    host = {"cpu": "AMD EPYC 7B13", "cores": 2, "threads": 2, "native_bf16": False, "forced_float32": False,
            "float32_gflops": 120.0, "bf16_gflops": None, "kind": "float32-only"}
    stages = {"host probe": 2.0, "build": 60.0, "zero-shot scoring": 100.0, "training": 400.0,
              "validation scoring": 40.0, "end of training": 10.0, "final scoring": 110.0, "report": 8.0}
    timing = {"host": host, "recipe": "float32 (trainer_configs/demo-cpu-float32.yaml)", "budget_seconds": 900,
              "wall_seconds": 740.0, "stages": stages}
    table = timing_table(timing)
    assert table.splitlines()[0] == ("Host: float32-only host: AMD EPYC 7B13, 2 cores, 2 torch threads, "
                                     "cpu_has_native_bf16()=False; matmul float32 120 GFLOP/s, bfloat16 not measured "
                                     "(emulated on this host)")
    assert "Recipe: float32 (trainer_configs/demo-cpu-float32.yaml)" in table
    assert [line.split(" | ")[0].lstrip("| ") for line in table.splitlines() if line.startswith("| ")][1:] == [
        *STAGES, "other (imports, run files)"]
    assert "| training | 400.0 | 54 % |" in table and "| other (imports, run files) | 10.0 | 1 % |" in table
    assert table.endswith("Wall time 12.3 min (740 s) against a budget of 15 min: within budget.")
    del stages["training"], stages["validation scoring"], stages["end of training"]  # a rerun: training was done
    over = timing_table({**timing, "wall_seconds": 1000.0})
    assert "| training | - | done before (skipped) |" in over and over.endswith("15 min: OVER budget.")
