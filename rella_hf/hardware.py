"""What this machine computes fast: native bf16 on the CPU, the matmul rate per dtype, the host kind.

There are two host kinds. **bf16-native** CPUs (AVX512-BF16 or AMX) run bfloat16 matmuls several
times faster than float32, so models compute in bf16 there. **float32-only** CPUs (AVX2, AVX-512
without BF16) emulate bf16, slower than float32, so everything stays float32. The compute dtype
(:func:`rella_hf.models.default_dtype`), the demo's recipe and the benchmarks' variants all follow
:func:`cpu_has_native_bf16`; ``$RELLA_HF_FORCE_FLOAT32=1`` makes it answer False on any CPU, which
reproduces a float32-only host on a bf16-native one.

:func:`matmul_gflops` is the one matmul probe (``torch.nn.functional.linear`` at SmolLM2-135M's
shapes); ``benchmarks/bench_peak.py`` and the demo's host line both call it. It never sizes a run:
recipes are fixed per compute dtype so that results stay reproducible per host kind.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from typing import Optional

from .errors import ModelError

#: Set to 1 to treat this CPU as float32-only (no native bf16); 0 or unset: ask the CPU.
FORCE_FLOAT32_ENV = "RELLA_HF_FORCE_FLOAT32"

#: SmolLM2-135M's matmul shapes (hidden 576, MLP 1536, k/v 192, vocabulary 49,152), as (in, out).
SMOLLM2_LINEAR_SHAPES = {"mlp up/gate": (576, 1536), "mlp down": (1536, 576), "q/o": (576, 576),
                         "k/v": (576, 192), "lm_head": (576, 49152)}

#: The host kinds, as tagged in ``benchmarks/RESULTS.md`` and the demo's timing table.
BF16_NATIVE, FLOAT32_ONLY = "bf16-native", "float32-only"


def forced_float32() -> bool:
    """Whether ``$RELLA_HF_FORCE_FLOAT32`` asks for the float32-only path (1/true/yes; 0/false/no/unset: no)."""
    value = os.environ.get(FORCE_FLOAT32_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ModelError(f"${FORCE_FLOAT32_ENV}={value!r} is not understood; set it to 1 (float32 only) or 0 (ask the CPU).")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where bf16 pays off.

    ``$RELLA_HF_FORCE_FLOAT32=1`` makes it answer False on any CPU (the float32-only host kind).
    """
    if forced_float32():
        return False
    import torch

    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:  # private probes may be missing on some builds
            continue
    return False


