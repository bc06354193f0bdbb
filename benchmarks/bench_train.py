"""Training speed of a ReiT LoRA step, variant by variant, against the machine's matmul peak.

SmolLM2-135M-Instruct (offline route), LoRA r=8 on q_proj/v_proj, completion-only loss, ReiT
mixed prompts of the bundled ml-latest-small (K=10 by default), the same rows and the same number
of optimizer steps for every variant, each variant in a fresh process (its own peak RSS):

- ``float32``: the recipe before the speed work (float32 weights, random order, TRL's collator and
  loss with the LM head over every position), activation checkpointing off as it resolved then;
- each change alone on top of it: ``+bf16`` (bf16 base weights + bf16 autocast, LoRA float32),
  ``+bf16 no autocast`` (bf16 base weights only), ``+length grouping``, ``+answer-only head``,
  and ``+activation checkpointing`` (SFTConfig's own default, to show what it costs);
- ``all but bf16 attention``: the new recipe with the attention kernel in bf16 too, to show what
  running the CPU attention in float32 in training passes buys (it only applies to bf16 models);
- ``all``: the new default recipe (bf16, length grouping, answer-only head, float32 CPU attention,
  no checkpointing).

Useful work per step = 4 x non-embedding parameters x non-padding tokens (forward plus the input
gradients of the backward; frozen weights need no weight gradients), divided by the step time
gives GFLOP/s; its share of the matmul peak of the new recipe's compute dtype
(:func:`rella_hf.hardware.matmul_peak`, measured in the same run) is the last column. The speed-up
line is the median ratio of ``--rounds`` float32 / new-recipe pairs run back to back (the table's
pair is the first): a shared host's speed drifts by tens of per cent within minutes. With
``--loss-steps`` the float32 and the new recipe train that many steps on the same rows in the same
order and their losses are compared (must agree within 2 %).

On a float32-only host (no AVX512-BF16 / AMX, or ``RELLA_HF_FORCE_FLOAT32=1``) the bf16 variants
are emulated and skipped (one line says which), and ``all (new default)`` is what the library runs
there: float32 weights with the answer-only head and length grouping. The default run (4 steps,
one round, no loss check) answers in under 10 minutes on 2 cores of either host kind; its rows go
to ``benchmarks/RESULTS.md`` under the host's kind (``--no-write``: print only). The full run of
RESULTS.md's run E: ``--steps 8 --warmup 2 --loss-steps 40 --loss-batch 4 --rounds 3``.

Usage: python benchmarks/bench_train.py [--steps 4] [--warmup 1] [--batch 8] [--K 10] [--loss-steps 0] [--rounds 1]
       python benchmarks/bench_train.py --attention-ab 5   (bf16 vs float32 CPU attention, one process)
       python benchmarks/bench_train.py --lora-costs 3 --K 5   (all-linear LoRA: dropout, input cast, top layers only)
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

from _common import host_facts, machine_facts, peak_rss_mb, skip_emulated_bf16, write_host_rows  # noqa: E402

BASELINE = {"bf16": False, "model_dtype": "float32", "train_sampling_strategy": "random",
            "completion_logits_only": False, "activation_checkpointing": False, "cpu_float32_attention": False,
            "shared_prefix": False}
NEW = {"bf16": True, "model_dtype": None, "train_sampling_strategy": "group_by_length",
       "completion_logits_only": True, "activation_checkpointing": False, "cpu_float32_attention": True,
       "shared_prefix": True}
VARIANTS = {
    "float32 (before)": BASELINE,
    "+bf16 (autocast + bf16 weights)": {**BASELINE, "bf16": True, "model_dtype": None},
    "+bf16 weights without autocast": {**BASELINE, "model_dtype": "bfloat16"},
    "+length grouping": {**BASELINE, "train_sampling_strategy": "group_by_length"},
    "+answer-only head": {**BASELINE, "completion_logits_only": True},
    "+activation checkpointing": {**BASELINE, "activation_checkpointing": True},
    "all but bf16 attention": {**NEW, "cpu_float32_attention": False},
    "all but the shared prefix": {**NEW, "shared_prefix": False},
    "all (new default)": NEW,
}
#: The loss check compares precision and head, so both runs see the rows in the same (random) order.
LOSS_CHECK = {"float32 (before)": BASELINE, "new recipe, random order": {**NEW, "train_sampling_strategy": "random"}}


def emulated(settings: dict) -> bool:
    """Whether a variant computes in bf16 (weights or autocast): emulated, so skipped, on a float32-only host."""
    return bool(settings.get("bf16")) or settings.get("model_dtype") == "bfloat16"


def for_this_host(settings: dict, native_bf16: bool) -> dict:
    """The new recipe as the library runs it on this host: on a float32-only one without bf16 (nor its attention cast)."""
    if native_bf16 or not emulated(settings):
        return settings
    return {**settings, "bf16": False, "model_dtype": None, "cpu_float32_attention": False}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per variant (warm-up included)")
    parser.add_argument("--warmup", type=int, default=1, help="first steps left out of the averages")
    parser.add_argument("--batch", type=int, default=8, help="rows per optimizer step (no accumulation)")
    parser.add_argument("--K", type=int, default=10, help="history items per prompt")
    parser.add_argument("--loss-steps", type=int, default=0, help="steps of the loss comparison (0 skips it)")
    parser.add_argument("--loss-batch", type=int, default=4, help="rows per step in the loss comparison")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variant names")
    parser.add_argument("--rounds", type=int, default=1,
                        help="float32/new-recipe pairs run back to back for the speed-up line (the table's pair is the "
                             "first); the line reports their median ratio")
    parser.add_argument("--attention-ab", type=int, default=0, metavar="REPS",
                        help="only compare bf16 and float32 CPU attention in one process: REPS interleaved rounds of "
                             "forward + backward on the same 3 batches of the new recipe")
    parser.add_argument("--lora-costs", type=int, default=0, metavar="REPS",
                        help="only time forward + backward of the demo's training variants (LORA_COST_VARIANTS: "
                             "all-linear LoRA r=16 with dropout 0.05 / 0, with and without PEFT's float32 input cast, "
                             "on all or the top layers; full fine-tuning of all or the top layers); REPS interleaved "
                             "rounds on the same 3 batches, all variants in one process")
    parser.add_argument("--no-write", action="store_true", help="print the table without updating RESULTS.md")
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


def _one_process_trainer(args: argparse.Namespace, **overrides):
    """The new recipe's trainer (``overrides`` on top) and three of its training batches, for in-process A/B timings."""
    from rella_hf.hardware import cpu_has_native_bf16
    from rella_hf.training import ReiTConfig, build_trainer, load_model_for_training, prepare_training_data

    config = ReiTConfig(
        output_dir=tempfile.mkdtemp(prefix="rella-bench-ab-"), model_name_or_path="smollm2-135m-instruct",
        dataset="ml-latest-small", K=args.K, train_type="mixed", test_type="sequential", shots=4 * args.batch,
        eval_size=0, eval_strategy="no", save_strategy="no", per_device_train_batch_size=args.batch,
        total_batch_size=args.batch, max_steps=1, disable_tqdm=True, seed=42,
        **for_this_host({**NEW, **overrides}, cpu_has_native_bf16()),
    )
    model, tokenizer = load_model_for_training(config)
    trainer = build_trainer(config, prepare_training_data(config, "smollm2-135m-instruct"), model, tokenizer)
    trainer.model.train()
    return trainer, [batch for _, batch in zip(range(3), trainer.get_train_dataloader())]


