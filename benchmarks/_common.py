"""Helpers shared by the benchmark scripts: where ../shared data lives, machine facts, host kind, RSS, RESULTS.md rows.

The matmul probe and the bf16 check are the library's own (:mod:`rella_hf.hardware`), not copies.
"""

from __future__ import annotations

import os
import platform
import resource
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
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


def host_facts(measure: bool = True):
    """This host's :class:`rella_hf.hardware.HostFacts` (kind, CPU, cores, the one matmul probe; bf16 only where native)."""
    from rella_hf.hardware import probe_host

    return probe_host(seconds=1.5, rounds=3, measure=measure) if measure else probe_host(measure=False)


def skip_emulated_bf16(what: str) -> bool:
    """Print one line and return True when bf16 is emulated on this host (so ``what`` is not run)."""
    from rella_hf.hardware import FORCE_FLOAT32_ENV, cpu_has_native_bf16, forced_float32

    if cpu_has_native_bf16():
        return False
    reason = f"${FORCE_FLOAT32_ENV}=1" if forced_float32() else "no AVX512-BF16 or AMX on this CPU"
    print(f"skipped {what}: bfloat16 is emulated on this host ({reason}), slower than float32 and not what it runs.")
    return True


def replace_marked_block(marker: str, text: str, path: Path = RESULTS) -> None:
    """Put ``text`` between the ``<!-- {marker}:start/end -->`` comments of ``path`` (appended when absent),
    leaving every other block as it is."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    current = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{start}\n{text.strip()}\n{end}"
    if start in current and end in current:
        head, rest = current.split(start, 1)
        current = head + block + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + f"\n\n{block}\n"
    path.write_text(current)


def write_host_rows(bench: str, kind: str, text: str, path: Path = RESULTS) -> None:
    """Put ``text`` between the ``<!-- {bench}:{kind}:start/end -->`` markers of RESULTS.md (appended when absent).

    RESULTS.md keeps one block per benchmark and host kind (``bf16-native``, ``float32-only``); a run replaces
    only its own block, so the other host kind's rows stay.
    """
    replace_marked_block(f"{bench}:{kind}", text, path)
    print(f"wrote the {kind} rows of {bench} into {path}")
