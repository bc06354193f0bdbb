"""Zero-shot CTR scoring with a causal LM: score = P(yes) / (P(yes) + P(no)) at the answer position.

The yes/no token ids come from the tokenizer itself: the wrapped prompt is tokenized followed by
each answer completion ("Yes." / "No.", see :func:`rella_hf.prompts.answer_completion`), and the
first completion token is taken, together with the case/space variants the tokenizer produces.

The fast path (:class:`CTRScorer`) sorts prompts by length inside bounded windows, runs under
``torch.no_grad`` (safe mid-training), and computes the LM head for the answer tokens only, so memory depends
on the batch, never on the number of prompts. Under ``accelerate launch`` the prompts are split
across processes and the scores gathered back in the original order.

Batches are padded on the right and run without an attention mask: causal attention never lets
a real token see the padding after it, and every batch takes the same attention kernel (a mask
would switch kernels between batches with and without padding). The final hidden state at each
prompt's last token then meets the yes/no rows of the LM head in float32, so the score does not
inherit the bfloat16 rounding of 49,152 logits. In bfloat16 the matmuls still round differently
with the batch's shape, so a 16-bit model on the CPU scores each prompt alone by default
(``batch_invariant``): its score then never depends on its batch mates. Models whose head scales
or caps its logits take the general route instead (left padding, ``logits_to_keep=1``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rella_hf.errors import ConfigError, ModelError
from rella_hf.lm_heads import (
    _forward_parameters,
    _input_device,
    _runs_alone_by_default,
    answer_head,
    contiguous_lm_head_input,
)
from rella_hf.prompts import answer_completion, special_prefix_ids
from rella_hf.shared_prefix import forward_after_prefix, prefix_key_values, shared_prefix_length
from rella_hf.utils import atomic_write_bytes

if TYPE_CHECKING:  # torch stays out of `import rella_hf`
    import datasets
    import torch

logger = logging.getLogger(__name__)

# Spellings whose first token also counts as the answer; probabilities of distinct tokens are summed.
_ANSWER_WORDS = {True: ("Yes", "yes", "YES"), False: ("No", "no", "NO")}


# --------------------------------------------------------------------------------------------
# Tokenization shared by the fast and the naive path
# --------------------------------------------------------------------------------------------


def encode_prompts(tokenizer, prompts: Sequence[str], prefix: list[int] | None = None) -> list[list[int]]:
    """Tokenize prompts the way the model sees them at scoring time.

    Special tokens written in the text (chat templates) are kept; the tokenizer's own prefix
    (BOS) is added unless the prompt already starts with it; no EOS is appended.

    Args:
        tokenizer: a Hugging Face tokenizer.
        prompts: wrapped prompt strings.
        prefix: precomputed :func:`rella_hf.prompts.special_prefix_ids` (computed when None).
    """
    if prefix is None:
        prefix = special_prefix_ids(tokenizer)
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    if not prefix:
        return [list(ids) for ids in encoded]
    width = len(prefix)
    return [list(ids) if list(ids[:width]) == prefix else prefix + list(ids) for ids in encoded]


def _looks_like_answer(tokenizer, token_id: int, positive: bool, whole_word: bool) -> bool:
    """Whether a token reads as "yes"/"no" (case, spaces and a final "." ignored).

    With ``whole_word=False`` a non-empty start of the word is enough (a tokenizer may split "Yes"
    into pieces); spelling variants must be the whole word, so that e.g. the "Y" of "YES", which
    also starts "You", does not add unrelated probability.
    """
    text = tokenizer.decode([token_id]).strip().lower().rstrip(".")
    word = "yes" if positive else "no"
    return text == word if whole_word else bool(text) and word.startswith(text)


def answer_token_ids(tokenizer, example_prompt: str) -> tuple[list[int], list[int]]:
    """Derive the token ids that mean "yes" and "no" right after a wrapped prompt.

    The canonical id is the first token of ``answer_completion(prompt, positive)`` tokenized after
    the prompt; spelling variants ("Yes", " Yes", "yes", "YES", ...) add their own first tokens
    when the tokenizer produces distinct ones, and scoring sums their probabilities.

    Args:
        tokenizer: the tokenizer the model was trained with.
        example_prompt: one wrapped prompt (all prompts scored together share its ending).

    Returns:
        ``(yes_ids, no_ids)``, each with the canonical id first.

    Raises:
        ModelError: when the answer merges with the prompt's last token, or "Yes" and "No" start
            with the same token, so the two answers cannot be told apart.
    """
    prefix = special_prefix_ids(tokenizer)
    prompt_ids = encode_prompts(tokenizer, [example_prompt], prefix)[0]

    def first_completion_token(completion: str) -> int | None:
        full = encode_prompts(tokenizer, [example_prompt + completion], prefix)[0]
        if len(full) <= len(prompt_ids) or full[: len(prompt_ids)] != prompt_ids:
            return None  # the completion merged into the prompt's last token
        return full[len(prompt_ids)]

    ids: dict[bool, list[int]] = {}
    for positive in (True, False):
        completion = answer_completion(example_prompt, positive)
        canonical = first_completion_token(completion)
        if canonical is None:
            raise ModelError(
                f"the answer {completion!r} merges with the last token of the prompt ending "
                f"{example_prompt[-30:]!r}; end the wrapped prompt with a separator (space, newline or ':')."
            )
        variants = {canonical}
        for word in _ANSWER_WORDS[positive]:
            for text in (word, " " + word, word + ".", " " + word + "."):
                token = first_completion_token(text)
                if token is not None and _looks_like_answer(tokenizer, token, positive, whole_word=True):
                    variants.add(token)
        ids[positive] = [canonical] + sorted(variants - {canonical})

    yes_ids, no_ids = ids[True], ids[False]
    if yes_ids[0] == no_ids[0] or not _looks_like_answer(tokenizer, yes_ids[0], True, whole_word=False):
        shown = tokenizer.convert_ids_to_tokens([yes_ids[0], no_ids[0]])
        raise ModelError(
            f"this tokenizer starts the answers 'Yes.' and 'No.' with tokens {shown[0]!r} and {shown[1]!r} "
            f"after the prompt, so the first answer token does not tell yes from no; use a tokenizer "
            f"whose first answer token is a yes/no word piece, or change how prompts end."
        )
    if set(yes_ids) & set(no_ids):  # pragma: no cover - prefixes of "yes" and "no" cannot overlap
        raise ModelError(f"yes ids {yes_ids} and no ids {no_ids} overlap; the tokenizer is ambiguous.")
    return yes_ids, no_ids


# --------------------------------------------------------------------------------------------
# Processes (accelerate launch / torchrun)
# --------------------------------------------------------------------------------------------


def _process_rank_and_count() -> tuple[int, int]:
    """(rank, number of processes); a plain run is (0, 1) and initializes nothing."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    state = _partial_state()
    return state.process_index, state.num_processes