def _interleaved_seconds(batches, modes: dict, reps: int) -> dict[str, list[float]]:
    """Forward + backward seconds per batch under each mode, interleaved.

    ``modes`` maps a name to ``(trainer, context-manager factory)``; the modes alternate in order
    round by round on the same batches, so host drift hits them alike; the first round warms up
    and is left out.
    """
    seconds: dict[str, list[float]] = {name: [] for name in modes}
    for rep in range(reps + 1):
        for name in (list(modes) if rep % 2 == 0 else list(reversed(modes))):
            trainer, context = modes[name]
            for batch in batches:
                start = time.perf_counter()
                with context(), trainer.accelerator.autocast():
                    trainer.compute_loss(trainer.model, batch).backward()
                trainer.model.zero_grad()
                if rep:
                    seconds[name].append(time.perf_counter() - start)
    return seconds


def attention_ab(args: argparse.Namespace) -> None:
    """bf16 vs float32 CPU attention, interleaved in one process on the same batches (no host drift between them)."""
    import contextlib

    from rella_hf.training.attention import FLOAT32_CPU_TRAINING_SDPA

    if skip_emulated_bf16("--attention-ab (it times bf16 attention)"):
        return
    trainer, batches = _one_process_trainer(args)
    base = trainer.model.get_base_model()

    def attention(implementation):
        base.set_attn_implementation(implementation)
        return contextlib.nullcontext()

    seconds = _interleaved_seconds(batches, {
        "bf16": (trainer, lambda: attention("sdpa")),
        "float32": (trainer, lambda: attention(FLOAT32_CPU_TRAINING_SDPA))}, args.attention_ab)
    bf16, float32 = (statistics.median(seconds[name]) for name in ("bf16", "float32"))
    print(f"attention A/B, K={args.K}, batch {args.batch}, {args.attention_ab} interleaved rounds x 3 batches: "
          f"forward+backward median bf16 attention {bf16:.3f} s, float32 attention {float32:.3f} s "
          f"({100 * (float32 - bf16) / bf16:+.1f} %); means {statistics.mean(seconds['bf16']):.3f} / "
          f"{statistics.mean(seconds['float32']):.3f} s")


