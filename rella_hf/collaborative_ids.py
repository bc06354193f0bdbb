"""Collaborative embeddings as soft tokens: the CoLLM route (ours, not the paper's).

A classical model learns from the train split who liked what: a biased matrix factorisation
(:func:`fit_matrix_factorization`) gives every user and item a vector. :class:`CollaborativeIdTokens`
holds those vectors (frozen) and a small projector that maps each into the LLM's input-embedding
space, so that one token per user and per item carries the collaborative signal into the prompt:

    The collaborative tokens of the user and of this movie: <rella_user_17> <rella_item_5>.

The tokens are added to the tokenizer (ids from ``first_token_id`` on); a hook on the model's input
embeddings replaces their rows by the projected vectors, so every code path that feeds token ids
(training with or without a shared prefix, validation, the scorer) needs nothing else; the module is
a registered submodule, so it moves and replicates with the model (multi-process training with
collaborative tokens is not tested yet). Users and items
the factorisation never saw (row 0 of each table) get a zero vector. The projector trains with ReiT;
:meth:`CollaborativeIdTokens.save` writes it beside the adapter (or the fine-tuned model) as
``collaborative_ids.safetensors`` + ``collaborative_ids.json``, and :func:`rella_hf.models.load_tuned_model`
/ :func:`rella_hf.hub.load_adapter` attach it again. Prompts gain their tokens with :func:`add_id_tokens`.

Leakage: the factorisation reads the train split only (never validation or test ratings). A train
sample's own rating is among the ratings its vectors were fitted on (as in CoLLM); validation and
test samples' ratings never are.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .errors import ConfigError, ModelError
from .utils import unwrap_adapter

if TYPE_CHECKING:
    import datasets

#: Attribute of the base model that holds the :class:`CollaborativeIdTokens` module.
ATTRIBUTE = "rella_collaborative_ids"
SETTINGS_FILE = "collaborative_ids.json"
WEIGHTS_FILE = "collaborative_ids.safetensors"
USER_TOKEN = "<rella_user_{}>"
ITEM_TOKEN = "<rella_item_{}>"
_ID_TOKEN = re.compile(r"<rella_(user|item)_\d+>")

__all__ = ["ATTRIBUTE", "CollaborativeIdTokens", "MatrixFactorization", "SETTINGS_FILE", "WEIGHTS_FILE", "add_id_tokens",
           "attach_collaborative_ids", "attach_saved_collaborative_ids", "collaborative_ids_of", "detached_collaborative_ids",
           "fit_matrix_factorization", "id_sentence", "neutral_id_tokens", "with_collaborative_tokens"]


def _keys(ids) -> np.ndarray:
    """Ids as strings: integer and string ids of the same corpus look the same in every table."""
    return np.asarray(ids).astype(str)


@dataclass
class MatrixFactorization:
    """User and item vectors of a fitted biased matrix factorisation.

    Row 0 of each table is the "unknown" entry (zeros); row ``r >= 1`` belongs to ``user_ids[r - 1]``
    / ``item_ids[r - 1]``. Each vector is the factor followed by its bias, so the projector sees
    how much a user likes things in general and how well an item is liked by everyone.

    Attributes:
        user_ids, item_ids: the ids (as strings) the factorisation saw.
        user_vectors, item_vectors: ``(len(ids) + 1, dim + 1)`` float32 tables.
        global_bias: the intercept.
        validation_auc: AUC of the factorisation's own predictions on the validation samples, if given.
        epochs: the epochs of the final fit (chosen on the held-out end of the train split).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_vectors: np.ndarray
    item_vectors: np.ndarray
    global_bias: float
    validation_auc: float | None = None
    epochs: int | None = None

    def user_rows(self, user_ids) -> np.ndarray:
        """Table rows of ``user_ids`` (0 for a user the factorisation never saw)."""
        return _lookup(self.user_ids, user_ids)

    def item_rows(self, item_ids) -> np.ndarray:
        """Table rows of ``item_ids`` (0 for an item the factorisation never saw)."""
        return _lookup(self.item_ids, item_ids)

    def predict(self, user_ids, item_ids) -> np.ndarray:
        """The factorisation's own click probability for each (user, item) pair."""
        users = self.user_vectors[self.user_rows(user_ids)]
        items = self.item_vectors[self.item_rows(item_ids)]
        logits = (users[:, :-1] * items[:, :-1]).sum(1) + users[:, -1] + items[:, -1] + self.global_bias
        return 1.0 / (1.0 + np.exp(-logits))


