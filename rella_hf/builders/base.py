"""The shared ``datasets`` builder of ReLLa prompt datasets (one subclass per registered corpus).

A build reads the corpus, makes the lifelong samples (:mod:`rella_hf.samples`), selects K
history items per sample (:mod:`rella_hf.retrieval`, with item embeddings from
:mod:`rella_hf.embeddings` for SUBR) and renders the prompts (:mod:`rella_hf.prompts`). Every
setting is a scalar field of :class:`ReLLaConfig`, so ``datasets`` fingerprints it: a changed
config is a new Arrow cache entry, an unchanged one is reused without rebuilding.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

import datasets
import numpy as np
import pyarrow as pa

from ..collaborative import CollaborativeIndex, collaborative_notes
from ..corpora import Corpus, get_corpus
from ..errors import ConfigError, DataFormatError
from ..options import BuildOptions
from ..retrieval import HistorySelection, SemanticRetriever, recent_history
from ..samples import LifelongSamples, SampleProtocol, build_samples, split_names

logger = logging.getLogger(__name__)

_ROWS_PER_TABLE = 20_000


@dataclass
class ReLLaConfig(datasets.BuilderConfig, BuildOptions):
    """Settings of a ReLLa prompt dataset (every field is part of the cache fingerprint).

    The build options (K, retrieval, order, history_format, embedder, pooling, pca_dim, chat_model,
    max_prompt_tokens and the sample protocol) are those of :class:`rella_hf.options.BuildOptions`;
    this config adds the protocol's two seeds.

    Args:
        seed: seed of the Book-Crossing per-user shuffle and sample shuffle (and of PCA).
        sample_seed: seed of the split subsets (``*_sample_size``; paper: 42).
    """

    seed: int = 42
    sample_seed: int = 42

    def __post_init__(self):
        super().__post_init__()
        self.check_build_options()
        self.protocol()  # validates the protocol fields

    def protocol(self) -> SampleProtocol:
        """The :class:`SampleProtocol` these fields describe."""
        names = {field.name for field in fields(SampleProtocol)}
        return SampleProtocol(**{name: value for name, value in asdict(self).items() if name in names})

    def build_settings(self) -> dict:
        """The ReLLa fields as a plain dict (for dataset cards and exports)."""
        base = {field.name for field in fields(datasets.BuilderConfig)}
        return {name: value for name, value in asdict(self).items() if name not in base}


def check_samples(samples: LifelongSamples, tables, config: ReLLaConfig) -> None:
    """Log the counts left after each filter; refuse an empty result and a K no history can fill.

    Runs before any [samples x K] array exists, so ``K=10**9`` fails at once instead of allocating.

    Raises:
        ConfigError: naming the filter that removed every sample (and the value that would keep
            some), or K above the longest history of the corpus.
    """
    counts = {name: len(frame) for name, frame in samples.splits.items()}
    per_user = tables.interactions["user_id"].value_counts()
    longest = max((int(frame["history_length"].max()) for frame in samples.splits.values() if len(frame)), default=0)
    check_counts(samples.corpus, samples.protocol, config, counts, users=len(per_user), items=len(tables.items),
                 interactions=len(tables.interactions), most_ratings=int(per_user.max()) if len(per_user) else 0,
                 longest_history=longest)


def check_counts(corpus: Corpus, protocol: SampleProtocol, config: ReLLaConfig, counts: dict[str, int], *,
                 users: int, items: int, interactions: int, most_ratings: int, longest_history: int) -> None:
    """:func:`check_samples` on counts alone (an engine that never holds the samples passes them).

    Args:
        counts: split name -> samples kept.
        users, items, interactions: corpus sizes, for the log line.
        most_ratings: the most ratings any user has.
        longest_history: the longest history among the kept samples.
    """
    logger.info("%s: %d users, %d items, %d ratings -> samples %s", corpus.name, users, items, interactions, counts)
    most = most_ratings
    if sum(counts.values()) == 0:
        if corpus.protocol != "shuffled_user":
            raise ConfigError(
                f"{corpus.name}: no sample is left after the min_history={protocol.min_history} filter (the most ratings "
                f"any user has is {most}, so the longest history is {max(most - 1, 0)}); lower min_history or use a larger corpus"
            )
        raise ConfigError(
            f"{corpus.name}: no user is left after the min_user_ratings={protocol.min_user_ratings} filter (the most "
            f"ratings any user has is {most}); lower min_user_ratings or use a larger corpus"
        )
    if config.K > longest_history:
        raise ConfigError(
            f"K={config.K} exceeds the longest history any {corpus.name} sample has ({longest_history} items); "
            f"choose K <= {longest_history}"
        )


def item_embeddings(samples: LifelongSamples, config: ReLLaConfig) -> np.ndarray:
    """Embeddings of every item row of ``samples.items`` (cached on disk by content fingerprint)."""
    from ..embeddings import embed_items, get_embedder
    from ..prompts import item_texts

    texts = item_texts(samples.items, samples.corpus.domain, samples.corpus.item_text_fields())
    return embed_items(texts, get_embedder(config.embedder, pooling=config.pooling), pca_dim=config.pca_dim,
                       seed=config.seed)


def select_history(samples: LifelongSamples, frame, config: ReLLaConfig,
                   retriever: SemanticRetriever | None) -> HistorySelection:
    """The K history items of each sample of ``frame`` under ``config``'s retrieval."""
    offsets = frame["history_offset"].to_numpy()
    lengths = frame["history_length"].to_numpy()
    if config.retrieval == "recent":
        return recent_history(offsets, lengths, config.K)
    return retriever.select(samples.log["item_row"].to_numpy(), frame["item_row"].to_numpy(), offsets, lengths,
                            config.K, config.order)