#: What ``--lora-costs`` compares: the demo's all-linear r=16 adapter with and without dropout, on the top
#: layers only, and full fine-tuning (float32 master weights, bf16 autocast) of all or the top layers.
LORA_COST_VARIANTS = {
    "LoRA dropout 0.05, all 30 layers": {"lora_dropout": 0.05},
    "LoRA dropout 0, all 30 layers": {"lora_dropout": 0.0},
    "LoRA dropout 0, top 15 layers": {"lora_dropout": 0.0, "top_layers": 15},
    "LoRA dropout 0, top 8 layers": {"lora_dropout": 0.0, "top_layers": 8},
    "full fine-tuning, all 30 layers": {"finetuning": "full"},
    "full fine-tuning, top 15 layers": {"finetuning": "full", "top_layers": 15},
    "full fine-tuning, top 15 layers, bf16 attention": {"finetuning": "full", "top_layers": 15,
                                                        "cpu_float32_attention": False},
    "full fine-tuning, top 10 layers": {"finetuning": "full", "top_layers": 10},
}


def lora_costs(args: argparse.Namespace) -> None:
    """Forward + backward of the demo's all-linear r=16 adapter and of full fine-tuning, interleaved in one process.

    Every variant has its own model in this process and runs on the same batches; PEFT's float32
    cast of each LoRA input is also switched off once for the first variant. The optimizer step is
    not timed (AdamW over the trained weights: small for LoRA, a memory pass for full fine-tuning).
    """
    import contextlib

    from peft.helpers import disable_input_dtype_casting

    from rella_hf.demo import LORA_TARGET_SETS

    modes, batches = {}, None
    for name, overrides in LORA_COST_VARIANTS.items():
        trainer, own_batches = _one_process_trainer(args, lora_r=16, lora_alpha=32,
                                                    lora_target_modules=LORA_TARGET_SETS["all"], **overrides)
        batches = batches or own_batches
        modes[name] = (trainer, contextlib.nullcontext)
        if len(modes) == 1:
            first = trainer
            modes[f"{name}, no float32 input cast"] = (trainer, lambda: disable_input_dtype_casting(first.model))
    seconds = _interleaved_seconds(batches, modes, args.lora_costs)
    reference = statistics.median(seconds[next(iter(modes))])
    print(f"all-linear LoRA r=16 and full fine-tuning, K={args.K}, batch {args.batch}, {args.lora_costs} interleaved "
          "rounds x 3 batches, forward+backward median:")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"  {name:<45} {median:.3f} s ({100 * (median - reference) / reference:+.1f} %)", flush=True)


