"""How much of the label do the K history items in a prompt carry, without any language model?

    python experiments/prompt_signal.py [--datasets ml-1m ml-latest-small] [--K 5 10 20 30]

For every zero-shot setting (K x recent/SUBR) it scores the same fixed 1,000-sample test subset
with one number read off the prompt's own content: the mean rating the user gave the K history
items shown, divided by the rating scale's maximum. Its AUC is a floor on what a reader of the
prompt could reach, so it separates "the prompt has no signal" from "the model does not use it",
and it compares what recent-K and SUBR select with no model in between. The score is not a
calibrated probability: read its AUC, not its LogLoss.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import RESULTS, RUNS, append_result, pending_grid, prompt_dataset, save_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-1m", "ml-latest-small"])
    parser.add_argument("--K", nargs="+", type=int, default=[5, 10, 20, 30])
    args = parser.parse_args()

    from rella_hf.metrics import ctr_metrics

    results_file = RESULTS / "prompt_signal.jsonl"
    for dataset, K, retrieval, name in pending_grid(results_file, "history-mean", args.datasets, args.K):
        setting = f"{dataset}/{name}"
        start = time.perf_counter()
        test = prompt_dataset(dataset, K, retrieval)["test"].with_format("arrow")
        ratings = test["history_ratings"]
        sums = np.asarray(ratings.combine_chunks().flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
        lengths = np.asarray(ratings.combine_chunks().value_lengths(), dtype=np.int64)
        owners = np.repeat(np.arange(len(lengths)), lengths)
        means = np.bincount(owners, weights=sums, minlength=len(lengths)) / np.maximum(lengths, 1)
        scale = 5.0  # MovieLens stars (1-5, or 0.5-5); only maps the score into [0, 1], AUC ignores it
        # A user with no earlier ratings has nothing to read: the scale's midpoint.
        scores = np.where(lengths > 0, means / scale, 0.5)
        labels = test["label"].to_numpy()
        meta = {"stage": "history mean (no LLM)", "dataset": dataset, "K": K, "retrieval": retrieval,
                "model": "mean rating of the K prompt items / 5"}
        save_scores(RUNS / dataset, f"history-mean-K{K}-{retrieval}", labels, scores, meta)
        metrics = ctr_metrics(labels, scores)
        append_result(results_file, {"setting": setting, **meta, **metrics,
                                     "sample_ids_head": test["sample_id"].to_pylist()[:5],
                                     "seconds": round(time.perf_counter() - start, 1)})
        print(setting, {key: round(value, 4) for key, value in metrics.items()}, flush=True)


if __name__ == "__main__":
    main()
