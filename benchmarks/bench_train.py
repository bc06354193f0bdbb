"""Training speed of a ReiT LoRA step on this machine: SmolLM2-135M, K=5 ml-latest-small prompts.

Trains SmolLM2-135M-Instruct (float32, LoRA r=8 on q_proj/v_proj, completion-only loss) on
ReiT mixed prompts of the bundled ml-latest-small with a per-device batch of 4 and no gradient
accumulation, and reports seconds per optimizer step and non-padding tokens per second over the
steps after a warm-up.

Usage: python benchmarks/bench_train.py [--steps 12] [--warmup 2] [--batch 4] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_facts, peak_rss_mb  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps to run (warm-up included)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the averages")
    parser.add_argument("--batch", type=int, default=4, help="per-device batch size (one step = one batch)")
    parser.add_argument("--K", type=int, default=5, help="history items per prompt")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import torch
    from transformers import TrainerCallback

    from rella_hf.training import ReiTConfig, build_trainer, load_model_for_training, prepare_training_data

    if args.threads:
        torch.set_num_threads(args.threads)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.durations, self.tokens, self._start, self._seen = [], [], 0.0, 0

        def on_step_begin(self, args_, state, control, **kwargs):
            self._start, self._seen = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, args_, state, control, **kwargs):
            self.durations.append(time.perf_counter() - self._start)
            self.tokens.append(state.num_input_tokens_seen - self._seen)

    output_dir = tempfile.mkdtemp(prefix="rella-bench-train-")
    shots = (args.steps * args.batch + 1) // 2  # mixed: 2 rows per shot
    config = ReiTConfig(
        output_dir=output_dir, model_name_or_path="smollm2-135m-instruct", dataset="ml-latest-small", K=args.K,
        train_type="mixed", test_type="sequential", shots=shots, eval_size=0, eval_strategy="no",
        save_strategy="no", per_device_train_batch_size=args.batch, total_batch_size=args.batch,
        max_steps=args.steps, logging_steps=args.steps, include_num_input_tokens_seen="non_padding",
        disable_tqdm=True, seed=42,
    )
    model, tokenizer = load_model_for_training(config)
    data = prepare_training_data(config, "smollm2-135m-instruct")
    timer = StepTimer()
    trainer = build_trainer(config, data, model, tokenizer, callbacks=[timer])
    trainer.train()

    timed = timer.durations[args.warmup:]
    tokens = sum(timer.tokens[args.warmup:])
    mean_tokens = statistics.mean(len(ids) for ids in trainer.train_dataset["input_ids"])
    print(f"Machine: {machine_facts()}; torch threads {torch.get_num_threads()}")
    print(f"SmolLM2-135M-Instruct float32, LoRA r=8 q_proj/v_proj, ReiT mixed K={args.K} ml-latest-small prompts "
          f"(mean {mean_tokens:.0f} tokens/row), batch {args.batch}, activation checkpointing off")
    print("| steps timed | s/step (mean) | s/step (median) | tokens/s (non-padding) | samples/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    print(f"| {len(timed)} | {statistics.mean(timed):.2f} | {statistics.median(timed):.2f} | "
          f"{tokens / sum(timed):.0f} | {args.batch * len(timed) / sum(timed):.2f} | {peak_rss_mb():.0f} |")


if __name__ == "__main__":
    main()
