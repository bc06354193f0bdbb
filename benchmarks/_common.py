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
