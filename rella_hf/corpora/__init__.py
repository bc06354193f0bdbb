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


def get_corpus(name: str) -> Corpus:
    """Return the corpus registered under ``name`` (case-insensitive).

    Raises:
        RellaError: for an unknown name, listing the known ones.
    """
    from ..errors import RellaError

    by_lower = {key.lower(): corpus for key, corpus in CORPORA.items()}
    corpus = by_lower.get(name.lower())
    if corpus is None:
        raise RellaError(f"unknown dataset {name!r}; expected one of {', '.join(sorted(CORPORA))}")
    return corpus()


__all__ = ["CORPORA", "Corpus", "CorpusTables", "bundled_ml_latest_small", "get_corpus", "read_delimited"]
