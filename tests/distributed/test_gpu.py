"""GPU tests: marked ``gpu`` and skipped without a CUDA GPU, so the same suite runs them on a GPU machine.

``pytest -m gpu`` selects them; ``benchmarks/gpu_check.py`` (ZeRO-2 / ZeRO-3 at real model
shapes, 8-/4-bit, throughput) is the longer check they end with. The one test here that needs
no GPU checks that the GPU check says so in one line.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
GPU_CHECK = REPO / "benchmarks" / "gpu_check.py"

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message printed without a GPU")
def test_gpu_check_without_a_gpu_exits_with_one_clear_line():
    completed = subprocess.run([sys.executable, str(GPU_CHECK)], capture_output=True, text=True, timeout=300,
                               cwd=REPO)
    assert completed.returncode == 1 and completed.stdout == ""
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu check: no CUDA GPU visible")


@pytest.mark.usefixtures("models_in_isolated_cache")
@pytest.mark.gpu
@requires_cuda
def test_load_model_puts_the_model_on_this_process_gpu_in_16_bits(tiny_model_dir):
    from rella_hf.models import load_model, resolve_device

    assert resolve_device().type == "cuda"
    model, _ = load_model(str(tiny_model_dir))
    assert model.device.type == "cuda" and model.dtype in (torch.bfloat16, torch.float16)


@pytest.mark.usefixtures("models_in_isolated_cache")
@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("option", ["load_in_8bit", "load_in_4bit"])
def test_quantized_loading_scores_prompts(tiny_model_dir, option):
    pytest.importorskip("bitsandbytes")
    from rella_hf.models import load_model
    from rella_hf.prompts import wrap_prompts
    from rella_hf.scoring import CTRScorer

    model, tokenizer = load_model(str(tiny_model_dir), **{option: True})
    assert getattr(model, "is_loaded_in_8bit" if option == "load_in_8bit" else "is_loaded_in_4bit")
    prompts = wrap_prompts(["The user watched Heat (5 stars). Will the user like Alien? Yes or no."] * 2, tokenizer)
    scores = CTRScorer(model, tokenizer, batch_size=2).score(prompts, progress=False)
    assert scores.shape == (2,) and ((scores > 0) & (scores < 1)).all()


@pytest.mark.usefixtures("models_in_isolated_cache")
@pytest.mark.gpu
@requires_cuda
def test_one_gpu_launch_trains_in_bf16_with_validation_auc(tmp_path):
    out = tmp_path / "gpu"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "accelerate_configs" / "single_gpu.yaml"), str(REPO / "train.py"), "--config",
               str(REPO / "trainer_configs" / "smoke-cpu.yaml"), "--output_dir", str(out), "--eval_steps", "1"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert completed.returncode == 0, completed.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    settings = json.loads((out / "training_config.json").read_text())
    assert metrics["global_step"] == 4 and len(metrics["eval_history"]) == 4
    assert settings["reit"]["compute_dtype"] in ("bfloat16", "float16")


@pytest.mark.slow
@pytest.mark.gpu
@requires_cuda
def test_gpu_check_passes_every_check():
    completed = subprocess.run([sys.executable, str(GPU_CHECK)], capture_output=True, text=True, timeout=900,
                               cwd=REPO)
    summary = completed.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"gpu check: (\d+)/(\d+) passed, train ([\d.]+) tokens/s \(([\d.]+) % of bf16 peak\), "
                         r"score ([\d.]+) prompts/s", summary)
    assert match, completed.stdout + completed.stderr[-4000:]
    assert match.group(1) == match.group(2) and completed.returncode == 0, completed.stdout