def _lookup(known: np.ndarray, ids) -> np.ndarray:
    import pandas as pd

    positions = pd.Index(known).get_indexer(_keys(ids))
    return (positions + 1).astype(np.int64)  # -1 (unseen) becomes row 0


def fit_matrix_factorization(user_ids, item_ids, labels, *, dim: int = 32, epochs: int = 20,
                             learning_rate: float = 0.003, l2: float = 1e-3, batch_size: int = 4096, seed: int = 42,
                             holdout_fraction: float = 0.1, validation: tuple | None = None) -> MatrixFactorization:
    """Fit a biased matrix factorisation of click labels (logistic loss), vectorised in torch, on the given rows only.

    The number of epochs is chosen on the given rows too: a first fit on all but the last
    ``holdout_fraction`` of them (the latest samples of a chronological train split) scores the held-out
    rest after every epoch; the final fit then passes over all rows for the best epoch count. So
    nothing outside the train split shapes the tables.

    Args:
        user_ids, item_ids, labels: one entry per training interaction (the train split's samples, in order).
        dim: factor size (the vectors have ``dim + 1`` entries with the bias).
        epochs: most passes over the interactions (Adam, mini-batches of ``batch_size``).
        learning_rate: Adam's step size.
        l2: weight of the squared norm of the factors and biases a batch uses.
        batch_size: interactions per step.
        seed: seed of the initialisation and the batch order.
        holdout_fraction: share of the rows (the last ones) that chooses the epoch count; 0 trains ``epochs``.
        validation: optional ``(user_ids, item_ids, labels)`` whose AUC is recorded (never fitted on).

    Raises:
        ConfigError: on empty or mismatched inputs, or a non-positive ``dim`` / ``epochs``.
    """
    users, items = _keys(user_ids), _keys(item_ids)
    targets = np.asarray(labels, dtype=np.float32)
    if not (len(users) == len(items) == len(targets)) or not len(targets):
        raise ConfigError(f"matrix factorisation needs equally long, non-empty user ids ({len(users)}), item ids "
                          f"({len(items)}) and labels ({len(targets)})")
    if dim < 1 or epochs < 1:
        raise ConfigError(f"id_vector_dim={dim} and id_fit_epochs={epochs} must be positive integers")
    if not 0 <= holdout_fraction < 1:
        raise ConfigError(f"holdout_fraction={holdout_fraction} must be in [0, 1)")
    settings = dict(dim=dim, learning_rate=learning_rate, l2=l2, batch_size=batch_size, seed=seed)
    held_out = int(len(targets) * holdout_fraction)
    if held_out:
        kept = slice(0, len(targets) - held_out)
        rest = slice(len(targets) - held_out, None)
        curve = _fit(users[kept], items[kept], targets[kept], epochs, (users[rest], items[rest], targets[rest]),
                     **settings)[1]
        epochs = int(np.argmax(curve)) + 1
    fitted = _fit(users, items, targets, epochs, None, **settings)[0]
    fitted.epochs = epochs
    if validation is not None:
        fitted.validation_auc = _auc(validation[2], fitted.predict(validation[0], validation[1]))
    return fitted


