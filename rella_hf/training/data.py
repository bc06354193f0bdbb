"""Few-shot training sets of ReiT: the seeded sample pool, the prompt kinds, and tokenization.

The paper (``training_set_construction.py`` of its release) draws a pool of 70,000 train indices
once with ``random.seed(42); random.sample(range(len(train)), 70000)`` and uses its first N as the
N-shot set, so every smaller set nests inside every larger one. Its three training types:

- ``simple``: the N samples with recent-K prompts;
- ``sequential``: the same N samples with SUBR prompts (semantic retrieval, chronological order);
- ``mixed`` (ReiT): each sample twice, recent-K then SUBR, interleaved (2N rows).

Rows are TRL prompt/completion rows (``prompt`` = the chat-wrapped prompt, ``completion`` =
``"Yes."`` / ``"No."`` as :func:`rella_hf.prompts.answer_completion` writes it) plus ``label``,
``sample_id`` and ``prompt_kind``. :func:`tokenize_rows` tokenizes them the way scoring reads a
prompt, so the first completion token the model is trained on is the token scoring compares.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError
from ..samples import seeded_positions

if TYPE_CHECKING:
    import datasets

    from .config import ReiTConfig

#: Columns every training row keeps (others are dropped to keep the tokenized cache small).
ROW_COLUMNS = ("sample_id", "prompt", "completion", "label", "prompt_kind")


def sample_pool(num_train: int, pool_size: int = 70000, seed: int = 42) -> np.ndarray:
    """Positions of the seeded pool drawn from a train split of ``num_train`` rows.

    Uses Python's ``random.Random(seed).sample`` as the paper's script does, so on the same train
    split order the pool is the paper's. A pool larger than the split is the whole split, shuffled.

    Args:
        num_train: rows in the train split.
        pool_size: how many positions to draw (paper: 70,000).
        seed: seed of the draw (paper: 42).

    Returns:
        int64 positions, in draw order; its first N are the N-shot set.
    """
    if num_train <= 0:
        raise ConfigError(f"the train split has {num_train} rows; a few-shot pool needs at least one sample.")
    size = min(pool_size, num_train)
    return np.asarray(random.Random(seed).sample(range(num_train), size), dtype=np.int64)


def shot_positions(num_train: int, shots: int, pool_size: int = 70000, seed: int = 42) -> np.ndarray:
    """Positions (into the train split) of the N-shot training set: the first ``shots`` of the pool.

    Args:
        num_train: rows in the train split.
        shots: N.
        pool_size: size of the pool N is taken from.
        seed: seed of the pool draw.

    Raises:
        ConfigError: when the split (or pool) holds fewer than ``shots`` samples.
    """
    pool = sample_pool(num_train, pool_size, seed)
    if shots > len(pool):
        raise ConfigError(
            f"shots={shots} but the pool holds {len(pool)} samples (train split {num_train}, pool_size {pool_size}); "
            "lower shots."
        )
    return pool[:shots]


def align_by_sample_id(reference_ids: np.ndarray, other: datasets.Dataset, what: str) -> np.ndarray:
    """Row positions in ``other`` of each id of ``reference_ids`` (joined on ``sample_id``).

    Args:
        reference_ids: sample ids to look up.
        other: a prompt dataset with a ``sample_id`` column.
        what: name of ``other`` for the error message.

    Raises:
        ConfigError: when an id is missing from ``other`` (the two datasets came from different
            corpora or sample protocols).
    """
    other_ids = np.asarray(other["sample_id"], dtype=np.int64)
    order = np.argsort(other_ids, kind="stable")
    sorted_ids = other_ids[order]
    slots = np.searchsorted(sorted_ids, reference_ids)
    slots = np.minimum(slots, len(sorted_ids) - 1) if len(sorted_ids) else slots
    found = len(sorted_ids) > 0 and np.array_equal(sorted_ids[slots], reference_ids)
    if not found:
        missing = reference_ids if not len(sorted_ids) else reference_ids[sorted_ids[slots] != reference_ids]
        raise ConfigError(
            f"{len(missing)} sample ids (e.g. {int(missing[0])}) are missing from the {what} prompts; build both "
            "prompt datasets from the same corpus, data_dir and sample protocol."
        )
    return order[slots]


def _rows(dataset: datasets.Dataset, positions: np.ndarray, prompt_kind: str) -> datasets.Dataset:
    selected = dataset.select(positions.tolist()).select_columns(["sample_id", "prompt", "completion", "label"])
    return selected.add_column("prompt_kind", [prompt_kind] * len(selected))


def build_train_rows(
    simple: datasets.Dataset | None,
    sequential: datasets.Dataset | None,
    train_type: str,
    shots: int,
    pool_size: int = 70000,
    seed: int = 42,
) -> datasets.Dataset:
    """The N-shot training rows of ``train_type`` from the train splits of both prompt datasets.

    The pool is drawn over the rows of the dataset that defines the sample order (``simple`` when
    given, else ``sequential``); the other one is joined on ``sample_id``.

    Args:
        simple: train split with recent-K prompts (needed for ``simple`` and ``mixed``).
        sequential: train split with SUBR prompts, chronological (needed for ``sequential`` and ``mixed``).
        train_type: ``"simple"``, ``"sequential"`` or ``"mixed"``.
        shots: N.
        pool_size: size of the seeded pool (paper: 70,000).
        seed: seed of the pool draw (paper: 42).

    Returns:
        A dataset with :data:`ROW_COLUMNS`; ``mixed`` has 2N rows, simple then sequential per sample.
    """
    import datasets

    needs = {"simple": ("simple",), "sequential": ("sequential",), "mixed": ("simple", "sequential")}
    if train_type not in needs:
        raise ConfigError(f"train_type={train_type!r} is not one of simple, sequential, mixed; pick one of them.")
    given = {"simple": simple, "sequential": sequential}
    for kind in needs[train_type]:
        if given[kind] is None:
            raise ConfigError(f"train_type={train_type!r} needs the {kind} prompt dataset, but none was given.")
    reference = simple if simple is not None else sequential
    positions = shot_positions(len(reference), shots, pool_size, seed)
    if train_type == "simple":
        return _rows(simple, positions, "simple")
    if train_type == "sequential" and simple is None:
        return _rows(sequential, positions, "sequential")
    reference_ids = np.asarray(reference.select(positions.tolist())["sample_id"], dtype=np.int64)
    sequential_positions = align_by_sample_id(reference_ids, sequential, "sequential")
    sequential_rows = _rows(sequential, sequential_positions, "sequential")
    if train_type == "sequential":
        return sequential_rows
    simple_rows = _rows(simple, positions, "simple")
    both = datasets.concatenate_datasets([simple_rows, sequential_rows])
    # Row 2i is sample i's recent-K prompt and row 2i+1 its SUBR prompt, as the paper interleaves them.
    interleaved = np.stack([np.arange(shots), np.arange(shots) + shots], axis=1).reshape(-1)
    return both.select(interleaved.tolist())


def build_eval_rows(dataset: datasets.Dataset, eval_size: int | None, prompt_kind: str, seed: int = 42):
    """A seeded subset of ``eval_size`` rows of an evaluation split (all of it when None or larger).

    Args:
        dataset: the validation (or test) split with the test type's prompts.
        eval_size: rows to keep; None keeps every row.
        prompt_kind: ``"simple"`` or ``"sequential"``, recorded in ``prompt_kind``.
        seed: seed of the subset.
    """
    positions = seeded_positions(len(dataset), eval_size, seed)
    return _rows(dataset, np.arange(len(dataset)) if positions is None else positions, prompt_kind)


def tokenize_rows(rows: datasets.Dataset, tokenizer, max_length: int | None = None) -> datasets.Dataset:
    """Add ``input_ids`` and ``completion_mask`` exactly as scoring tokenizes a prompt and its answer.

    The prompt ids are :func:`rella_hf.scoring.encode_prompts` of the prompt (what the scorer
    feeds the model); the completion ids are what follows them in the encoding of prompt +
    completion + EOS, the same encoding :func:`rella_hf.scoring.answer_token_ids` reads the yes/no
    token from. So the first completion token the model is trained on is the token scoring
    compares, whatever the tokenizer (byte-level BPE, SentencePiece with its leading-space marker,
    BOS or not). ``SFTTrainer`` then trains on the completion tokens only.

    Args:
        rows: prompt/completion rows from :func:`build_train_rows` or :func:`build_eval_rows`.
        tokenizer: the model's tokenizer.
        max_length: refuse rows longer than this many tokens (truncating would cut the answer).

    Raises:
        ConfigError: when a row exceeds ``max_length``.
        ModelError: when the completion merges into the prompt's last token.
    """
    from ..errors import ModelError
    from ..scoring import encode_prompts

    eos = tokenizer.eos_token or ""

    def encode(batch):
        texts = [prompt + (text if text.endswith(eos) else text + eos)
                 for prompt, text in zip(batch["prompt"], batch["completion"])]
        prompt_ids = encode_prompts(tokenizer, batch["prompt"])
        full_ids = encode_prompts(tokenizer, texts)
        for prompt, full, text in zip(prompt_ids, full_ids, batch["prompt"]):
            if full[: len(prompt)] != prompt or len(full) == len(prompt):
                raise ModelError(
                    f"the completion merges into the last token of the prompt ending {text[-30:]!r}, so the answer "
                    "token cannot be trained separately; end the wrapped prompt with a separator (space, newline, ':')."
                )
        return {
            "input_ids": full_ids,
            "completion_mask": [[0] * len(p) + [1] * (len(f) - len(p)) for p, f in zip(prompt_ids, full_ids)],
        }

    tokenized = rows.map(encode, batched=True, desc="Tokenizing prompt/completion rows")
    if max_length is not None and len(tokenized):
        lengths = np.fromiter((len(ids) for ids in tokenized["input_ids"]), dtype=np.int64, count=len(tokenized))
        if lengths.max() > max_length:
            raise ConfigError(
                f"{int((lengths > max_length).sum())} rows are longer than max_length={max_length} tokens "
                f"(longest {int(lengths.max())}); truncation would cut the answer, so raise max_length or set "
                "max_prompt_tokens."
            )
    return tokenized


@dataclass
class TrainingData:
    """The rows of one run.

    Attributes:
        train: training rows (prompt/completion/label/sample_id/prompt_kind).
        eval: evaluation subset rows, or None when scoring is disabled.
        eval_split: split the evaluation rows came from.
    """

    train: datasets.Dataset
    eval: datasets.Dataset | None
    eval_split: str | None


def load_prompt_datasets(config: ReiTConfig, chat_model: str | None) -> dict[str, datasets.DatasetDict]:
    """Build (or load) the prompt datasets ``config`` needs, keyed by prompt kind.

    ``simple`` is the recent-K dataset; ``sequential`` the SUBR one (semantic, in ``config.order``).
    ``config.dataset`` may be a corpus (built with the config's dataset options) or a published
    repo / exported folder holding both configurations; for those only the options the config
    changes from their defaults are compared with the stored build settings, and with
    ``chat_model="auto"`` the prompts keep the wrapping they were published with.

    Args:
        config: the run configuration.
        chat_model: tokenizer name/path that wraps the prompts (None: Vicuna v1.1).
    """
    from ..loading import is_published, load_dataset
    from ..options import BuildOptions

    published = is_published(config.dataset)
    options = config.build_options(changed_only=published)
    options.pop("K", None)
    options.pop("chat_model", None)
    if not (published and config.chat_model == "auto"):
        options["chat_model"] = chat_model
    common = dict(data_dir=config.data_dir, cache_dir=config.cache_dir)
    built = {}
    if config.wants_simple:
        recent = {**options, "order": "chronological"}
        if not published:  # options recent prompts never read stay at their defaults: one cache entry for all runs
            recent.update({name: getattr(BuildOptions, name) for name in ("embedder", "pooling", "pca_dim")})
        recent.pop("retrieval", None)
        built["simple"] = load_dataset(config.dataset, K=config.K, retrieval="recent", **common, **recent)
    if config.wants_sequential:
        semantic = {name: value for name, value in options.items() if name != "retrieval"}
        built["sequential"] = load_dataset(config.dataset, K=config.K, retrieval="semantic", **common, **semantic)
    return built


def build_training_data(config: ReiTConfig, prompt_datasets: dict[str, datasets.DatasetDict]) -> TrainingData:
    """Training rows and the evaluation subset from the prompt datasets of :func:`load_prompt_datasets`.

    Args:
        config: the run configuration (train_type, test_type, shots, pool_size, sample_seed,
            eval_size, eval_split).
        prompt_datasets: ``{"simple": DatasetDict, "sequential": DatasetDict}`` (either may be absent
            when not needed).
    """
    def split_of(kind, split):
        dataset_dict = prompt_datasets.get(kind)
        return None if dataset_dict is None else dataset_dict[split]

    train = build_train_rows(
        split_of("simple", "train"), split_of("sequential", "train"), config.train_type,
        config.shots, config.pool_size, config.sample_seed,
    )
    if config.eval_size == 0:
        return TrainingData(train, None, None)
    eval_source = prompt_datasets.get(config.test_type)
    if eval_source is None:
        raise ConfigError(f"test_type={config.test_type!r} needs its prompt dataset, which was not built.")
    split = config.eval_split
    if split is None:
        split = "validation" if "validation" in eval_source else "test"
    if split not in eval_source:
        raise ConfigError(
            f"eval_split={split!r} is not a split of {config.dataset} (it has {', '.join(eval_source)}); pick one."
        )
    evaluation = build_eval_rows(eval_source[split], config.eval_size, config.test_type, config.sample_seed)
    return TrainingData(train, evaluation, split)
