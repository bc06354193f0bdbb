"""The shared ``datasets`` builder of ReLLa prompt datasets (one subclass per registered corpus).

A build reads the corpus, makes the lifelong samples (:mod:`rella_hf.samples`), selects K
history items per sample (:mod:`rella_hf.retrieval`, with item embeddings from
:mod:`rella_hf.embeddings` for SUBR) and renders the prompts (:mod:`rella_hf.prompts`). Every
setting is a scalar field of :class:`ReLLaConfig`, so ``datasets`` fingerprints it: a changed
config is a new Arrow cache entry, an unchanged one is reused without rebuilding.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import datasets
import numpy as np
import pyarrow as pa

from ..collaborative import CollaborativeIndex, collaborative_notes
from ..corpora import Corpus, get_corpus
from ..errors import ConfigError
from ..options import BuildOptions
from ..retrieval import HistorySelection, SemanticRetriever, recent_history
from ..samples import LifelongSamples, SampleProtocol, build_samples

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


SETTINGS_PREFIX = "rella-hf build settings: "


def dataset_settings(dataset) -> dict:
    """The :class:`ReLLaConfig` settings a dataset built by rella-hf was made with ({} if unknown)."""
    import json

    description = dataset.info.description or ""
    if SETTINGS_PREFIX not in description:
        return {}
    return json.loads(description.split(SETTINGS_PREFIX, 1)[1])


class ReLLaBuilder(datasets.ArrowBasedBuilder):
    """Builds the train / validation / test prompt splits of one corpus (set ``CORPUS``)."""

    BUILDER_CONFIG_CLASS = ReLLaConfig
    #: Splits another engine already rendered (:mod:`rella_hf.spark`): split name -> parquet files in
    #: sample order. When set, the build copies them into this cache entry instead of reading the corpus.
    rendered_parquet: dict | None = None
    # 1.1.0: validation is sampled by default when train and test are (caches of 1.0.0 builds are not reused).
    VERSION = datasets.Version("1.1.0")
    CORPUS: ClassVar[str]

    def _info(self) -> datasets.DatasetInfo:
        import json

        corpus = get_corpus(self.CORPUS, self.config)
        settings = dict(self.config.build_settings(), corpus=corpus.name)
        return datasets.DatasetInfo(
            description=f"ReLLa CTR prompts of {corpus.name}. {SETTINGS_PREFIX}{json.dumps(settings, sort_keys=True)}",
            features=features_for(corpus, self.config.collaborative),
            citation=corpus.citation,
            license=corpus.licence,
        )

    def _split_generators(self, dl_manager):
        if self.rendered_parquet is not None:
            return [datasets.SplitGenerator(name=name, gen_kwargs={"split": name})
                    for name, files in self.rendered_parquet.items() if files]
        corpus = get_corpus(self.CORPUS, self.config)
        tables = corpus.read(self.config.data_dir)
        samples = build_samples(corpus, tables, self.config.protocol())
        check_samples(samples, tables, self.config)
        retriever = None
        if self.config.retrieval == "semantic":
            retriever = SemanticRetriever(item_embeddings(samples, self.config), samples.items["item_id"].tolist())
        tokenizer = None
        if self.config.chat_model is not None:
            from ..models import load_tokenizer

            tokenizer = load_tokenizer(self.config.chat_model)
        collaborative = None
        if self.config.collaborative != "none":
            collaborative = CollaborativeIndex(samples, self.config.prior_strength)
        self._prepared = (samples, retriever, tokenizer, collaborative)
        # `datasets` cannot serve a split without rows, so a tiny corpus may lack validation.
        return [datasets.SplitGenerator(name=name, gen_kwargs={"split": name})
                for name, frame in samples.splits.items() if len(frame)]

    def _generate_tables(self, split: str):
        from datasets.builder import Key

        if self.rendered_parquet is not None:
            yield from self._parquet_tables(split)
            return
        samples, retriever, tokenizer, collaborative = self._prepared
        frame = samples.splits[split]
        for batch, start in enumerate(range(0, len(frame), _ROWS_PER_TABLE)):
            chunk = frame.iloc[start:start + _ROWS_PER_TABLE]
            selection = select_history(samples, chunk, self.config, retriever)
            yield Key(0, batch), render_table(samples, chunk, selection, self.config, tokenizer, retriever,
                                                collaborative)

    def _parquet_tables(self, split: str):
        """The tables of ``rendered_parquet[split]``, file by file in order, as the features' columns."""
        import pyarrow.parquet as pq
        from datasets.builder import Key

        names = list(self.info.features)
        for file_index, path in enumerate(self.rendered_parquet[split]):
            for batch_index, batch in enumerate(pq.ParquetFile(path).iter_batches(batch_size=_ROWS_PER_TABLE, columns=names)):
                yield Key(file_index, batch_index), pa.Table.from_batches([batch]).select(names)
