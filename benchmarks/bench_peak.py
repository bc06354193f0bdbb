"""The machine's matmul peak at SmolLM2-135M's own shapes: float32, and bfloat16 where the CPU computes it natively.

Every throughput figure of the other benchmarks is divided by the peak of the dtype it computes in,
measured in their own run with the same probe (:func:`rella_hf.hardware.matmul_gflops`). On a
float32-only host (no AVX512-BF16 / AMX, or ``RELLA_HF_FORCE_FLOAT32=1``) bf16 is emulated: it is
skipped, with one line saying so. The rows go to ``benchmarks/RESULTS.md`` under this host's kind
(``--no-write``: print only). About 25 s on a float32-only host, 50 s on a bf16-native one.

Usage: python benchmarks/bench_peak.py [--tokens 2048] [--threads N] [--seconds 1.5] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import host_facts, machine_facts, skip_emulated_bf16, write_host_rows  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048, help="activation rows (batch x sequence)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seconds", type=float, default=1.5, help="length of each timed round")
    parser.add_argument("--no-write", action="store_true", help="print the table without updating RESULTS.md")
    args = parser.parse_args(argv)

    import torch

    from rella_hf.hardware import SMOLLM2_LINEAR_SHAPES, matmul_gflops

    if args.threads:
        torch.set_num_threads(args.threads)
    facts = host_facts(measure=False)
    dtypes = ["float32"] + ([] if skip_emulated_bf16("the bfloat16 column") else ["bfloat16"])
    lines = [f"Run {time.strftime('%Y-%m-%d %H:%M')}, `python benchmarks/bench_peak.py --tokens {args.tokens} "
             f"--seconds {args.seconds}`; {facts.describe()}; {machine_facts()}; torch {torch.__version__}, "
             f"CPU capability {torch.backends.cpu.get_cpu_capability()}", "",
             f"| matmul ({args.tokens} tokens) | in x out | " + " | ".join(f"{d} GFLOP/s" for d in dtypes)
             + (" | bf16 / fp32 |" if len(dtypes) == 2 else " |"),
             "|---|---|" + "---|" * (len(dtypes) + (len(dtypes) == 2))]
    print("\n".join(lines), flush=True)
    best = dict.fromkeys(dtypes, 0.0)
    for name, (fan_in, fan_out) in SMOLLM2_LINEAR_SHAPES.items():
        rates = {dtype: matmul_gflops(dtype, args.tokens, fan_in, fan_out, args.seconds) for dtype in dtypes}
        if name.startswith("mlp"):
            best = {dtype: max(best[dtype], rate) for dtype, rate in rates.items()}
        row = f"| {name} | {fan_in} x {fan_out} | " + " | ".join(f"{rates[d]:.0f}" for d in dtypes) + " |"
        if len(dtypes) == 2:
            row += f" {rates['bfloat16'] / rates['float32']:.2f}x |"
        lines.append(row)
        print(row, flush=True)
    summary = f"matmul peak: float32 {best['float32']:.0f} GFLOP/s"
    summary += (f", bfloat16 {best['bfloat16']:.0f} GFLOP/s ({best['bfloat16'] / best['float32']:.2f}x)"
                if "bfloat16" in best else ", bfloat16 not measured (emulated on this host)")
    summary += f", {torch.get_num_threads()} threads ({facts.kind} host)"
    lines += ["", summary]
    print(summary)
    if not args.no_write:
        write_host_rows("bench_peak", facts.kind, "\n".join(lines))


if __name__ == "__main__":
    main()
