"""Readers of the raw recommendation corpora, one module per corpus, behind one registry."""

from __future__ import annotations

from .base import Corpus, CorpusTables, read_delimited
from .book_crossing import BookCrossing
from .movielens_1m import MovieLens1M
from .movielens_100k import MovieLens100K
from .movielens_latest import (
    MovieLens20M,
    MovieLens25M,
    MovieLens32M,
    MovieLensLatestFull,
    MovieLensLatestSmall,
    bundled_ml_latest_small,
)

CORPORA: dict[str, type[Corpus]] = {
    corpus.name: corpus
    for corpus in (
        MovieLens1M, MovieLens100K, MovieLens25M, MovieLens20M, MovieLens32M,
        MovieLensLatestFull, MovieLensLatestSmall, BookCrossing,
    )
}


def registered_name(name: str) -> str | None:
    """The registered corpus name ``name`` spells (case-insensitive; a ``rella/`` prefix is allowed), or None.

    Args:
        name: e.g. "ml-1m", "ML-1M" or "rella/ml-1m".
    """
    key = name.split("/", 1)[1] if name.lower().startswith("rella/") else name
    return {registered.lower(): registered for registered in CORPORA}.get(key.lower())


def get_corpus(name: str) -> Corpus:
    """Return the corpus registered under ``name`` (case-insensitive; a ``rella/`` prefix is allowed).

    Raises:
        RellaError: for an unknown name, listing the known ones.
    """
    from ..errors import RellaError

    registered = registered_name(name)
    if registered is None:
        raise RellaError(f"unknown dataset {name!r}; expected one of {', '.join(sorted(CORPORA))}")
    return CORPORA[registered]()


__all__ = ["CORPORA", "Corpus", "CorpusTables", "bundled_ml_latest_small", "get_corpus", "read_delimited", "registered_name"]
