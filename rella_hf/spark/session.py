"""The SparkSession the Spark engine runs in: a given one, or one started for a master URL.

pyspark is an optional dependency (``pip install rella-hf[spark]``) and Spark needs Java 17+;
both are checked before anything starts, with a one-line error saying how to get them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys

from ..errors import ConfigError

#: Settings of every session this module starts (a passed-in session is used as it is).
DEFAULT_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    # Prompts with K=30 histories are long; smaller Arrow batches keep the Python workers' memory flat.
    "spark.sql.execution.arrow.maxRecordsPerBatch": "10000",
}


def java_missing() -> str | None:
    """Why Spark cannot start here (no ``java`` on PATH nor under ``JAVA_HOME``), or None."""
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return None
    if shutil.which("java"):
        return None
    return "no Java runtime found (Spark needs Java 17+); install one, e.g. apt-get install -y openjdk-17-jre-headless"


def require_spark() -> None:
    """Raise :class:`ConfigError` when pyspark or Java is missing, saying how to install it."""
    if importlib.util.find_spec("pyspark") is None:
        raise ConfigError("engine='spark' needs pyspark; install it with pip install 'rella-hf[spark]'")
    missing = java_missing()
    if missing:
        raise ConfigError(f"engine='spark': {missing}")


def spark_session(master: str = "local[2]", conf: dict | None = None):
    """A SparkSession on ``master`` (an existing active one with that master is reused).

    Executors run this interpreter (``PYSPARK_PYTHON`` defaults to ``sys.executable``), so they
    import the same rella-hf. A ``local`` master binds the driver to 127.0.0.1.

    Args:
        master: Spark master URL (``local[2]``, ``spark://host:7077``, ``yarn``, ...).
        conf: extra Spark settings, e.g. ``{"spark.driver.memory": "8g"}`` (they apply only when
            this call starts the JVM).
    """
    require_spark()
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName("rella-hf")
    settings = dict(DEFAULT_CONF)
    if master.startswith("local"):
        settings.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
