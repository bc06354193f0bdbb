"""Training speed of a ReiT LoRA step, variant by variant, against the machine's matmul peak.

SmolLM2-135M-Instruct (offline route), LoRA r=8 on q_proj/v_proj, completion-only loss, ReiT
mixed prompts of the bundled ml-latest-small (K=10 by default), the same rows and the same number
of optimizer steps for every variant, each variant in a fresh process (its own peak RSS):

- ``float32``: the recipe before the speed work (float32 weights, random order, TRL's collator and
  loss with the LM head over every position), activation checkpointing off as it resolved then;
- each change alone on top of it: ``+bf16`` (bf16 base weights + bf16 autocast, LoRA float32),
  ``+bf16 no autocast`` (bf16 base weights only), ``+length grouping``, ``+answer-only head``,
  and ``+activation checkpointing`` (SFTConfig's own default, to show what it costs);
- ``all``: the new default recipe (bf16, length grouping, answer-only head, no checkpointing).

Useful work per step = 4 x non-embedding parameters x non-padding tokens (forward plus the input
gradients of the backward; frozen weights need no weight gradients), divided by the step time
gives GFLOP/s; its share of the bf16 matmul peak (:func:`_common.matmul_peak`, measured in the
same run) is the last column. Then the float32 and the new recipe train 40 steps on the same rows
in the same order and their losses are compared (must agree within 2 %).

Usage: python benchmarks/bench_train.py [--steps 10] [--warmup 2] [--batch 8] [--K 10] [--loss-steps 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_facts, matmul_peak, peak_rss_mb  # noqa: E402

BASELINE = {"bf16": False, "model_dtype": "float32", "train_sampling_strategy": "random",
            "completion_logits_only": False, "activation_checkpointing": False}
NEW = {"bf16": True, "model_dtype": None, "train_sampling_strategy": "group_by_length",
       "completion_logits_only": True, "activation_checkpointing": False}
VARIANTS = {
    "float32 (before)": BASELINE,
    "+bf16 (autocast + bf16 weights)": {**BASELINE, "bf16": True, "model_dtype": None},
    "+bf16 weights without autocast": {**BASELINE, "model_dtype": "bfloat16"},
    "+length grouping": {**BASELINE, "train_sampling_strategy": "group_by_length"},
    "+answer-only head": {**BASELINE, "completion_logits_only": True},
    "+activation checkpointing": {**BASELINE, "activation_checkpointing": True},
    "all (new default)": NEW,
}
#: The loss check compares precision and head, so both runs see the rows in the same (random) order.
LOSS_CHECK = {"float32 (before)": BASELINE, "new recipe, random order": {**NEW, "train_sampling_strategy": "random"}}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per variant (warm-up included)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the averages")
    parser.add_argument("--batch", type=int, default=8, help="rows per optimizer step (no accumulation)")
    parser.add_argument("--K", type=int, default=10, help="history items per prompt")
    parser.add_argument("--loss-steps", type=int, default=40, help="steps of the loss comparison (0 skips it)")
    parser.add_argument("--loss-batch", type=int, default=4, help="rows per step in the loss comparison")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variant names")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_worker(args: argparse.Namespace) -> None:
    """Train one variant in this process and print one JSON line of measurements."""
    import torch
    from transformers import TrainerCallback

    from rella_hf.training import ReiTConfig, build_trainer, load_model_for_training, prepare_training_data

    settings = json.loads(args.worker)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.durations, self.tokens, self._start, self._seen = [], [], 0.0, 0

        def on_step_begin(self, args_, state, control, **kwargs):
            self._start, self._seen = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, args_, state, control, **kwargs):
            self.durations.append(time.perf_counter() - self._start)
            self.tokens.append(state.num_input_tokens_seen - self._seen)

    steps, batch = settings.pop("steps"), settings.pop("batch")
    final_loss = settings.pop("final_loss", False)
    config = ReiTConfig(
        output_dir=tempfile.mkdtemp(prefix="rella-bench-train-"), model_name_or_path="smollm2-135m-instruct",
        dataset="ml-latest-small", K=settings.pop("K"), train_type="mixed", test_type="sequential",
        shots=max(steps * batch // 2, 1), eval_size=0, eval_strategy="no", save_strategy="no",
        per_device_train_batch_size=batch, total_batch_size=batch, max_steps=steps, logging_steps=1,
        include_num_input_tokens_seen="non_padding", disable_tqdm=True, seed=42, **settings,
    )
    model, tokenizer = load_model_for_training(config)
    non_embedding = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
    data = prepare_training_data(config, "smollm2-135m-instruct")
    timer = StepTimer()
    trainer = build_trainer(config, data, model, tokenizer, callbacks=[timer])
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    # The trained adapter's loss on all of its training rows, in eval mode (no dropout), in its own precision.
    after = trainer.evaluate(eval_dataset=trainer.train_dataset)["eval_loss"] if final_loss else None
    print(json.dumps({
        "durations": timer.durations, "tokens": timer.tokens, "losses": losses, "final_loss": after,
        "peak_rss_mb": peak_rss_mb(),
        "non_embedding_params": non_embedding, "threads": torch.get_num_threads(),
        "mean_row_tokens": statistics.mean(len(ids) for ids in trainer.train_dataset["input_ids"]),
        "base_dtype": str(model.dtype).removeprefix("torch."),
    }))


def run_variant(settings: dict, steps: int, batch: int, K: int, final_loss: bool = False) -> dict:
    worker = json.dumps({**settings, "steps": steps, "batch": batch, "K": K, "final_loss": final_loss})
    done = subprocess.run([sys.executable, __file__, "--worker", worker], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"variant {settings} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    import torch

    peak = matmul_peak()
    print(f"Machine: {machine_facts()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"Matmul peak (SmolLM2 MLP shapes, 2,048 tokens): float32 {peak['float32']:.0f} GFLOP/s, "
          f"bfloat16 {peak['bfloat16']:.0f} GFLOP/s")
    print(f"SmolLM2-135M-Instruct, LoRA r=8 q_proj/v_proj, ReiT mixed ml-latest-small K={args.K}, batch {args.batch}, "
          f"{args.steps} steps ({args.warmup} warm-up left out), each variant in a fresh process\n")
    print("| variant | s/step | tokens/s (non-padding) | GFLOP/s | % of bf16 peak | peak RSS MiB | speed-up |")
    print("|---|---|---|---|---|---|---|")
    baseline_rate = None
    summary = {}
    for name in args.variants.split(","):
        result = run_variant(VARIANTS[name], args.steps, args.batch, args.K)
        timed = result["durations"][args.warmup:]
        tokens = sum(result["tokens"][args.warmup:])
        rate = tokens / sum(timed)
        gflops = 4 * result["non_embedding_params"] * rate / 1e9
        baseline_rate = baseline_rate or rate
        summary[name] = (rate, gflops)
        print(f"| {name} | {statistics.mean(timed):.2f} | {rate:.0f} | {gflops:.0f} | "
              f"{100 * gflops / peak['bfloat16']:.1f} % | {result['peak_rss_mb']:.0f} | {rate / baseline_rate:.2f}x |",
              flush=True)

    if args.loss_steps:
        print(f"\nLoss check: {args.loss_steps} steps, batch {args.loss_batch}, same rows and seed")
        runs = {name: run_variant(settings, args.loss_steps, args.loss_batch, args.K, final_loss=True)
                for name, settings in LOSS_CHECK.items()}
        tail = max(1, args.loss_steps // 4)
        for name, run in runs.items():
            losses = run["losses"]
            print(f"- {name}: training loss at step 1 {losses[0]:.4f}, step {len(losses)} {losses[-1]:.4f}, "
                  f"mean of the last {tail} steps {statistics.mean(losses[-tail:]):.4f}; "
                  f"after training, on all {args.loss_steps * args.loss_batch} rows (eval mode) {run['final_loss']:.4f}")
        new, old = runs["new recipe, random order"], runs["float32 (before)"]
        tail_new, tail_old = statistics.mean(new["losses"][-tail:]), statistics.mean(old["losses"][-tail:])
        print(f"training-loss gap (mean of the last {tail} steps): {100 * (tail_new - tail_old) / tail_old:+.2f} %")
        gap = (new["final_loss"] - old["final_loss"]) / old["final_loss"]
        print(f"loss gap after {args.loss_steps} steps (same rows, eval mode): {100 * gap:+.2f} % "
              f"({'within' if abs(gap) <= 0.02 else 'over'} 2 %)")

    if "all (new default)" in summary and "float32 (before)" in summary:
        rate, gflops = summary["all (new default)"]
        print(f"train speed-up vs float32 baseline: {rate / summary['float32 (before)'][0]:.2f}x "
              f"({gflops:.0f} GFLOP/s, {100 * gflops / peak['bfloat16']:.1f} % of bf16 peak)")


if __name__ == "__main__":
    main()
