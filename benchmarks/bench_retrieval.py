"""SUBR K=30 over the test split of the ../shared ML-1M copy (47,266 samples): wall time and samples/s.

Item embeddings come from all-MiniLM-L6-v2 (offline, cached on disk after the first run); their
time is reported apart from the retrieval itself.

Usage: python benchmarks/bench_retrieval.py [--K 30] [--embedder minilm]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_facts, ml1m_shared_copy, peak_rss_mb  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--K", type=int, default=30)
    parser.add_argument("--embedder", default="minilm")
    args = parser.parse_args()

    from rella_hf.builders.base import ReLLaConfig, item_embeddings
    from rella_hf.corpora import get_corpus
    from rella_hf.retrieval import SemanticRetriever, recent_history
    from rella_hf.samples import build_samples

    corpus = get_corpus("ml-1m")
    samples = build_samples(corpus, corpus.read(ml1m_shared_copy()))
    test = samples.splits["test"]
    config = ReLLaConfig(name="bench", K=args.K, retrieval="semantic", embedder=args.embedder)

    start = time.perf_counter()
    embeddings = item_embeddings(samples, config)
    embed_seconds = time.perf_counter() - start

    start = time.perf_counter()
    retriever = SemanticRetriever(embeddings, samples.items["item_id"].tolist())
    index_seconds = time.perf_counter() - start

    offsets, lengths = test["history_offset"].to_numpy(), test["history_length"].to_numpy()
    start = time.perf_counter()
    selection = retriever.select(samples.log["item_row"].to_numpy(), test["item_row"].to_numpy(), offsets, lengths, args.K)
    select_seconds = time.perf_counter() - start

    start = time.perf_counter()
    recent_history(offsets, lengths, args.K)
    recent_seconds = time.perf_counter() - start

    pairs = int(lengths.sum())
    print(f"Machine: {machine_facts()}")
    print(f"ML-1M copy test split: {len(test):,} samples, {pairs:,} (sample, history item) pairs scored, K={args.K}")
    print(f"item embeddings ({args.embedder}, {embeddings.shape[0]:,} items x {embeddings.shape[1]}): {embed_seconds:.2f} "
          f"s (cached after the first run)")
    print(f"FAISS index build: {index_seconds:.2f} s")
    print(f"SUBR selection: {select_seconds:.2f} s = {len(test) / select_seconds:,.0f} samples/s")
    print(f"recent-K selection: {recent_seconds:.3f} s")
    print(f"shown items per sample: mean {selection.lengths.mean():.1f}; peak RSS {peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
