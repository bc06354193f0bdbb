"""GPU check of the ReiT training and scoring path: ZeRO-2 / ZeRO-3 LoRA steps, 8-/4-bit loading, throughput.

Runs on one CUDA GPU (H100/H200: about 6-8 minutes) with nothing downloaded: the models are
random-weight Llamas of real shapes (SmolLM2-135M's and a 7B Llama's, with SmolLM2's offline
tokenizer and vocabulary), the prompts the bundled ml-latest-small (recent-K, K=5). Every check
runs in its own process, started the way a user starts training (``accelerate launch`` with the
shipped ``accelerate_configs/*.yaml``), so one failure does not hide the others.

Checks (one output line each):

- ``peak``: the card's bf16 matmul peak, measured here (the denominator of every %).
- ``train-zero2-135m``, ``train-zero3-135m``, ``train-zero3-7b``: LoRA steps in bf16 under
  DeepSpeed ZeRO-2 / ZeRO-3 with validation AUC every 4 steps; the adapter is saved gathered and
  checked for its full shapes. Reports tokens/s over the timed steps (evaluation excluded), the %
  of the bf16 peak those tokens need, and the peak GPU memory.
- ``score-135m``, ``score-7b``: batched CTR scoring (:class:`rella_hf.scoring.CTRScorer`) in bf16, prompts/s.
- ``load-8bit-7b``, ``load-4bit-7b``: the paper's quantized recipe (bitsandbytes, one process, no
  DeepSpeed): load, 3 LoRA steps, validation AUC; skipped (not failed) when bitsandbytes does not import.

The last line is ``gpu check: N/M passed, train X tokens/s (Y % of bf16 peak), score Z prompts/s``
(X, Y from ``train-zero3-7b``, Z from ``score-7b``). Without a GPU the script prints one line
and exits with status 1. The format is described in ``benchmarks/RESULTS.md`` ("GPU check").

Usage: python benchmarks/gpu_check.py [--budget 480] [--steps 12] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "accelerate_configs"

#: Real model shapes; the vocabulary is SmolLM2's (49,152) so its offline tokenizer serves both.
SHAPES = {
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, tie_word_embeddings=True),
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, tie_word_embeddings=False),
}
#: (name, kind, shape, accelerate config or None, extra) in the order they run.
CHECKS = [
    ("train-zero2-135m", "train", "135m", "deepspeed_zero2.yaml", {}),
    ("train-zero3-135m", "train", "135m", "deepspeed_zero3.yaml", {}),
    ("score-135m", "score", "135m", None, {}),
    ("train-zero3-7b", "train", "7b", "deepspeed_zero3.yaml", {}),
    ("score-7b", "score", "7b", None, {}),
    ("load-8bit-7b", "train", "7b", "single_gpu.yaml", {"load_in_8bit": True}),
    ("load-4bit-7b", "train", "7b", "single_gpu.yaml", {"load_in_4bit": True}),
]


# ------------------------------------------------------------------------------------------
# Pieces that run inside the child processes
# ------------------------------------------------------------------------------------------


def _write_result(path: str, payload: dict) -> None:
    Path(path).write_text(json.dumps(payload) + "\n")


def forward_flops_per_token(config, context: int) -> float:
    """Forward FLOPs per token of a Llama without its LM head: 2 x weights + attention over ``context`` tokens.

    Args:
        config: the model's ``LlamaConfig``.
        context: mean tokens a position attends to (half the mean prompt length, causal).
    """
    h, layers = config.hidden_size, config.num_hidden_layers
    kv = h * config.num_key_value_heads // config.num_attention_heads
    per_layer = 2 * (h * h * 2 + h * kv * 2 + 3 * h * config.intermediate_size)
    return layers * (per_layer + 4 * context * h)


def child_train(args) -> None:
    """LoRA steps through :func:`rella_hf.training.run_training`, timing the optimizer steps alone."""
    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from rella_hf.training import ReiTConfig, run_training

    class StepTimer(TrainerCallback):
        """Wall time of each optimizer step (evaluation runs after on_step_end, so it is excluded)."""

        def __init__(self):
            self.durations, self.tokens, self._start = [], {}, None

        def on_step_begin(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            self.durations.append(time.perf_counter() - self._start)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "num_tokens" in logs:
                self.tokens[state.global_step] = logs["num_tokens"]

    extra = json.loads(args.extra)
    out = Path(args.work) / args.name
    config = ReiTConfig(
        output_dir=str(out), model_name_or_path=args.model, chat_model="smollm2-135m-instruct", dataset="ml-latest-small",
        K=5, train_type="simple", test_type="simple", shots=args.steps * 8, eval_size=64, compute_eval_loss=False,
        per_device_train_batch_size=8, per_device_eval_batch_size=16, total_batch_size=8, max_steps=args.steps,
        eval_strategy="steps", eval_steps=4 if args.steps >= 4 else args.steps, save_strategy="no",
        logging_steps=1, bf16=True, learning_rate=1e-3, report_to="none", disable_tqdm=True, seed=0, **extra)
    timer = StepTimer()
    torch.cuda.reset_peak_memory_stats()
    result = run_training(config, callbacks=[timer])
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    if result.config.process_index != 0:
        return
    history = result.metrics["eval_history"]
    adapter = load_file(str(out / "adapter_model.safetensors"))
    rank = json.loads((out / "adapter_config.json").read_text())["r"]
    gathered = bool(adapter) and all(t.numel() > 0 and rank in t.shape for t in adapter.values())
    steps = sorted(timer.tokens)
    # Skip the first step (kernel selection, allocator warm-up); tokens are summed over all processes.
    timed_tokens = timer.tokens[steps[-1]] - timer.tokens[steps[0]] if len(steps) > 1 else 0
    timed_seconds = sum(timer.durations[1:])
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(args.model)
    rows = max(1, config.per_device_train_batch_size)
    mean_tokens = timed_tokens / max(1, (len(steps) - 1) * rows)
    forward = forward_flops_per_token(model_config, int(mean_tokens // 2))
    # LoRA on frozen weights: forward, backward through the activations (no weight gradients), and one
    # more forward where activation checkpointing recomputes.
    passes = 3 if result.config.activation_checkpointing else 2
    tokens_per_s = timed_tokens / timed_seconds if timed_seconds else 0.0
    ok = (result.metrics["global_step"] == args.steps and len(history) >= 1 and gathered
          and all(0.0 <= entry["eval_auc"] <= 1.0 for entry in history))
    _write_result(args.result, {
        "ok": ok, "tokens_per_s": tokens_per_s, "tflops": tokens_per_s * forward * passes / 1e12,
        "peak_gib": peak_gib, "evals": len(history), "auc": history[-1]["eval_auc"] if history else None,
        "steps": result.metrics["global_step"], "gathered": gathered,
        "checkpointing": bool(result.config.activation_checkpointing)})


def child_score(args) -> None:
    """Batched CTR scoring in bf16 of validation prompts, prompts/s after a warm-up batch."""
    import torch

    import rella_hf
    from rella_hf.models import load_model
    from rella_hf.scoring import CTRScorer

    prompts = rella_hf.load_dataset("ml-latest-small", K=5, retrieval="recent", split="validation")["prompt"]
    prompts = list(prompts[: args.prompts])
    model, tokenizer = load_model(args.model, dtype="bfloat16", device="cuda")
    scorer = CTRScorer(model, tokenizer, batch_size=32)
    scorer.score(prompts[:32], progress=False)  # warm-up: kernels, allocator
    torch.cuda.synchronize()
    start = time.perf_counter()
    scores = scorer.score(prompts, progress=False)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    ok = bool(((scores > 0) & (scores < 1)).all())
    _write_result(args.result, {"ok": ok, "prompts_per_s": len(prompts) / seconds,
                                "peak_gib": torch.cuda.max_memory_allocated() / 2**30})


# ------------------------------------------------------------------------------------------
# The driver
# ------------------------------------------------------------------------------------------


def bf16_peak_tflops(seconds: float = 3.0, size: int = 8192) -> float:
    """The card's bf16 matmul rate (TFLOP/s), best of rounds of ``size``-cubed matmuls."""
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        best = max(best, 10 * 2 * size**3 / (time.perf_counter() - start) / 1e12)
    return best


