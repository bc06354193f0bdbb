"""The Spark engine: ReLLa datasets built on Apache Spark, row for row the in-process builder's.

``rella_hf.load_dataset(name, ..., engine="spark", spark_master="local[2]")`` (or
``spark_session=``) runs the same protocol with the corpus's ratings on Spark: the ratings file
read and validated in pieces (:mod:`.ratings`), per-user order by window functions and global
ranks by timestamp buckets (:mod:`.samples`), retrieval and rendering on the executors with the
in-process functions (:mod:`.render`), parquet shards into the in-process cache entry
(:mod:`.build`). Needs ``pip install 'rella-hf[spark]'`` and Java 17+.

Nothing below this package imports it.
"""

from .build import SparkBuild, load_dataset, prompt_frames, write_parquet
from .session import java_missing, require_spark, spark_session

__all__ = ["SparkBuild", "java_missing", "load_dataset", "prompt_frames", "require_spark", "spark_session",
           "write_parquet"]
