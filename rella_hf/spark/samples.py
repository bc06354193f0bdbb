"""ReLLa's sample protocols on Spark: per-user order, eligibility, global ranks, splits.

The same protocols as :func:`rella_hf.samples.build_samples`, step for step. Chronological
corpora (MovieLens):

- each user's ratings ordered by (timestamp, item id) with a window function; a rating's
  position in that order is its history length;
- ratings with at least ``min_history`` earlier ones are samples; their global order is
  (timestamp, user, item), and a sample's id is its rank in that order.

Shuffled-user corpora (Book-Crossing):

- each rating gets its keyed-hash order key and its user's key (:func:`rella_hf.samples.shuffle_keys`,
  the same numpy function, run on the executors by ``mapInArrow``);
- each user's ratings ordered by (order key, item id) with a window function; users with at
  least ``min_user_ratings`` ratings give one sample, their last rating;
- the samples' global order is (user key, user id).

The split ranges and seeded subsets come from :func:`rella_hf.samples.split_plan`, which needs
only the number of samples, so both engines keep the same ranks.

Ranks are computed without one global sort: the samples are cut into buckets of about
``_BUCKET_ROWS`` samples by the first column of their global order (timestamp, or user key),
each bucket is counted, and each bucket is then sorted on its own (``applyInPandas``); a
sample's rank is the count of all earlier buckets plus its place in its bucket. Only the samples
kept by the plan leave this step.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa

from ..samples import last_out_ranks, last_out_subsets, shuffle_keys, split_fractions, split_plan

_BUCKET_ROWS = 200_000
SPLIT_CODES = ("train", "validation", "test")
SELECTED_SCHEMA = "user_id long, pos int, sample_id long, split int"


def selected_schema(corpus) -> str:
    """:data:`SELECTED_SCHEMA` with the corpus's user id type (strings for some corpora read from your files)."""
    return SELECTED_SCHEMA.replace("user_id long", "user_id string") if corpus.user_id_type == "string" else SELECTED_SCHEMA


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


def _shuffle_keys_batches(batches, *, seed: int):
    """``mapInArrow`` body: each rating batch with ``order_key`` (its place in its user's shuffle)
    and ``user_key`` (its user's place in the sample order), from :func:`rella_hf.samples.shuffle_keys`."""
    for batch in batches:
        users = batch.column("user_id").to_numpy(zero_copy_only=False)
        order = shuffle_keys(seed, users, batch.column("item_id"))
        user = shuffle_keys(seed, users)
        yield pa.RecordBatch.from_arrays([*batch.columns, pa.array(order), pa.array(user)],
                                         names=[*batch.schema.names, "order_key", "user_key"])


def shuffled_log(ratings, seed: int):
    """``ratings`` with ``order_key``, ``user_key``, ``pos`` (place in the user's shuffled order) and ``n``
    (the user's ratings), as the shuffled-user protocol orders them.

    The window partitions by user and orders by (order key, item id), the in-process order (item
    ids break equal keys, as their ranks do there); its output is partitioned by user and sorted by
    (user, position) within each partition.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StructField, StructType

    schema = StructType([*ratings.schema.fields, StructField("order_key", LongType(), False),
                         StructField("user_key", LongType(), False)])
    keyed = ratings.mapInArrow(partial(_shuffle_keys_batches, seed=seed), schema)
    # One ordered window for both columns: Spark sorts each user's ratings once.
    by_user = Window.partitionBy("user_id").orderBy("order_key", "item_id")
    whole = by_user.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    return (keyed.withColumn("pos", (F.row_number().over(by_user) - 1).cast("int"))
            .withColumn("n", F.count(F.lit(1)).over(whole)))


def corpus_counts(log) -> dict:
    """Users, ratings, the most ratings of one user, and how many users rate an item twice."""
    from pyspark.sql import functions as F

    per_user = (log.filter(F.col("kind").isNull()).groupBy("user_id")
                .agg(F.count(F.lit(1)).alias("n"), F.size(F.collect_set("item_id")).alias("distinct")))
    row = per_user.agg(F.count(F.lit(1)).alias("users"), F.sum("n").alias("interactions"), F.max("n").alias("most"),
                       F.sum(F.when(F.col("n") != F.col("distinct"), 1).otherwise(0)).alias("repeaters")).first()
    return {key: int(row[key] or 0) for key in ("users", "interactions", "most", "repeaters")}


def _rank_bucket(frame: pd.DataFrame, *, order: tuple, offsets: dict, plan: dict) -> pd.DataFrame:
    """``applyInPandas`` body: the kept samples of one bucket, sorted by ``order``, with their global rank and split."""
    frame = frame.iloc[np.lexsort([frame[column].to_numpy() for column in reversed(order)])]
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
        log: :func:`lifelong_log`'s output (chronological corpora) or :func:`shuffled_log`'s
            (shuffled-user corpora); error rows are skipped.
        corpus: the corpus.
        protocol: the :class:`~rella_hf.samples.SampleProtocol`.

    Returns:
        ``selected``: a DataFrame of ``user_id``, ``pos``, ``sample_id`` (global rank) and ``split``
        (index into :data:`SPLIT_CODES`); ``plan``: :func:`~rella_hf.samples.split_plan`'s output.
    """
    from pyspark.sql import functions as F

    rows = log.filter(F.col("kind").isNull())
    if corpus.protocol == "user_last_out":
        return _select_last_out(rows, corpus, protocol)
    if corpus.protocol == "chronological":
        order = ("timestamp", "user_id", "item_id")
        eligible = rows.filter(F.col("pos") >= protocol.min_history)
    else:
        # One sample per user with enough ratings: the last rating of the user's shuffled order.
        order = ("user_key", "user_id")
        eligible = rows.filter((F.col("n") >= protocol.min_user_ratings) & (F.col("pos") == F.col("n") - 1))
    eligible = eligible.select(*order, "pos")
    first = order[0]
    stats = eligible.agg(F.count(F.lit(1)).alias("n"), F.min(first).alias("low"), F.max(first).alias("high")).first()
    n = int(stats["n"])
    train_fraction, validation_fraction = split_fractions(corpus, protocol)
    plan = split_plan(n, train_fraction, validation_fraction, protocol.sample_sizes(), protocol.sample_seed,
                      keep_validation=validation_fraction != 0)
    if n == 0:
        return log.sparkSession.createDataFrame([], selected_schema(corpus)), plan
    buckets = max(1, math.ceil(n / _BUCKET_ROWS))
    # Buckets only need to grow with the first order column (any monotone cut gives the same
    # ranks); a float width keeps the literal in range for 63-bit user keys.
    width = float(max(1, math.ceil((int(stats["high"]) - int(stats["low"]) + 1) / buckets)))
    bucketed = eligible.withColumn("bucket", F.floor((F.col(first) - int(stats["low"])) / width).cast("long"))
    counts = sorted((int(row["bucket"]), int(row["count"])) for row in bucketed.groupBy("bucket").count().collect())
    offsets, total = {}, 0
    for bucket, count in counts:
        offsets[bucket] = total
        total += count
    def rank(frame: pd.DataFrame) -> pd.DataFrame:  # a plain function: Spark reads its (absent) type hints
        return _rank_bucket(frame, order=order, offsets=offsets, plan=plan)

    selected = bucketed.groupBy("bucket").applyInPandas(rank, selected_schema(corpus))
    return selected, plan