def build_random_model(shape: str, folder: Path) -> Path:
    """Save a random-weight Llama of ``shape`` (bf16) with SmolLM2's offline tokenizer into ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rella_hf.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         max_position_embeddings=4096, **SHAPES[shape])
    torch.manual_seed(0)
    # Built on the GPU in bf16: a 7B model initialised on the CPU in float32 would take minutes.
    with torch.device("cuda"):
        torch.set_default_dtype(torch.bfloat16)
        try:
            model = LlamaForCausalLM(config)
        finally:
            torch.set_default_dtype(torch.float32)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    return folder


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_check(name: str, kind: str, model: Path, launcher: str | None, extra: dict, work: Path, args,
              timeout: float) -> tuple[dict | None, str]:
    """Run one check in its own process; return its result (None on failure) and the failure's last line."""
    result_file = work / f"{name}.json"
    child = [str(Path(__file__).resolve()), "--child", kind, "--name", name, "--model", str(model), "--work", str(work),
             "--result", str(result_file), "--extra", json.dumps(extra), "--steps", str(args.steps),
             "--prompts", str(args.prompts)]
    if launcher:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / launcher),
                   "--num_processes", "1", "--main_process_port", str(_free_port()), *child]
    else:
        command = [sys.executable, *child]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    try:
        completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    (work / f"{name}.log").write_text(completed.stdout + completed.stderr)
    if completed.returncode != 0 or not result_file.is_file():
        lines = [line for line in (completed.stderr or completed.stdout).splitlines() if line.strip()]
        return None, f"exit {completed.returncode}: {lines[-1][:200] if lines else 'no output'}"
    return json.loads(result_file.read_text()), ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=480, help="seconds for all checks; later ones are skipped")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps of each training check")
    parser.add_argument("--prompts", type=int, default=512, help="prompts of each scoring check")
    parser.add_argument("--keep", default=None, help="keep the models, logs and results in this folder")
    for hidden in ("--child", "--name", "--model", "--work", "--result", "--extra"):
        parser.add_argument(hidden, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        {"train": child_train, "score": child_score}[args.child](args)
        return 0

    import torch

    if not torch.cuda.is_available():
        print("gpu check: no CUDA GPU visible (torch.cuda.is_available() is False); run it on a machine with an "
              "NVIDIA GPU, e.g. one H100.", file=sys.stderr)
        return 1
    started = time.perf_counter()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gpu_check-"))
    work.mkdir(parents=True, exist_ok=True)
    import importlib.util

    import rella_hf

    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    device = torch.cuda.get_device_name(0)
    peak = bf16_peak_tflops()
    print(f"peak: ok, {device}, bf16 matmul {peak:.0f} TFLOP/s, torch {torch.__version__}", flush=True)
    rella_hf.load_dataset("ml-latest-small", K=5, retrieval="recent")  # built once, before the children
    models = {}
    outcomes = {"peak": True}
    results: dict[str, dict] = {}
    try:
        for name, kind, shape, launcher, extra in CHECKS:
            left = args.budget - (time.perf_counter() - started)
            if extra and not has_bnb:
                print(f"{name}: skipped, bitsandbytes does not import (pip install 'rella-hf[quantization]')",
                      flush=True)
                continue
            if left < 30:
                print(f"{name}: FAILED, not run: the {args.budget:.0f} s budget is spent", flush=True)
                outcomes[name] = False
                continue
            if shape not in models:
                models[shape] = build_random_model(shape, work / f"random-{shape}")
            result, failure = run_check(name, kind, models[shape], launcher, extra, work, args, timeout=left)
            outcomes[name] = result is not None and result["ok"]
            if result is None:
                print(f"{name}: FAILED, {failure} (log: {work / (name + '.log')})", flush=True)
                continue
            results[name] = result
            status = "ok" if result["ok"] else "FAILED"
            if kind == "train":
                print(f"{name}: {status}, {result['steps']} steps, {result['evals']} validation AUCs "
                      f"(last {result['auc']:.3f}), adapter gathered {result['gathered']}, "
                      f"{result['tokens_per_s']:.0f} tokens/s, {100 * result['tflops'] / peak:.1f} % of bf16 peak, "
                      f"peak memory {result['peak_gib']:.1f} GiB, checkpointing {result['checkpointing']}", flush=True)
            else:
                print(f"{name}: {status}, {result['prompts_per_s']:.1f} prompts/s (batch 32), "
                      f"peak memory {result['peak_gib']:.1f} GiB", flush=True)
    finally:
        for folder in models.values():  # 14 GB for the 7B shape; the logs stay while a check failed
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
        if not args.keep and all(outcomes.values()):
            shutil.rmtree(work, ignore_errors=True)
    train = results.get("train-zero3-7b", {})
    score = results.get("score-7b", {})
    passed = sum(outcomes.values())
    print(f"gpu check: {passed}/{len(outcomes)} passed, train {train.get('tokens_per_s', 0):.0f} tokens/s "
          f"({100 * train.get('tflops', 0) / peak:.1f} % of bf16 peak), score {score.get('prompts_per_s', 0):.1f} "
          f"prompts/s", flush=True)
    return 0 if passed == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