def _partial_state():
    import torch
    from accelerate import PartialState

    # Without GPUs, processes talk over gloo (cpu=True); an existing Accelerator keeps its own setup.
    return PartialState(cpu=not torch.cuda.is_available())


def _wait_for_everyone() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _partial_state().wait_for_everyone()


# --------------------------------------------------------------------------------------------
# Fast path
# --------------------------------------------------------------------------------------------


class CTRScorer:
    """Batched zero-shot CTR scoring: P(yes) / (P(yes) + P(no)) at the answer position.

    Args:
        model: a causal LM (plain, PEFT-wrapped or dispatched with a device map).
        tokenizer: its tokenizer; padding is done here, on the left, whatever its padding side.
        batch_size: prompts per forward pass.
        max_length: longest prompt in tokens; longer prompts lose tokens from the left (the
            special prefix such as BOS is kept). None keeps prompts whole.
        yes_ids: token ids read as "yes" (default: derived by :func:`answer_token_ids` from the
            first prompt scored).
        no_ids: token ids read as "no" (same default).
        sort_window: prompts tokenized and sorted by length together; bounds memory for token
            ids (default ``64 * batch_size``).
        batch_invariant: run every prompt in a forward pass of its own (no padding), so that its
            score is the same whatever else is scored with it. None (default): on when the model
            sits on the CPU in bfloat16/float16, where batched matmuls change their reduction order
            with the batch's shape (scores moved by up to 0.03); it costs about a third of the
            throughput there (``benchmarks/RESULTS.md``). Off elsewhere (GPUs need batches; float32
            moves scores by ~1e-5 at most).
        calibration: a :class:`~rella_hf.calibration.Calibration`; :meth:`score` stays raw, :meth:`calibrate` applies it.
        share_prefix: run the tokens every prompt of a window starts with (chat system turn, the template's
            opening) once per window and hand them to each batch as a key/value cache
            (:mod:`rella_hf.shared_prefix`): ~20 % fewer tokens for ReLLa prompts, scores equal to ~1e-5 in
            float32. Used on the fast path when prompts share a batch (not with ``batch_invariant``, where the
            split point would depend on the other prompts of the window).
        frozen_states: a :class:`~rella_hf.frozen_states.FrozenLayerStates` shared by the scorers of a base model
            and of its fine-tune with frozen bottom layers: the first records the bottom layers' output per batch,
            the second replays it for the same batches instead of running those layers (fast path only).
    """

    def __init__(
        self,
        model,
        tokenizer,
        batch_size: int = 8,
        max_length: int | None = None,
        *,
        yes_ids: Sequence[int] | None = None,
        no_ids: Sequence[int] | None = None,
        sort_window: int | None = None,
        batch_invariant: bool | None = None,
        calibration=None,
        share_prefix: bool = True,
        frozen_states=None,
    ):
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} must be at least 1.")
        if max_length is not None and max_length < 2:
            raise ConfigError(f"max_length={max_length} must be at least 2 tokens (or None for no limit).")
        if (yes_ids is None) != (no_ids is None):
            raise ConfigError("yes_ids and no_ids must be given together (or both left to be derived).")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.calibration = calibration
        self.max_length = max_length
        self.sort_window = sort_window or 64 * batch_size
        self.yes_ids = list(yes_ids) if yes_ids is not None else None
        self.no_ids = list(no_ids) if no_ids is not None else None
        self._prefix = special_prefix_ids(tokenizer)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pad_id = pad if pad is not None else 0  # padded positions are masked out anyway
        self._answer_head = answer_head(model)
        self.batch_invariant = _runs_alone_by_default(model) if batch_invariant is None else batch_invariant
        self.share_prefix = share_prefix and self._answer_head is not None and not self.batch_invariant
        self.frozen_states = frozen_states if self._answer_head is not None else None
        self._states_mode = None
        if self._answer_head is None:  # only the general route slices hidden states for the head
            contiguous_lm_head_input(model)
        names, takes_kwargs = _forward_parameters(model)
        if "logits_to_keep" in names or takes_kwargs:
            self._last_only = {"logits_to_keep": 1}
        elif "num_logits_to_keep" in names:
            self._last_only = {"num_logits_to_keep": 1}
        else:
            self._last_only = {}
            logger.warning("%s cannot restrict logits to the last position; each batch computes all of them.",
                           type(model).__name__)
        self._pass_positions = "position_ids" in names or takes_kwargs

    # -- token handling ---------------------------------------------------------------------

    def _ensure_answer_ids(self, example_prompt: str) -> None:
        if self.yes_ids is None:
            self.yes_ids, self.no_ids = answer_token_ids(self.tokenizer, example_prompt)
            logger.info("yes ids %s, no ids %s", self.yes_ids, self.no_ids)

    def _encode(self, prompts: Sequence[str]) -> list[list[int]]:
        encoded = encode_prompts(self.tokenizer, prompts, self._prefix)
        if self.max_length is None:
            return encoded
        keep = self.max_length - len(self._prefix)
        too_long = sum(len(ids) > self.max_length for ids in encoded)
        if too_long:
            logger.warning("%d of %d prompts exceed max_length=%d tokens and lose their beginning.",
                           too_long, len(encoded), self.max_length)
        return [ids if len(ids) <= self.max_length else self._prefix + ids[-keep:] for ids in encoded]

    # -- model calls ------------------------------------------------------------------------

    def _answer_logits(self, batch: list[list[int]], prefix=None) -> torch.Tensor:
        """float32 ``[batch, yes + no]`` logits of the answer tokens after each sequence.

        ``prefix`` (from :meth:`_window_prefix`, fast path only) is the window's shared prefix.
        """
        if self._answer_head is not None:
            return self._answer_logits_from_hidden(batch, prefix)
        import torch

        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        device = _input_device(self.model)
        kwargs: dict[str, Any] = {
            "input_ids": input_ids.to(device),
            "attention_mask": attention_mask.to(device),
            "use_cache": False,
            **self._last_only,
        }
        if self._pass_positions:
            # Positions count real tokens only, so a left-padded row is computed like an unpadded one.
            kwargs["position_ids"] = (attention_mask.cumsum(-1) - 1).clamp(min=0).to(device)
        logits = self.model(**kwargs).logits
        return logits[:, -1, self.yes_ids + self.no_ids].float()

    def _answer_logits_from_hidden(self, batch: list[list[int]], prefix=None) -> torch.Tensor:
        """The fast path's answer logits; ``prefix`` is ``(length, key_values)`` of a prefix every row starts with."""
        import torch

        backbone, lm_head = self._answer_head
        skip = prefix[0] if prefix is not None else 0
        width = max(len(ids) for ids in batch) - skip
        input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids) - skip] = torch.tensor(ids[skip:], dtype=torch.long)
        device = _input_device(self.model)
        states = self.frozen_states
        with states.around(backbone, self._states_mode, states.key(input_ids, skip)) if states else nullcontext():
            if prefix is None:
                hidden = backbone(input_ids=input_ids.to(device), use_cache=False).last_hidden_state
            else:
                hidden = forward_after_prefix(backbone, input_ids.to(device), prefix[1]).last_hidden_state
        last = torch.tensor([len(ids) - 1 - skip for ids in batch], device=hidden.device)
        final = hidden[torch.arange(len(batch), device=hidden.device), last].float()
        rows = torch.tensor(self.yes_ids + self.no_ids, device=lm_head.weight.device)
        weight = lm_head.weight.index_select(0, rows).float()
        bias = None if lm_head.bias is None else lm_head.bias.index_select(0, rows).float()
        return torch.nn.functional.linear(final.to(weight.device), weight, bias)

    def _yes_probability(self, answer_logits: torch.Tensor) -> np.ndarray:
        """P(yes)/(P(yes)+P(no)) = sigmoid(logsumexp(yes logits) - logsumexp(no logits)).

        The softmax normalizer cancels, so the full-vocabulary softmax is never needed.
        """
        import torch

        split = len(self.yes_ids)
        yes = torch.logsumexp(answer_logits[:, :split].double(), dim=-1)
        no = torch.logsumexp(answer_logits[:, split:].double(), dim=-1)
        return torch.sigmoid(yes - no).cpu().numpy()

    def _window_prefix(self, encoded: list[list[int]]):
        """``(length, key_values)`` of the prefix all prompts of a window share, or None (not shared)."""
        if not self.share_prefix:
            return None
        length = shared_prefix_length(encoded)
        if not length:
            return None
        backbone, _ = self._answer_head
        return length, prefix_key_values(backbone, encoded[0][:length], _input_device(self.model))

    def _score_local(self, prompts: Sequence[str], bar) -> np.ndarray:
        """Score prompts in this process only, updating ``bar`` (or None) as batches finish."""
        import torch

        scores = np.empty(len(prompts), dtype=np.float64)
        if self.frozen_states is not None:
            self._states_mode = self.frozen_states.mode_for(self.model)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():  # not inference_mode: mid-training its tensors cannot be saved for backward
                for start in range(0, len(prompts), self.sort_window):
                    encoded = self._encode(prompts[start : start + self.sort_window])
                    # Longest first: similar lengths share a batch (little padding) and an
                    # out-of-memory error shows up on the first batch, not at the end.
                    order = np.argsort([-len(ids) for ids in encoded], kind="stable")
                    step = 1 if self.batch_invariant else self.batch_size
                    prefix = self._window_prefix(encoded)
                    for offset in range(0, len(order), step):
                        picked = order[offset : offset + step]
                        logits = self._answer_logits([encoded[i] for i in picked], prefix)
                        scores[start + picked] = self._yes_probability(logits)
                        if bar is not None:
                            bar.update(len(picked))
        finally:
            self.model.train(was_training)
        return scores

    def _score(self, prompts: Sequence[str], bar) -> np.ndarray:
        """Score prompts, splitting them across processes when launched with several."""
        prompts = list(prompts)
        if not prompts:
            return np.empty(0, dtype=np.float64)
        self._ensure_answer_ids(prompts[0])
        rank, count = _process_rank_and_count()
        if count == 1:
            return self._score_local(prompts, bar)
        from accelerate.utils import gather_object

        # Strided split: each process gets a similar mix of lengths.
        mine = np.arange(rank, len(prompts), count)
        local = self._score_local([prompts[i] for i in mine], bar)
        gathered = gather_object([(mine, local)])
        scores = np.empty(len(prompts), dtype=np.float64)
        for indices, values in gathered:
            scores[indices] = values
        return scores

    def _progress_bar(self, total: int, progress: bool, initial: int = 0):
        from datasets.utils import tqdm  # honours datasets.disable_progress_bars()

        rank, count = _process_rank_and_count()
        # Other processes advance at the same pace; rank 0 shows its share, scaled to the total.
        return tqdm(total=total, initial=initial, unit="prompt", desc="Scoring", disable=not progress or rank != 0,
                    unit_scale=count if count > 1 else False, dynamic_ncols=True)

    def calibrate(self, scores) -> np.ndarray | None:
        """Calibrated probabilities of raw ``scores`` from :meth:`score` (left unchanged); None without a calibration."""
        return None if self.calibration is None else self.calibration.transform(scores)

    def score(self, prompts: Sequence[str], progress: bool = True) -> np.ndarray:
        """Score wrapped prompts.

        Args:
            prompts: wrapped prompts (each ends where the answer starts).
            progress: show a progress bar with prompts/s (main process only).

        Returns:
            float64 array of P(yes)/(P(yes)+P(no)), in the order of ``prompts``; under
            ``accelerate launch`` every process returns the full array.
        """
        rank, count = _process_rank_and_count()
        share = math.ceil(len(prompts) / count)
        with self._progress_bar(share, progress) as bar:
            return self._score(prompts, bar)


