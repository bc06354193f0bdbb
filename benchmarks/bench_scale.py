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

3. Old vs new: every part of 1. and 2. also runs with the code of ``--old-commit`` (default: the
   commit before issue #20's speed-ups), checked out as a git worktree under /tmp and imported
   through ``PYTHONPATH`` by the same child processes, so both codes meet the same machine state.
   The rendered tables (step d) and the built datasets are digested and must be identical; the
   report gives old/new time ratios and peak RSS per step, and ends with the line
   ``scale 100%: X.Xx faster than <old commit>, peak RSS Y GB`` (``load_dataset`` end to end, wall
   time old / new, and the new build's peak RSS).

Usage: python benchmarks/bench_scale.py [--percents 1 10 100]   (writes benchmarks/RESULTS.md)
       python benchmarks/bench_scale.py --old-commit none               (this checkout only)
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
#: The code before issue #20 (packed sorts, direct Arrow reads, sampled frames, vectorised rendering).
BASELINE_COMMIT = "8e5b5bb5f79eb0a370c362c86d20800792f6c872"
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


def _render_digest(part: tuple[str, int, int]) -> str:
    """Render a part and return its digest: a worker keeps its table, as a sharded writer would."""
    return _table_digest(_render_part(part))


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
    """``function(part)`` for every part, in order, in this process or in forked workers."""
    if workers == 1:
        return [function(part) for part in parts]
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(function, parts, chunksize=1)


def _table_digest(table) -> str:
    """A content digest of a rendered Arrow table (so results can be compared without keeping them)."""
    import hashlib

    import pyarrow as pa

    digest = hashlib.sha256()
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        digest.update(name.encode())
        if pa.types.is_list(column.type):
            digest.update(column.offsets.to_numpy().tobytes())
            digest.update(column.flatten().to_numpy().tobytes())
        elif pa.types.is_string(column.type):
            digest.update("\x00".join(column.to_pylist()).encode("utf-8"))
        else:
            digest.update(column.to_numpy().tobytes())
    return digest.hexdigest()


def _samples_digest(samples) -> str:
    """A content digest of the log and the split frames (so old and new samples can be compared)."""
    import hashlib

    digest = hashlib.sha256()
    for name, frame in [("log", samples.log), *samples.splits.items()]:
        digest.update(name.encode())
        for column in frame.columns:
            digest.update(column.encode())
            digest.update(np.ascontiguousarray(frame[column].to_numpy()).tobytes())
    return digest.hexdigest()


class _Clock:
    """Wall seconds and CPU seconds (this process plus reaped children) since creation."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), self._cpu()

    @staticmethod
    def _cpu() -> float:
        times = os.times()
        return times.user + times.system + times.children_user + times.children_system

    def read(self) -> dict:
        return {"wall": time.perf_counter() - self.wall, "cpu": self._cpu() - self.cpu}


# --------------------------------------------------------------------------------------------
# One scale, step by step
# --------------------------------------------------------------------------------------------


def measure(percent: float) -> dict:
    """Steps (a)-(d) at ``percent`` of ML-25M, in this process; returns the measurements."""
    import faiss
    import pyarrow as pa

    from rella_hf.builders.base import ReLLaConfig
    from rella_hf.corpora import get_corpus
    from rella_hf.retrieval import SemanticRetriever, recent_history
    from rella_hf.samples import SampleProtocol, build_samples

    # GNU OpenMP's thread pool does not survive fork: a forked worker calling FAISS after the parent
    # ran a multi-threaded OpenMP region hangs. compute_distance_subset is single-threaded anyway.
    faiss.omp_set_num_threads(1)
    import rella_hf

    folder = default_folder(percent / 100)
    corpus = get_corpus("ml-25m")
    out: dict = {"percent": percent, "module": rella_hf.__file__, "loadavg_start": os.getloadavg()}

    # (a) reading: Arrow's CSV reader with 1 thread, then 2 (the second's tables are used).
    out["read"] = {}
    for threads in (1, 2):
        pa.set_cpu_count(threads)
        pa.set_io_thread_count(threads)
        clock = _Clock()
        tables = corpus.read(folder)
        out["read"][str(threads)] = clock.read()
        if threads == 1:
            del tables
    out["rss_after_read_mb"] = peak_rss_mb()
    clock = _Clock()
    samples = build_samples(corpus, tables, SampleProtocol(**_protocol_kwargs()))
    out["samples"] = clock.read()
    del tables
    out["rss_after_samples_mb"] = peak_rss_mb()
    stats = samples.statistics()
    out["corpus"] = {"users": stats["users"], "items": stats["items"], "ratings": stats["interactions"]}
    out["split_sizes"] = stats["samples"]
    out["history_pairs"] = {name: int(samples.splits[name]["history_length"].sum()) for name in ("train", "test")}
    out["history_max"] = int(max(frame["history_length"].max() for frame in samples.splits.values()))

    # (b) embeddings: the stand-in.
    clock = _Clock()
    embeddings = standin_embeddings(samples.items)
    out["standin"] = clock.read()

    # (c) SUBR, K=30, train + test: 1 process, then 2 forked processes over chunks.
    clock = _Clock()
    retriever = SemanticRetriever(embeddings, samples.items["item_id"].tolist())
    out["index"] = clock.read()
    _STATE.update(samples=samples, retriever=retriever)
    parts = _parts(samples, 10_000)
    subr = {}
    positions = {}
    for workers in (1, 2):
        clock = _Clock()
        results = _run_parts(_select_part, parts, workers)
        subr[str(workers)] = clock.read()
        joined = {split: np.concatenate([r for (s, _, _), r in zip(parts, results) if s == split])
                  for split in ("train", "test")}
        if workers == 1:
            positions = joined
        elif any(not np.array_equal(joined[split], positions[split]) for split in joined):
            raise RuntimeError("SUBR with 2 processes differs from 1 process")
    out["subr"] = subr
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
    digests = {}
    for workers in (1, 2):
        # Each table is digested and dropped where it was rendered, as the builder streams them to disk.
        clock = _Clock()
        digests[workers] = _run_parts(_render_digest, parts, workers)
        render[str(workers)] = clock.read()
    if digests[1] != digests[2]:
        raise RuntimeError("rendering with 2 processes differs from 1 process")
    out["render"] = render
    out["render_digests"] = digests[1]
    out["samples_digest"] = _samples_digest(samples)
    out["prompt_chars_mean"] = float(np.mean([len(text) for text in _render_part(parts[0]).column("prompt").to_pylist()]))
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
    clock = _Clock()
    embedder = get_embedder("minilm", device="cpu")
    embedder.model  # noqa: B018 - loads the model now, timed apart
    out["load"] = clock.read()
    encode = {}
    vectors = None
    for threads in (1, 2):
        torch.set_num_threads(threads)
        clock = _Clock()
        vectors = embed_items(texts, embedder, use_cache=False, progress=False, batch_size=64)
        encode[str(threads)] = clock.read()
    out["encode"] = encode
    out["items_per_s"] = len(texts) / min(value["wall"] for value in encode.values())

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
        clock = _Clock()
        dataset = rella_hf.load_dataset("ml-25m", K=K, retrieval="semantic", data_dir=default_folder(percent / 100),
                                        cache_dir=cache, chat_model=None, **_protocol_kwargs())
        out["time"] = clock.read()
        out["rss_peak_mb"] = peak_rss_mb()  # before the digests below, which hold every prompt once more
        out["rows"] = {name: len(split) for name, split in dataset.items()}
        out["module"] = rella_hf.__file__
        arrow = [path for path in cache.rglob("*.arrow")]
        out["arrow_mb"] = sum(path.stat().st_size for path in arrow) / 2**20
        out["cache_mb"] = sum(path.stat().st_size for path in cache.rglob("*") if path.is_file()) / 2**20
        out["digests"] = {name: _table_digest(split.data.table) for name, split in dataset.items()}
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    out["loadavg_end"] = os.getloadavg()
    return out


# --------------------------------------------------------------------------------------------
# Orchestration and the report
# --------------------------------------------------------------------------------------------


def _run_child(flag: str, percent: float, tree: Path | None = None) -> dict:
    """Run one part in a fresh process, with this checkout's code or (``tree``) another checkout's."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        target = handle.name
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    try:
        subprocess.run([sys.executable, __file__, flag, str(percent), "--json", target], check=True, env=env)
        result = json.loads(Path(target).read_text())
    finally:
        os.unlink(target)
    module = Path(result.get("module", "")).resolve()
    expected = (tree or HERE.parent).resolve()
    if tree is not None and not module.is_relative_to(expected):
        raise RuntimeError(f"the old-code child imported {module}, not the worktree {expected}")
    return result


def old_worktree(commit: str) -> tuple[Path, str]:
    """A git worktree of ``commit`` under /tmp (made once, reused), and the commit's short hash."""
    resolved = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", commit], check=True, capture_output=True,
                              text=True).stdout.strip()
    tree = Path(tempfile.gettempdir()) / f"rella-old-{resolved[:12]}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(HERE.parent), "worktree", "add", "--detach", str(tree), resolved], check=True,
                       capture_output=True)
    return tree, resolved[:7]


