"""Zero-shot scoring speed and memory: the fast path against the full-logits path.

SmolLM2-135M-Instruct (offline route) scores ml-latest-small test prompts (K=10, recent
history) two ways, each in a fresh process so peak RSS is its own:

(a) fast  -- ``CTRScorer`` as it runs by default: length-sorted, ``inference_mode``, the yes/no
             rows of the LM head only, in float32; on a CPU in bf16 each prompt runs alone (no
             padding, so its score cannot depend on batch mates).
(a') batched -- the same with ``batch_invariant=False``: right-padded batches of ``--batch-size``, the prompts'
             shared prefix (chat system turn, the template's opening) run once per window.
(a'') unshared -- batched without the shared prefix (``share_prefix=False``): every prompt runs whole.
(b) naive -- ``naive_scores``: batches in dataset order with right padding, full
             ``[batch, length, vocab]`` logits and a softmax over all of them, which is what
             ``Trainer.evaluate`` + ``preprocess_logits_for_metrics`` does in the reference code.

The fast worker also scores the first 32 prompts at batch 1, 8 and 32, in random orders, and
reports the largest change of any prompt's score (the batch-dependence). Throughput in GFLOP/s
is 2 x non-embedding parameters x prompt tokens per second, against the matmul peak of the dtype
the model computes in, measured in the same run (:func:`rella_hf.hardware.matmul_peak`). On a
float32-only host (no AVX512-BF16 / AMX, or ``RELLA_HF_FORCE_FLOAT32=1``) the model computes in
float32 and ``--dtype bfloat16`` is skipped with one line (emulated). The default run (128 prompts,
three paths) answers in about 5 minutes on 2 cores of a float32-only host; its rows go to
``benchmarks/RESULTS.md`` under the host's kind (``--no-write``: print only).

Throughput counts every prompt token, also those of a shared prefix run once (effective GFLOP/s).

Usage: python benchmarks/bench_scoring.py [--n 128] [--batch-size 8] [--dtype float32] [--paths fast,batched,unshared,naive]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import host_facts, machine_facts, peak_rss_mb, skip_emulated_bf16, write_host_rows  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=128, help="test prompts to score")
    parser.add_argument("--K", type=int, default=10, help="history items per prompt")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass (both paths)")
    parser.add_argument("--dtype", default=None, help="float32 / bfloat16 (default: from the hardware)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the test-split sample")
    parser.add_argument("--paths", default="fast,batched,unshared,naive",
                        help="comma-separated: fast, batched, unshared, naive")
    parser.add_argument("--worker", choices=["fast", "batched", "unshared", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--scores-out", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print the table without updating RESULTS.md")
    return parser.parse_args(argv)


def sample_prompts(n: int, K: int, seed: int) -> tuple[list[str], list[int]]:
    """``n`` test prompts of ml-latest-small, a seeded sample (the split is ordered by time)."""
    import rella_hf

    test = rella_hf.load_dataset("ml-latest-small", K=K, retrieval="recent", split="test")
    sample = test.shuffle(seed=seed).select(range(min(n, len(test))))
    return sample["prompt"][:], sample["label"][:]


def run_worker(args: argparse.Namespace) -> None:
    """Score with one path in this process and print one JSON line of measurements."""
    import torch

    from rella_hf.models import load_model
    from rella_hf.scoring import CTRScorer, answer_token_ids, encode_prompts
    from rella_hf.scoring_reference import naive_scores

    prompts, _ = sample_prompts(args.n, args.K, args.seed)
    model, tokenizer = load_model(dtype=args.dtype)
    yes_ids, no_ids = answer_token_ids(tokenizer, prompts[0])
    lengths = [len(ids) for ids in encode_prompts(tokenizer, prompts)]
    if args.worker in ("fast", "batched", "unshared"):
        invariant = None if args.worker == "fast" else False
        scorer = CTRScorer(model, tokenizer, batch_size=args.batch_size, yes_ids=yes_ids, no_ids=no_ids,
                           batch_invariant=invariant, share_prefix=args.worker != "unshared")
        score = lambda batch: scorer.score(batch, progress=False)  # noqa: E731
    else:
        score = lambda batch: naive_scores(  # noqa: E731
            model, tokenizer, batch, batch_size=args.batch_size, yes_ids=yes_ids, no_ids=no_ids
        )
    score(prompts[:2])  # warm-up: first-call allocations and kernel selection
    rss_before = peak_rss_mb()
    start, cpu_start = time.perf_counter(), time.process_time()
    scores = score(prompts)
    elapsed, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    np.save(args.scores_out, scores)
    dependence = None
    if args.worker == "fast":
        probe = prompts[:32]
        rng = np.random.default_rng(0)
        by_batch = []
        for batch_size in (1, 8, 32):
            order = rng.permutation(len(probe))
            shuffled = CTRScorer(model, tokenizer, batch_size=batch_size, yes_ids=yes_ids, no_ids=no_ids).score(
                [probe[i] for i in order], progress=False)
            restored = np.empty(len(probe))
            restored[order] = shuffled
            by_batch.append(restored)
        dependence = float(max(np.abs(other - by_batch[0]).max() for other in by_batch[1:]))
    non_embedding = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
    print(json.dumps({
        "batch_dependence": dependence,
        "gflops": 2 * non_embedding * sum(lengths) / elapsed / 1e9,
        "path": args.worker,
        "prompts": len(prompts),
        "seconds": elapsed,
        "prompts_per_s": len(prompts) / elapsed,
        "cpu_seconds": cpu_seconds,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_before_scoring_mb": rss_before,
        "dtype": str(model.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "mean_tokens": float(np.mean(lengths)),
        "min_tokens": int(min(lengths)),
        "max_tokens": int(max(lengths)),
    }))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    from rella_hf.metrics import ctr_metrics

    if args.dtype in ("bfloat16", "bf16") and skip_emulated_bf16("--dtype bfloat16"):
        return
    _, labels = sample_prompts(args.n, args.K, args.seed)  # also builds the dataset cache once
    facts = host_facts()
    results, scores = {}, {}
    with tempfile.TemporaryDirectory(prefix="rella-bench-scoring-") as scratch:
        for path in args.paths.split(","):
            out = Path(scratch) / f"{path}.npy"
            command = [sys.executable, __file__, "--worker", path, "--scores-out", str(out), "--n", str(args.n),
                       "--K", str(args.K), "--batch-size", str(args.batch_size), "--seed", str(args.seed)]
            if args.dtype:
                command += ["--dtype", args.dtype]
            print(f"running {path} path ...", file=sys.stderr, flush=True)
            finished = subprocess.run(command, check=True, capture_output=True, text=True)
            results[path] = json.loads(finished.stdout.strip().splitlines()[-1])
            scores[path] = np.load(out)

    lines = []
    out = lines.append  # every line below is printed and written to RESULTS.md
    first = next(iter(results.values()))
    dtype = first["dtype"]
    peak = facts.bf16_gflops if dtype == "bfloat16" else facts.float32_gflops
    out(f"Run {time.strftime('%Y-%m-%d %H:%M')}, `python benchmarks/bench_scoring.py --n {args.n} --K {args.K} "
        f"--batch-size {args.batch_size} --paths {args.paths}`; {facts.describe()}; {machine_facts()}")
    out("")
    out(f"{first['prompts']} ml-latest-small test prompts, K={args.K} recent, tokens mean {first['mean_tokens']:.0f} "
        f"(min {first['min_tokens']}, max {first['max_tokens']}), SmolLM2-135M-Instruct in {dtype}, batch size "
        f"{args.batch_size}, {first['threads']} threads, each path in its own process")
    out("")
    # CPU seconds are less sensitive than wall time to other processes sharing the machine.
    out(f"| path | prompts/s | seconds | GFLOP/s | % of {dtype} peak ({peak:.0f}) | CPU s/prompt | peak RSS MiB | "
        "RSS growth while scoring MiB |")
    out("|---|---|---|---|---|---|---|---|")
    for path, result in results.items():
        growth = result["peak_rss_mb"] - result["peak_rss_before_scoring_mb"]
        out(f"| {path} | {result['prompts_per_s']:.2f} | {result['seconds']:.1f} | {result['gflops']:.0f} | "
            f"{100 * result['gflops'] / peak:.1f} % | "
            f"{result['cpu_seconds'] / result['prompts']:.3f} | {result['peak_rss_mb']:.0f} | {growth:.0f} |")
    if {"fast", "naive"} <= results.keys():
        speedup = results["fast"]["prompts_per_s"] / results["naive"]["prompts_per_s"]
        difference = float(np.max(np.abs(scores["fast"] - scores["naive"])))
        out("")
        cpu_ratio = results["naive"]["cpu_seconds"] / results["fast"]["cpu_seconds"]
        out(f"speed-up fast/naive: {speedup:.2f}x wall, {cpu_ratio:.2f}x CPU time; "
            f"max |score difference|: {difference:.2e}")
    if {"batched", "unshared"} <= results.keys():
        shared = results["batched"]["cpu_seconds"] / results["unshared"]["cpu_seconds"]
        out(f"shared prefix: {results['batched']['prompts_per_s'] / results['unshared']['prompts_per_s']:.2f}x "
            f"prompts/s ({1 / shared:.2f}x CPU time), max |score difference| "
            f"{float(np.max(np.abs(scores['batched'] - scores['unshared']))):.1e}")
    for path, values in scores.items():
        labels_array = np.asarray(labels[: len(values)])
        if 0 < labels_array.sum() < len(labels_array):
            metrics = ctr_metrics(labels_array, values)
            out(f"{path}: AUC {metrics['auc']:.4f}, LogLoss {metrics['logloss']:.4f}, ACC {metrics['acc']:.4f} "
                f"(n={metrics['n']}, positives={metrics['positives']})")
    if "fast" in results:
        fast = results["fast"]
        out(f"scoring: {fast['prompts_per_s']:.2f} prompts/s, {fast['gflops']:.0f} GFLOP/s, "
            f"{100 * fast['gflops'] / peak:.1f} % of {dtype} peak, "
            f"max batch-dependence {fast['batch_dependence']:.1e} ({facts.kind} host)")
    print("\n".join(lines))
    if not args.no_write:
        write_host_rows("bench_scoring", facts.kind, "\n".join(lines))


if __name__ == "__main__":
    main()