def _split_lists(values: np.ndarray, offsets: np.ndarray) -> list[list]:
    return [values[start:stop].tolist() for start, stop in zip(offsets[:-1], offsets[1:])]


def _drop_orders(samples: LifelongSamples, frame, selection: HistorySelection, config: ReLLaConfig,
                 retriever: SemanticRetriever | None) -> list[list[int]] | None:
    """Per sample, shown positions in the order the token budget drops them (None: first shown first).

    Recent and similarity-ordered histories show their least relevant item first already; a
    chronological SUBR history drops its least similar item first (ties: the older one).
    """
    if config.retrieval == "recent" or config.order == "similarity":
        return None
    flat_positions, list_offsets = selection.flat()
    shown_rows = samples.log["item_row"].to_numpy()[flat_positions]
    targets = np.repeat(frame["item_row"].to_numpy(), np.diff(list_offsets))
    scores = np.einsum("ij,ij->i", retriever.vectors[shown_rows], retriever.vectors[targets])
    orders = []
    for start, stop in zip(list_offsets[:-1], list_offsets[1:]):
        orders.append(np.argsort(scores[start:stop], kind="stable").tolist())
    return orders


def _collaborative_titles(titles: np.ndarray, shown_rows: np.ndarray, means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A catalogue of shown-item titles carrying their community mean ("Heat (others: 3.9)") and each shown item's row in it.

    Each distinct (item, mean to one decimal) pair is formatted once.
    """
    tenths = np.rint(np.nan_to_num(means) * 10).astype(np.int64)
    pairs, codes = np.unique(np.stack([shown_rows.astype(np.int64), tenths]), axis=1, return_inverse=True)
    catalogue = np.array([f"{titles[row]} (others: {tenth / 10:.1f})" for row, tenth in pairs.T.tolist()], dtype=object)
    return catalogue, codes.reshape(-1)


def render_table(samples: LifelongSamples, frame, selection: HistorySelection, config: ReLLaConfig,
                 tokenizer=None, retriever: SemanticRetriever | None = None,
                 collaborative: CollaborativeIndex | None = None) -> pa.Table:
    """Render the prompts of the samples in ``frame`` into an Arrow table of the dataset's features.

    Args:
        samples: the corpus's samples (log, items, users).
        frame: the rows of one split to render.
        selection: their shown history (see :func:`select_history`).
        config: the build settings.
        tokenizer: chat template and token counter (None: Vicuna v1.1 wrapper, no budget).
        retriever: the SUBR retriever, needed for the token budget of chronological SUBR prompts.
        collaborative: the build's collaborative index; needed when ``config.collaborative`` is not "none".
    """
    from ..prompt_budget import fit_prompt_budgets
    from ..prompts import answer_completion, prompt_template_for, render_prompts_flat, wrap_prompts

    corpus = samples.corpus
    template = prompt_template_for(corpus)
    titles = samples.items["title"].to_numpy()
    item_ids = samples.items["item_id"].to_numpy()
    profiles = None
    if corpus.profile_columns:
        user_rows = samples.users.set_index("user_id").reindex(frame["user_id"].to_numpy())
        profiles = {column: user_rows[column].tolist() for column in corpus.profile_columns}
    target_titles = titles[frame["item_row"].to_numpy()].tolist()

    statistics, notes = None, None
    if config.collaborative != "none":
        if collaborative is None:
            raise ConfigError(f"collaborative={config.collaborative!r} needs the build's CollaborativeIndex")
        statistics = collaborative.statistics(frame)
        notes = collaborative_notes(statistics, config.collaborative, corpus.domain, corpus.rating_high)

    def shown_lists(selection_):
        flat_positions, list_offsets = selection_.flat()
        rows = samples.log["item_row"].to_numpy()[flat_positions]
        ratings = samples.log["rating"].to_numpy()[flat_positions]
        return rows, ratings, list_offsets, flat_positions

    shown_rows, shown_ratings, list_offsets, shown_positions = shown_lists(selection)
    # The titles the history shows; with collaborative="all" each carries its community mean.
    shown_titles, shown_title_rows = titles, shown_rows
    if config.collaborative == "all":
        shown_titles, shown_title_rows = _collaborative_titles(
            titles, shown_rows, collaborative.shown_item_means(frame, shown_positions, list_offsets))
    if config.max_prompt_tokens is None:
        raw_prompts = render_prompts_flat(template, profiles, shown_titles, shown_title_rows, shown_ratings,
                                          list_offsets, target_titles, rating_format=corpus.rating_format,
                                          history_format=config.history_format, notes=notes)
        prompts = wrap_prompts(raw_prompts, tokenizer)
    else:
        if tokenizer is None:
            raise ConfigError("max_prompt_tokens needs chat_model: its tokenizer counts the prompt tokens")
        history_titles = _split_lists(shown_titles[shown_title_rows], list_offsets)
        history_ratings = _split_lists(shown_ratings, list_offsets)
        fitted = fit_prompt_budgets(
            template, profiles, history_titles, history_ratings, target_titles,
            tokenizer=tokenizer, max_prompt_tokens=config.max_prompt_tokens, rating_format=corpus.rating_format,
            history_format=config.history_format, drop_orders=_drop_orders(samples, frame, selection, config, retriever),
            notes=notes,
        )
        raw_prompts = [fit.raw_prompt for fit in fitted]
        prompts = [fit.wrapped_prompt for fit in fitted]
        kept_positions = np.full_like(selection.positions, -1)
        for row, fit in enumerate(fitted):
            kept_positions[row, : len(fit.kept)] = selection.positions[row, fit.kept]
        selection = HistorySelection(kept_positions, np.array([len(fit.kept) for fit in fitted], dtype=np.int64))
        shown_rows, shown_ratings, list_offsets, _ = shown_lists(selection)
    labels = frame["label"].to_numpy()
    completions = [answer_completion(prompt, bool(label)) for prompt, label in zip(prompts, labels)]
    id_type = pa.string() if corpus.item_id_type == "string" else pa.int64()
    list_offsets = pa.array(list_offsets.astype(np.int32))
    columns = {
        "sample_id": pa.array(frame["sample_id"].to_numpy(), pa.int64()),
        "user_id": pa.array(frame["user_id"].to_numpy(), pa.string() if corpus.user_id_type == "string" else pa.int64()),
        "item_id": pa.array(frame["item_id"].to_numpy(), id_type),
        "rating": pa.array(frame["rating"].to_numpy(), pa.float32()),
        "label": pa.array(labels.astype(np.int64), pa.int64()),
        "timestamp": pa.array(frame["timestamp"].to_numpy(), pa.int64()),
        "history_length": pa.array(frame["history_length"].to_numpy(), pa.int32()),
        "history_item_ids": pa.ListArray.from_arrays(list_offsets, pa.array(item_ids[shown_rows], id_type)),
        "history_ratings": pa.ListArray.from_arrays(list_offsets, pa.array(shown_ratings, pa.float32())),
        "raw_prompt": pa.array(raw_prompts, pa.string()),
        "prompt": pa.array(prompts, pa.string()),
        "completion": pa.array(completions, pa.string()),
    }
    if statistics is not None:
        columns.update({name: pa.array(getattr(statistics, name), datasets.Value(dtype).pa_type)
                        for name, dtype in _STATISTIC_DTYPES.items()})
    return pa.table(columns)


#: The dtype of each collaborative statistic column (:attr:`CollaborativeStatistics.COLUMNS`), in Arrow and ``datasets``.
_STATISTIC_DTYPES = {"item_prior_ratings": "int64", "item_mean_rating": "float32", "item_positive_rate": "float32",
                     "user_history_length": "int64", "user_mean_rating": "float32"}


def features_for(corpus: Corpus, collaborative: str = "none") -> datasets.Features:
    """The features of a ReLLa prompt dataset of ``corpus`` (ids typed as the corpus says: ISBN strings for
    books, strings or integers for your own files); with ``collaborative`` other than "none", the statistic
    columns of :mod:`rella_hf.collaborative` follow."""
    item_id = datasets.Value(corpus.item_id_type)
    statistics = {} if collaborative == "none" else {name: datasets.Value(dtype) for name, dtype in _STATISTIC_DTYPES.items()}
    return datasets.Features({
        "sample_id": datasets.Value("int64"),
        "user_id": datasets.Value(corpus.user_id_type),
        "item_id": item_id,
        "rating": datasets.Value("float32"),
        "label": datasets.Value("int64"),
        "timestamp": datasets.Value("int64"),
        "history_length": datasets.Value("int32"),
        "history_item_ids": datasets.List(item_id),
        "history_ratings": datasets.List(datasets.Value("float32")),
        "raw_prompt": datasets.Value("string"),
        "prompt": datasets.Value("string"),
        "completion": datasets.Value("string"),
        **statistics,
    })


#: The file beside a build's Arrow files that records its settings (:class:`ReLLaConfig` fields and the corpus).
SETTINGS_FILENAME = "rella_build_settings.json"


def write_settings(folder: str | os.PathLike, settings: dict) -> Path:
    """Write ``settings`` (a build's :class:`ReLLaConfig` fields and ``corpus``) as ``folder/rella_build_settings.json``."""
    from ..utils import atomic_write_text

    return atomic_write_text(Path(folder) / SETTINGS_FILENAME, json.dumps(settings, sort_keys=True, indent=2) + "\n")


def dataset_settings(dataset) -> dict:
    """The settings a dataset built by rella-hf was made with: the ``rella_build_settings.json`` beside its
    Arrow files ({} for a dataset held in memory or not built by rella-hf)."""
    for cache_file in dataset.cache_files:
        path = Path(cache_file["filename"]).parent / SETTINGS_FILENAME
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    return {}


@dataclass
class _PreparedCorpus:
    """What every split's generate step shares: the samples, the SUBR retriever, the tokenizer, the index."""

    folder: str
    samples: LifelongSamples
    retriever: SemanticRetriever | None
    tokenizer: object
    collaborative: CollaborativeIndex | None


def prepare_corpus(corpus: Corpus, folder: str | os.PathLike, config: ReLLaConfig) -> _PreparedCorpus:
    """Read the release files in ``folder``, make the samples, and load what selection and rendering need.

    Raises:
        DataFormatError: for a bad release file.
        ConfigError: for a protocol that keeps no sample, or a K no history can fill.
    """
    tables = corpus.read(folder)
    samples = build_samples(corpus, tables, config.protocol())
    check_samples(samples, tables, config)
    del tables
    retriever = None
    if config.retrieval == "semantic":
        retriever = SemanticRetriever(item_embeddings(samples, config), samples.items["item_id"].tolist())
    tokenizer = None
    if config.chat_model is not None:
        from ..models import load_tokenizer

        tokenizer = load_tokenizer(config.chat_model)
    collaborative = None
    if config.collaborative != "none":
        collaborative = CollaborativeIndex(samples, config.prior_strength)
    return _PreparedCorpus(str(folder), samples, retriever, tokenizer, collaborative)


class ReLLaBuilder(datasets.ArrowBasedBuilder):
    """Builds the train / validation / test prompt splits of one corpus (set ``CORPUS``).

    As ``datasets``' own builders (``packaged_modules/csv``): ``_split_generators`` only locates the
    release files (``config.data_dir``, the bundled copy, or the official archive through the
    download manager, verified against its published MD5) and declares the splits with their
    ``gen_kwargs``; the generate step reads, samples, retrieves and renders. The corpus is read
    once per preparation (as the first split is prepared, before its progress bar) and shared by
    the other splits, then dropped. The settings are recorded beside the Arrow files (``rella_build_settings.json``,
    :func:`dataset_settings`).
    """

    BUILDER_CONFIG_CLASS = ReLLaConfig
    #: Splits another engine already rendered (:mod:`rella_hf.spark`): split name -> parquet files in
    #: sample order. When set, the build copies them into this cache entry instead of reading the corpus.
    rendered_parquet: dict | None = None
    # 1.1.0: validation is sampled by default when train and test are (caches of 1.0.0 builds are not reused).
    VERSION = datasets.Version("1.1.0")
    CORPUS: ClassVar[str]
    _prepared: _PreparedCorpus | None = None

    def _info(self) -> datasets.DatasetInfo:
        corpus = get_corpus(self.CORPUS, self.config)
        return datasets.DatasetInfo(
            description=f"ReLLa CTR prompts of {corpus.name} (build settings: {SETTINGS_FILENAME} beside the data).",
            features=features_for(corpus, self.config.collaborative),
            citation=corpus.citation,
            license=corpus.licence,
        )

    def build_settings(self) -> dict:
        """The settings this builder records beside its data: the :class:`ReLLaConfig` fields and ``corpus``."""
        return dict(self.config.build_settings(), corpus=get_corpus(self.CORPUS, self.config).name)

    def is_prepared(self) -> bool:
        """Whether this builder's cache entry is complete (built by either engine)."""
        return os.path.exists(os.path.join(self.cache_dir, datasets.config.DATASET_INFO_FILENAME))

    def record_settings(self) -> None:
        """Write ``rella_build_settings.json`` into a prepared cache entry that lacks it (entries of earlier releases)."""
        if self.is_prepared() and not os.path.exists(os.path.join(self.cache_dir, SETTINGS_FILENAME)):
            write_settings(self.cache_dir, self.build_settings())

    def _save_info(self):
        super()._save_info()
        write_settings(self._output_dir, self.build_settings())

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        try:
            super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
        finally:
            self._prepared = None  # the samples, embeddings and tokenizer are not kept past the build

    def release_folder(self, dl_manager) -> Path:
        """The folder holding the corpus's release files: ``config.data_dir``, else the bundled copy, else
        the official archive fetched, verified and unpacked through ``dl_manager``."""
        corpus = get_corpus(self.CORPUS, self.config)
        if self.config.data_dir is None:
            return corpus.download_with(dl_manager)
        folder = Path(self.config.data_dir)
        if not folder.is_dir():
            raise DataFormatError(folder, f"data_dir is not a folder; expected one holding {', '.join(corpus.required_files)}")
        return folder

    def _split_generators(self, dl_manager):
        names = split_names(get_corpus(self.CORPUS, self.config), self.config.protocol())
        if self.rendered_parquet is not None:
            return [datasets.SplitGenerator(name=name, gen_kwargs={"split": name,
                                                                   "parquet_files": self.rendered_parquet.get(name, [])})
                    for name in names]
        folder = str(self.release_folder(dl_manager))
        return [datasets.SplitGenerator(name=name, gen_kwargs={"split": name, "folder": folder}) for name in names]

    def _corpus_at(self, folder: str) -> _PreparedCorpus:
        """The corpus of ``folder`` read, sampled and indexed: once per preparation, shared by every split."""
        if self._prepared is None or self._prepared.folder != folder:
            self._prepared = prepare_corpus(get_corpus(self.CORPUS, self.config), folder, self.config)
        return self._prepared

    def _prepare_split(self, split_generator, *args, **kwargs):
        folder = split_generator.gen_kwargs.get("folder")
        if folder is not None:
            # Read before the split's progress bar starts: a bad file is then the only line the user sees.
            self._corpus_at(folder)
        return super()._prepare_split(split_generator, *args, **kwargs)

    def _generate_tables(self, split: str, folder: str | None = None, parquet_files: list[str] | None = None):
        from datasets.builder import Key

        if parquet_files is not None:
            yield from self._parquet_tables(parquet_files)
            return
        prepared = self._corpus_at(folder)
        frame = prepared.samples.splits[split]
        for batch, start in enumerate(range(0, len(frame), _ROWS_PER_TABLE)):
            chunk = frame.iloc[start:start + _ROWS_PER_TABLE]
            selection = select_history(prepared.samples, chunk, self.config, prepared.retriever)
            yield Key(0, batch), render_table(prepared.samples, chunk, selection, self.config, prepared.tokenizer,
                                                prepared.retriever, prepared.collaborative)

    def _parquet_tables(self, files: list[str]):
        """The tables of ``files``, file by file in order, as the features' columns."""
        import pyarrow.parquet as pq
        from datasets.builder import Key

        names = list(self.info.features)
        for file_index, path in enumerate(files):
            for batch_index, batch in enumerate(pq.ParquetFile(path).iter_batches(batch_size=_ROWS_PER_TABLE, columns=names)):
                yield Key(file_index, batch_index), pa.Table.from_batches([batch]).select(names)

    def as_dataset(self, split=None, in_memory: bool = False):
        """``DatasetBuilder.as_dataset``, where ``split=None`` leaves out a split without samples (``datasets``
        cannot serve one; a tiny corpus may leave validation empty) and asking for such a split is a ConfigError."""
        sizes = {name: info.num_examples for name, info in self.info.splits.items()}
        if split is None:
            return datasets.DatasetDict({name: super(ReLLaBuilder, self).as_dataset(split=name, in_memory=in_memory)
                                         for name, size in sizes.items() if size})
        if isinstance(split, str) and sizes.get(split) == 0:
            raise ConfigError(f"split {split!r} of this {self.CORPUS} build has no samples; its splits with samples are "
                              f"{', '.join(name for name, size in sizes.items() if size)}")
        return super().as_dataset(split=split, in_memory=in_memory)
