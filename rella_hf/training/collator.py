"""Left-padded batches and the answer-only loss of ReiT training.

A ReLLa training row is a prompt of a few hundred tokens followed by a completion of three or
four (``"Yes."``/``"No."`` and the end-of-turn token), and the loss is taken on the completion
only. Padding every batch on the left puts all completions in the last columns, so the model is
asked for the LM-head logits of those columns only (``logits_to_keep``) instead of a
``[batch, length, vocabulary]`` tensor of which 99 % is thrown away. The model is still called
through its wrappers (DDP, DeepSpeed, PEFT), so distributed training is unchanged.

Positions count real tokens only (``position_ids`` from the attention mask), the same positions
the scorer gives a prompt, so the answer is trained where it is scored.

With ``shared_prefix=True`` the tokens every row of a batch starts with (the chat system turn and
the template's opening sentence) leave the rows as ``prefix_ids``: the trainer runs them once per
batch and the rows continue from their keys and values (:mod:`rella_hf.shared_prefix`). The rows
are left-padded after the prefix; the attention mask spans prefix and rows, positions continue
after the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Label of positions that do not enter the loss (the prompt and the padding).
IGNORE_INDEX = -100


@dataclass
class LeftPaddingCompletionCollator:
    """Collate tokenized prompt/completion rows into left-padded tensors with completion-only labels.

    Each example carries ``input_ids`` and either ``labels`` (``-100`` on the prompt) or
    ``completion_mask`` (1 on the completion), as :func:`rella_hf.training.tokenize_rows` and
    TRL's dataset preparation write them.

    Args:
        pad_token_id: id written into the padded positions (masked out by ``attention_mask``).
        pad_to_multiple_of: round the batch width up to a multiple of this (None: the longest row).
        shared_prefix: split off the prefix all rows share as ``prefix_ids`` (never a labelled token).
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    shared_prefix: bool = False

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows_ids = [torch.as_tensor(example["input_ids"], dtype=torch.long) for example in examples]
        rows_labels = [_completion_labels(example, ids) for example, ids in zip(examples, rows_ids)]
        skip = self._prefix_length(examples, rows_labels)
        width = max(len(example["input_ids"]) for example in examples) - skip
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        rows = len(examples)
        input_ids = torch.full((rows, width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((rows, width), dtype=torch.long)
        labels = torch.full((rows, width), IGNORE_INDEX, dtype=torch.long)
        for row, full_ids in enumerate(rows_ids):
            ids = full_ids[skip:]
            start = width - len(ids)
            input_ids[row, start:] = ids
            attention_mask[row, start:] = 1
            labels[row, start:] = rows_labels[row][skip:]
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0) + skip
        # The answer window is read here, on the CPU: computed from device labels in the loss it
        # would cost a host sync every micro-step.
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
                 "labels": labels, "logits_to_keep": answer_window(labels)}
        if skip:
            batch["prefix_ids"] = torch.as_tensor(examples[0]["input_ids"][:skip], dtype=torch.long).unsqueeze(0)
            batch["attention_mask"] = torch.cat([torch.ones((rows, skip), dtype=torch.long), attention_mask], dim=1)
        return batch

    def _prefix_length(self, examples, rows_labels) -> int:
        if not self.shared_prefix:
            return 0
        from ..shared_prefix import shared_prefix_length

        length = shared_prefix_length([example["input_ids"] for example in examples])
        labelled = [(labels != IGNORE_INDEX).nonzero() for labels in rows_labels]
        first_labelled = min(int(where[0]) if len(where) else len(labels) for where, labels in zip(labelled, rows_labels))
        return min(length, first_labelled)


def _completion_labels(example: dict[str, Any], ids):
    import torch

    if example.get("labels") is not None:
        return torch.as_tensor(example["labels"], dtype=torch.long)
    if example.get("completion_mask") is None:
        from ..errors import ConfigError

        raise ConfigError("a training row has neither 'labels' nor 'completion_mask'; tokenize the rows with "
                          "rella_hf.training.tokenize_rows so the loss knows where the answer is.")
    mask = torch.as_tensor(example["completion_mask"], dtype=torch.bool)
    return torch.where(mask, ids, torch.full_like(ids, IGNORE_INDEX))


def answer_window(labels) -> int:
    """Number of trailing columns whose logits the loss needs (left-padded ``labels``).

    The first labelled column ``c`` is predicted from column ``c - 1``, so the window starts there
    and runs to the end (the last column's logits predict nothing and are dropped).

    Args:
        labels: ``[batch, width]`` labels with ``-100`` outside the completions.
    """
    labelled = (labels != IGNORE_INDEX).any(dim=0).nonzero()
    if len(labelled) == 0:
        return 1
    first = int(labelled[0])
    return labels.size(1) - first + 1


def answer_only_loss(logits, labels, num_items_in_batch=None):
    """Summed cross-entropy of the completion tokens over the labelled count, and per-token statistics.

    Everything stays on the device: the ignored columns are masked by arithmetic, never selected
    with a boolean index (which would wait for the device to count them).

    Args:
        logits: ``[batch, window, vocab]`` logits of the last ``window`` columns
            (``window = answer_window(labels)``).
        labels: ``[batch, width]`` left-padded labels.
        num_items_in_batch: the number of labelled tokens the Trainer normalises by (across
            gradient accumulation); None uses this batch's count.

    Returns:
        ``(loss, predicted_tokens, token_entropy_sum, correct_tokens)``; the last three are detached
        0-d tensors on the logits' device.
    """
    import torch

    window = logits.size(1)
    targets = labels[:, labels.size(1) - window + 1:].reshape(-1)
    scores = logits[:, :-1].reshape(-1, logits.size(-1)).float()
    mask = targets != IGNORE_INDEX
    summed = torch.nn.functional.cross_entropy(scores, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    denominator = mask.sum() if num_items_in_batch is None else num_items_in_batch
    loss = summed / torch.as_tensor(denominator, device=summed.device).clamp(min=1)
    with torch.no_grad():
        log_probs = scores.log_softmax(-1)
        entropy = (-(log_probs.exp() * log_probs).sum(-1) * mask).sum()
        correct = ((scores.argmax(-1) == targets) & mask).sum()
    return loss, mask.sum(), entropy, correct