def _rank_last_out_bucket(frame: pd.DataFrame, *, offsets: dict, plan: dict) -> pd.DataFrame:
    """``applyInPandas`` body of the last-out protocol: a bucket's samples in global order, each with its global
    rank, its split code and, per split, its place among the split's samples (which the seeded subset keys)."""
    frame = frame.iloc[np.lexsort([frame[column].to_numpy() for column in ("item_id", "user_id", "timestamp")])]
    bucket = int(frame["bucket"].iat[0])
    codes = frame["code"].to_numpy()
    ranks = offsets[bucket]["all"] + np.arange(len(frame), dtype=np.int64)
    keep = np.zeros(len(frame), dtype=bool)
    for code, name in enumerate(SPLIT_CODES):
        inside = codes == code
        place = offsets[bucket][code] + np.cumsum(inside) - 1
        chosen = plan[name][2]
        if chosen is None:
            keep |= inside
        elif len(chosen):
            at = np.clip(np.searchsorted(chosen, place), 0, len(chosen) - 1)
            keep |= inside & (chosen[at] == place)
    return pd.DataFrame({"user_id": frame["user_id"].to_numpy()[keep], "pos": frame["pos"].to_numpy()[keep],
                         "sample_id": ranks[keep], "split": codes[keep].astype(np.int32)})


def _select_last_out(rows, corpus, protocol):
    """:func:`select_samples` for the per-user last-out protocol (:func:`rella_hf.samples.last_out_ranks`)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if protocol.train_fraction is not None or protocol.validation_fraction is not None:
        last_out_ranks(np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64), 0, protocol)  # raises its error
    total = F.count(F.lit(1)).over(Window.partitionBy("user_id"))
    eligible = (rows.withColumn("n", total).filter(F.col("pos") >= protocol.min_history)
                .withColumn("from_end", F.col("n") - 1 - F.col("pos"))
                .withColumn("code", F.when(F.col("from_end") == 0, 2).when(F.col("from_end") == 1, 1).otherwise(0))
                .select("timestamp", "user_id", "item_id", "pos", "code"))
    stats = eligible.agg(F.count(F.lit(1)).alias("n"), F.min("timestamp").alias("low"),
                         F.max("timestamp").alias("high")).first()
    n = int(stats["n"])
    if n == 0:
        plan = last_out_subsets({name: 0 for name in SPLIT_CODES}, protocol.sample_sizes(), protocol.sample_seed)
        return rows.sparkSession.createDataFrame([], selected_schema(corpus)), plan
    buckets = max(1, math.ceil(n / _BUCKET_ROWS))
    width = float(max(1, math.ceil((int(stats["high"]) - int(stats["low"]) + 1) / buckets)))
    bucketed = eligible.withColumn("bucket", F.floor((F.col("timestamp") - int(stats["low"])) / width).cast("long"))
    counts = {}
    for row in bucketed.groupBy("bucket", "code").count().collect():
        counts.setdefault(int(row["bucket"]), {})[int(row["code"])] = int(row["count"])
    offsets, running = {}, {"all": 0, 0: 0, 1: 0, 2: 0}
    for bucket in sorted(counts):
        offsets[bucket] = dict(running)
        for code, count in counts[bucket].items():
            running[code] += count
            running["all"] += count
    plan = last_out_subsets({name: running[code] for code, name in enumerate(SPLIT_CODES)}, protocol.sample_sizes(),
                            protocol.sample_seed)

    def rank(frame: pd.DataFrame) -> pd.DataFrame:  # a plain function: Spark reads its (absent) type hints
        return _rank_last_out_bucket(frame, offsets=offsets, plan=plan)

    return bucketed.groupBy("bucket").applyInPandas(rank, selected_schema(corpus)), plan


def split_sizes(plan: dict) -> dict[str, int]:
    """Samples kept per split under ``plan``."""
    return {name: (stop - start) if chosen is None else len(chosen) for name, (start, stop, chosen) in plan.items()}
