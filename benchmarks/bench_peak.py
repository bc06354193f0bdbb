"""The machine's matmul peak at SmolLM2-135M's own shapes: float32 vs bfloat16, the threads in use.

Every throughput figure of the other benchmarks is divided by the bf16 peak measured here (they
call the same :func:`_common.matmul_peak` in their own run, so both come from one machine state).

Usage: python benchmarks/bench_peak.py [--tokens 2048] [--threads N] [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SMOLLM2_LINEAR_SHAPES, machine_facts, matmul_gflops  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048, help="activation rows (batch x sequence)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seconds", type=float, default=1.5, help="length of each timed round")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"Machine: {machine_facts()}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"| matmul ({args.tokens} tokens) | in x out | float32 GFLOP/s | bfloat16 GFLOP/s | bf16 / fp32 |")
    print("|---|---|---|---|---|")
    best = {"float32": 0.0, "bfloat16": 0.0}
    for name, (fan_in, fan_out) in SMOLLM2_LINEAR_SHAPES.items():
        rates = {dtype: matmul_gflops(dtype, args.tokens, fan_in, fan_out, args.seconds) for dtype in best}
        if name.startswith("mlp"):
            best = {dtype: max(best[dtype], rate) for dtype, rate in rates.items()}
        print(f"| {name} | {fan_in} x {fan_out} | {rates['float32']:.0f} | {rates['bfloat16']:.0f} | "
              f"{rates['bfloat16'] / rates['float32']:.2f}x |")
    print(f"matmul peak: float32 {best['float32']:.0f} GFLOP/s, bfloat16 {best['bfloat16']:.0f} GFLOP/s "
          f"({best['bfloat16'] / best['float32']:.2f}x), {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
