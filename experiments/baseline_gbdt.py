"""Classical full-shot baseline: LightGBM on ids, profile fields and history features.

    pip install -e .[experiments]      # LightGBM
    python experiments/baseline_gbdt.py [--datasets ml-1m ml-latest-small] [--K 10]
    python experiments/baseline_gbdt.py --collaborative      # + the leak-free collaborative statistics
    python experiments/baseline_gbdt.py --logistic           # logistic regressions on those statistics alone

Features per sample (all computed from the history that precedes it, vectorised over the log):
user / item / profile / genre as categoricals, history length, mean rating and positive rate of
the whole history, mean rating of the K most recent items, and the ratings and similarities of
the K history items most similar to the target (SUBR with the same MiniLM embeddings the prompts
use), most similar first. Trained on the whole train split, tuned (num_leaves, early stopping)
on validation, evaluated on the fixed 1,000-sample test subset (and the whole test split).

``--collaborative`` adds the columns of :mod:`rella_hf.collaborative` (the target's earlier rating
count, smoothed mean and positive rate; the user's history length and mean), the statistics the
``collaborative`` prompts state, so the classical model sees what the LLM is told (setting
``lightgbm-K10-collab``). ``--logistic`` fits logistic regressions on the statistics alone
(``logistic-stats``) and on the statistics plus the mean rating of the K most recent history items
the recent-K prompt shows (``logistic-stats-recentK``): whether the LLM adds anything beyond the numbers.
``logistic-stats-all-recentK`` adds what the ``collaborative="all"`` recent-K prompt states besides: each
shown item's rating and community mean (most recent last) and the mean of their differences.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
from common import EMBEDDER, RESULTS, RUNS, SUBSET_SEED, TEST_SUBSET, append_result, data_dir, done, save_scores


def history_features(samples, frame, K: int, retriever) -> pd.DataFrame:
    """Feature table of the samples in ``frame`` (one row each, same order)."""
    from rella_hf.retrieval import recent_history

    log = samples.log
    ratings = log["rating"].to_numpy(np.float64)
    positive = (ratings > samples.corpus.label_threshold).astype(np.float64)
    rating_sums = np.concatenate([[0.0], np.cumsum(ratings)])
    positive_sums = np.concatenate([[0.0], np.cumsum(positive)])
    offsets = frame["history_offset"].to_numpy()
    lengths = frame["history_length"].to_numpy()
    safe = np.maximum(lengths, 1)
    features = {
        "history_length": lengths,
        "history_mean_rating": (rating_sums[offsets + lengths] - rating_sums[offsets]) / safe,
        "history_positive_rate": (positive_sums[offsets + lengths] - positive_sums[offsets]) / safe,
    }
    recent = recent_history(offsets, lengths, K)
    recent_ratings = np.where(recent.positions >= 0, ratings[np.maximum(recent.positions, 0)], np.nan)
    features["recent_mean_rating"] = np.nanmean(recent_ratings, axis=1)
    similar = retriever.select(log["item_row"].to_numpy(), frame["item_row"].to_numpy(), offsets, lengths, K,
                               order="similarity")
    # order="similarity" shows the most similar last; flip so column 0 is the most similar.
    used = similar.lengths
    flipped = np.full_like(similar.positions, -1)
    for column in range(K):
        source = used - 1 - column
        valid = source >= 0
        flipped[valid, column] = similar.positions[valid, source[valid]]
    valid = flipped >= 0
    rows = log["item_row"].to_numpy()[np.maximum(flipped, 0)]
    targets = frame["item_row"].to_numpy()[:, None]
    similarity = np.einsum("nkd,nkd->nk", retriever.vectors[rows], retriever.vectors[np.broadcast_to(targets, rows.shape)])
    for column in range(K):
        features[f"similar_{column}_rating"] = np.where(valid[:, column], ratings[np.maximum(flipped[:, column], 0)], np.nan)
        features[f"similar_{column}_similarity"] = np.where(valid[:, column], similarity[:, column], np.nan)
    features["similar_mean_rating"] = np.nanmean(np.where(valid, ratings[np.maximum(flipped, 0)], np.nan), axis=1)
    table = pd.DataFrame(features)
    table["user_id"] = frame["user_id"].to_numpy()
    table["item_id"] = frame["item_id"].to_numpy()
    table["genre"] = samples.items["genre"].to_numpy()[frame["item_row"].to_numpy()]
    if samples.corpus.profile_columns:
        profile = samples.users.set_index("user_id").reindex(frame["user_id"].to_numpy())
        for column in samples.corpus.profile_columns:
            table[column] = profile[column].to_numpy()
    return table


CATEGORICAL = ["user_id", "item_id", "genre", "gender", "age", "job"]
#: The collaborative statistic columns (rella_hf.collaborative), at the builder's default prior strength.
PRIOR_STRENGTH = 10.0


def collaborative_table(samples, frame) -> pd.DataFrame:
    """The leak-free collaborative statistics of ``frame``'s samples (same order)."""
    from rella_hf.collaborative import CollaborativeIndex

    return CollaborativeIndex(samples, PRIOR_STRENGTH).statistics(frame).frame()


