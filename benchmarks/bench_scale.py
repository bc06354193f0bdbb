"""Lifelong scale: time and peak RSS of every build step at 1 %, 10 % and 100 % of ML-25M.

The corpus is the synthetic ML-25M-format one of ``synth_corpus.py`` (written once to
``/tmp/rella-synth/<percent>pct``). Every scale is measured in fresh processes, so peak RSS is
honest:

1. ``--measure``: the steps one by one, as the ``ml-25m`` builder runs them, with the paper's
   sampled splits (90,000 train, 70,000 test; validation sampled to 10,000, since the builder
   renders every split it makes):
   (a) reading the CSV files, building the lifelong samples and splits;
   (b) item embeddings: a TF-IDF + random-projection stand-in (384 dimensions, like MiniLM),
       clearly not MiniLM; MiniLM itself is timed apart on the 1 % catalogue (``--minilm``) and
       extrapolated by item count;
   (c) SUBR retrieval, K=30, for train and test;
   (d) prompt rendering (Vicuna v1.1 wrapper, ``chat_model=None``) for train and test.
   Steps that parallelise run with 1 and with 2 workers: Arrow's CSV threads for (a), forked
   worker processes over sample chunks for (c) and (d) (FAISS's ``compute_distance_subset`` is
   single-threaded and holds the GIL, so neither FAISS threads nor Python threads help), and
   torch threads for MiniLM. Results of 2 workers are checked equal to those of 1.
2. ``--builder``: what users run, ``rella_hf.load_dataset("ml-25m", K=30, retrieval="semantic",
   ...)`` end to end into a fresh cache folder (embeddings patched to the same stand-in), and
   the on-disk size of the Arrow dataset it writes.

Usage: python benchmarks/bench_scale.py [--percents 1 10 100]   (writes benchmarks/RESULTS.md)
       python benchmarks/bench_scale.py --measure 10 --json out.json       (one part, this process)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_facts, peak_rss_mb  # noqa: E402
from synth_corpus import default_folder, generate, shape_for  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
K = 30
TRAIN, VALIDATION, TEST = 90_000, 10_000, 70_000
STANDIN_LABEL = "TF-IDF + random projection stand-in (384-d), not MiniLM"
_SECTION_START = "<!-- bench_scale:start -->"
_SECTION_END = "<!-- bench_scale:end -->"

# State shared with forked workers (set before the pool forks, read-only there).
_STATE: dict = {}


def _children_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _protocol_kwargs() -> dict:
    return {"train_sample_size": TRAIN, "validation_sample_size": VALIDATION, "test_sample_size": TEST}


def standin_embeddings(items) -> np.ndarray:
    """Item vectors with lexical structure, fast: TF-IDF of ReLLa's item texts, randomly projected to 384-d.

    Items sharing title or genre words get similar vectors, so SUBR has real structure to find;
    the cost of SUBR does not depend on the values, only on the dimension (MiniLM's 384).

    Args:
        items: the items table (``title``, ``genre``).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    from rella_hf.embeddings import item_texts

    counts = TfidfVectorizer(dtype=np.float32).fit_transform(item_texts(items, "movie"))
    projection = np.random.default_rng(0).standard_normal((counts.shape[1], 384)).astype(np.float32)
    return np.asarray(counts @ projection, dtype=np.float32)


def same_genre_share(samples, frame, selection) -> float:
    """Share of shown history items whose (first) genre is the target's: how much SUBR finds."""
    flat_positions, offsets = selection.flat()
    genres = samples.items["genre"].to_numpy()
    shown = genres[samples.log["item_row"].to_numpy()[flat_positions]]
    target = np.repeat(genres[frame["item_row"].to_numpy()], np.diff(offsets))
    return float((shown == target).mean()) if len(shown) else float("nan")


# --------------------------------------------------------------------------------------------
# Workers (forked: they read _STATE)
# --------------------------------------------------------------------------------------------


def _select_part(part: tuple[str, int, int]):
    split, start, stop = part
    samples, retriever = _STATE["samples"], _STATE["retriever"]
    frame = samples.splits[split].iloc[start:stop]
    return retriever.select(samples.log["item_row"].to_numpy(), frame["item_row"].to_numpy(),
                            frame["history_offset"].to_numpy(), frame["history_length"].to_numpy(), K).positions


def _render_part(part: tuple[str, int, int]):
    from rella_hf.builders.base import render_table
    from rella_hf.retrieval import HistorySelection

    split, start, stop = part
    samples, config, retriever = _STATE["samples"], _STATE["config"], _STATE["retriever"]
    positions = _STATE["positions"][split][start:stop]
    lengths = (positions >= 0).sum(axis=1)
    frame = samples.splits[split].iloc[start:stop]
    return render_table(samples, frame, HistorySelection(positions, lengths), config, None, retriever)


def _parts(samples, chunk: int) -> list[tuple[str, int, int]]:
    return [(split, start, min(start + chunk, len(samples.splits[split])))
            for split in ("train", "test") for start in range(0, len(samples.splits[split]), chunk)]


def _run_parts(function, parts, workers: int) -> list:
    if workers == 1:
        return [function(part) for part in parts]
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(function, parts, chunksize=1)


# --------------------------------------------------------------------------------------------
# One scale, step by step
# --------------------------------------------------------------------------------------------


def measure(percent: float) -> dict:
    """Steps (a)-(d) at ``percent`` of ML-25M, in this process; returns the measurements."""
    import pyarrow as pa

    from rella_hf.builders.base import ReLLaConfig
    from rella_hf.corpora import get_corpus
    from rella_hf.retrieval import SemanticRetriever, recent_history
    from rella_hf.samples import SampleProtocol, build_samples

    folder = default_folder(percent / 100)
    corpus = get_corpus("ml-25m")
    out: dict = {"percent": percent, "loadavg_start": os.getloadavg()}

    # (a) reading: Arrow's CSV reader with 1 thread, then 2 (the second's tables are used).
    timings = {}
    for threads in (1, 2):
        pa.set_cpu_count(threads)
        pa.set_io_thread_count(threads)
        started = time.perf_counter()
        tables = corpus.read(folder)
        timings[threads] = time.perf_counter() - started
        if threads == 1:
            del tables
    out["read_s"] = {"1": timings[1], "2": timings[2]}
    out["rss_after_read_mb"] = peak_rss_mb()
    started = time.perf_counter()
    samples = build_samples(corpus, tables, SampleProtocol(**_protocol_kwargs()))
    out["samples_s"] = time.perf_counter() - started
    del tables
    out["rss_after_samples_mb"] = peak_rss_mb()
    stats = samples.statistics()
    out["corpus"] = {"users": stats["users"], "items": stats["items"], "ratings": stats["interactions"]}
    out["split_sizes"] = stats["samples"]
    out["history_pairs"] = {name: int(samples.splits[name]["history_length"].sum()) for name in ("train", "test")}
    out["history_max"] = int(max(frame["history_length"].max() for frame in samples.splits.values()))

    # (b) embeddings: the stand-in.
    started = time.perf_counter()
    embeddings = standin_embeddings(samples.items)
    out["standin_s"] = time.perf_counter() - started

    # (c) SUBR, K=30, train + test: 1 process, then 2 forked processes over chunks.
    started = time.perf_counter()
    retriever = SemanticRetriever(embeddings, samples.items["item_id"].tolist())
    out["index_s"] = time.perf_counter() - started
    _STATE.update(samples=samples, retriever=retriever)
    parts = _parts(samples, 10_000)
    subr = {}
    positions = {}
    for workers in (1, 2):
        started = time.perf_counter()
        results = _run_parts(_select_part, parts, workers)
        subr[str(workers)] = time.perf_counter() - started
        joined = {split: np.concatenate([r for (s, _, _), r in zip(parts, results) if s == split])
                  for split in ("train", "test")}
        if workers == 1:
            positions = joined
        elif any(not np.array_equal(joined[split], positions[split]) for split in joined):
            raise RuntimeError("SUBR with 2 processes differs from 1 process")
    out["subr_s"] = subr
    out["rss_after_subr_mb"] = peak_rss_mb()
    test = samples.splits["test"]
    lengths = (positions["test"] >= 0).sum(axis=1)
    from rella_hf.retrieval import HistorySelection

    out["same_genre_share"] = {
        "subr": same_genre_share(samples, test, HistorySelection(positions["test"], lengths)),
        "recent": same_genre_share(samples, test, recent_history(
            test["history_offset"].to_numpy(), test["history_length"].to_numpy(), K)),
    }

    # (d) rendering (Vicuna wrapper), train + test, in the builder's 20,000-row chunks.
    config = ReLLaConfig(name="bench", K=K, retrieval="semantic", chat_model=None, **_protocol_kwargs())
    _STATE.update(config=config, positions=positions)
    parts = _parts(samples, 20_000)
    render = {}
    first = None
    for workers in (1, 2):
        started = time.perf_counter()
        tables = _run_parts(_render_part, parts, workers)
        render[str(workers)] = time.perf_counter() - started
        joined = pa.concat_tables(tables)
        if workers == 1:
            first = joined
            out["prompt_chars_mean"] = float(np.mean([len(p) for p in joined.column("prompt").to_pylist()[:20_000]]))
        elif not joined.equals(first):
            raise RuntimeError("rendering with 2 processes differs from 1 process")
        del tables, joined
    out["render_s"] = render
    out["rss_peak_mb"] = peak_rss_mb()
    out["workers_peak_rss_mb"] = _children_peak_rss_mb()
    out["loadavg_end"] = os.getloadavg()
    return out


def measure_minilm(percent: float) -> dict:
    """all-MiniLM-L6-v2 on the ``percent`` catalogue with 1 and 2 torch threads (no cache)."""
    import torch

    from rella_hf.corpora import get_corpus
    from rella_hf.embeddings import embed_items, get_embedder, item_texts

    items = get_corpus("ml-25m").read(default_folder(percent / 100)).items
    texts = item_texts(items, "movie")
    out: dict = {"percent": percent, "items": len(texts), "loadavg_start": os.getloadavg()}
    started = time.perf_counter()
    embedder = get_embedder("minilm", device="cpu")
    embedder.model  # noqa: B018 - loads the model now, timed apart
    out["load_s"] = time.perf_counter() - started
    seconds = {}
    vectors = None
    for threads in (1, 2):
        torch.set_num_threads(threads)
        started = time.perf_counter()
        vectors = embed_items(texts, embedder, use_cache=False, progress=False, batch_size=64)
        seconds[str(threads)] = time.perf_counter() - started
    out["encode_s"] = seconds
    out["items_per_s"] = len(texts) / min(seconds.values())

    # The semantic structure MiniLM finds on this corpus (test split, K=30).
    from rella_hf.retrieval import SemanticRetriever, recent_history
    from rella_hf.samples import SampleProtocol, build_samples

    corpus = get_corpus("ml-25m")
    samples = build_samples(corpus, corpus.read(default_folder(percent / 100)), SampleProtocol(**_protocol_kwargs()))
    test = samples.splits["test"]
    offsets, lengths = test["history_offset"].to_numpy(), test["history_length"].to_numpy()
    selection = SemanticRetriever(vectors).select(samples.log["item_row"].to_numpy(), test["item_row"].to_numpy(),
                                                  offsets, lengths, K)
    out["same_genre_share"] = {"subr": same_genre_share(samples, test, selection),
                               "recent": same_genre_share(samples, test, recent_history(offsets, lengths, K))}
    out["rss_peak_mb"] = peak_rss_mb()
    out["loadavg_end"] = os.getloadavg()
    return out


def measure_builder(percent: float) -> dict:
    """``rella_hf.load_dataset("ml-25m", K=30, retrieval="semantic", ...)`` end to end, and its Arrow size."""
    import rella_hf
    import rella_hf.builders.base as base

    base.item_embeddings = lambda samples, config: standin_embeddings(samples.items)  # labelled stand-in
    cache = Path(tempfile.mkdtemp(prefix="rella-bench-cache-", dir="/tmp"))
    out: dict = {"percent": percent, "loadavg_start": os.getloadavg()}
    try:
        started = time.perf_counter()
        dataset = rella_hf.load_dataset("ml-25m", K=K, retrieval="semantic", data_dir=default_folder(percent / 100),
                                        cache_dir=cache, chat_model=None, **_protocol_kwargs())
        out["seconds"] = time.perf_counter() - started
        out["rows"] = {name: len(split) for name, split in dataset.items()}
        arrow = [path for path in cache.rglob("*.arrow")]
        out["arrow_mb"] = sum(path.stat().st_size for path in arrow) / 2**20
        out["cache_mb"] = sum(path.stat().st_size for path in cache.rglob("*") if path.is_file()) / 2**20
        out["rss_peak_mb"] = peak_rss_mb()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    out["loadavg_end"] = os.getloadavg()
    return out


# --------------------------------------------------------------------------------------------
# Orchestration and the report
# --------------------------------------------------------------------------------------------


def _run_child(flag: str, percent: float) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        target = handle.name
    try:
        subprocess.run([sys.executable, __file__, flag, str(percent), "--json", target], check=True)
        return json.loads(Path(target).read_text())
    finally:
        os.unlink(target)


def _exponent(sizes, seconds) -> float:
    """Least-squares slope of log(seconds) on log(size): 1 is linear growth."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def _fmt_load(values) -> str:
    return "/".join(f"{value:.1f}" for value in values)


def report(results: list[dict], minilm: dict | None, generation: dict) -> str:
    """The markdown section: tables, exponents, targets and notes."""
    lines = [
        "## Lifelong scale: ML-25M-sized synthetic corpus (`benchmarks/bench_scale.py`)",
        "",
        f"Run {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; machine: {machine_facts()}. "
        "Other workers shared the two cores: load average (1-min) before/after each part is given.",
        f"Corpus: `benchmarks/synth_corpus.py` (ML-25M's format and shape; 100 % = 162,541 users, 62,423 movies "
        f"(59,047 rated), 25,000,095 ratings). Splits: the paper's {TRAIN:,} train / {TEST:,} test samples "
        f"(validation sampled to {VALIDATION:,}); K={K}; prompts wrapped with Vicuna v1.1 (`chat_model=None`).",
        "",
        "### Step times (seconds; \"1p / 2p\" = 1 / 2 workers)",
        "",
        "| scale | ratings | users | items | generate corpus | (a) read 1t / 2t | (a) samples + split | "
        "(b) embeddings stand-in | (b) MiniLM | (c) index + SUBR 1p / 2p | (d) render 1p / 2p | "
        "total (a)+(c)+(d), 1 worker | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    totals = []
    for result in results:
        m = result["measure"]
        corpus = m["corpus"]
        total = m["read_s"]["1"] + m["samples_s"] + m["index_s"] + m["subr_s"]["1"] + m["render_s"]["1"]
        totals.append(total)
        if minilm and minilm["items_per_s"]:
            seconds = corpus["items"] / minilm["items_per_s"]
            measured = abs(m["percent"] - minilm["percent"]) < 1e-9
            mini = f"{seconds:.0f} ({'measured' if measured else 'extrapolated'})"
        else:
            mini = "n/a"
        lines.append(
            f"| {m['percent']:g} % | {corpus['ratings']:,} | {corpus['users']:,} | {corpus['items']:,} "
            f"| {generation.get(str(m['percent']), float('nan')):.0f} "
            f"| {m['read_s']['1']:.1f} / {m['read_s']['2']:.1f} | {m['samples_s']:.1f} | {m['standin_s']:.1f} | {mini} "
            f"| {m['index_s'] + m['subr_s']['1']:.1f} / {m['index_s'] + m['subr_s']['2']:.1f} "
            f"| {m['render_s']['1']:.1f} / {m['render_s']['2']:.1f} | {total:.0f} "
            f"| {_fmt_load(m['loadavg_start'])} → {_fmt_load(m['loadavg_end'])} |"
        )
    lines += [
        "",
        "### Memory, work and the builder end to end",
        "",
        "| scale | peak RSS after (a) read / samples / (c) / (d), MiB | worker peak RSS MiB | "
        "(sample, history item) pairs scored, train + test | longest history | "
        "`load_dataset` end to end s | its peak RSS MiB | Arrow dataset MiB | load avg (builder) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        m, b = result["measure"], result["builder"]
        pairs = m["history_pairs"]["train"] + m["history_pairs"]["test"]
        lines.append(
            f"| {m['percent']:g} % | {m['rss_after_read_mb']:,.0f} / {m['rss_after_samples_mb']:,.0f} / "
            f"{m['rss_after_subr_mb']:,.0f} / {m['rss_peak_mb']:,.0f} | {m['workers_peak_rss_mb']:,.0f} "
            f"| {pairs:,} | {m['history_max']:,} | {b['seconds']:.0f} | {b['rss_peak_mb']:,.0f} "
            f"| {b['arrow_mb']:,.0f} | {_fmt_load(b['loadavg_start'])} → {_fmt_load(b['loadavg_end'])} |"
        )
    if len(results) >= 2:
        ratings = [r["measure"]["corpus"]["ratings"] for r in results]
        step = {
            "(a) read + samples": [r["measure"]["read_s"]["1"] + r["measure"]["samples_s"] for r in results],
            "(c) SUBR": [r["measure"]["index_s"] + r["measure"]["subr_s"]["1"] for r in results],
            "(d) render": [r["measure"]["render_s"]["1"] for r in results],
            "total (a)+(c)+(d)": totals,
            "`load_dataset` end to end": [r["builder"]["seconds"] for r in results],
            "peak RSS (measure process)": [r["measure"]["rss_peak_mb"] for r in results],
        }
        lines += ["", "### Growth: exponent b of cost ∝ ratings^b (least squares over the scales)", ""]
        lines += [f"- {name}: b = {_exponent(ratings, values):.2f}" for name, values in step.items()]
        pairs = [r["measure"]["history_pairs"]["train"] + r["measure"]["history_pairs"]["test"] for r in results]
        subr = step["(c) SUBR"]
        lines.append(f"- (c) SUBR against the pairs it scores: b = {_exponent(pairs, subr):.2f} "
                     "(the splits are sampled to a fixed size, so SUBR and rendering grow with history length, "
                     "not corpus size)")
    if minilm:
        lines += [
            "",
            f"### (b) MiniLM, measured on the {minilm['percent']:g} % catalogue ({minilm['items']:,} items)",
            "",
            f"all-MiniLM-L6-v2 on CPU: model load {minilm['load_s']:.1f} s; encoding {minilm['encode_s']['1']:.1f} s "
            f"with 1 torch thread, {minilm['encode_s']['2']:.1f} s with 2 (speed-up "
            f"{minilm['encode_s']['1'] / minilm['encode_s']['2']:.2f}×); {minilm['items_per_s']:.0f} items/s, "
            f"so the 100 % catalogue (62,423 items) takes about {62_423 / minilm['items_per_s'] / 60:.1f} min once "
            "(then it is cached on disk). Load avg "
            f"{_fmt_load(minilm['loadavg_start'])} → {_fmt_load(minilm['loadavg_end'])}. "
            "Larger scales use the stand-in: " + STANDIN_LABEL + ".",
            "",
            "Semantic structure (test split, share of shown items whose first genre is the target's): "
            f"MiniLM SUBR {minilm['same_genre_share']['subr']:.2f} vs recent-K "
            f"{minilm['same_genre_share']['recent']:.2f} at {minilm['percent']:g} %; stand-in SUBR "
            + ", ".join(f"{r['measure']['same_genre_share']['subr']:.2f} vs {r['measure']['same_genre_share']['recent']:.2f} "
                        f"at {r['measure']['percent']:g} %" for r in results) + ".",
        ]
    lines += ["", "### Speed-up from 1 to 2 workers", ""]
    for result in results:
        m = result["measure"]
        lines.append(
            f"- {m['percent']:g} %: read (Arrow threads) {m['read_s']['1'] / m['read_s']['2']:.2f}×, "
            f"SUBR (processes) {m['subr_s']['1'] / m['subr_s']['2']:.2f}×, "
            f"render (processes) {m['render_s']['1'] / m['render_s']['2']:.2f}×"
        )
    return "\n".join(lines) + "\n"


def write_results(section: str, path: Path = RESULTS) -> None:
    """Put ``section`` between this benchmark's markers in RESULTS.md, keeping the rest of the file."""
    block = f"{_SECTION_START}\n{section}{_SECTION_END}\n"
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    if _SECTION_START in text and _SECTION_END in text:
        head, rest = text.split(_SECTION_START, 1)
        text = head + block + rest.split(_SECTION_END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--percents", type=float, nargs="+", default=[1, 10, 100])
    parser.add_argument("--minilm-percent", type=float, default=1.0)
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--measure", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--minilm", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--builder", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print the tables without updating RESULTS.md")
    args = parser.parse_args()

    for flag, function in (("measure", measure), ("minilm", measure_minilm), ("builder", measure_builder)):
        value = getattr(args, flag)
        if value is not None:
            result = function(value)
            text = json.dumps(result, indent=2)
            if args.json:
                Path(args.json).write_text(text)
            else:
                print(text)
            return

    generation = {}
    for percent in args.percents:
        started = time.perf_counter()
        generate(percent / 100, default_folder(percent / 100), progress=False)
        meta = json.loads((default_folder(percent / 100) / "SYNTHETIC.json").read_text())
        generation[str(percent)] = meta["seconds"]["total"]
        print(f"corpus {percent:g} %: {shape_for(percent / 100)} ready in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    minilm = None
    if not args.skip_minilm:
        minilm = _run_child("--minilm", args.minilm_percent)
        print(f"MiniLM: {json.dumps(minilm)}", file=sys.stderr)
    results = []
    for percent in args.percents:
        measured = _run_child("--measure", percent)
        print(f"measure {percent:g} %: {json.dumps(measured)}", file=sys.stderr)
        built = _run_child("--builder", percent)
        print(f"builder {percent:g} %: {json.dumps(built)}", file=sys.stderr)
        results.append({"measure": measured, "builder": built})
    section = report(results, minilm, generation)
    print(section)
    if not args.no_write:
        write_results(section)
        print(f"wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
