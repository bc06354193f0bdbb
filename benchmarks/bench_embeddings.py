"""Item embeddings: float32 (today's default) vs bfloat16 compute, speed and what it does to SUBR.

Encodes a corpus's item texts with all-MiniLM-L6-v2 (``get_embedder("minilm")``, no cache) in
float32 and with ``compute_dtype="bfloat16"`` (autocast), timing each after a warm-up (best of
``--repeats``), then runs SUBR with either matrix on sampled test samples and reports the share
of samples whose top-K set is unchanged (and whose rendered history is, which for the default
chronological order is the same thing).

Corpora: the ../shared ML-1M copy (``--corpus ml-1m``, 3,883 movies), the bundled ml-latest-small,
or the synthetic ML-25M shape (``--corpus synth --percent 1``, see ``synth_corpus.py``).
``--max-items N`` keeps only the N most-rated items (and their ratings) for a quick check.

Target of issue #20: bfloat16 at least 3x the items/s of float32 with at least 99.5 % of the
SUBR top-K sets unchanged; otherwise float32 stays the default.

Usage: python benchmarks/bench_embeddings.py [--corpus ml-1m] [--K 5 30] [--threads 1] [--max-items N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_facts, ml1m_shared_copy  # noqa: E402


def load_tables(corpus_name: str, percent: float, max_items: int | None):
    """The corpus's tables, restricted to its ``max_items`` most-rated items when given."""
    from rella_hf.corpora import get_corpus

    if corpus_name == "synth":
        from synth_corpus import default_folder, generate

        folder = default_folder(percent / 100)
        generate(percent / 100, folder, progress=False)
        corpus = get_corpus("ml-25m")
    else:
        folder = ml1m_shared_copy() if corpus_name == "ml-1m" else None
        corpus = get_corpus(corpus_name)
    tables = corpus.read(folder)
    if max_items is not None:
        counts = tables.interactions["item_id"].value_counts()
        keep = set(counts.index[:max_items])
        tables.interactions = tables.interactions[tables.interactions["item_id"].isin(keep)].reset_index(drop=True)
        tables.items = tables.items[tables.items["item_id"].isin(keep)].reset_index(drop=True)
    return corpus, tables


def time_encode(embedder, texts, batch_size: int, repeats: int) -> tuple[np.ndarray, float]:
    """The vectors and the best wall seconds of ``repeats`` encodings (after a small warm-up)."""
    embedder.encode(texts[: min(len(texts), 2 * batch_size)], batch_size=batch_size, progress=False)
    best, vectors = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        vectors = embedder.encode(texts, batch_size=batch_size, progress=False)
        best = min(best, time.perf_counter() - started)
    return vectors, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="ml-1m", help="ml-1m (../shared copy), ml-latest-small or synth")
    parser.add_argument("--percent", type=float, default=1.0, help="scale of the synthetic corpus")
    parser.add_argument("--max-items", type=int, default=None, help="keep only this many most-rated items")
    parser.add_argument("--K", type=int, nargs="+", default=[5, 30])
    parser.add_argument("--samples", type=int, default=20_000, help="test samples SUBR is compared on")
    parser.add_argument("--batch-size", type=int, default=32, help="embed_items' default")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--float32-batch", type=int, default=128,
                        help="also time float32 at this batch size (0 to skip): larger batches, no precision change")
    args = parser.parse_args()

    import torch

    from rella_hf.embeddings import bf16_supported, get_embedder, item_texts
    from rella_hf.retrieval import SemanticRetriever
    from rella_hf.samples import SampleProtocol, build_samples

    torch.set_num_threads(args.threads)
    corpus, tables = load_tables(args.corpus, args.percent, args.max_items)
    texts = item_texts(tables.items, corpus.domain)
    load_start = os.getloadavg()
    print(f"machine: {machine_facts()}; bf16 native: {bf16_supported('cpu')}; torch threads {args.threads}; "
          f"load avg {'/'.join(f'{v:.1f}' for v in load_start)}")
    print(f"corpus {args.corpus}{f' {args.percent:g} %' if args.corpus == 'synth' else ''}: {len(texts):,} item texts")

    rates, vectors = {}, {}
    variants = [("float32", "float32", args.batch_size), ("bfloat16", "bfloat16", args.batch_size)]
    if args.float32_batch:
        variants.append((f"float32, batch {args.float32_batch}", "float32", args.float32_batch))
    for label, dtype, batch_size in variants:
        embedder = get_embedder("minilm", device="cpu", compute_dtype=dtype)
        vectors[label], seconds = time_encode(embedder, texts, batch_size, args.repeats)
        rates[label] = len(texts) / seconds
        print(f"{label}: {seconds:.1f} s, {rates[label]:.0f} items/s (best of {args.repeats}, batch {batch_size})")
    a, b = vectors["float32"], vectors["bfloat16"]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"cosine(float32, bfloat16) per item: min {cosine.min():.6f}, mean {cosine.mean():.6f}")

    samples = build_samples(corpus, tables, SampleProtocol(test_sample_size=args.samples))
    test = samples.splits["test"]
    log_rows = samples.log["item_row"].to_numpy()
    arguments = (log_rows, test["item_row"].to_numpy(), test["history_offset"].to_numpy(),
                 test["history_length"].to_numpy())
    exact, fast = SemanticRetriever(a), SemanticRetriever(b)
    speedup = rates["bfloat16"] / rates["float32"]
    if args.float32_batch:
        label = variants[-1][0]
        other = vectors[label]
        big = SemanticRetriever(other)
        same = [float((exact.select(*arguments, K).positions == big.select(*arguments, K).positions).all(axis=1).mean())
                for K in args.K]
        print(f"{label}: {rates[label] / rates['float32']:.2f}x the items/s of batch {args.batch_size}; vectors "
              f"{'bit-identical' if np.array_equal(other, a) else f'differ by up to {np.abs(other - a).max():.1e}'}; "
              f"SUBR sets unchanged {', '.join(f'{100 * v:.2f} % (K={K})' for v, K in zip(same, args.K))}")
    shares = {}
    for K in args.K:
        x, y = exact.select(*arguments, K), fast.select(*arguments, K)
        # chronological order: the same set is the same shown history, position for position
        unchanged = (x.positions == y.positions).all(axis=1)
        truncated = (test["history_length"].to_numpy() <= K)
        shares[K] = float(unchanged.mean())
        print(f"K={K}: SUBR top-K set unchanged for {unchanged.sum():,} of {len(unchanged):,} test samples "
              f"({100 * shares[K]:.2f} %; {100 * truncated.mean():.1f} % have at most K history items, "
              f"so nothing to choose); among the rest {100 * unchanged[~truncated].mean():.2f} %")
    worst = min(shares.values())
    verdict = "met" if speedup >= 3 and worst >= 0.995 else "MISSED"
    print(f"load avg {'/'.join(f'{v:.1f}' for v in load_start)} → {'/'.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"embeddings: bfloat16 {speedup:.1f}x the items/s of float32 ({rates['bfloat16']:.0f} vs "
          f"{rates['float32']:.0f}), SUBR top-K sets unchanged for {100 * worst:.2f} % of samples "
          f"(worst K of {', '.join(map(str, args.K))}) — target >= 3x and >= 99.5 %: {verdict}")


if __name__ == "__main__":
    main()
