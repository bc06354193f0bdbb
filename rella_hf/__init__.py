"""ReLLa (retrieval-enhanced LLMs for lifelong sequential behaviour comprehension in recommendation)
for the Hugging Face ecosystem.

``import rella_hf`` stays light: the heavy modules load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"


def load_dataset(path: str, K: int = 5, retrieval: str = "recent", **kwargs):
    """Build or load a ReLLa prompt dataset; see :func:`rella_hf.builders.load_dataset`."""
    from .builders import load_dataset as _load_dataset

    return _load_dataset(path, K=K, retrieval=retrieval, **kwargs)


__all__ = ["__version__", "load_dataset"]
