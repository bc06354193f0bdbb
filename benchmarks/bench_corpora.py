"""Wall time and peak RSS of reading a corpus and building its samples, and of its collaborative statistics.

Usage: python benchmarks/bench_corpora.py            (both corpora, each in a fresh process)
       python benchmarks/bench_corpora.py ml-1m      (one of them, in this process)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_facts, ml1m_shared_copy, peak_rss_mb  # noqa: E402


def measure(name: str) -> None:
    from rella_hf.collaborative import CollaborativeIndex
    from rella_hf.samples import load_samples

    data_dir = ml1m_shared_copy() if name == "ml-1m" else None
    start = time.perf_counter()
    samples = load_samples(name, data_dir=data_dir)
    elapsed = time.perf_counter() - start
    sizes = " / ".join(f"{len(frame):,}" for frame in samples.splits.values())
    # The statistics of every sample of every split (what a collaborative build adds), on top of the samples.
    start = time.perf_counter()
    index = CollaborativeIndex(samples)
    for frame in samples.splits.values():
        index.statistics(frame)
    statistics = time.perf_counter() - start
    print(f"| {name} | {sum(len(f) for f in samples.splits.values()):,} ({sizes}) | {elapsed:.2f} | {statistics:.2f} | "
          f"{peak_rss_mb():.0f} |")


def main() -> None:
    if len(sys.argv) > 1:
        measure(sys.argv[1])
        return
    print(f"Machine: {machine_facts()}")
    print("| corpus | samples (train / validation / test) | wall s (read + samples + split) | collaborative statistics s "
          "| peak RSS MiB |")
    print("|---|---|---|---|---|")
    for name in ("ml-1m", "ml-latest-small"):
        subprocess.run([sys.executable, __file__, name], check=True)


if __name__ == "__main__":
    main()
