"""ReLLa (retrieval-enhanced LLMs for lifelong sequential behaviour comprehension in recommendation)
for the Hugging Face ecosystem.

``import rella_hf`` stays light: the heavy modules load on first use, including the submodules
reached as attributes (``rella_hf.hub.load_adapter(...)``, ``rella_hf.training.run_training(...)``).
"""

from __future__ import annotations

from .version import __version__

#: Submodules loaded on first attribute access.
_LAZY_SUBMODULES = ("hub", "training", "loading", "options", "scoring", "models", "metrics", "report")


def load_dataset(path: str, K: int = 5, retrieval: str = "recent", **kwargs):
    """Build or load a ReLLa prompt dataset; see :func:`rella_hf.loading.load_dataset`."""
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


__all__ = ["__version__", "hub", "load_dataset", "training"]