def _exponent(sizes, seconds) -> float:
    """Least-squares slope of log(seconds) on log(size): 1 is linear growth."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def _fmt_load(values) -> str:
    return "/".join(f"{value:.1f}" for value in values)


def _cell(clock: dict) -> str:
    return f"{clock['wall']:.1f} ({clock['cpu']:.1f})"


def _step_clocks(m: dict) -> dict:
    """The 1-worker clocks of the steps that make up the build (embeddings excluded)."""
    def add(*clocks):
        return {key: sum(clock[key] for clock in clocks) for key in ("wall", "cpu")}

    return {
        "read": m["read"]["1"],
        "samples": m["samples"],
        "subr": add(m["index"], m["subr"]["1"]),
        "render": m["render"]["1"],
        "total": add(m["read"]["1"], m["samples"], m["index"], m["subr"]["1"], m["render"]["1"]),
    }


def report(results: list[dict], minilm: dict | None, generation: dict) -> str:
    """The markdown section: tables, growth exponents and the targets."""
    lines = [
        "## Lifelong scale: an ML-25M-sized synthetic corpus (`benchmarks/bench_scale.py`)",
        "",
        f"Run {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; machine: {machine_facts()}. Other workers "
        "shared the two cores, so wall times are inflated and noisy: each cell is wall seconds with the CPU "
        "seconds of this process (and its workers) in brackets, and the 1-minute load average before → after "
        "each part is given.",
        "",
        f"Corpus: `benchmarks/synth_corpus.py` (ML-25M's file format and shape; 100 % = 162,541 users, 62,423 "
        f"movies of which 59,047 rated, 25,000,095 ratings). Splits: the paper's {TRAIN:,} train and {TEST:,} test "
        f"samples (validation sampled to {VALIDATION:,}; at 1 % the test split has fewer than {TEST:,}); K={K}; "
        "SUBR in chronological order; prompts wrapped with Vicuna v1.1 (`chat_model=None`), no token budget. "
        f"Embeddings for (c) and the builder: {STANDIN_LABEL}.",
        "",
        "### Step times, 1 worker: wall s (CPU s)",
        "",
        "| scale | ratings | users | items | generate corpus | (a) read | (a) samples + split | "
        "(b) stand-in | (b) MiniLM | (c) index + SUBR | (d) render | total (a)+(c)+(d) | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        m = result["measure"]
        corpus, steps = m["corpus"], _step_clocks(m)
        if minilm:
            seconds = corpus["items"] / minilm["items_per_s"]
            measured = abs(m["percent"] - minilm["percent"]) < 1e-9
            mini = f"{seconds:.0f} ({'measured' if measured else 'extrapolated'})"
        else:
            mini = "not run"
        lines.append(
            f"| {m['percent']:g} % | {corpus['ratings']:,} | {corpus['users']:,} | {corpus['items']:,} "
            f"| {generation.get(float(m['percent']), float('nan')):.1f} | {_cell(steps['read'])} | {_cell(steps['samples'])} "
            f"| {_cell(m['standin'])} | {mini} | {_cell(steps['subr'])} | {_cell(steps['render'])} "
            f"| {_cell(steps['total'])} | {_fmt_load(m['loadavg_start'])} → {_fmt_load(m['loadavg_end'])} |"
        )
    lines += [
        "",
        "### From 1 to 2 workers: wall s (CPU s), measured wall speed-up [bound from CPU s]",
        "",
        "The bound, 2 × CPU(1 worker) / CPU(2 workers), is the speed-up two otherwise idle cores would give "
        "with perfect balance (not given for reading, which is mostly serial); the measured one is what the "
        "shared machine gave.",
        "",
        "| scale | (a) read, Arrow CSV threads 1 → 2 | (c) SUBR, forked processes 1 → 2 | "
        "(d) render, forked processes 1 → 2 |",
        "|---|---|---|---|",
    ]
    for result in results:
        m = result["measure"]
        cells = []
        for name, clocks in (("read", m["read"]), ("subr", m["subr"]), ("render", m["render"])):
            one, two = clocks["1"], clocks["2"]
            # Only work split over processes has no serial part to speak of; reading is mostly serial.
            bound = f"{2 * one['cpu'] / two['cpu']:.2f}×" if name != "read" and two["cpu"] > 0 else "n/a"
            cells.append(f"{_cell(one)} → {_cell(two)}: {one['wall'] / two['wall']:.2f}× [{bound}]")
        lines.append(f"| {m['percent']:g} % | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### Memory, work, and `load_dataset` end to end",
        "",
        "| scale | peak RSS after (a) read / samples / (c) / (d), MiB | 2-process workers' peak RSS MiB | "
        "(sample, history item) pairs scored, train + test | longest history | `load_dataset` wall s (CPU s) "
        "| its peak RSS MiB | Arrow dataset MiB | load avg (builder) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        m, b = result["measure"], result["builder"]
        pairs = m["history_pairs"]["train"] + m["history_pairs"]["test"]
        lines.append(
            f"| {m['percent']:g} % | {m['rss_after_read_mb']:,.0f} / {m['rss_after_samples_mb']:,.0f} / "
            f"{m['rss_after_subr_mb']:,.0f} / {m['rss_peak_mb']:,.0f} | {m['workers_peak_rss_mb']:,.0f} "
            f"| {pairs:,} | {m['history_max']:,} | {_cell(b['time'])} | {b['rss_peak_mb']:,.0f} "
            f"| {b['arrow_mb']:,.0f} | {_fmt_load(b['loadavg_start'])} → {_fmt_load(b['loadavg_end'])} |"
        )
    if len(results) >= 2:
        ratings = [r["measure"]["corpus"]["ratings"] for r in results]
        clocks = [_step_clocks(r["measure"]) for r in results]
        lines += ["", "### Growth: exponent b in cost ∝ ratings^b (least squares over the scales; wall / CPU)", ""]
        for name, key in (("(a) read", "read"), ("(a) samples + split", "samples"), ("(c) SUBR", "subr"),
                          ("(d) render", "render"), ("total (a)+(c)+(d)", "total")):
            lines.append(f"- {name}: b = {_exponent(ratings, [c[key]['wall'] for c in clocks]):.2f} / "
                         f"{_exponent(ratings, [c[key]['cpu'] for c in clocks]):.2f}")
        lines.append(f"- `load_dataset` end to end: b = {_exponent(ratings, [r['builder']['time']['wall'] for r in results]):.2f}"
                     f" / {_exponent(ratings, [r['builder']['time']['cpu'] for r in results]):.2f}")
        lines.append(f"- peak RSS of the step-by-step process: b = "
                     f"{_exponent(ratings, [r['measure']['rss_peak_mb'] for r in results]):.2f}")
        pairs = [r["measure"]["history_pairs"]["train"] + r["measure"]["history_pairs"]["test"] for r in results]
        lines.append(f"- (c) SUBR against the pairs it scores: b = {_exponent(pairs, [c['subr']['cpu'] for c in clocks]):.2f} "
                     "(CPU); the splits are sampled to a fixed size, so (c) and (d) follow the sampled histories' "
                     "lengths, not the corpus size")
    full = [r for r in results if r["measure"]["percent"] == 100]
    if full:
        m, b = full[0]["measure"], full[0]["builder"]
        total = _step_clocks(m)["total"]
        peak = max(m["rss_peak_mb"], b["rss_peak_mb"])
        lines += [
            "",
            "### Targets at 100 % (2 cores, 24 GB)",
            "",
            f"- total under 10 minutes, embeddings excluded: steps (a)+(c)+(d) {total['wall'] / 60:.1f} min wall "
            f"({total['cpu'] / 60:.1f} min CPU); `load_dataset` end to end {b['time']['wall'] / 60:.1f} min wall "
            f"— {'met' if max(total['wall'], b['time']['wall']) < 600 else 'MISSED'}",
            f"- peak RSS under 8 GB: {peak / 1024:.2f} GiB (the larger of the step-by-step process and "
            f"`load_dataset`) — {'met' if peak < 8 * 1024 else 'MISSED'}",
        ]
        if full[0].get("old"):
            ratio = full[0]["old"]["builder"]["time"]["wall"] / b["time"]["wall"]
            lines += [
                f"- issue #20, `load_dataset` at least 2× faster than {full[0]['old_commit']} in the same run: "
                f"{ratio:.1f}× — {'met' if ratio >= 2 else 'MISSED'}",
                f"- issue #20, `load_dataset` peak RSS at most 3 GB: {b['rss_peak_mb'] * 2**20 / 1e9:.2f} GB — "
                f"{'met' if b['rss_peak_mb'] * 2**20 <= 3e9 else 'MISSED'}",
            ]
    compared = [r for r in results if r.get("old")]
    if compared:
        commit = compared[0]["old_commit"]
        lines += [
            "",
            f"### Old ({commit}) vs new code, same run: wall s old → new (old / new)",
            "",
            "Each part ran in a fresh process, first with the old code (a git worktree of "
            f"`{commit}` on `PYTHONPATH`), then with this checkout. Steps use 1 worker; peak RSS in MiB.",
            "",
            "| scale | (a) read | (a) samples + split | (c) index + SUBR | (d) render | total (a)+(c)+(d) "
            "| `load_dataset` | peak RSS step by step | peak RSS `load_dataset` | rows identical | load avg (builder, new) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in compared:
            new_steps, old_steps = _step_clocks(r["measure"]), _step_clocks(r["old"]["measure"])
            cells = [f"{old_steps[key]['wall']:.1f} → {new_steps[key]['wall']:.1f} "
                     f"({old_steps[key]['wall'] / max(new_steps[key]['wall'], 1e-9):.1f}×)"
                     for key in ("read", "samples", "subr", "render", "total")]
            ob, nb = r["old"]["builder"], r["builder"]
            cells.append(f"{ob['time']['wall']:.1f} → {nb['time']['wall']:.1f} ({ob['time']['wall'] / nb['time']['wall']:.1f}×)")
            cells.append(f"{r['old']['measure']['rss_peak_mb']:,.0f} → {r['measure']['rss_peak_mb']:,.0f}")
            cells.append(f"{ob['rss_peak_mb']:,.0f} → {nb['rss_peak_mb']:,.0f}")
            cells.append("yes" if r["identical"] else "**NO**")
            cells.append(f"{_fmt_load(nb['loadavg_start'])} → {_fmt_load(nb['loadavg_end'])}")
            lines.append(f"| {r['measure']['percent']:g} % | " + " | ".join(cells) + " |")
        lines += ["", "Rows identical: the samples (log and split frames), every rendered table of step (d) and "
                  "every split of the built dataset have the same content digest old and new.", ""]
        lines += [_final_line(r) for r in compared]
    if minilm:
        lines += [
            "",
            f"### (b) MiniLM, measured on the {minilm['percent']:g} % catalogue ({minilm['items']:,} items)",
            "",
            f"all-MiniLM-L6-v2 on the CPU (`embed_items`, no cache, batch 64): model load {_cell(minilm['load'])}; "
            f"encoding {_cell(minilm['encode']['1'])} with 1 torch thread, {_cell(minilm['encode']['2'])} with 2 "
            f"({minilm['encode']['1']['wall'] / minilm['encode']['2']['wall']:.2f}×); best {minilm['items_per_s']:.0f} "
            f"items/s, so the 100 % catalogue (62,423 items) would take about "
            f"{62_423 / minilm['items_per_s'] / 60:.1f} min once, then it is cached on disk. Load avg "
            f"{_fmt_load(minilm['loadavg_start'])} → {_fmt_load(minilm['loadavg_end'])}.",
            "",
            "Semantic structure found (test split; share of shown history items whose first genre is the "
            f"target's): MiniLM SUBR {minilm['same_genre_share']['subr']:.2f} vs recent-K "
            f"{minilm['same_genre_share']['recent']:.2f} at {minilm['percent']:g} %; stand-in SUBR vs recent-K "
            + ", ".join(f"{r['measure']['same_genre_share']['subr']:.2f} vs {r['measure']['same_genre_share']['recent']:.2f} "
                        f"at {r['measure']['percent']:g} %" for r in results) + ".",
        ]
    return "\n".join(lines) + "\n"


def _identical(new: dict, old: dict) -> bool:
    """Whether the old and new code made the same samples, rendered tables and datasets."""
    return (new["measure"]["samples_digest"] == old["measure"]["samples_digest"]
            and new["measure"]["render_digests"] == old["measure"]["render_digests"]
            and new["builder"]["digests"] == old["builder"]["digests"])


def _final_line(result: dict) -> str:
    old, new = result["old"]["builder"], result["builder"]
    return (f"scale {result['measure']['percent']:g}%: {old['time']['wall'] / new['time']['wall']:.1f}x faster than "
            f"{result['old_commit']}, peak RSS {new['rss_peak_mb'] * 2**20 / 1e9:.2f} GB")


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
    parser.add_argument("--percents", type=float, nargs="+", default=[1.0, 10.0, 100.0])
    parser.add_argument("--minilm-percent", type=float, default=1.0)
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--measure", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--minilm", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--builder", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print the tables without updating RESULTS.md")
    parser.add_argument("--old-commit", default=BASELINE_COMMIT,
                        help="commit whose code is measured beside this checkout's ('none' to skip)")
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
        generation[float(percent)] = meta["seconds"]["total"]
        print(f"corpus {percent:g} %: {shape_for(percent / 100)} ready in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    minilm = None
    if not args.skip_minilm:
        minilm = _run_child("--minilm", args.minilm_percent)
        print(f"MiniLM: {json.dumps(minilm)}", file=sys.stderr)
    tree, commit = (None, None) if args.old_commit.lower() == "none" else old_worktree(args.old_commit)
    results = []
    for percent in args.percents:
        result = {}
        if tree is not None:
            old = {"measure": _run_child("--measure", percent, tree)}
            print(f"old measure {percent:g} %: {json.dumps(old['measure'])}", file=sys.stderr)
            old["builder"] = _run_child("--builder", percent, tree)
            print(f"old builder {percent:g} %: {json.dumps(old['builder'])}", file=sys.stderr)
            result.update(old=old, old_commit=commit)
        result["measure"] = _run_child("--measure", percent)
        print(f"measure {percent:g} %: {json.dumps(result['measure'])}", file=sys.stderr)
        result["builder"] = _run_child("--builder", percent)
        print(f"builder {percent:g} %: {json.dumps(result['builder'])}", file=sys.stderr)
        if tree is not None:
            result["identical"] = _identical(result, result["old"])
        results.append(result)
    section = report(results, minilm, generation)
    print(section)
    if not args.no_write:
        write_results(section)
        print(f"wrote {RESULTS}", file=sys.stderr)
    for result in results:
        if tree is not None and not result["identical"]:
            print(f"scale {result['measure']['percent']:g}%: the old and new code made DIFFERENT rows", file=sys.stderr)
    if tree is not None:
        print(_final_line(results[-1]))


if __name__ == "__main__":
    main()