def host_kind() -> str:
    """``"bf16-native"`` or ``"float32-only"``, from :func:`cpu_has_native_bf16` (so the switch applies)."""
    return BF16_NATIVE if cpu_has_native_bf16() else FLOAT32_ONLY


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`), or "unknown CPU"."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under ``taskset``), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def matmul_gflops(dtype: str, tokens: int = 2048, in_features: int = 576, out_features: int = 1536,
                  seconds: float = 1.5, rounds: int = 3) -> float:
    """Sustained GFLOP/s of ``tokens x in_features @ in_features x out_features`` in ``dtype`` on this machine.

    Runs ``torch.nn.functional.linear`` (the call every model layer makes) with the thread count
    torch uses now, for about ``seconds`` per round after a warm-up, and returns the best round.

    Args:
        dtype: ``"float32"`` or ``"bfloat16"``.
        tokens: rows of the activation (batch x sequence).
        in_features: hidden size going in.
        out_features: hidden size coming out.
        seconds: length of each timed round.
        rounds: timed rounds; the best one counts.
    """
    import torch

    if dtype not in ("float32", "bfloat16"):
        raise ModelError(f"dtype={dtype!r}: the matmul probe measures float32 or bfloat16.")
    if seconds <= 0 or rounds < 1:
        raise ModelError(f"seconds={seconds}, rounds={rounds}: expected seconds > 0 and at least one round.")
    torch_dtype = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(0)
    activation = torch.randn(tokens, in_features, generator=generator).to(torch_dtype)
    weight = torch.randn(out_features, in_features, generator=generator).to(torch_dtype)
    flops = 2.0 * tokens * in_features * out_features
    best = 0.0
    with torch.inference_mode():
        torch.nn.functional.linear(activation, weight)
        for _ in range(rounds):
            calls, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds:
                torch.nn.functional.linear(activation, weight)
                calls += 1
            best = max(best, calls * flops / elapsed / 1e9)
    return best


def matmul_peak(seconds: float = 1.5, rounds: int = 3, bf16: Optional[bool] = None) -> dict[str, Optional[float]]:
    """The machine's matmul peak in GFLOP/s per dtype: the best SmolLM2 MLP shape at 2,048 tokens.

    Args:
        seconds: length of each timed round.
        rounds: timed rounds per shape and dtype.
        bf16: measure bfloat16 too; default only where the CPU computes it natively (an emulated
            bf16 rate is slow to measure and says nothing anyone should use). Skipped: ``None``.
    """
    measure_bf16 = cpu_has_native_bf16() if bf16 is None else bf16
    peak: dict[str, Optional[float]] = {}
    for dtype in ("float32", "bfloat16"):
        if dtype == "bfloat16" and not measure_bf16:
            peak[dtype] = None
            continue
        peak[dtype] = max(matmul_gflops(dtype, 2048, *SMOLLM2_LINEAR_SHAPES[name], seconds=seconds, rounds=rounds)
                          for name in ("mlp up/gate", "mlp down"))
    return peak


@dataclass
class HostFacts:
    """One host's kind, as the demo prints it and the benchmarks tag their rows.

    Attributes:
        cpu: CPU model name.
        cores: cores this process may use; threads: torch's thread count.
        native_bf16: :func:`cpu_has_native_bf16` (False where ``$RELLA_HF_FORCE_FLOAT32=1``).
        forced_float32: whether the switch is set.
        float32_gflops / bf16_gflops: the :func:`matmul_peak` probe; ``bf16_gflops`` is None where bf16 is
            emulated (not measured) or when no probe ran.
    """

    cpu: str
    cores: int
    threads: int
    native_bf16: bool
    forced_float32: bool
    float32_gflops: Optional[float] = None
    bf16_gflops: Optional[float] = None

    @property
    def kind(self) -> str:
        """``"bf16-native"`` or ``"float32-only"``."""
        return BF16_NATIVE if self.native_bf16 else FLOAT32_ONLY

    def describe(self) -> str:
        """One line: kind, CPU, cores/threads, the switch, the probe's GFLOP/s (saying when bf16 was skipped)."""
        line = (f"{self.kind} host: {self.cpu}, {self.cores} cores, {self.threads} torch threads, "
                f"cpu_has_native_bf16()={self.native_bf16}")
        if self.forced_float32:
            line += f" (forced by ${FORCE_FLOAT32_ENV}=1)"
        if self.float32_gflops is not None:
            line += f"; matmul float32 {self.float32_gflops:.0f} GFLOP/s"
            line += (f", bfloat16 {self.bf16_gflops:.0f} GFLOP/s" if self.bf16_gflops is not None
                     else ", bfloat16 not measured (emulated on this host)")
        return line

    def to_dict(self) -> dict:
        """The facts as a JSON-ready dict, ``kind`` included."""
        return {**asdict(self), "kind": self.kind}


def probe_host(seconds: float = 0.4, rounds: int = 2, measure: bool = True) -> HostFacts:
    """This host's :class:`HostFacts`; with ``measure``, a short matmul probe (defaults: under 5 s in all).

    Args:
        seconds: length of each timed round of :func:`matmul_gflops`.
        rounds: timed rounds per shape and dtype (2 shapes; bf16 only where native).
        measure: run the probe; False fills only the facts that cost nothing.
    """
    import torch

    native = cpu_has_native_bf16()
    facts = HostFacts(cpu=cpu_model(), cores=usable_cores(), threads=torch.get_num_threads(), native_bf16=native,
                      forced_float32=forced_float32())
    if measure:
        peak = matmul_peak(seconds=seconds, rounds=rounds, bf16=native)
        facts.float32_gflops, facts.bf16_gflops = peak["float32"], peak["bfloat16"]
    return facts
