"""The Spark engine's build: corpus files -> validated ratings -> samples -> prompts -> parquet.

:func:`prompt_frames` returns the rendered rows as Spark DataFrames (one per split, in sample
order), e.g. for :meth:`datasets.Dataset.from_spark`; :func:`write_parquet` writes them as parquet
shards; :func:`load_dataset` fills the same ``datasets`` cache entry the in-process builder would
(same settings, same corpus-file digest) from those shards, so both engines return the same
``DatasetDict``, with the same features and dataset card, and either one's cache serves the other.
"""

from __future__ import annotations

import glob
import logging
import os
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataFormatError

logger = logging.getLogger(__name__)


@dataclass
class SparkBuild:
    """What :func:`prompt_frames` made: the rendered rows and the split sizes they must have.

    Attributes:
        rendered: every kept sample's row (:func:`rella_hf.spark.render.render_schema`), persisted.
        sizes: split name -> samples kept (splits without samples included, with 0).
        cached: DataFrames this build persisted; :meth:`release` unpersists them.
    """

    rendered: object
    sizes: dict[str, int]
    cached: list = field(default_factory=list)

    def split(self, name: str):
        """The rows of split ``name`` in sample order, without the split code."""
        from pyspark.sql import functions as F

        from .samples import SPLIT_CODES

        return (self.rendered.filter(F.col("split") == SPLIT_CODES.index(name)).drop("split")
                .orderBy("sample_id"))

    def release(self) -> None:
        """Unpersist what the build cached."""
        for frame in self.cached:
            frame.unpersist()


def _corpus_folder(corpus, data_dir) -> Path:
    folder = Path(data_dir) if data_dir is not None else corpus.download()
    if not folder.is_dir():
        raise DataFormatError(folder, f"data_dir is not a folder; expected one holding {', '.join(corpus.required_files)}")
    return folder


def reference_ratings(log, selected, corpus, protocol):
    """The collaborative statistics' reference ratings, gathered on the driver and sorted once.

    An item's statistics need every earlier rating of it, which no executor's slice of the log
    (partitioned by user) holds, so the reference's three numeric columns are collected (12 bytes
    a rating on the wire; the sorted :class:`~rella_hf.collaborative.ReferenceRatings` keeps 48 a
    rating, on the driver and in each worker's broadcast copy: about 1.2 GB for ML-25M).
    Chronological corpora: every rating. Shuffled-user corpora: the train samples' users' ratings
    up to their sample (histories and targets), as the in-process build takes them.
    """
    from pyspark.sql import functions as F

    from ..collaborative import ReferenceRatings
    from .samples import SPLIT_CODES

    rows = log.filter(F.col("kind").isNull())
    low, high = rows.agg(F.min("rating"), F.max("rating")).first()
    midpoint = float((low + high) / 2) if low is not None else 0.0
    threshold = protocol.threshold_for(corpus)
    if corpus.protocol == "chronological":
        frame = rows.select("item_row", "rating", "timestamp").toPandas()
        return ReferenceRatings.from_ratings(frame["item_row"].to_numpy(), frame["rating"].to_numpy(),
                                             frame["timestamp"].to_numpy(), threshold=threshold, midpoint=midpoint)
    train = (selected.filter(F.col("split") == SPLIT_CODES.index("train"))
             .select("user_id", F.col("pos").alias("sample_pos"), "sample_id"))
    frame = (rows.join(train, "user_id").filter(F.col("pos") <= F.col("sample_pos"))
             .select("item_row", "rating").toPandas())
    train_ids = np.array([row["sample_id"] for row in train.select("sample_id").collect()], dtype=np.int64)
    return ReferenceRatings.from_ratings(frame["item_row"].to_numpy(), frame["rating"].to_numpy(), None,
                                         threshold=threshold, midpoint=midpoint, train_sample_ids=train_ids)


