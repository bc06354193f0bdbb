"""End-to-end launches of train.py through ``accelerate launch``: 2 CPU processes, and DeepSpeed ZeRO-2.

Both train the tiny random Llama of ``trainer_configs/smoke-cpu.yaml`` on the bundled
ml-latest-small prompts. The first DeepSpeed launch on a machine compiles its shared-memory
communication op (about 70-100 s); later launches reuse it from the torch extensions cache.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("models_in_isolated_cache")]


# ------------------------------------------------------------------------------------------
# Models: the session's converted SmolLM2 and one tiny random Llama, linked into each test's
# isolated rella-hf cache (conftest's ``isolated_caches``) so nothing is converted twice.
# ------------------------------------------------------------------------------------------




def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def datasets_cache(tmp_path_factory) -> Path:
    """One ``datasets`` cache for the launches of this module: the prompt datasets are built once."""
    return tmp_path_factory.mktemp("launch_datasets_cache")


def _launch(launcher_args: list[str], train_args: list[str], datasets_cache: Path,
            timeout: int = 900) -> subprocess.CompletedProcess:
    command = [*ACCELERATE, *launcher_args, str(REPO / "train.py"),
               "--config", str(REPO / "trainer_configs" / "smoke-cpu.yaml"), *train_args]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               HF_DATASETS_CACHE=str(datasets_cache))
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if completed.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {completed.returncode}:\n{completed.stdout[-4000:]}\n"
                    f"{completed.stderr[-8000:]}")
    return completed


def test_two_cpu_processes_train_an_adapter_that_loads_and_scores(tmp_path, datasets_cache):
    from peft import PeftModel

    import rella_hf
    from rella_hf.models import load_model
    from rella_hf.scoring import CTRScorer

    out = tmp_path / "smoke"
    _launch(["--config_file", str(REPO / "accelerate_configs" / "multi_cpu.yaml"),
             "--main_process_port", str(_free_port())],
            ["--output_dir", str(out)], datasets_cache)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    # 32 mixed rows, 8 per optimizer step over 2 processes x 2 per device: 2 accumulation steps.
    assert metrics["train_rows"] == 32 and metrics["gradient_accumulation_steps"] == 2
    assert metrics["global_step"] == 4 and [entry["step"] for entry in metrics["eval_history"]] == [2, 4]
    assert 0.0 <= metrics["final_eval"]["eval_auc"] <= 1.0

    base_path = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    base, tokenizer = load_model(base_path, dtype="float32", device="cpu")
    model = PeftModel.from_pretrained(base, str(out))
    validation = rella_hf.load_dataset("ml-latest-small", K=5, retrieval="semantic", order="chronological",
                                       split="validation", cache_dir=datasets_cache)
    scores = CTRScorer(model, tokenizer, batch_size=2).score(validation["prompt"][:2], progress=False)
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))


def test_deepspeed_zero2_on_one_cpu_process_completes_steps(tmp_path, datasets_cache):
    out = tmp_path / "zero2"
    _launch(["--config_file", str(REPO / "accelerate_configs" / "deepspeed_zero2.yaml"), "--num_processes", "1",
             "--mixed_precision", "no", "--main_process_port", str(_free_port())],
            ["--output_dir", str(out), "--max_steps", "2", "--total_batch_size", "4", "--train_type", "simple",
             "--test_type", "simple", "--eval_size", "0", "--eval_strategy", "no", "--save_strategy", "no",
             "--load_best_model_at_end", "false"], datasets_cache)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and metrics["gradient_accumulation_steps"] == 2
    assert (out / "adapter_model.safetensors").stat().st_size > 0
    settings = json.loads((out / "training_config.json").read_text())
    assert settings["training_arguments"]["bf16"] is False
