"""End-to-end launches of train.py through ``accelerate launch`` with 2 CPU processes: DDP, DeepSpeed ZeRO-2, ZeRO-3.

Each trains the tiny random Llama of ``trainer_configs/smoke-cpu.yaml`` on ml-latest-small prompts
(the bundled corpus cut to its 40 lightest users, so the SUBR item embeddings take seconds) for 4
optimizer steps (2 accumulation steps of 2 rows on each of the 2 processes), scores the validation
subset for AUC after every step (so a scoring that spoils the next training step shows), saves a
checkpoint every step, restores the best one, and saves the adapter; the test then loads that
adapter with plain transformers + peft and scores again. DeepSpeed runs on its CPU accelerator
(``DS_ACCELERATOR=cpu``, gloo process group). The first DeepSpeed launch of the module compiles its
shared-memory communication op (about 45-100 s) into the module's own torch extensions folder; later launches reuse
it. The user's folder (``~/.cache/torch_extensions``) is left alone: a launch killed mid-compile leaves a ``lock`` file
there on which every later compile waits forever. The prompt datasets are built once per module (the first launch).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from corpus_fixtures import write_ml_latest_small_subset

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]
CONFIGS = REPO / "accelerate_configs"

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("models_in_isolated_cache")]

#: ``accelerate launch`` flags of each setup; DeepSpeed on a CPU trains in float32 (--mixed_precision no).
SETUPS = {
    "ddp": ["--config_file", str(CONFIGS / "multi_cpu.yaml")],
    "zero2": ["--config_file", str(CONFIGS / "deepspeed_zero2.yaml"), "--num_processes", "2", "--mixed_precision", "no"],
    "zero3": ["--config_file", str(CONFIGS / "deepspeed_zero3.yaml"), "--num_processes", "2", "--mixed_precision", "no"],
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def datasets_cache(tmp_path_factory) -> Path:
    """One ``datasets`` cache for the launches of this module: the prompt datasets are built once."""
    return tmp_path_factory.mktemp("launch_datasets_cache")


@pytest.fixture(scope="module")
def torch_extensions_dir(tmp_path_factory) -> Path:
    """The module's own torch extensions folder: DeepSpeed's CPU op compiles once here, with no stale lock to meet."""
    return tmp_path_factory.mktemp("torch_extensions")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """ml-latest-small cut to its 40 lightest users (real titles, a few seconds of MiniLM)."""
    return write_ml_latest_small_subset(tmp_path_factory.mktemp("launch_corpus"))


#: torchrun's summary of a rank that died by a native signal ("exitcode  : -6 (pid: 123)  (SIGABRT)"): a crash
#: below Python (gloo's TCP transport, an allocator), not an exception or a wrong result of ours.
_RANK_KILLED_BY_SIGNAL = re.compile(r"exitcode\s*:\s*-(?:6|7|11)\b")
#: tqdm's lines ("Tokenizing ...:  50%|#####     | 16/32 [...]"), which fill the tail of a failed launch's stderr.
_PROGRESS_BAR = re.compile(r"\d+%\|")


def _without_progress_bars(text: str) -> str:
    """``text`` without tqdm's redrawn lines, so a failure shows the ranks' errors rather than progress bars."""
    return "\n".join(line for line in re.split(r"[\r\n]+", text) if line.strip() and not _PROGRESS_BAR.search(line))


def _run_launcher(command: list[str], env: dict, timeout: int) -> subprocess.CompletedProcess:
    """Run one launch in its own process group; on a timeout kill the launcher *and* its ranks (so no rank lives
    on holding a compile lock) and fail with what they printed."""
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{' '.join(command)} still ran after {timeout} s:\n{_without_progress_bars(stdout)[-4000:]}\n"
                    f"{_without_progress_bars(stderr)[-8000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _launch(launcher_args: list[str], train_args: list[str], datasets_cache: Path, torch_extensions_dir: Path,
            timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``accelerate launch ... train.py`` and fail with the ranks' errors (progress bars dropped) if it fails.

    The ranks run with ``PYTHONFAULTHANDLER=1``, so a rank that dies by a native signal prints every thread's
    Python stack. Such a launch (SIGABRT / SIGBUS / SIGSEGV of a rank, seen once in CI in a gloo DDP run that
    passes on every rerun) is run once more from an empty output folder, with a warning carrying the first
    attempt's errors; a second crash, a Python error or a wrong result fails the test.
    """
    import torch

    command = [*ACCELERATE, *launcher_args, str(REPO / "train.py"),
               "--config", str(REPO / "trainer_configs" / "smoke-cpu.yaml"), *train_args]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1",
               HF_DATASETS_CACHE=str(datasets_cache), TORCH_EXTENSIONS_DIR=str(torch_extensions_dir))
    if not torch.cuda.is_available():
        env["DS_ACCELERATOR"] = "cpu"
    result = _run_launcher(command, env, timeout)
    if result.returncode != 0 and _RANK_KILLED_BY_SIGNAL.search(result.stderr):
        warnings.warn(f"a rank of {' '.join(command)} died by a signal; launching once more. Its errors:\n"
                      f"{_without_progress_bars(result.stderr)[-6000:]}", stacklevel=2)
        output_dir = Path(train_args[train_args.index("--output_dir") + 1])
        shutil.rmtree(output_dir, ignore_errors=True)
        result = _run_launcher(command, env, timeout)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}:\n{_without_progress_bars(result.stdout)[-4000:]}"
                    f"\n{_without_progress_bars(result.stderr)[-8000:]}")
    return result


