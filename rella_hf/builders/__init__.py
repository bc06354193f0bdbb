"""``datasets`` builders of ReLLa prompt datasets: one per registered corpus, derived from the registry.

Adding a corpus takes one corpus module under :mod:`rella_hf.corpora` and one line in its
``CORPORA`` registry; its builder class (``<CorpusClass>Builder``, e.g. ``MovieLens1MBuilder``)
is made here. :func:`rella_hf.load_dataset` (:mod:`rella_hf.loading`) picks and runs it.
"""

from __future__ import annotations

from ..corpora import CORPORA, Corpus, registered_name
from ..errors import RellaError
from .base import ReLLaBuilder, ReLLaConfig, dataset_settings, features_for


def _builder_class(corpus: type[Corpus]) -> type[ReLLaBuilder]:
    """The builder class of ``corpus``: :class:`ReLLaBuilder` with ``CORPUS`` set, named after the corpus class."""
    name = f"{corpus.__name__}Builder"
    summary = (corpus.__doc__ or corpus.name).strip().splitlines()[0]
    return type(name, (ReLLaBuilder,), {"CORPUS": corpus.name, "__module__": __name__,
                                         "__doc__": f"ReLLa prompts of {summary}", "__qualname__": name})


BUILDERS: dict[str, type[ReLLaBuilder]] = {name: _builder_class(corpus) for name, corpus in CORPORA.items()}
# Module attributes too, so the classes pickle by reference (multiprocessing, ``datasets`` fingerprints).
globals().update({builder.__name__: builder for builder in BUILDERS.values()})


def get_builder_class(name: str) -> type[ReLLaBuilder]:
    """The builder class of corpus ``name`` (case-insensitive; a ``rella/`` prefix is allowed).

    Raises:
        RellaError: for an unknown name, listing the known ones.
    """
    registered = registered_name(name)
    if registered is None:
        raise RellaError(f"unknown dataset {name!r}; expected one of {', '.join(sorted(BUILDERS))} or a Hub repo 'org/name'")
    return BUILDERS[registered]


__all__ = ["BUILDERS", "ReLLaBuilder", "ReLLaConfig", "dataset_settings", "features_for", "get_builder_class"]