def logistic_features(statistics: pd.DataFrame, history: pd.DataFrame | None) -> np.ndarray:
    """Inputs of the logistic baselines: the statistics (counts as log1p, a missing user mean as 0 with a flag)."""
    columns = [np.log1p(statistics["item_prior_ratings"].to_numpy(np.float64)),
               statistics["item_mean_rating"].to_numpy(np.float64), statistics["item_positive_rate"].to_numpy(np.float64),
               np.log1p(statistics["user_history_length"].to_numpy(np.float64)),
               np.nan_to_num(statistics["user_mean_rating"].to_numpy(np.float64))]
    if history is not None:
        columns.append(np.nan_to_num(history["recent_mean_rating"].to_numpy(np.float64)))
        # collaborative="all": the shown items one by one (an empty slot as 0; its flag is the length above).
        shown = sorted(column for column in history if column.startswith(("shown_rating_", "shown_mean_")))
        columns += [np.nan_to_num(history[column].to_numpy(np.float64)) for column in shown]
        if shown:
            columns.append(np.nan_to_num(history["shown_mean_difference"].to_numpy(np.float64)))
    return np.stack(columns, axis=1)


def shown_item_table(samples, frame, index, K: int, with_means: bool) -> pd.DataFrame:
    """The recent-K prompt's history numbers: their mean rating; with ``with_means`` each shown item's
    rating and leak-free community mean (oldest first, as shown) and the mean rating-minus-community-mean."""
    from rella_hf.retrieval import recent_history

    shown = recent_history(frame["history_offset"].to_numpy(), frame["history_length"].to_numpy(), K)
    present = np.arange(shown.positions.shape[1])[None, :] < shown.lengths[:, None]
    ratings = np.where(present, samples.log["rating"].to_numpy(np.float64)[np.maximum(shown.positions, 0)], np.nan)
    table = {"recent_mean_rating": np.nanmean(ratings, axis=1)}
    if with_means:
        flat_positions, list_offsets = shown.flat()
        means = np.full(ratings.shape, np.nan)
        # flat() lists the same slots (the first `lengths` of each row) row by row, in slot order.
        means[present] = index.shown_item_means(frame, flat_positions, list_offsets)
        for slot in range(K):
            table[f"shown_rating_{slot}"] = ratings[:, slot]
            table[f"shown_mean_{slot}"] = means[:, slot]
        table["shown_mean_difference"] = np.nanmean(ratings - means, axis=1)
    return pd.DataFrame(table)


