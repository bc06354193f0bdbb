"""Zero-shot grid: K in {5, 10, 20, 30} x retrieval {recent, semantic} with SmolLM2-135M-Instruct.

    python experiments/zero_shot.py [--datasets ml-1m ml-latest-small] [--K 5 10 20 30]

Each setting scores the fixed 1,000-sample test subset; finished settings are skipped on a rerun
and an interrupted one resumes from its saved score shards.
"""

from __future__ import annotations

import argparse
import time

from common import MODEL, RESULTS, RUNS, append_result, pending_grid, prompt_dataset, save_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-1m", "ml-latest-small"])
    parser.add_argument("--K", nargs="+", type=int, default=[5, 10, 20, 30])
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args()

    from rella_hf.metrics import ctr_metrics
    from rella_hf.models import load_model
    from rella_hf.scoring import CTRScorer, score_dataset

    results_file = RESULTS / "zero_shot.jsonl"
    model, tokenizer = load_model(MODEL)
    scorer = CTRScorer(model, tokenizer, batch_size=args.batch_size)
    for dataset, K, retrieval, name in pending_grid(results_file, "zero-shot", args.datasets, args.K):
        setting = f"{dataset}/{name}"
        start = time.perf_counter()
        test = prompt_dataset(dataset, K, retrieval)["test"]
        built = time.perf_counter() - start
        run_dir = RUNS / dataset
        scored = score_dataset(scorer, test, output_dir=run_dir / "partial" / f"zero-shot-K{K}-{retrieval}")
        seconds = time.perf_counter() - start - built
        meta = {"stage": "zero-shot", "dataset": dataset, "K": K, "retrieval": retrieval, "model": MODEL}
        # ML-1M prompts stay out of the repository (its licence forbids redistribution).
        prompts = scored["raw_prompt"] if dataset == "ml-latest-small" else None
        save_scores(run_dir, f"zero-shot-K{K}-{retrieval}", scored["label"], scored["score"], meta, prompts)
        metrics = ctr_metrics(scored["label"], scored["score"])
        append_result(results_file, {"setting": setting, **meta, **metrics, "sample_ids_head": scored["sample_id"][:5],
                                     "build_seconds": round(built, 1), "score_seconds": round(seconds, 1)})
        print(setting, {key: round(value, 4) for key, value in metrics.items()}, f"{seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
