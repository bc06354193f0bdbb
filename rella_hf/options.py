"""The dataset options, declared once: :class:`BuildOptions` (what a prompt dataset is built with) and
:class:`ReLLaDataArguments` (which corpus or published dataset, plus those options).

The ``datasets`` builder config (:class:`rella_hf.builders.ReLLaConfig`), the ``rella-hf``
subcommands, the training config (:class:`rella_hf.training.ReiTConfig`) and the demo all take
their dataset options from here, so every option is settable everywhere with the same name,
default and help text (``HfArgumentParser`` / ``TrlParser`` read the ``help`` metadata).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar, Optional

from .collaborative import COLLABORATIVE_MODES, check_collaborative
from .corpora.interactions import SourceOptions, check_source_options
from .errors import ConfigError
from .prompts import HISTORY_FORMATS
from .retrieval import ORDERS, RETRIEVALS

POOLINGS = ("average", "last")
#: The offline chat model whose template wraps prompts by default.
DEFAULT_CHAT_MODEL = "smollm2-135m-instruct"


@dataclass
class BuildOptions(SourceOptions):
    """Settings a ReLLa prompt dataset is built with (each is part of the dataset's cache fingerprint).

    Parameters that describe your own files (``interactions`` and ``amazon-2023`` corpora; the others refuse them):
        interactions_file, items_file, users_file, user_column, item_column, user_id_type, item_id_type,
        rating_column, label_column, timestamp_column, timestamp_unit, rating_min, rating_max, rating_step,
        item_text_columns, split_protocol, k_core, item_noun, item_noun_plural, interaction_verb, data_source,
        data_license, category: see :class:`rella_hf.corpora.interactions.SourceOptions`.

    Parameters that control the prompts:
        K (`int`, defaults to `5`): history items each prompt shows.
        retrieval (`str`, defaults to `"recent"`): ``"recent"`` (the K most recent) or ``"semantic"``
            (SUBR: the K most similar to the target item).
        order (`str`, defaults to `"chronological"`): for ``"semantic"``: ``"chronological"`` (ReLLa's
            default) or ``"similarity"`` (most similar last). ``"recent"`` is always chronological.
        history_format (`str`, defaults to `"list"`): ``"list"`` (the paper's Python-list rendering)
            or ``"lines"`` (one item per line).
        embedder (`str`, defaults to `"minilm"`): item-text embedder for SUBR: ``"minilm"`` (offline
            all-MiniLM-L6-v2; ``"minilm-bf16"`` computes it in bfloat16, faster on AMX CPUs but it
            changes some SUBR selections), ``"smollm2"`` (the paper's LLM pooling route, offline
            SmolLM2-135M) or a model name/path.
        pooling (`str`, defaults to `"average"`): ``"average"`` or ``"last"`` for LM embedders.
        pca_dim (`int` or `None`): reduce embeddings to this many dimensions with PCA (paper: 512).
        chat_model (`str` or `None`, defaults to `"smollm2-135m-instruct"`): model whose tokenizer chat
            template wraps the prompts; None uses the Vicuna v1.1 wrapper.
        max_prompt_tokens (`int` or `None`): drop the least relevant history items until the wrapped
            prompt fits (counted with ``chat_model``'s tokenizer); None keeps all K.
        collaborative (`str`, defaults to `"none"`): leak-free collaborative statistics
            (:mod:`rella_hf.collaborative`; not in the paper): ``"none"`` keeps the paper's prompts
            and columns byte for byte; ``"item"`` adds the statistics as columns and states the
            target's community mean rating and rating count in the prompt; ``"item+user"`` also the
            user's history length and mean; ``"all"`` also each shown item's community mean.
        prior_strength (`float`, defaults to `10.0`): pseudo-ratings of the prior that smooths the
            item statistics towards the mean of all earlier ratings.

    Parameters that control the samples (:class:`rella_hf.samples.SampleProtocol`; defaults reproduce the paper):
        label_threshold, min_history, min_user_ratings, train_fraction, validation_fraction,
        train_sample_size, validation_sample_size, test_sample_size: see their help. When
        ``train_sample_size`` and ``test_sample_size`` are set and ``validation_sample_size`` is None,
        validation is sampled to ``test_sample_size`` too.
    """

    K: int = field(default=5, metadata={"help": "History items shown per prompt."})
    retrieval: str = field(default="recent", metadata={
        "help": "recent (K most recent) or semantic (SUBR: K most similar to the target)."})
    order: str = field(default="chronological", metadata={
        "help": "SUBR order: chronological or similarity (most similar last)."})
    history_format: str = field(default="list", metadata={"help": "list (the paper's) or lines (one item per line)."})
    embedder: str = field(default="minilm", metadata={
        "help": "SUBR item embedder: minilm, minilm-bf16, smollm2, or a model name/path."})
    pooling: str = field(default="average", metadata={"help": "Pooling of LM embedders: average or last."})
    pca_dim: Optional[int] = field(default=None, metadata={
        "help": "PCA dimensions of item embeddings (paper: 512); None keeps them."})
    chat_model: Optional[str] = field(default=DEFAULT_CHAT_MODEL, metadata={
        "help": "Tokenizer whose chat template wraps prompts; 'none' (or null) for Vicuna v1.1."})
    max_prompt_tokens: Optional[int] = field(default=None, metadata={
        "help": "Drop least relevant history items until the wrapped prompt fits this many tokens."})
    collaborative: str = field(default="none", metadata={
        "help": "Collaborative statistics in the prompt (ours, not the paper's): none, item, item+user or all."})
    prior_strength: float = field(default=10.0, metadata={
        "help": "Pseudo-ratings smoothing the collaborative item statistics towards the mean of earlier ratings."})
    label_threshold: Optional[float] = field(default=None, metadata={
        "help": "Label = rating > threshold; None takes the corpus default."})
    min_history: int = field(default=5, metadata={
        "help": "Chronological corpora drop samples with fewer earlier ratings than this."})
    min_user_ratings: int = field(default=6, metadata={
        "help": "Shuffled-user corpora (Book-Crossing) keep users with at least this many ratings."})
    train_fraction: Optional[float] = field(default=None, metadata={
        "help": "Share of samples in train (None: 0.8 chronological, 0.9 shuffled)."})
    validation_fraction: Optional[float] = field(default=None, metadata={
        "help": "Share in validation (None: 0.1 chronological, 0 shuffled); the rest is test."})
    train_sample_size: Optional[int] = field(default=None, metadata={
        "help": "Keep a seeded subset of this many train samples (None: all)."})
    validation_sample_size: Optional[int] = field(default=None, metadata={
        "help": "Likewise for validation (None: all, or test_sample_size when train and test are sampled)."})
    test_sample_size: Optional[int] = field(default=None, metadata={
        "help": "Likewise for test (the paper uses 70,000 on ML-25M)."})

    #: False where ``retrieval`` is not read (training and the demo build both prompt kinds, ``order`` applying
    #: to the SUBR ones), so ``order="similarity"`` needs no ``retrieval="semantic"`` there.
    reads_retrieval: ClassVar[bool] = True

    def check_build_options(self) -> None:
        """Raise :class:`ConfigError` naming the first option whose value cannot be built."""
        if self.chat_model in ("none", "None", ""):
            self.chat_model = None  # the command line cannot spell None
        if not isinstance(self.K, int) or isinstance(self.K, bool) or self.K <= 0:
            raise ConfigError(f"K={self.K!r}: K must be a positive integer number of history items")
        for name, allowed in (("retrieval", RETRIEVALS), ("order", ORDERS), ("history_format", HISTORY_FORMATS),
                              ("pooling", POOLINGS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if self.reads_retrieval and self.retrieval == "recent" and self.order != "chronological":
            raise ConfigError("order='similarity' needs retrieval='semantic'; recent histories are chronological")
        check_collaborative(self.collaborative, self.prior_strength)
        check_source_options(self)
        for name in ("pca_dim", "max_prompt_tokens"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be a positive number or None")

    def build_options(self, *, changed_only: bool = False) -> dict:
        """The build options as a dict (with ``changed_only``, only those that differ from the defaults)."""
        options = {item.name: getattr(self, item.name) for item in fields(BuildOptions)}
        if changed_only:
            defaults = BuildOptions()
            options = {name: value for name, value in options.items() if value != getattr(defaults, name)}
        return options


@dataclass
class ReLLaDataArguments(BuildOptions):
    """Which ReLLa prompt dataset to use: a corpus (built with the options of :class:`BuildOptions`) or a
    published repository / exported folder (whose stored build settings must match the options given).

    Args:
        dataset: corpus name (``ml-1m``, ``ml-25m``, ``ml-latest-small``, ``BookCrossing``, ...) or a
            published Hub dataset repository / exported folder ``org/name``.
        data_dir: folder with the corpus's original release files (None: download; ml-latest-small is bundled).
        cache_dir: the ``datasets`` cache folder (default: the ``datasets`` cache).
    """

    dataset: str = field(default="ml-latest-small", metadata={
        "help": "Corpus: ml-1m, ml-25m, ml-20m, ml-32m, ml-latest, ml-latest-small, ml-100k, BookCrossing, interactions "
                "(your own files), amazon-2023, or a published Hub repo / exported folder 'org/name'."})
    data_dir: Optional[str] = field(default=None, metadata={
        "help": "Folder with the corpus's original release files (None: download; ml-latest-small is bundled)."})
    cache_dir: Optional[str] = field(default=None, metadata={
        "help": "datasets cache folder (default: the datasets cache)."})

    def __post_init__(self):
        self.check_build_options()


__all__ = ["BuildOptions", "COLLABORATIVE_MODES", "DEFAULT_CHAT_MODEL", "HISTORY_FORMATS", "POOLINGS",
           "ReLLaDataArguments"]
