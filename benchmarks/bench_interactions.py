"""``interactions`` on the ML-25M-shaped synthetic corpus as parquet, beside the registered ``ml-25m`` reader.

The synthetic corpus of ``synth_corpus.py`` (``/tmp/rella-synth/<percent>pct``) is written once
more as ``ratings.parquet`` beside a copy of ``movies.csv`` (``/tmp/rella-synth/<percent>pct-parquet``;
the conversion is not timed). Each measurement runs in a fresh process, so its peak RSS is its own:

- ``read+samples``: ``corpus.read(folder)`` and :func:`rella_hf.samples.build_samples` with the
  paper's sampled splits (90,000 train, 10,000 validation, 70,000 test) — the part of a build in
  which the two corpora differ (retrieval and rendering are the same code on the same samples);
- ``load_dataset``: ``rella_hf.load_dataset(..., K=30, retrieval="recent", chat_model=None)`` end to
  end into a fresh cache folder, with the same sampled splits (``--no-builder`` skips it).

The two corpora are measured alternately, ``--rounds`` times each (median reported), and their
samples are checked equal (every field but ``item_row``, an index into each corpus's own item table).

Usage: python benchmarks/bench_interactions.py --percent 10 [--rounds 3] [--builder-rounds 1] [--no-builder]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_facts, peak_rss_mb  # noqa: E402
from synth_corpus import default_folder, generate  # noqa: E402

SPLITS = {"train_sample_size": 90_000, "validation_sample_size": 10_000, "test_sample_size": 70_000}
#: The synthetic ratings.csv / movies.csv, mapped through the ``interactions`` fields.
MAPPING = dict(interactions_file="ratings.parquet", items_file="movies.csv", user_column="userId",
               item_column="movieId", user_id_type="int", item_id_type="int", timestamp_unit="seconds",
               rating_min=0.5, rating_step=0.5, item_text_columns="title,genres", item_noun="movie",
               interaction_verb="watched")


def parquet_folder(percent: float) -> Path:
    """The corpus of ``percent`` with its ratings as parquet (written once; ``movies.csv`` copied)."""
    source = generate(percent / 100, default_folder(percent / 100), progress=True)
    target = Path(f"{source}-parquet")
    if not (target / "ratings.parquet").exists():
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / "movies.csv", target / "movies.csv")
        table = pacsv.read_csv(source / "ratings.csv")
        pq.write_table(table, target / "ratings.parquet.partial")
        os.replace(target / "ratings.parquet.partial", target / "ratings.parquet")
    return target


def _samples_digest(samples) -> str:
    digest = hashlib.sha256()
    for name, frame in samples.splits.items():
        digest.update(name.encode())
        for column in ("sample_id", "user_id", "item_id", "rating", "label", "timestamp", "history_length"):
            digest.update(frame[column].to_numpy().tobytes())
    return digest.hexdigest()


def measure(kind: str, percent: float, builder: bool) -> dict:
    """One measurement in this process: ``kind`` is ``ml-25m`` or ``interactions``."""
    from rella_hf.corpora import get_corpus
    from rella_hf.samples import SampleProtocol, build_samples

    folder = default_folder(percent / 100) if kind == "ml-25m" else parquet_folder(percent)
    settings = {} if kind == "ml-25m" else MAPPING
    out: dict = {"kind": kind, "percent": percent}
    started = time.perf_counter()
    if builder:
        import rella_hf

        cache = Path(tempfile.mkdtemp(prefix="rella-bench-interactions-", dir="/tmp"))
        try:
            dataset = rella_hf.load_dataset(kind, K=30, data_dir=folder, cache_dir=cache, chat_model=None, **SPLITS,
                                            **settings)
            out["seconds"] = time.perf_counter() - started
            out["rows"] = {name: len(split) for name, split in dataset.items()}
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    else:
        corpus = get_corpus(kind, settings)
        tables = corpus.read(folder)
        out["read_seconds"] = time.perf_counter() - started
        samples = build_samples(corpus, tables, SampleProtocol(**SPLITS))
        out["seconds"] = time.perf_counter() - started
        out["interactions"] = len(tables.interactions)
        out["digest"] = _samples_digest(samples)
    out["rss_peak_mb"] = peak_rss_mb()
    return out


def _child(kind: str, percent: float, builder: bool) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        target = handle.name
    try:
        command = [sys.executable, __file__, "--child", kind, "--percent", str(percent), "--json", target]
        subprocess.run(command + (["--builder"] if builder else []), check=True)
        return json.loads(Path(target).read_text())
    finally:
        os.unlink(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--percent", type=float, default=10.0, help="scale of ML-25M in percent")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of read+samples per corpus")
    parser.add_argument("--builder-rounds", type=int, default=1, help="rounds of load_dataset per corpus")
    parser.add_argument("--no-builder", action="store_true", help="skip the load_dataset end-to-end measurement")
    parser.add_argument("--child", choices=("ml-25m", "interactions"), help=argparse.SUPPRESS)
    parser.add_argument("--builder", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        Path(args.json).write_text(json.dumps(measure(args.child, args.percent, args.builder)))
        return
    parquet_folder(args.percent)  # written before anything is timed
    print(f"# bench_interactions: {args.percent:g} % of ML-25M, {machine_facts()}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    parts = [("read+samples", False, args.rounds)]
    parts += [] if args.no_builder else [("load_dataset K=30 recent", True, args.builder_rounds)]
    for label, builder, rounds in parts:
        results = {"ml-25m": [], "interactions": []}
        for _ in range(rounds):
            for kind in results:
                results[kind].append(_child(kind, args.percent, builder))
        print(f"\n{label} (median of {rounds}; peak RSS: the largest of the rounds)")
        print("| corpus | files | seconds | peak RSS MiB |\n|---|---|---|---|")
        for kind, runs in results.items():
            files = "ratings.csv + movies.csv" if kind == "ml-25m" else "ratings.parquet + movies.csv"
            seconds = statistics.median(run["seconds"] for run in runs)
            print(f"| {kind} | {files} | {seconds:.2f} | {max(run['rss_peak_mb'] for run in runs):,.0f} |")
        if not builder:
            digests = {kind: {run["digest"] for run in runs} for kind, runs in results.items()}
            same = len(digests["ml-25m"] | digests["interactions"]) == 1
            print(f"\nsamples identical (all fields but item_row): {same}; "
                  f"{results['ml-25m'][0]['interactions']:,} ratings")
        else:
            print(f"\nrows: {results['interactions'][0]['rows']} (ml-25m: {results['ml-25m'][0]['rows']})")


if __name__ == "__main__":
    main()