def step_rate(result: dict, warmup: int) -> tuple[float, float]:
    """Non-padding tokens per second and mean seconds per step over the steps after ``warmup``."""
    timed = result["durations"][warmup:]
    return sum(result["tokens"][warmup:]) / sum(timed), statistics.mean(timed)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    if args.attention_ab:
        attention_ab(args)
        return
    if args.lora_costs:
        lora_costs(args)
        return
    import torch

    facts = host_facts()
    native = facts.native_bf16
    names = args.variants.split(",")
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; expected names among {list(VARIANTS)}")
    # The new recipe without one of its float32-safe parts runs on either host kind, as the recipe itself does.
    host_neutral = ("all (new default)", "all but the shared prefix")
    skipped = [name for name in names if name not in host_neutral and emulated(VARIANTS[name]) and not native]
    if skipped:
        skip_emulated_bf16(", ".join(skipped))
        names = [name for name in names if name not in skipped]
    recipe_dtype = "bfloat16" if native else "float32"
    peak = facts.bf16_gflops if native else facts.float32_gflops
    lines = []
    out = lines.append  # every line below is printed and written to RESULTS.md
    out(f"Run {time.strftime('%Y-%m-%d %H:%M')}, `python benchmarks/bench_train.py --steps {args.steps} --warmup "
        f"{args.warmup} --batch {args.batch} --K {args.K} --loss-steps {args.loss_steps} --rounds {args.rounds}`; "
        f"{facts.describe()}; {machine_facts()}; torch {torch.__version__}")
    out("")
    out(f"SmolLM2-135M-Instruct, LoRA r=8 q_proj/v_proj, ReiT mixed ml-latest-small K={args.K}, batch {args.batch}, "
        f"{args.steps} steps ({args.warmup} warm-up left out), each variant in a fresh process; the new default "
        f"recipe computes in {recipe_dtype} on this host")
    out("")
    out(f"| variant | s/step | tokens/s (non-padding) | GFLOP/s | % of {recipe_dtype} peak ({peak:.0f}) | peak RSS MiB | "
        "speed-up |")
    out("|---|---|---|---|---|---|---|")
    print("\n".join(lines), flush=True)
    baseline_rate = None
    summary = {}
    for name in names:
        result = run_variant(for_this_host(VARIANTS[name], native), args.steps, args.batch, args.K)
        rate, seconds_per_step = step_rate(result, args.warmup)
        non_embedding = result["non_embedding_params"]
        gflops = 4 * non_embedding * rate / 1e9
        baseline_rate = baseline_rate or rate
        summary[name] = (rate, gflops)
        out(f"| {name} | {seconds_per_step:.2f} | {rate:.0f} | {gflops:.0f} | {100 * gflops / peak:.1f} % | "
            f"{result['peak_rss_mb']:.0f} | {rate / baseline_rate:.2f}x |")
        print(lines[-1], flush=True)

    if args.loss_steps:
        print(f"\nLoss check: {args.loss_steps} steps, batch {args.loss_batch}, same rows and seed")
        runs = {name: run_variant(for_this_host(settings, native), args.loss_steps, args.loss_batch, args.K,
                                  final_loss=True)
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
        # The host's speed drifts by tens of per cent within minutes (other tenants); a ratio of two runs
        # minutes apart inherits that drift, so the headline pairs runs back to back and takes the median.
        pairs = [(summary["float32 (before)"][0], summary["all (new default)"][0])]
        for _ in range(max(args.rounds, 1) - 1):
            old = step_rate(run_variant(BASELINE, args.steps, args.batch, args.K), args.warmup)[0]
            new = step_rate(run_variant(for_this_host(NEW, native), args.steps, args.batch, args.K), args.warmup)[0]
            pairs.append((old, new))
        ratios = [new / old for old, new in pairs]
        print("\nback-to-back pairs (float32 -> new recipe, tokens/s): "
              + "; ".join(f"{old:.0f} -> {new:.0f} ({new / old:.2f}x)" for old, new in pairs))
        ratio = statistics.median(ratios)
        new_rate = statistics.median(new for _, new in pairs)
        gflops = 4 * non_embedding * new_rate / 1e9
        out("")
        out(f"train speed-up vs float32 baseline: {ratio:.2f}x ({gflops:.0f} GFLOP/s, {100 * gflops / peak:.1f} % of "
            f"{recipe_dtype} peak; median of {len(pairs)} back-to-back pairs; {facts.kind} host)")
        print(lines[-1])
    if not args.no_write:
        write_host_rows("bench_train", facts.kind, "\n".join(lines))

if __name__ == "__main__":
    main()