def fit_logistic(samples, tables, statistics, labels, with_recent: bool):
    """A standardised logistic regression fitted on train; returns (validation AUC, test scores)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from rella_hf.metrics import ctr_metrics

    inputs = {name: logistic_features(statistics[name], tables[name] if with_recent else None) for name in statistics}
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(inputs["train"], labels["train"])
    validation_auc = ctr_metrics(labels["validation"], model.predict_proba(inputs["validation"])[:, 1])["auc"]
    return validation_auc, model.predict_proba(inputs["test"])[:, 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-1m", "ml-latest-small"])
    parser.add_argument("--K", type=int, default=10)
    parser.add_argument("--collaborative", action="store_true", help="add the collaborative statistics as features")
    parser.add_argument("--logistic", action="store_true", help="logistic regressions on the statistics instead")
    args = parser.parse_args()

    try:
        import lightgbm
    except ImportError:
        raise SystemExit("baseline_gbdt.py: LightGBM is not installed; run `pip install -e .[experiments]`") from None

    from rella_hf.builders.base import ReLLaConfig, item_embeddings
    from rella_hf.metrics import ctr_metrics
    from rella_hf.retrieval import SemanticRetriever
    from rella_hf.samples import load_samples

    results_file = RESULTS / "baseline.jsonl"
    for dataset in args.datasets:
        if args.logistic:
            run_logistic(dataset, args.K, results_file)
            continue
        setting = f"{dataset}/lightgbm-K{args.K}" + ("-collab" if args.collaborative else "")
        if setting in done(results_file):
            continue
        start = time.perf_counter()
        samples = load_samples(dataset, data_dir=data_dir(dataset))
        vectors = item_embeddings(samples, ReLLaConfig(name="baseline", retrieval="semantic", embedder=EMBEDDER))
        retriever = SemanticRetriever(vectors)
        tables = {name: history_features(samples, frame, args.K, retriever) for name, frame in samples.splits.items()}
        if args.collaborative:
            for name, frame in samples.splits.items():
                tables[name] = pd.concat([tables[name], collaborative_table(samples, frame)], axis=1)
        categories = {column: pd.Categorical(pd.concat([t[column] for t in tables.values()])).categories
                      for column in CATEGORICAL if column in tables["train"]}
        for table in tables.values():
            for column, values in categories.items():
                table[column] = pd.Categorical(table[column], categories=values)
        labels = {name: frame["label"].to_numpy() for name, frame in samples.splits.items()}
        feature_seconds = time.perf_counter() - start

        best = None
        for num_leaves in (31, 127):
            model = lightgbm.LGBMClassifier(n_estimators=2000, learning_rate=0.05, num_leaves=num_leaves,
                                            subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
                                            random_state=SUBSET_SEED, verbose=-1)
            model.fit(tables["train"], labels["train"], eval_X=tables["validation"], eval_y=labels["validation"],
                      eval_metric="auc", callbacks=[lightgbm.early_stopping(50, verbose=False)])
            validation_auc = ctr_metrics(labels["validation"], model.predict_proba(tables["validation"])[:, 1])["auc"]
            print(dataset, "num_leaves", num_leaves, "validation AUC", round(validation_auc, 4), "trees", model.best_iteration_, flush=True)
            if best is None or validation_auc > best[0]:
                best = (validation_auc, num_leaves, model)
        validation_auc, num_leaves, model = best
        test_scores = model.predict_proba(tables["test"])[:, 1]
        subset = np.sort(np.random.default_rng(SUBSET_SEED).choice(len(test_scores), size=TEST_SUBSET, replace=False))
        full_test = ctr_metrics(labels["test"], test_scores)
        metrics = ctr_metrics(labels["test"][subset], test_scores[subset])
        meta = {"stage": "full-shot baseline", "dataset": dataset, "model": f"LightGBM (num_leaves={num_leaves})", "K": args.K,
                "collaborative": args.collaborative}
        save_scores(RUNS / dataset, setting.split("/", 1)[1], labels["test"][subset], test_scores[subset], meta)
        append_result(results_file, {
            "setting": setting, **meta, **metrics, "validation_auc": validation_auc, "trees": int(model.best_iteration_),
            "full_test": full_test, "train_rows": int(len(labels["train"])),
            "sample_ids_head": samples.splits["test"]["sample_id"].to_numpy()[subset][:5].tolist(),
            "feature_seconds": round(feature_seconds, 1), "seconds": round(time.perf_counter() - start, 1),
        })
        print(setting, json.dumps({key: round(value, 4) for key, value in metrics.items()}), flush=True)


def run_logistic(dataset: str, K: int, results_file) -> None:
    """The three logistic baselines of one dataset (statistics alone; plus the recent-K shown mean; plus the shown
    items' ratings and community means)."""
    from rella_hf.collaborative import CollaborativeIndex
    from rella_hf.metrics import ctr_metrics
    from rella_hf.samples import load_samples

    samples = load_samples(dataset, data_dir=data_dir(dataset))
    index = CollaborativeIndex(samples, PRIOR_STRENGTH)
    statistics = {name: index.statistics(frame).frame() for name, frame in samples.splits.items()}
    labels = {name: frame["label"].to_numpy() for name, frame in samples.splits.items()}
    subset = np.sort(np.random.default_rng(SUBSET_SEED).choice(len(labels["test"]), size=TEST_SUBSET, replace=False))
    variants = {"logistic-stats": (False, False, "the collaborative statistics"),
                f"logistic-stats-recentK{K}": (True, False, f"the collaborative statistics + recent-{K} mean rating"),
                f"logistic-stats-all-recentK{K}": (True, True, f"the collaborative statistics + the recent-{K} items' "
                                                               "ratings and community means (collaborative='all')")}
    shown_tables: dict[bool, dict] = {}
    for name_of_setting, (with_recent, with_means, described) in variants.items():
        setting = f"{dataset}/{name_of_setting}"
        if setting in done(results_file):
            continue
        start = time.perf_counter()
        if with_means not in shown_tables:
            shown_tables[with_means] = {name: shown_item_table(samples, frame, index, K, with_means)
                                        for name, frame in samples.splits.items()}
        recent = shown_tables[with_means]
        validation_auc, test_scores = fit_logistic(samples, recent, statistics, labels, with_recent)
        metrics = ctr_metrics(labels["test"][subset], test_scores[subset])
        meta = {"stage": "statistics baseline", "dataset": dataset, "K": K, "model": f"logistic regression on {described}"}
        save_scores(RUNS / dataset, setting.split("/", 1)[1], labels["test"][subset], test_scores[subset], meta)
        append_result(results_file, {"setting": setting, **meta, **metrics, "validation_auc": validation_auc,
                                     "full_test": ctr_metrics(labels["test"], test_scores),
                                     "train_rows": int(len(labels["train"])), "seconds": round(time.perf_counter() - start, 1)})
        print(setting, json.dumps({key: round(value, 4) for key, value in metrics.items()}), flush=True)


if __name__ == "__main__":
    main()
