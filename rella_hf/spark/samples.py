"""ReLLa's chronological sample protocol on Spark: per-user order, eligibility, global ranks, splits.

The same protocol as :func:`rella_hf.samples.build_samples`, step for step:

- each user's ratings ordered by (timestamp, item id) with a window function; a rating's
  position in that order is its history length;
- ratings with at least ``min_history`` earlier ones are samples; their global order is
  (timestamp, user, item), and a sample's id is its rank in that order;
- the split ranges and seeded subsets come from :func:`rella_hf.samples.split_plan`, which needs
  only the number of samples, so both engines keep the same ranks.

Ranks are computed without one global sort: the samples are cut into timestamp buckets of
about ``_BUCKET_ROWS`` samples, each bucket is counted, and each bucket is then sorted on its
own (``applyInPandas``); a sample's rank is the count of all earlier buckets plus its place in
its bucket. Only the samples kept by the plan leave this step.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..samples import split_fractions, split_plan

_BUCKET_ROWS = 200_000
SPLIT_CODES = ("train", "validation", "test")
SELECTED_SCHEMA = "user_id long, pos int, sample_id long, split int"


def lifelong_log(parsed):
    """``parsed`` ratings with ``pos``: the rating's place in its user's (timestamp, item id) order.

    The window partitions by user and orders by timestamp then item id, the in-process tie-break
    (item ids and their ranks among the catalogue's ids order alike). Its output is partitioned by
    user and sorted by (user, timestamp, item id) within each partition.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_user = Window.partitionBy("user_id").orderBy("timestamp", "item_id")
    return parsed.withColumn("pos", (F.row_number().over(by_user) - 1).cast("int"))


def corpus_counts(log) -> dict:
    """Users, ratings, the most ratings of one user, and how many users rate an item twice."""
    from pyspark.sql import functions as F

    per_user = (log.filter(F.col("kind").isNull()).groupBy("user_id")
                .agg(F.count(F.lit(1)).alias("n"), F.size(F.collect_set("item_id")).alias("distinct")))
    row = per_user.agg(F.count(F.lit(1)).alias("users"), F.sum("n").alias("interactions"), F.max("n").alias("most"),
                       F.sum(F.when(F.col("n") != F.col("distinct"), 1).otherwise(0)).alias("repeaters")).first()
    return {key: int(row[key] or 0) for key in ("users", "interactions", "most", "repeaters")}


def _rank_bucket(frame: pd.DataFrame, *, offsets: dict, plan: dict) -> pd.DataFrame:
    """``applyInPandas`` body: the kept samples of one timestamp bucket with their global rank and split."""
    order = np.lexsort((frame["item_id"].to_numpy(), frame["user_id"].to_numpy(), frame["timestamp"].to_numpy()))
    frame = frame.iloc[order]
    ranks = offsets[int(frame["bucket"].iat[0])] + np.arange(len(frame), dtype=np.int64)
    split = np.full(len(frame), -1, dtype=np.int32)
    for code, name in enumerate(SPLIT_CODES):
        if name not in plan:
            continue
        start, stop, chosen = plan[name]
        inside = (ranks >= start) & (ranks < stop)
        if chosen is not None:
            offset = ranks - start
            at = np.clip(np.searchsorted(chosen, offset), 0, max(len(chosen) - 1, 0))
            inside &= (chosen[at] == offset) if len(chosen) else False
        split[inside] = code
    kept = split >= 0
    return pd.DataFrame({"user_id": frame["user_id"].to_numpy()[kept], "pos": frame["pos"].to_numpy()[kept],
                         "sample_id": ranks[kept], "split": split[kept]})


def select_samples(log, corpus, protocol):
    """The samples the protocol keeps, as ``(selected, plan)``.

    Args:
        log: :func:`lifelong_log`'s output (rows without errors).
        corpus: a chronological corpus.
        protocol: the :class:`~rella_hf.samples.SampleProtocol`.

    Returns:
        ``selected``: a DataFrame of ``user_id``, ``pos``, ``sample_id`` (global rank) and ``split``
        (index into :data:`SPLIT_CODES`); ``plan``: :func:`~rella_hf.samples.split_plan`'s output.
    """
    from pyspark.sql import functions as F

    eligible = log.filter(F.col("kind").isNull() & (F.col("pos") >= protocol.min_history)).select(
        "timestamp", "user_id", "item_id", "pos")
    stats = eligible.agg(F.count(F.lit(1)).alias("n"), F.min("timestamp").alias("low"),
                         F.max("timestamp").alias("high")).first()
    n = int(stats["n"])
    train_fraction, validation_fraction = split_fractions(corpus, protocol)
    plan = split_plan(n, train_fraction, validation_fraction, protocol.sample_sizes(), protocol.sample_seed,
                      keep_validation=validation_fraction != 0)
    if n == 0:
        return log.sparkSession.createDataFrame([], SELECTED_SCHEMA), plan
    buckets = max(1, math.ceil(n / _BUCKET_ROWS))
    width = max(1, math.ceil((int(stats["high"]) - int(stats["low"]) + 1) / buckets))
    bucketed = eligible.withColumn("bucket", F.floor((F.col("timestamp") - int(stats["low"])) / width).cast("long"))
    counts = sorted((int(row["bucket"]), int(row["count"])) for row in bucketed.groupBy("bucket").count().collect())
    offsets, total = {}, 0
    for bucket, count in counts:
        offsets[bucket] = total
        total += count
    def rank(frame: pd.DataFrame) -> pd.DataFrame:  # a plain function: Spark reads its (absent) type hints
        return _rank_bucket(frame, offsets=offsets, plan=plan)

    selected = bucketed.groupBy("bucket").applyInPandas(rank, SELECTED_SCHEMA)
    return selected, plan


def split_sizes(plan: dict) -> dict[str, int]:
    """Samples kept per split under ``plan``."""
    return {name: (stop - start) if chosen is None else len(chosen) for name, (start, stop, chosen) in plan.items()}
