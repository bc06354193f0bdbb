"""Helpers shared by the benchmark scripts: where ../shared data lives, machine facts, RSS."""

from __future__ import annotations

import os
import platform
import resource
import tempfile
from pathlib import Path

SHARED_DATA = Path(os.environ.get("RELLA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_facts() -> str:
    """One line: CPU count, memory, Python and platform."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs, {memory:.0f} GiB RAM, Python {platform.python_version()}, {platform.platform()}"


def ml1m_shared_copy() -> Path:
    """A folder holding the ../shared ML-1M copy under the release names (ratings gzipped, users 1-2999).

    Raises:
        SystemExit: when ../shared is not there (benchmarks need it; tests never do).
    """
    source = SHARED_DATA / "ml-1m"
    if not (source / "ratings.partial.dat.gz").exists():
        raise SystemExit(f"the ML-1M copy is not at {source}; set RELLA_SHARED_DATA to the shared data folder")
    folder = Path(tempfile.mkdtemp(prefix="rella-ml1m-"))
    for name in ("users.dat", "movies.dat"):
        (folder / name).symlink_to(source / name)
    (folder / "ratings.dat.gz").symlink_to(source / "ratings.partial.dat.gz")
    return folder


#: SmolLM2-135M's matmul shapes (hidden 576, MLP 1536, k/v 192, vocabulary 49,152), as (in, out).
SMOLLM2_LINEAR_SHAPES = {"mlp up/gate": (576, 1536), "mlp down": (1536, 576), "q/o": (576, 576),
                         "k/v": (576, 192), "lm_head": (576, 49152)}


def matmul_gflops(dtype: str, tokens: int = 2048, in_features: int = 576, out_features: int = 1536,
                  seconds: float = 1.5) -> float:
    """Sustained GFLOP/s of ``tokens x in_features @ in_features x out_features`` in ``dtype`` on this machine.

    Runs ``torch.nn.functional.linear`` (the call every model layer makes) with the thread count
    torch uses now, for about ``seconds`` after a warm-up, and returns the best of three rounds.

    Args:
        dtype: ``"float32"`` or ``"bfloat16"``.
        tokens: rows of the activation (batch x sequence).
        in_features: hidden size going in.
        out_features: hidden size coming out.
        seconds: length of each timed round.
    """
    import time

    import torch

    torch_dtype = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(0)
    activation = torch.randn(tokens, in_features, generator=generator).to(torch_dtype)
    weight = torch.randn(out_features, in_features, generator=generator).to(torch_dtype)
    flops = 2.0 * tokens * in_features * out_features
    with torch.inference_mode():
        for _ in range(3):
            torch.nn.functional.linear(activation, weight)
        best = 0.0
        for _ in range(3):
            calls, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds:
                torch.nn.functional.linear(activation, weight)
                calls += 1
            best = max(best, calls * flops / elapsed / 1e9)
    return best


def matmul_peak(seconds: float = 1.5) -> dict[str, float]:
    """The machine's matmul peak in GFLOP/s, per dtype: the best SmolLM2 MLP shape at 2,048 tokens.

    The MLP projections (576 x 1536 and back) are the largest matmuls of a SmolLM2 layer; their
    rate is the denominator of every "% of peak" figure the benchmarks print.
    """
    peak = {}
    for dtype in ("float32", "bfloat16"):
        peak[dtype] = max(matmul_gflops(dtype, 2048, *SMOLLM2_LINEAR_SHAPES[name], seconds=seconds)
                          for name in ("mlp up/gate", "mlp down"))
    return peak