def _fit(users: np.ndarray, items: np.ndarray, targets: np.ndarray, epochs: int, held_out: tuple | None, *, dim: int,
         learning_rate: float, l2: float, batch_size: int, seed: int) -> tuple[MatrixFactorization, list[float]]:
    """One fit for ``epochs`` epochs; with ``held_out`` rows, their AUC after each epoch (stopping 2 epochs past the best)."""
    known_users, user_codes = np.unique(users, return_inverse=True)
    known_items, item_codes = np.unique(items, return_inverse=True)
    generator = torch.Generator().manual_seed(seed)
    user_factors = torch.nn.Parameter(torch.randn(len(known_users), dim, generator=generator) * 0.01)
    item_factors = torch.nn.Parameter(torch.randn(len(known_items), dim, generator=generator) * 0.01)
    user_bias = torch.nn.Parameter(torch.zeros(len(known_users)))
    item_bias = torch.nn.Parameter(torch.zeros(len(known_items)))
    base_rate = float(np.clip(targets.mean(), 1e-4, 1 - 1e-4))
    global_bias = torch.nn.Parameter(torch.tensor(np.log(base_rate / (1 - base_rate)), dtype=torch.float32))
    optimizer = torch.optim.Adam([user_factors, item_factors, user_bias, item_bias, global_bias], lr=learning_rate)
    user_tensor, item_tensor = torch.from_numpy(user_codes.astype(np.int64)), torch.from_numpy(item_codes.astype(np.int64))
    label_tensor = torch.from_numpy(targets)

    def table(factors, bias):
        values = torch.cat([factors.detach(), bias.detach()[:, None]], dim=1).numpy().astype(np.float32)
        return np.concatenate([np.zeros((1, dim + 1), np.float32), values])

    def snapshot() -> MatrixFactorization:
        return MatrixFactorization(known_users, known_items, table(user_factors, user_bias),
                                   table(item_factors, item_bias), float(global_bias.detach()))

    curve: list[float] = []
    for _ in range(epochs):
        order = torch.randperm(len(targets), generator=generator)
        for start in range(0, len(targets), batch_size):
            batch = order[start:start + batch_size]
            u, i = user_tensor[batch], item_tensor[batch]
            p, q = user_factors[u], item_factors[i]
            logits = (p * q).sum(1) + user_bias[u] + item_bias[i] + global_bias
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, label_tensor[batch])
            penalty = (p.square().sum(1) + q.square().sum(1) + user_bias[u].square() + item_bias[i].square()).mean()
            optimizer.zero_grad()
            (loss + l2 * penalty).backward()
            optimizer.step()
        if held_out is not None:
            curve.append(_auc(held_out[2], snapshot().predict(held_out[0], held_out[1])))
            if len(curve) - 1 - int(np.argmax(curve)) == 2:
                break
    return snapshot(), curve


def _auc(labels, scores) -> float:
    from .metrics import ctr_metrics

    return float(ctr_metrics(np.asarray(labels), scores)["auc"])


def id_sentence(user_row: int, item_row: int, item_noun: str = "item") -> str:
    """The prompt line that carries one sample's two collaborative tokens."""
    return (f"The collaborative tokens of the user and of this {item_noun}: "
            f"{USER_TOKEN.format(user_row)} {ITEM_TOKEN.format(item_row)}.")


def neutral_id_tokens(text: str) -> str:
    """``text`` with every collaborative token replaced by row 0 of its table (an unknown user / item:
    zeros), so a content-free prompt keeps the token line but carries no collaborative signal."""
    neutral = {"user": USER_TOKEN.format(0), "item": ITEM_TOKEN.format(0)}
    return _ID_TOKEN.sub(lambda match: neutral[match.group(1)], text)