def prompt_frames(spark, corpus_name: str, data_dir, config) -> SparkBuild:
    """Validate the corpus files and describe its prompt rows on Spark, as the in-process builder makes them.

    Validation, counting and ranking run now (errors are raised here, one line each, as the
    in-process reader words them); retrieval and rendering run when the rows are used.

    Args:
        spark: the SparkSession.
        corpus_name: a registered corpus (the MovieLens family, Book-Crossing).
        data_dir: folder with its release files (None: the download cache).
        config: the :class:`~rella_hf.builders.ReLLaConfig` of the build.

    Raises:
        ConfigError: for the in-process protocol errors.
        DataFormatError: for a bad corpus file.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from ..builders.base import check_counts, item_embeddings
    from ..corpora import get_corpus
    from ..samples import LifelongSamples
    from .ratings import RatingsSource, driver_ratings
    from .render import render_input, render_partition, render_schema
    from .samples import corpus_counts, lifelong_log, select_samples, shuffled_log, split_sizes

    corpus = get_corpus(corpus_name, config)
    folder = _corpus_folder(corpus, data_dir)
    protocol = config.protocol()
    if corpus.ratings_file is not None:
        users, items = corpus.read_catalogue(folder)
        source = RatingsSource(spark, corpus, folder, users, items)
        ratings = source.parsed
    else:
        # Book-Crossing: read and validated on the driver by its in-process reader (1.1 M ratings).
        source = None
        users, items, ratings = driver_ratings(spark, corpus, folder)
    if corpus.protocol in ("chronological", "user_last_out"):
        log = lifelong_log(ratings)
    elif corpus.protocol == "shuffled_user":
        log = shuffled_log(ratings, protocol.seed)
    else:  # pragma: no cover - the registry guards this
        raise ConfigError(f"engine='spark' does not know the {corpus.protocol!r} protocol of {corpus.name}")
    log = log.persist(StorageLevel.MEMORY_AND_DISK)
    cached = [log]
    if source is not None:
        source.raise_first_error(log)
    counts = corpus_counts(log)
    if counts["repeaters"] and not corpus.allows_repeats:
        if source is not None:
            source.raise_duplicate()
        raise RuntimeError("a user rates an item twice but no repeated line was found")  # pragma: no cover
    selected, plan = select_samples(log, corpus, protocol)
    selected = selected.persist(StorageLevel.MEMORY_AND_DISK)
    cached.append(selected)
    sizes = split_sizes(plan)
    longest = selected.agg(F.max("pos")).first()[0] if sum(sizes.values()) else 0
    check_counts(corpus, protocol, config, sizes, users=counts["users"], items=len(items),
                 interactions=counts["interactions"], most_ratings=counts["most"], longest_history=int(longest or 0))
    empty_log = pd.DataFrame({"item_row": [], "rating": [], "timestamp": []})
    users_table = users if users is not None else pd.DataFrame({"user_id": []})
    vectors = None
    if config.retrieval == "semantic":
        # Embeddings are computed once, here on the driver (and cached on its disk), then broadcast.
        vectors = item_embeddings(LifelongSamples(corpus, users_table, items, empty_log, {}, protocol), config)
    reference = None if config.collaborative == "none" else reference_ratings(log, selected, corpus, protocol)
    # Workers cache the context by ``build_id``: broadcast objects carry no id on the worker side,
    # and their memory address is reused by a later build in a long-lived worker.
    context = spark.sparkContext.broadcast({"build_id": uuid.uuid4().hex, "corpus": corpus.name, "config": config,
                                            "items": items, "users": users_table, "vectors": vectors,
                                            "reference": reference})
    rendered = render_input(log, selected, sum(sizes.values())).mapInArrow(
        partial(render_partition, context=context), render_schema(corpus, config.collaborative))
    rendered = rendered.persist(StorageLevel.MEMORY_AND_DISK)
    cached.append(rendered)
    return SparkBuild(rendered=rendered, sizes=sizes, cached=cached)


def write_parquet(build: SparkBuild, output_dir) -> dict[str, list[str]]:
    """Write each non-empty split as parquet shards ``output_dir/<split>/part-*.parquet`` in sample order.

    Returns:
        split name -> its shard paths, in order (rows ascend by ``sample_id`` across them).

    Raises:
        RuntimeError: when a split's row count differs from the protocol's (a broken partitioning).
    """
    from .samples import SPLIT_CODES

    written = {}
    counts = {row["split"]: row["count"] for row in build.rendered.groupBy("split").count().collect()}
    for name, size in build.sizes.items():
        got = counts.get(SPLIT_CODES.index(name), 0)
        if got != size:
            raise RuntimeError(f"the Spark build rendered {got} {name} rows; the protocol keeps {size}")
        if not size:
            continue
        folder = os.path.join(str(output_dir), name)
        build.split(name).write.mode("overwrite").parquet(folder)
        written[name] = sorted(glob.glob(os.path.join(folder, "part-*.parquet")))
    return written


def load_dataset(path: str, K: int = 5, retrieval: str = "recent", *, split: str | None = None, data_dir=None,
                 cache_dir=None, spark_master: str | None = None, spark_session=None, **config_kwargs):
    """:func:`rella_hf.load_dataset` on Spark: the same cache entry, filled from parquet shards.

    When the entry exists (built by either engine) it is returned as it is. Otherwise the corpus is
    built on Spark, written as parquet shards beside the entry (``<entry>.spark-parquet/<split>/``,
    kept for ``datasets.load_dataset("parquet", ...)``), and copied into the entry.

    Args:
        path, K, retrieval, split, data_dir, cache_dir, **config_kwargs: as :func:`rella_hf.load_dataset`.
        spark_master: master URL of a session to start (default ``local[2]``).
        spark_session: an existing SparkSession to use instead.
    """
    from ..loading import _check_known, is_published, make_builder, prepare
    from .session import require_spark
    from .session import spark_session as start_session

    _check_known(config_kwargs)
    if is_published(path):
        raise ConfigError(f"engine='spark' builds from a corpus; {path!r} is a published dataset, load it without engine")
    if spark_session is not None and spark_master is not None:
        raise ConfigError("pass spark_master or spark_session, not both")
    require_spark()
    builder = make_builder(path, K, retrieval, data_dir=data_dir, cache_dir=cache_dir, **config_kwargs)
    if not builder.is_prepared():
        spark = spark_session if spark_session is not None else start_session(spark_master or "local[2]")
        build = prompt_frames(spark, builder.CORPUS, builder.config.data_dir, builder.config)
        try:
            builder.rendered_parquet = write_parquet(build, builder.cache_dir + ".spark-parquet")
        finally:
            build.release()
    prepare(builder)
    return builder.as_dataset(split=split)
