"""Readers of the raw recommendation corpora, one module per corpus, behind one registry."""

from __future__ import annotations

from .amazon_2023 import AmazonReviews2023
from .base import Corpus, CorpusTables, read_delimited
from .book_crossing import BookCrossing
from .interactions import Interactions, SourceOptions, changed_source_fields
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
        MovieLensLatestFull, MovieLensLatestSmall, BookCrossing, Interactions, AmazonReviews2023,
    )
}


def registered_name(name: str) -> str | None:
    """The registered corpus name ``name`` spells (case-insensitive; a ``rella/`` prefix is allowed), or None.

    Args:
        name: e.g. "ml-1m", "ML-1M" or "rella/ml-1m".
    """
    key = name.split("/", 1)[1] if name.lower().startswith("rella/") else name
    return {registered.lower(): registered for registered in CORPORA}.get(key.lower())


def get_corpus(name: str, settings=None) -> Corpus:
    """Return the corpus registered under ``name`` (case-insensitive; a ``rella/`` prefix is allowed),
    configured by ``settings``.

    Args:
        name: a registered corpus name.
        settings: the build's config (or a mapping of its fields): corpora read from the user's
            files (``interactions``, ``amazon-2023``) take their files, columns and protocol from
            its :class:`~rella_hf.corpora.interactions.SourceOptions` fields; the other corpora
            refuse any such field set away from its default. None: the defaults.

    Raises:
        RellaError: for an unknown name, listing the known ones.
        ConfigError: for a source field the corpus does not read.
    """
    from ..errors import ConfigError, RellaError

    registered = registered_name(name)
    if registered is None:
        raise RellaError(f"unknown dataset {name!r}; expected one of {', '.join(sorted(CORPORA))}")
    corpus = CORPORA[registered]
    if issubclass(corpus, Interactions):
        return corpus(settings)
    if settings is not None:
        changed = changed_source_fields(settings)
        if changed:
            raise ConfigError(f"{', '.join(changed)} appl(ies) to corpora read from your files (interactions, "
                              f"amazon-2023), not to {corpus.name}; drop it or use --dataset interactions")
    return corpus()


__all__ = ["CORPORA", "AmazonReviews2023", "Corpus", "CorpusTables", "Interactions", "SourceOptions",
           "bundled_ml_latest_small", "get_corpus", "read_delimited", "registered_name"]
