"""One entry point for ReLLa prompt datasets: a corpus name is built by its ``datasets`` builder, a
published Hub repository or exported folder is loaded as published.

This dispatch sits above both :mod:`rella_hf.builders` and :mod:`rella_hf.hub`, so neither imports
the other for it. Published loads pass ``revision``, ``token`` and ``streaming`` through to
``datasets.load_dataset`` and compare the options asked for with the settings the configuration
was built with (its ``rella_build_config.json``), refusing only a real disagreement.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from datasets.exceptions import DatasetGenerationError

from .errors import ConfigError, RellaError
from .options import ReLLaDataArguments
from .version import __version__

logger = logging.getLogger(__name__)

#: ReLLaConfig fields a caller never sets through ``load_dataset`` keywords.
_NOT_OPTIONS = {"name", "version", "data_dir", "data_files", "description"}


def is_published(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a published dataset (a Hub repo ``org/name`` or an exported folder), not a corpus.

    The one dispatch rule of :func:`load_dataset`: a registered corpus name ("ml-1m", "rella/ml-1m")
    is always a corpus build, even where a folder of that name exists (the unpacked ``ml-1m.zip`` a
    user then passes as ``data_dir``); any other existing folder, or a name with a "/", is published.
    An exported folder that happens to carry a corpus name is loaded by its path ("./ml-1m").
    """
    from .corpora import registered_name

    if isinstance(path, str) and registered_name(path) is not None:
        return False
    return os.path.isdir(path) or "/" in str(path)


def _known_options() -> set[str]:
    from .builders import ReLLaConfig

    return {item.name for item in dataclasses.fields(ReLLaConfig)} - _NOT_OPTIONS


def _check_known(options: dict) -> None:
    unknown = sorted(set(options) - _known_options())
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for load_dataset; expected ReLLaConfig fields: "
                          f"{', '.join(sorted(_known_options()))}")


def load_dataset(
    path: str,
    K: int = 5,
    retrieval: str = "recent",
    *,
    split: str | None = None,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    streaming: bool = False,
    **config_kwargs,
):
    """Build (or reuse from cache) a ReLLa prompt dataset, with the feel of ``datasets.load_dataset``.

    Args:
        path: a corpus name ("ml-1m", "ml-25m", "ml-latest-small", "ml-100k", "BookCrossing", ...,
            optionally as "rella/<name>") or a Hub dataset repo / exported folder ("org/name")
            published by :func:`rella_hf.hub.push_dataset` / :func:`rella_hf.hub.export_dataset`.
        K: history items per prompt.
        retrieval: "recent" or "semantic" (SUBR).
        split: one split name, or None for the whole :class:`datasets.DatasetDict`.
        data_dir: folder with the corpus's release files (None: download; ml-latest-small is bundled).
        cache_dir: the ``datasets`` cache folder (default: the ``datasets`` cache).
        revision: Hub revision of a published dataset.
        token: Hugging Face token for a private published dataset.
        streaming: return an ``IterableDataset(Dict)`` (a corpus build is built, then streamed from its cache).
        **config_kwargs: any other :class:`~rella_hf.builders.ReLLaConfig` field (order, history_format,
            embedder, pooling, pca_dim, chat_model, max_prompt_tokens, sample sizes, seeds, ...). For a
            published dataset they must agree with the settings it was built with.

    Returns:
        A ``DatasetDict`` (train / validation / test; Book-Crossing train / test) or one ``Dataset``.
    """
    _check_known(config_kwargs)
    if config_kwargs.get("chat_model") is not None:  # one line before any work, not a Hub validation error later
        from .models import check_model_name

        check_model_name(config_kwargs["chat_model"], "chat_model")
    if is_published(path):
        if data_dir is not None:
            raise ConfigError(f"data_dir applies to corpus builds, but {path!r} is a published dataset; drop data_dir")
        return _load_published(str(path), K, retrieval, split, cache_dir, revision, token, streaming, config_kwargs)
    if revision is not None or token is not None:
        raise ConfigError(f"revision and token apply to published datasets, but {path!r} is a corpus; drop them")
    built = build_dataset(path, K, retrieval, split=split, data_dir=data_dir, cache_dir=cache_dir, **config_kwargs)
    return built.to_iterable_dataset() if streaming and split else (_streamed(built) if streaming else built)


def _streamed(dataset_dict):
    from datasets import IterableDatasetDict

    return IterableDatasetDict({name: dataset.to_iterable_dataset() for name, dataset in dataset_dict.items()})


def build_dataset(path: str, K: int = 5, retrieval: str = "recent", *, split: str | None = None,
                  data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                  **config_kwargs):
    """Build (or reuse from the ``datasets`` cache) the prompt dataset of corpus ``path``; see :func:`load_dataset`."""
    builder = make_builder(path, K, retrieval, data_dir=data_dir, cache_dir=cache_dir, **config_kwargs)
    prepare(builder)
    return builder.as_dataset(split=split)