# --------------------------------------------------------------------------------------------
# Naive reference path
# --------------------------------------------------------------------------------------------


_MANIFEST = "scoring_manifest.json"


def _prompts_digest(prompts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for prompt in prompts:
        digest.update(prompt.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def score_dataset(
    scorer: CTRScorer,
    dataset: datasets.Dataset,
    prompt_column: str = "prompt",
    output_dir: str | os.PathLike | None = None,
    *,
    label_column: str = "label",
    shard_size: int = 1024,
    progress: bool = True,
) -> datasets.Dataset:
    """Score every prompt of a ``datasets`` split and add a ``score`` column next to the labels (and
    ``score_calibrated`` beside it, here and in ``scores.parquet``, when the scorer carries a calibration).
    When the scorer's model carries collaborative tokens (:mod:`rella_hf.collaborative_ids`), the prompts of a
    ReLLa prompt dataset gain them first (prompts that already hold them are left as they are).

    With ``output_dir``, scores are saved shard by shard (``shard_size`` prompts each, written
    atomically), so an interrupted run resumes where it stopped; each shard records a digest of
    its prompts and a mismatch raises instead of mixing scores of different data. The finished
    run also writes ``scores.parquet`` (``sample_id`` when present, the label and the score).

    Args:
        scorer: a :class:`CTRScorer`.
        dataset: a ``datasets.Dataset`` (one split).
        prompt_column: column with the wrapped prompts.
        output_dir: folder for resumable partial scores and ``scores.parquet``; None keeps
            everything in memory.
        label_column: column with 0/1 labels copied into ``scores.parquet`` when present.
        shard_size: prompts per saved shard.
        progress: show a progress bar with prompts/s.

    Returns:
        The dataset with a float64 ``score`` column (replacing an existing one).
    """
    if prompt_column not in dataset.column_names:
        raise ConfigError(
            f"prompt_column={prompt_column!r} is not a column of the dataset (columns: {dataset.column_names}); "
            f"pass the column holding the wrapped prompts."
        )
    if shard_size < 1:
        raise ConfigError(f"shard_size={shard_size} must be at least 1.")
    if prompt_column == "prompt" and {"user_id", "item_id", "raw_prompt"} <= set(dataset.column_names):
        from .collaborative_ids import with_collaborative_tokens

        dataset = with_collaborative_tokens(dataset, scorer.model)  # a model trained with them reads its tokens
    total = len(dataset)
    rank, count = _process_rank_and_count()
    is_main = rank == 0
    folder = Path(output_dir) if output_dir is not None else None
    if folder is not None and total and hasattr(scorer, "_ensure_answer_ids"):  # refuse a tokenizer before any file
        scorer._ensure_answer_ids(dataset[0][prompt_column])
    if folder is not None:
        manifest = {"num_rows": total, "shard_size": shard_size, "prompt_column": prompt_column}
        manifest_path = folder / _MANIFEST
        if manifest_path.is_file():
            found = json.loads(manifest_path.read_text())
            if found != manifest:
                raise ConfigError(
                    f"{folder} holds a scoring run with {found}, but this run has {manifest}; "
                    f"pass a new output_dir or delete the old one."
                )
        elif is_main:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(manifest_path, json.dumps(manifest, indent=2).encode())
        _wait_for_everyone()

    prompt_view = dataset.select_columns([prompt_column])  # slices read the prompts only
    shard_starts = range(0, total, shard_size)
    pieces: list[np.ndarray] = []
    pending: list[tuple[int, int, str]] = []  # shards still to score: (index, start, digest)
    for index, start in enumerate(shard_starts):
        prompts = prompt_view[start : start + shard_size][prompt_column]
        digest = _prompts_digest(prompts)
        saved = folder / f"scores-{index:05d}.npz" if folder is not None else None
        if saved is not None and saved.is_file():
            with np.load(saved) as stored:
                if str(stored["digest"]) != digest:
                    raise ConfigError(
                        f"{saved} was computed for different prompts than rows {start}..{start + shard_size - 1} "
                        f"of this dataset; pass a new output_dir or delete the old one."
                    )
                pieces.append(stored["scores"])
        else:
            pieces.append(None)
            pending.append((index, start, digest))

    done = total - sum(min(shard_size, total - start) for _, start, _ in pending)
    share = math.ceil(total / count)
    with scorer._progress_bar(share, progress, initial=math.ceil(done / count)) as bar:
        for index, start, digest in pending:
            prompts = prompt_view[start : start + shard_size][prompt_column]
            scores = scorer._score(prompts, bar)
            pieces[index] = scores
            if folder is not None and is_main:
                shard = io.BytesIO()  # a shard is written whole or not at all (atomic rename)
                np.savez(shard, scores=scores, digest=np.array(digest))
                atomic_write_bytes(folder / f"scores-{index:05d}.npz", shard.getvalue())

    all_scores = np.concatenate(pieces) if pieces else np.empty(0, dtype=np.float64)
    if "score" in dataset.column_names:
        logger.warning("Replacing the existing 'score' column.")
        dataset = dataset.remove_columns("score")
    scored = dataset.add_column("score", all_scores.astype(np.float64))
    calibration = getattr(scorer, "calibration", None)  # stand-in scorers (tests, references) may lack one
    calibrated = calibration.transform(all_scores) if calibration is not None and len(all_scores) else None
    scored = scored.remove_columns([name for name in ["score_calibrated"] if name in scored.column_names])  # stale
    if calibrated is not None:
        scored = scored.add_column("score_calibrated", calibrated.astype(np.float64))
    if folder is not None and is_main:
        import pandas as pd

        kept = [column for column in ("sample_id", label_column) if column in dataset.column_names]
        table = dataset.select_columns(kept).to_pandas() if kept else pd.DataFrame(index=range(total))
        table["score"] = all_scores
        if calibrated is not None:
            table["score_calibrated"] = calibrated
        atomic_write_bytes(folder / "scores.parquet", table.to_parquet(index=False))
    _wait_for_everyone()
    return scored
