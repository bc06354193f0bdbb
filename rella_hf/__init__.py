"""ReLLa (retrieval-enhanced LLMs for lifelong sequential behaviour comprehension in recommendation)
for the Hugging Face ecosystem.

``import rella_hf`` stays light: the heavy modules load on first use, including the submodules
reached as attributes (``rella_hf.hub.load_adapter(...)``, ``rella_hf.training.run_training(...)``).
"""

from __future__ import annotations

from .version import __version__

#: Submodules loaded on first attribute access.
_LAZY_SUBMODULES = ("hub", "training", "loading", "options", "scoring", "models", "metrics", "report")


#: How a corpus build runs: in this process, or on Apache Spark (:mod:`rella_hf.spark`).
ENGINES = ("inprocess", "spark")


def load_dataset(path: str, K: int = 5, retrieval: str = "recent", *, engine: str = "inprocess",
                 spark_master: str | None = None, spark_session=None, **kwargs):
    """Build or load a ReLLa prompt dataset; see :func:`rella_hf.loading.load_dataset`.

    Args:
        engine: ``"inprocess"`` (default: the whole corpus in this process) or ``"spark"`` (the same
            rows built on Apache Spark, :mod:`rella_hf.spark`; needs ``rella-hf[spark]`` and Java 17+).
        spark_master: for ``engine="spark"``: the master URL of a session to start (default ``local[2]``).
        spark_session: for ``engine="spark"``: an existing SparkSession to use instead.
    """
    # The dispatch sits here, above both loading and spark (which builds on loading), so neither imports the other.
    if engine == "spark":
        from .spark import load_dataset as _spark_load_dataset

        return _spark_load_dataset(path, K=K, retrieval=retrieval, spark_master=spark_master,
                                   spark_session=spark_session, **kwargs)
    from .errors import ConfigError

    if engine != "inprocess":
        raise ConfigError(f"engine={engine!r} is not one of {', '.join(ENGINES)}")
    if spark_master is not None or spark_session is not None:
        raise ConfigError("spark_master and spark_session need engine='spark'")
    from .loading import load_dataset as _load_dataset

    return _load_dataset(path, K=K, retrieval=retrieval, **kwargs)


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


__all__ = ["ENGINES", "__version__", "hub", "load_dataset", "training"]