def make_builder(path: str, K: int = 5, retrieval: str = "recent", *, data_dir: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, **config_kwargs):
    """The builder :func:`build_dataset` prepares for corpus ``path``: its cache entry is keyed by the
    options and the corpus files' contents, so another engine (:mod:`rella_hf.spark`) fills the same entry."""
    from .builders import get_builder_class
    from .builders.fingerprint import corpus_files_digest
    from .corpora import get_corpus
    from .samples import sampler_version
    from .utils import fingerprint

    builder_class = get_builder_class(path)
    if isinstance(config_kwargs.get("item_text_columns"), (list, tuple)):  # config fields stay scalar
        config_kwargs["item_text_columns"] = ",".join(map(str, config_kwargs["item_text_columns"]))
    corpus = get_corpus(builder_class.CORPUS, config_kwargs)
    # Options left at their defaults are not passed: ``datasets`` names the cache entry after the
    # keywords given, so every caller (CLI, training, demo) then shares one entry per build.
    defaults = builder_class.BUILDER_CONFIG_CLASS()
    config_kwargs = {name: value for name, value in config_kwargs.items() if value != getattr(defaults, name)}
    if data_dir is not None and not os.path.isdir(data_dir):
        raise ConfigError(f"data_dir={str(data_dir)!r} is not a folder; expected one holding {', '.join(corpus.required_files)}")
    # The cache key holds the files' contents, not only their folder: a fixed file is a new build. A
    # download happens in the builder (its download manager), verified against the published MD5.
    source = data_dir if data_dir is not None else corpus.bundled_folder()
    content = corpus_files_digest(corpus, source) if source is not None else "release-verified-by-download"
    key = ["rella-hf", __version__, content]
    # A sampler that changed its rows (Book-Crossing's keyed-hash shuffle) keys new cache entries;
    # unchanged samplers add nothing, so their existing entries stay valid.
    version = sampler_version(corpus)
    if version is not None:
        key.append(version)
    return builder_class(
        cache_dir=None if cache_dir is None else str(cache_dir),
        data_dir=None if data_dir is None else str(os.path.abspath(data_dir)),
        hash=fingerprint(*key)[:16],
        K=K,
        retrieval=retrieval,
        **config_kwargs,
    )


def prepare(builder) -> None:
    """``builder.download_and_prepare()``, re-raising the rella-hf error a generation error wraps; an entry
    made by an earlier release gets its ``rella_build_settings.json``."""
    try:
        builder.download_and_prepare()
    except DatasetGenerationError as error:
        ours = _our_error(error)
        if ours is error:
            raise
        raise ours from None
    builder.record_settings()


def _our_error(error: BaseException) -> BaseException:
    """The rella-hf error a ``datasets`` generation error wraps (its cause chain), else the error itself."""
    seen = set()
    cause = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, RellaError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return error


def _load_published(path: str, K: int, retrieval: str, split, cache_dir, revision, token, streaming, options: dict):
    """Load one published configuration after checking ``options`` against its stored build settings."""
    from .hub.datasets import load_published, published_build_config
    from .hub.naming import DEFAULT_ORDER, config_name_for

    order = options.pop("order", DEFAULT_ORDER)
    config_name = config_name_for(K, retrieval, order)
    if options:
        stored = published_build_config(path, config_name, revision=revision, token=token)
        if stored is None:
            logger.warning("%s (%s) records no build settings; the options %s cannot be checked against it.",
                           path, config_name, ", ".join(sorted(options)))
        else:
            differing = sorted(name for name, value in options.items() if name in stored and stored[name] != value)
            if differing:
                built = ", ".join(f"{name}={stored[name]!r}" for name in differing)
                asked = ", ".join(f"{name}={options[name]!r}" for name in differing)
                raise ConfigError(f"{path} configuration {config_name} was built with {built}, but {asked} was "
                                  "asked for; drop those options, or build from the corpus instead")
    hub_kwargs = {"cache_dir": None if cache_dir is None else str(cache_dir), "revision": revision, "token": token,
                  "streaming": streaming or None}
    return load_published(path, K=K, retrieval=retrieval, order=order, split=split,
                          **{key: value for key, value in hub_kwargs.items() if value is not None})


def load_from_arguments(arguments: ReLLaDataArguments, split: str | None = None, **overrides):
    """Build or load the dataset :class:`~rella_hf.options.ReLLaDataArguments` describe.

    For a published dataset only the options changed from their defaults (and ``overrides``) are
    passed on, and compared with the settings it was built with.

    Args:
        arguments: the dataset arguments (corpus or published dataset, build options).
        split: one split, or None for all.
        **overrides: build options that replace the arguments' own (e.g. ``retrieval="semantic"``).
    """
    options = arguments.build_options(changed_only=is_published(arguments.dataset))
    options.update(overrides)
    K, retrieval = options.pop("K", arguments.K), options.pop("retrieval", arguments.retrieval)
    return load_dataset(arguments.dataset, K=K, retrieval=retrieval, split=split, data_dir=arguments.data_dir,
                        cache_dir=arguments.cache_dir, **options)


__all__ = ["build_dataset", "is_published", "load_dataset", "load_from_arguments", "make_builder", "prepare"]