@pytest.mark.parametrize("setup", list(SETUPS))
def test_two_process_launch_validates_every_step_and_saves_an_adapter_plain_peft_scores(tmp_path, datasets_cache,
                                                                                       torch_extensions_dir,
                                                                                       corpus_dir, setup):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import rella_hf
    from rella_hf.models import adapter_compute_dtype
    from rella_hf.training import CTREvalCallback, build_eval_rows

    out = tmp_path / setup
    _launch([*SETUPS[setup], "--main_process_port", str(_free_port())],
            ["--output_dir", str(out), "--data_dir", str(corpus_dir), "--eval_steps", "1", "--save_steps", "1"],
            datasets_cache, torch_extensions_dir)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    # 32 mixed rows, 8 per optimizer step over 2 processes x 2 per device: 2 accumulation steps.
    assert metrics["train_rows"] == 32 and metrics["gradient_accumulation_steps"] == 2
    assert metrics["global_step"] == 4 and [entry["step"] for entry in metrics["eval_history"]] == [1, 2, 3, 4]
    for entry in metrics["eval_history"]:
        assert 0.0 <= entry["eval_auc"] <= 1.0

    # Saved gathered: every LoRA matrix has its full shape (a ZeRO-3 partition would be empty), B trained.
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert adapter and all(tensor.numel() > 0 and adapter_config["r"] in tensor.shape for tensor in adapter.values())
    assert any(tensor.abs().sum() > 0 for key, tensor in adapter.items() if "lora_B" in key)

    # Plain transformers + peft load it, and it scores the validation subset as the run's kept checkpoint did.
    dtype = getattr(torch, adapter_compute_dtype(out) or "float32")
    base = AutoModelForCausalLM.from_pretrained(adapter_config["base_model_name_or_path"], dtype=dtype)
    model = PeftModel.from_pretrained(base, str(out)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    validation = rella_hf.load_dataset("ml-latest-small", K=5, retrieval="semantic", order="chronological",
                                       split="validation", data_dir=corpus_dir, cache_dir=datasets_cache)
    rows = build_eval_rows(validation, 32, "sequential", seed=42)
    rescored = CTREvalCallback(rows["prompt"], rows["label"], tokenizer, batch_size=8).compute(model)
    assert rescored["eval_auc"] == pytest.approx(metrics["final_eval"]["eval_auc"], abs=1e-3)


@pytest.mark.parametrize("setup", ["ddp", "zero3"])
def test_two_process_launch_with_collaborative_tokens_saves_the_projector_whole_and_reloads_to_its_scores(
        tmp_path, datasets_cache, torch_extensions_dir, corpus_dir, setup):
    """The CoLLM route across processes: DDP replicates the projector and reduces its gradients; ZeRO-3
    partitions it, so its save must gather it (an empty partition would load as a shape error)."""
    from safetensors.torch import load_file

    import rella_hf
    from rella_hf.collaborative_ids import WEIGHTS_FILE, add_id_tokens, collaborative_ids_of
    from rella_hf.models import load_tuned_model
    from rella_hf.training import CTREvalCallback, build_eval_rows
    from rella_hf.training.tiny import build_tiny_random_llama

    out = tmp_path / f"{setup}-ids"
    _launch([*SETUPS[setup], "--main_process_port", str(_free_port())],
            ["--output_dir", str(out), "--data_dir", str(corpus_dir), "--eval_steps", "2", "--save_steps", "2",
             "--collaborative_ids", "true", "--id_vector_dim", "4"], datasets_cache, torch_extensions_dir)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 4
    assert metrics["collaborative_ids"]["users"] > 0
    projector = load_file(str(out / WEIGHTS_FILE))
    assert projector and all(tensor.numel() > 0 for tensor in projector.values())

    model, tokenizer = load_tuned_model(out, str(build_tiny_random_llama()))
    module = collaborative_ids_of(model)
    assert module is not None and all(
        tensor.shape == module.state_dict()[key].shape for key, tensor in projector.items())
    validation = rella_hf.load_dataset("ml-latest-small", K=5, retrieval="semantic", order="chronological",
                                       split="validation", data_dir=corpus_dir, cache_dir=datasets_cache)
    rows = build_eval_rows(add_id_tokens(validation, module), 32, "sequential", seed=42)
    rescored = CTREvalCallback(rows["prompt"], rows["label"], tokenizer, batch_size=8).compute(model.eval())
    assert rescored["eval_auc"] == pytest.approx(metrics["final_eval"]["eval_auc"], abs=1e-3)
