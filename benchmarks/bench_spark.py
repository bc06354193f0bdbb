"""The Spark engine against the in-process one: identical rows, then time and memory at scale.

1. ``--equality``: the ../shared ML-1M copy (users 1-2999), K=5 and K=30, recent and semantic
   (MiniLM embeddings, the default SmolLM2 chat template): each configuration is built once per
   engine, each in a fresh process with its own empty ``datasets`` cache; every row is hashed
   (sha256 of its JSON) and every split compared as a list (in order) and as a multiset. Prints
   ``spark equality: X/Y rows identical`` (X = rows equal at the same position, Y = rows built
   in-process, over all configurations and splits).
2. ``--scale``: the synthetic ML-25M-format corpus (``synth_corpus.py``) at 2.5 M and 25 M
   ratings, and 100 M ratings as the 25 M corpus with its users repeated four times under new ids
   (``tiled_corpus``; the generator itself stops at ML-25M's size); K=30 SUBR, the paper's sample
   sizes (90,000 train, 70,000 test, validation 10,000), the Vicuna wrapper, stand-in embeddings
   (``bench_scale.standin_embeddings``, not MiniLM). Each engine runs in a fresh process: Spark on
   ``local[2]`` with 6 GB of JVM memory (driver = executor in local mode). Peak memory is the peak
   sum of RSS over the process tree (driver, JVM, Python workers), sampled every 0.5 s by this
   script, which kills a tree that passes ``--memory-cap-gb`` and records it. Runs of 25 M ratings
   and more wait for the CPU grant file (``--grant-file``), polling every minute.

Results go to benchmarks/RESULTS.md (between the ``bench_spark`` markers).

Usage: python benchmarks/bench_spark.py --equality
       python benchmarks/bench_spark.py --scale [--millions 2.5 25 100] [--grant-deadline-min 90]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_facts, ml1m_shared_copy, replace_marked_block  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
SYNTH_25M_USERS = 162_541
MILLIONS_TO_PERCENT = {2.5: 10, 25: 100}


# --------------------------------------------------------------------------------------------
# Children: one build each, in a fresh process
# --------------------------------------------------------------------------------------------


def _spark(memory: str, partitions: int):
    from rella_hf.spark import spark_session

    local = Path(tempfile.mkdtemp(prefix="rella-spark-local-", dir="/tmp"))
    return spark_session("local[2]", {"spark.driver.memory": memory, "spark.sql.shuffle.partitions": str(partitions),
                                      "spark.local.dir": str(local)})


def _row_hashes(dataset) -> dict[str, list[str]]:
    hashes = {}
    for name, split in dataset.items():
        rows = []
        for batch in split.data.table.to_batches(max_chunksize=10_000):
            rows += [hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
                     for row in batch.to_pylist()]
        hashes[name] = rows
    return hashes


def child_equality(engine: str, K: int, retrieval: str, collaborative: str = "none") -> dict:
    """Build the ML-1M copy with ``engine`` (and the ``collaborative`` prompt option) and hash every row."""
    import rella_hf

    cache = Path(tempfile.mkdtemp(prefix="rella-bench-spark-", dir="/tmp"))
    extra = {}
    if engine == "spark":
        extra = {"engine": "spark", "spark_session": _spark("4g", 8)}
    try:
        started = time.perf_counter()
        dataset = rella_hf.load_dataset("ml-1m", K=K, retrieval=retrieval, data_dir=ml1m_shared_copy(), cache_dir=cache,
                                        collaborative=collaborative, **extra)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "hashes": _row_hashes(dataset), "module": rella_hf.__file__}
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def child_scale(engine: str, folder: str, partitions: int) -> dict:
    """Build the synthetic corpus in ``folder`` (K=30 SUBR, paper's sample sizes) with ``engine``."""
    from bench_scale import TEST, TRAIN, VALIDATION, standin_embeddings

    import rella_hf
    import rella_hf.builders.base as base

    base.item_embeddings = lambda samples, config: standin_embeddings(samples.items)  # labelled stand-in
    cache = Path(tempfile.mkdtemp(prefix="rella-bench-spark-", dir="/tmp"))
    extra = {}
    if engine == "spark":
        extra = {"engine": "spark", "spark_session": _spark("6g", partitions)}
    try:
        started = time.perf_counter()
        dataset = rella_hf.load_dataset("ml-25m", K=30, retrieval="semantic", data_dir=folder, cache_dir=cache,
                                        chat_model=None, train_sample_size=TRAIN, validation_sample_size=VALIDATION,
                                        test_sample_size=TEST, **extra)
        seconds = time.perf_counter() - started
        digests = {name: hashlib.sha256("".join(rows).encode()).hexdigest() for name, rows in _row_hashes(dataset).items()}
        return {"seconds": seconds, "rows": {name: len(split) for name, split in dataset.items()}, "digests": digests}
    finally:
        shutil.rmtree(cache, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The parent: children under a memory watchdog
# --------------------------------------------------------------------------------------------


def _tree_rss_mb(process) -> float:
    import psutil

    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def run_child(arguments: list[str], cap_gb: float) -> dict:
    """Run ``bench_spark.py --child ...`` at nice 19, sampling its process tree's RSS; kill it past ``cap_gb``."""
    import psutil

    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        target = handle.name
    command = ["nice", "-n", "19", sys.executable, __file__, *arguments, "--json", target]
    started = time.perf_counter()
    child = subprocess.Popen(command, start_new_session=True)
    process = psutil.Process(child.pid)
    peak, killed = 0.0, False
    while child.poll() is None:
        peak = max(peak, _tree_rss_mb(process))
        if peak > cap_gb * 1024 and not killed:
            killed = True
            os.killpg(child.pid, 9)  # the child's own session: itself, its JVM and Python workers
        time.sleep(0.5)
    wall = time.perf_counter() - started
    result = {"returncode": child.returncode, "peak_tree_rss_mb": peak, "wall": wall, "killed_at_cap": killed}
    try:
        if child.returncode == 0:
            result.update(json.loads(Path(target).read_text()))
    finally:
        os.unlink(target)
    return result


def tiled_corpus(source: Path, copies: int, out: Path) -> Path:
    """``source``'s ML-25M-format corpus with its ratings repeated ``copies`` times, copy k's users
    renumbered ``user + k * 162,541`` (streamed: a few hundred MB of memory). Reused when present."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    done = out / "TILED.json"
    meta = {"source": str(source), "copies": copies, "source_bytes": (source / "ratings.csv").stat().st_size}
    if done.exists() and json.loads(done.read_text()) == meta:
        return out
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "movies.csv", out / "movies.csv")
    users = int(SYNTH_25M_USERS)
    read = pacsv.ReadOptions(block_size=64 << 20)
    convert = pacsv.ConvertOptions(column_types={"userId": pa.int64(), "movieId": pa.string(), "rating": pa.string(),
                                                 "timestamp": pa.string()})
    options = pacsv.WriteOptions(eol="\r\n", quoting_style="none", include_header=False)
    temporary = out / ".ratings.csv.tmp"
    with open(temporary, "wb") as sink:
        sink.write(b"userId,movieId,rating,timestamp\r\n")
        for copy in range(copies):
            with pacsv.open_csv(source / "ratings.csv", read_options=read, convert_options=convert) as reader:
                for batch in reader:
                    shifted = batch.set_column(0, "userId", pa.compute.add(batch.column(0), copy * users))
                    buffer = pa.BufferOutputStream()
                    pacsv.write_csv(pa.Table.from_batches([shifted]), buffer, write_options=options)
                    sink.write(buffer.getvalue().to_pybytes())
    os.replace(temporary, out / "ratings.csv")
    done.write_text(json.dumps(meta))
    return out


def wait_for_grant(grant: Path, deadline: float) -> bool:
    """Poll for the CPU grant file every minute until ``deadline`` (epoch seconds); whether it came."""
    while not grant.exists():
        if time.time() > deadline:
            return False
        print(f"waiting for {grant} ...", file=sys.stderr, flush=True)
        time.sleep(60)
    return True


# --------------------------------------------------------------------------------------------
# Parts and report
# --------------------------------------------------------------------------------------------


def _replace_section(name: str, text: str) -> None:
    replace_marked_block(f"bench_spark:{name}", text, RESULTS)


def equality(cap_gb: float, collaborative: str = "none") -> int:
    """Part 1; returns the number of configurations whose rows differ. With ``collaborative`` other than
    "none": K=5 only, both retrievals, in a section of its own."""
    lines, identical, total, failures = [], 0, 0, 0
    for K in (5, 30) if collaborative == "none" else (5,):
        for retrieval in ("recent", "semantic"):
            runs = {engine: run_child(["--child", "equality", "--engine", engine, "--K", str(K), "--retrieval", retrieval,
                                       "--collaborative", collaborative], cap_gb) for engine in ("inprocess", "spark")}
            for engine, run in runs.items():
                if run["returncode"] != 0:
                    raise SystemExit(f"{engine} K={K} {retrieval} failed (exit {run['returncode']})")
            a, b = runs["inprocess"]["hashes"], runs["spark"]["hashes"]
            timing = (f"{runs['inprocess']['seconds']:.1f} s / {runs['spark']['seconds']:.1f} s; "
                      f"{runs['inprocess']['peak_tree_rss_mb']:,.0f} / {runs['spark']['peak_tree_rss_mb']:,.0f} MiB")
            for split in sorted(set(a) | set(b)):
                left, right = a.get(split, []), b.get(split, [])
                same = sum(x == y for x, y in zip(left, right))
                as_set = Counter(left) == Counter(right)
                identical += same
                total += len(left)
                failures += not (left == right and as_set)
                lines.append(f"| {K} | {retrieval} | {split} | {len(left):,} | {len(right):,} | {same:,} | "
                             f"{'yes' if as_set else 'NO'} | {timing} |")
                print(lines[-1], flush=True)
            _write_equality(lines, identical, total, done=False, collaborative=collaborative)
    _write_equality(lines, identical, total, done=True, collaborative=collaborative)
    return failures


def _write_equality(lines: list[str], identical: int, total: int, done: bool, collaborative: str = "none") -> None:
    """Write part 1's section (after every configuration, so an interrupted run keeps what it measured)."""
    summary = f"spark equality: {identical:,}/{total:,} rows identical"
    option = "" if collaborative == "none" else f" --collaborative {collaborative}"
    section = "equality" if collaborative == "none" else f"equality-collaborative-{collaborative}"
    if done:
        print(summary)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    _replace_section(section, "\n".join([
        f"## Spark engine: the same rows as the in-process engine (`benchmarks/bench_spark.py --equality{option}`)",
        "",
        f"Run {when}; machine: {machine_facts()}; Spark `local[2]`, 8 shuffle partitions, 4 GB driver memory. "
        "Corpus: the ../shared ML-1M copy (users 1-2999, 487,650 ratings); default settings (MiniLM embeddings, "
        "SmolLM2 chat template, whole splits). Each build runs in a fresh process with an empty cache; rows are "
        "sha256 of their JSON. Times and memory are the whole child process (start-up included) on a machine "
        "shared with training jobs, at nice 19: they measure contention as much as the engines.",
        "",
        "| K | retrieval | split | in-process rows | Spark rows | identical in order | same multiset | "
        "build time in-process / Spark; peak memory |",
        "|---|---|---|---|---|---|---|---|",
        *lines,
        "",
        f"**{summary}**" + ("" if done else " so far (the run was still going)")
        + f" (command: `python benchmarks/bench_spark.py --equality{option}`)",
    ]))


def _exponent(sizes, seconds) -> float:
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def scale(millions: list[float], cap_gb: float, grant: Path, deadline: float) -> None:
    """Part 2."""
    from synth_corpus import default_folder, generate

    rows, measured = [], {"spark": {}, "inprocess": {}}
    for size in millions:
        if size in MILLIONS_TO_PERCENT:
            folder = generate(MILLIONS_TO_PERCENT[size] / 100, default_folder(MILLIONS_TO_PERCENT[size] / 100))
        elif size == 100:
            folder = tiled_corpus(default_folder(1.0), 4, Path("/tmp/rella-synth/400pct-tiled"))
        else:
            raise SystemExit(f"--millions {size}: expected 2.5, 25 or 100")
        partitions = max(8, int(size * 2))
        for engine in ("spark", "inprocess"):
            if size >= 25 and not wait_for_grant(grant, deadline):
                rows.append(f"| {size:g} M | {engine} | not run: no CPU grant before the deadline | | | |")
                continue
            run = run_child(["--child", "scale", "--engine", engine, "--folder", str(folder), "--partitions",
                             str(partitions)], cap_gb)
            if run["returncode"] == 0:
                measured[engine][size] = run
                status = "ok"
            elif run["killed_at_cap"]:
                status = f"killed at the {cap_gb:g} GB cap"
            else:
                status = f"failed (exit {run['returncode']})"
            print(f"{size:g} M {engine}: {status}, {run['wall']:.0f} s, peak {run['peak_tree_rss_mb']:,.0f} MiB", flush=True)
            rows.append(f"| {size:g} M | {engine} | {status} | {run.get('seconds', run['wall']):.0f} | "
                        f"{run['peak_tree_rss_mb'] / 1024:.2f} | {json.dumps(run.get('rows', {}))} |")
            _write_scale(rows, measured, cap_gb)
        both = [measured[e].get(size) for e in ("spark", "inprocess")]
        if all(both):
            same = both[0]["digests"] == both[1]["digests"]
            rows.append(f"| {size:g} M | both | rows {'IDENTICAL' if same else 'DIFFERENT'} between engines | | | |")
    _write_scale(rows, measured, cap_gb)


def _write_scale(rows: list[str], measured: dict, cap_gb: float) -> None:
    """Write part 2's section (after every run, so an interrupted run keeps what it measured)."""
    growth = []
    for engine, points in measured.items():
        if len(points) >= 2:
            sizes = sorted(points)
            growth.append(f"- {engine}: time ∝ ratings^{_exponent(sizes, [points[s]['seconds'] for s in sizes]):.2f} "
                          f"over {', '.join(f'{s:g} M' for s in sizes)}")
    target = measured["spark"].get(100)
    verdict = ("100 M ratings on Spark `local[2]`: " + (f"{target['seconds'] / 60:.1f} min — "
               f"{'met' if target['seconds'] <= 1800 else 'NOT met'} (target ≤ 30 min)" if target else "not measured"))
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    _replace_section("scale", "\n".join([
        "## Spark engine at scale (`benchmarks/bench_spark.py --scale`)",
        "",
        f"Run {when}; machine: {machine_facts()}, shared with other jobs (runs at nice 19; 25 M and above only while "
        "the CPU grant was held). K=30 SUBR (stand-in embeddings: TF-IDF + random projection, 384-d, not MiniLM), "
        "paper's sample sizes (90,000 / 10,000 / 70,000), Vicuna wrapper. Corpora: `synth_corpus.py` at 10 % "
        "(2.5 M) and 100 % (25 M) of ML-25M; 100 M = the 25 M corpus with its users repeated four times under new "
        "ids. Spark: `local[2]`, `spark.driver.memory=6g` (driver = executor in local mode), shuffle partitions "
        "= 2 per million ratings (at least 8). Memory: peak of the summed RSS of the build's process tree (Python "
        f"driver, JVM, Python workers), sampled every 0.5 s; trees above {cap_gb:g} GB are killed.",
        "",
        "| ratings | engine | status | seconds | peak memory GB | rows per split |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "Growth of build time with corpus size:" if growth else "Growth: fewer than two sizes measured per engine.",
        *growth,
        "",
        verdict,
    ]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--equality", action="store_true", help="part 1: rows of both engines on the ML-1M copy")
    parser.add_argument("--scale", action="store_true", help="part 2: time and memory on synthetic corpora")
    parser.add_argument("--millions", nargs="+", type=float, default=[2.5, 25, 100], help="corpus sizes (M ratings)")
    parser.add_argument("--collaborative", default="none", choices=["none", "item", "item+user", "all"],
                        help="--equality with this collaborative prompt option (K=5 only)")
    parser.add_argument("--memory-cap-gb", type=float, default=11.5, help="kill a build whose process tree passes this")
    parser.add_argument("--grant-file", default="/tmp/rella-cpu-grant")
    parser.add_argument("--grant-deadline-min", type=float, default=90, help="stop waiting for the grant after this")
    parser.add_argument("--child", choices=["equality", "scale"], help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--K", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--retrieval", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--partitions", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = (child_equality(args.engine, args.K, args.retrieval, args.collaborative) if args.child == "equality"
                  else child_scale(args.engine, args.folder, args.partitions))
        Path(args.json).write_text(json.dumps(result))
        return
    if not (args.equality or args.scale):
        parser.error("pass --equality and/or --scale")
    failures = equality(args.memory_cap_gb, args.collaborative) if args.equality else 0
    if args.scale:
        scale(args.millions, args.memory_cap_gb, Path(args.grant_file), time.time() + 60 * args.grant_deadline_min)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
