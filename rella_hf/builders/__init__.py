"""``datasets`` builders of ReLLa prompt datasets (one per corpus) and :func:`load_dataset`."""

from __future__ import annotations

import dataclasses
import os

from datasets.exceptions import DatasetGenerationError

from .base import ReLLaBuilder, ReLLaConfig, dataset_settings, features_for
from .book_crossing import BookCrossingBuilder
from .ml_100k import MovieLens100KBuilder
from .ml_1m import MovieLens1MBuilder
from .ml_latest import (
    MovieLens20MBuilder,
    MovieLens25MBuilder,
    MovieLens32MBuilder,
    MovieLensLatestBuilder,
    MovieLensLatestSmallBuilder,
)

BUILDERS: dict[str, type[ReLLaBuilder]] = {
    builder.CORPUS: builder
    for builder in (
        MovieLens1MBuilder, MovieLens100KBuilder, MovieLens25MBuilder, MovieLens20MBuilder, MovieLens32MBuilder,
        MovieLensLatestBuilder, MovieLensLatestSmallBuilder, BookCrossingBuilder,
    )
}


def get_builder_class(name: str) -> type[ReLLaBuilder]:
    """The builder class of corpus ``name`` (case-insensitive; a ``rella/`` prefix is allowed)."""
    from ..errors import RellaError

    key = name.split("/", 1)[1] if name.lower().startswith("rella/") else name
    by_lower = {corpus.lower(): builder for corpus, builder in BUILDERS.items()}
    if key.lower() not in by_lower:
        raise RellaError(f"unknown dataset {name!r}; expected one of {', '.join(sorted(BUILDERS))} or a Hub repo 'org/name'")
    return by_lower[key.lower()]


def load_dataset(
    path: str,
    K: int = 5,
    retrieval: str = "recent",
    *,
    split: str | None = None,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    **config_kwargs,
):
    """Build (or reuse from cache) a ReLLa prompt dataset, with the feel of ``datasets.load_dataset``.

    Args:
        path: a corpus name ("ml-1m", "ml-25m", "ml-latest-small", "ml-100k", "BookCrossing", ...,
            optionally as "rella/<name>") or a Hub dataset repo / exported folder ("org/name")
            published by :func:`rella_hf.hub.push_dataset`.
        K: history items per prompt.
        retrieval: "recent" or "semantic" (SUBR).
        split: one split name, or None for the whole :class:`datasets.DatasetDict`.
        data_dir: folder with the corpus's release files (None: download; ml-latest-small is bundled).
        cache_dir: the ``datasets`` cache folder (default: the ``datasets`` cache).
        **config_kwargs: any other :class:`ReLLaConfig` field (order, history_format, embedder,
            pooling, pca_dim, chat_model, max_prompt_tokens, sample sizes, seeds, ...).

    Returns:
        A ``DatasetDict`` (train / validation / test; Book-Crossing train / test) or one ``Dataset``.
    """
    from ..utils import fingerprint

    is_local_corpus = "/" not in path or path.lower().startswith("rella/")
    if not is_local_corpus or os.path.isdir(path):
        from ..errors import ConfigError
        from ..hub import load_published

        order = config_kwargs.pop("order", "chronological")
        if config_kwargs:
            raise ConfigError(
                f"{path!r} is a published dataset whose configs fix every other setting; "
                f"drop {', '.join(sorted(config_kwargs))} or build from the corpus instead"
            )
        extra = {} if cache_dir is None else {"cache_dir": str(cache_dir)}
        return load_published(path, K=K, retrieval=retrieval, order=order, split=split, **extra)
    builder_class = get_builder_class(path)
    from .. import __version__
    from ..corpora import get_corpus
    from ..errors import ConfigError
    from .fingerprint import corpus_files_digest

    known = {field.name for field in dataclasses.fields(ReLLaConfig)} - {"name", "version", "data_dir", "data_files", "description"}
    unknown = sorted(set(config_kwargs) - known)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for load_dataset; expected ReLLaConfig fields: {', '.join(sorted(known))}"
        )
    corpus = get_corpus(builder_class.CORPUS)
    if data_dir is not None and not os.path.isdir(data_dir):
        raise ConfigError(f"data_dir={str(data_dir)!r} is not a folder; expected one holding {', '.join(corpus.required_files)}")
    # The cache key holds the files' contents, not only their folder: a fixed file is a new build.
    source = data_dir if data_dir is not None else (corpus.download() if corpus.redistributable else None)
    content = corpus_files_digest(corpus, source) if source is not None else "release-verified-by-download"
    builder = builder_class(
        cache_dir=None if cache_dir is None else str(cache_dir),
        data_dir=None if data_dir is None else str(os.path.abspath(data_dir)),
        hash=fingerprint("rella-hf", __version__, content)[:16],
        K=K,
        retrieval=retrieval,
        **config_kwargs,
    )
    try:
        builder.download_and_prepare()
    except DatasetGenerationError as error:
        ours = _our_error(error)
        if ours is error:
            raise
        raise ours from None
    return builder.as_dataset(split=split)


def _our_error(error: BaseException) -> BaseException:
    """The rella-hf error a ``datasets`` generation error wraps (its cause chain), else the error itself."""
    from ..errors import RellaError

    seen = set()
    cause = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, RellaError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return error


__all__ = ["BUILDERS", "ReLLaBuilder", "ReLLaConfig", "dataset_settings", "features_for", "get_builder_class", "load_dataset"]