class CollaborativeIdTokens(torch.nn.Module):
    """The frozen user/item tables and the trainable projector into the LLM's input-embedding space.

    Token ``first_token_id + r`` stands for table row ``r``: rows ``0 .. len(user_ids)`` are users (row 0
    unknown), the rest items (their row 0 unknown too).

    Args:
        factorization: the fitted :class:`MatrixFactorization`.
        hidden_size: the LLM's embedding width.
        first_token_id: id of the first added token (the tokenizer's length before adding them).
        item_noun: the corpus's word for an item ("movie", "book"), used in the prompt line.
        seed: seed of the projector's initial weights (the global random state is left as it was).
    """

    def __init__(self, factorization: MatrixFactorization, hidden_size: int, first_token_id: int,
                 item_noun: str = "item", seed: int = 42):
        super().__init__()
        self.factorization = factorization
        self.first_token_id = int(first_token_id)
        self.item_noun = item_noun
        vectors = np.concatenate([factorization.user_vectors, factorization.item_vectors])
        self.register_buffer("table", torch.from_numpy(vectors))
        width = vectors.shape[1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.projector = torch.nn.Sequential(torch.nn.Linear(width, hidden_size), torch.nn.GELU(),
                                                 torch.nn.Linear(hidden_size, hidden_size))

    @property
    def num_users(self) -> int:
        return len(self.factorization.user_vectors)

    def token_strings(self) -> list[str]:
        """The added tokens, in id order."""
        items = len(self.factorization.item_vectors)
        return [USER_TOKEN.format(row) for row in range(self.num_users)] + [ITEM_TOKEN.format(row) for row in range(items)]

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """Projected embeddings of table rows."""
        return self.projector(self.table[rows])

    def add_tokens(self, tokenizer) -> None:
        """Add the tokens to ``tokenizer`` (in place) and check they got the ids this module expects.

        Raises:
            ModelError: when the tokenizer already has other tokens at those ids.
        """
        from transformers import AddedToken

        strings = self.token_strings()
        if tokenizer.convert_tokens_to_ids(strings[0]) != self.first_token_id:
            tokenizer.add_tokens([AddedToken(text, special=True, normalized=False) for text in strings],
                                 special_tokens=True)
        ids = tokenizer.convert_tokens_to_ids([strings[0], strings[-1]])
        if ids != [self.first_token_id, self.first_token_id + len(strings) - 1]:
            raise ModelError(f"the tokenizer gave the collaborative tokens the ids {ids[0]}..{ids[1]}, but they must "
                             f"start at {self.first_token_id}; use the tokenizer saved with the model")

    def save(self, folder: str | os.PathLike, state_dict: dict | None = None) -> None:
        """Write ``collaborative_ids.safetensors`` (tables + projector) and ``collaborative_ids.json``.

        Args:
            folder: the adapter / model folder.
            state_dict: this module's state (keys without prefix) when the caller gathered it (ZeRO-3);
                default: :meth:`state_dict`.
        """
        from safetensors.torch import save

        from .utils import atomic_write_bytes, atomic_write_text

        folder = Path(folder)
        state = state_dict if state_dict is not None else self.state_dict()
        atomic_write_bytes(folder / WEIGHTS_FILE, save({key: value.detach().cpu().contiguous() for key, value in state.items()}))
        settings = {"first_token_id": self.first_token_id, "item_noun": self.item_noun,
                    "hidden_size": self.projector[-1].out_features, "global_bias": self.factorization.global_bias,
                    "validation_auc": self.factorization.validation_auc,
                    "user_ids": self.factorization.user_ids.tolist(), "item_ids": self.factorization.item_ids.tolist()}
        atomic_write_text(folder / SETTINGS_FILE, json.dumps(settings) + "\n")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> CollaborativeIdTokens:
        """The module saved by :meth:`save` in ``folder``.

        Raises:
            ModelError: when a file is missing or does not match the other.
        """
        from safetensors.torch import load_file

        folder = Path(folder)
        missing = [name for name in (SETTINGS_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
        if missing:
            raise ModelError(f"{folder} lacks {' and '.join(missing)}; the collaborative tokens cannot be loaded")
        settings = json.loads((folder / SETTINGS_FILE).read_text())
        state = load_file(str(folder / WEIGHTS_FILE))
        table = state["table"].numpy()
        users = len(settings["user_ids"]) + 1
        if len(table) != users + len(settings["item_ids"]) + 1:
            raise ModelError(f"{folder / WEIGHTS_FILE} has {len(table)} table rows but {SETTINGS_FILE} lists "
                             f"{users - 1} users and {len(settings['item_ids'])} items")
        factorization = MatrixFactorization(np.asarray(settings["user_ids"], dtype=str),
                                            np.asarray(settings["item_ids"], dtype=str), table[:users], table[users:],
                                            settings["global_bias"], settings.get("validation_auc"))
        module = cls(factorization, settings["hidden_size"], settings["first_token_id"], settings["item_noun"])
        module.load_state_dict(state)
        return module

    def load_weights(self, folder: str | os.PathLike) -> bool:
        """Load the projector saved in ``folder`` (a checkpoint) into this module; False when it has none."""
        from safetensors.torch import load_file

        path = Path(folder) / WEIGHTS_FILE
        if not path.is_file():
            return False
        state = load_file(str(path), device=str(self.table.device))
        self.load_state_dict(state)
        return True


def collaborative_ids_of(model) -> CollaborativeIdTokens | None:
    """The :class:`CollaborativeIdTokens` attached to ``model`` (under PEFT wrappers too), or None."""
    return getattr(unwrap_adapter(model), ATTRIBUTE, None)


@contextlib.contextmanager
def detached_collaborative_ids(model):
    """Take the attached tokens off ``model`` for the duration (its ``state_dict`` then lacks them), then put them back.

    Yields:
        The detached :class:`CollaborativeIdTokens`, or None when ``model`` carries none (nothing changes then).
    """
    owner, module = unwrap_adapter(model), collaborative_ids_of(model)
    if module is None:
        yield None
        return
    delattr(owner, ATTRIBUTE)
    try:
        yield module
    finally:
        setattr(owner, ATTRIBUTE, module)


def attach_collaborative_ids(model, module: CollaborativeIdTokens) -> None:
    """Register ``module`` on ``model`` and hook its input embeddings so the added tokens read the projector.

    The module becomes a submodule (its parameters train, move and replicate with the model); the
    hook fetches it from the model at each call, so PEFT or DDP wrappers around it are used.

    Raises:
        ModelError: when ``model`` already carries collaborative tokens.
    """
    base = unwrap_adapter(model)
    if getattr(base, ATTRIBUTE, None) is not None:
        raise ModelError("the model already carries collaborative tokens")
    embeddings = base.get_input_embeddings()
    module.to(embeddings.weight.device)
    setattr(base, ATTRIBUTE, module)
    first = module.first_token_id
    pending = {}

    def replace_ids(_, args, kwargs):
        ids = args[0] if args else kwargs["input"]
        added = ids >= first
        pending["added"] = added if bool(added.any()) else None
        if pending["added"] is None:
            return None
        pending["rows"] = ids[added] - first
        clipped = ids.masked_fill(added, 0)
        return ((clipped, *args[1:]), kwargs) if args else (args, {**kwargs, "input": clipped})

    def inject(_, __, output):
        added = pending.pop("added", None)
        if added is None:
            return output
        projected = getattr(base, ATTRIBUTE)(pending.pop("rows"))
        return output.masked_scatter(added.unsqueeze(-1), projected.to(output.dtype))

    embeddings.register_forward_pre_hook(replace_ids, with_kwargs=True)
    embeddings.register_forward_hook(inject)


def attach_saved_collaborative_ids(model, tokenizer, folder: str | os.PathLike) -> CollaborativeIdTokens | None:
    """Attach the collaborative tokens a run saved in ``folder`` (if it saved any) to ``model``.

    Args:
        model: the loaded model or ``PeftModel``.
        tokenizer: the run's own tokenizer (its added tokens are checked, or added when missing).
        folder: the run's output folder (or a downloaded copy holding both files).

    Returns:
        The attached module, or None when ``folder`` holds none.
    """
    if not (Path(folder) / SETTINGS_FILE).is_file():
        return None
    module = CollaborativeIdTokens.load(folder)
    module.add_tokens(tokenizer)
    attach_collaborative_ids(model, module)
    return module


def add_id_tokens(dataset: datasets.Dataset | datasets.DatasetDict, module: CollaborativeIdTokens,
                  item_noun: str | None = None):
    """Prompts with one sample's collaborative tokens: a line before the question of each ``prompt``.

    The line goes before the last line of ``raw_prompt`` (the question) and the same text is replaced
    in the wrapped ``prompt``; ``completion`` is unchanged (the prompt still ends the same way). Rows
    that already hold collaborative tokens are left as they are.

    Args:
        dataset: a ReLLa prompt dataset (or a dict of splits) with ``user_id``, ``item_id``, ``raw_prompt``
            and ``prompt`` columns.
        module: the collaborative tokens (its factorisation maps ids to rows).
        item_noun: the corpus's word for an item (default: the module's).

    Raises:
        ConfigError: a column is missing, or a wrapped prompt does not contain its raw prompt.
    """
    import datasets as hf_datasets

    if isinstance(dataset, hf_datasets.DatasetDict):
        return hf_datasets.DatasetDict({name: add_id_tokens(split, module, item_noun) for name, split in dataset.items()})
    missing = [name for name in ("user_id", "item_id", "raw_prompt", "prompt") if name not in dataset.column_names]
    if missing:
        raise ConfigError(f"collaborative tokens need the prompt dataset's {', '.join(missing)} column(s)")
    noun = item_noun or module.item_noun
    factorization = module.factorization

    def rewrite(batch):
        user_rows = factorization.user_rows(batch["user_id"])
        item_rows = factorization.item_rows(batch["item_id"])
        raws, prompts = [], []
        for raw, prompt, user_row, item_row in zip(batch["raw_prompt"], batch["prompt"], user_rows, item_rows):
            if USER_TOKEN.format("").rstrip(">") in raw:  # rewritten before: left as it is
                raws.append(raw)
                prompts.append(prompt)
                continue
            if raw not in prompt:
                raise ConfigError("a wrapped prompt does not contain its raw prompt; collaborative tokens cannot be "
                                  f"placed in the prompt starting {prompt[:60]!r}")
            head, newline, question = raw.rpartition("\n")
            line = id_sentence(int(user_row), int(item_row), noun)
            new_raw = f"{head}\n{line}\n{question}" if newline else f"{line}\n{raw}"
            raws.append(new_raw)
            prompts.append(prompt.replace(raw, new_raw, 1))
        return {"raw_prompt": raws, "prompt": prompts}

    return dataset.map(rewrite, batched=True, desc="Adding collaborative tokens")


def with_collaborative_tokens(dataset, model):
    """``dataset`` with ``model``'s collaborative tokens in its prompts, or unchanged when it carries none."""
    module = collaborative_ids_of(model)
    return dataset if module is None else add_id_tokens(dataset, module)
