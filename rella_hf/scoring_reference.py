"""The reference CTR scorer: one prompt at a time through the full model, no shortcuts.

:func:`naive_scores` is what :class:`rella_hf.scoring.CTRScorer` must agree with (tests) and what
its speed is measured against (``benchmarks/bench_scoring.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .lm_heads import _input_device
from .scoring import answer_token_ids, encode_prompts


def naive_scores(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    batch_size: int = 1,
    yes_ids: Sequence[int] | None = None,
    no_ids: Sequence[int] | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Reference scores from the full logits, the way ``Trainer.evaluate`` sees them.

    Each batch (original order, right padding) is run without restricting logits, the softmax is
    taken over the whole ``[batch, length, vocab]`` tensor (as the reference code's
    ``preprocess_logits_for_metrics`` does), and the yes/no probabilities at the last real
    position are read out. Slow and memory hungry by design: used by tests and the benchmark.

    Args:
        model: a causal LM.
        tokenizer: its tokenizer.
        prompts: wrapped prompts.
        batch_size: prompts per forward pass (1 avoids padding altogether).
        yes_ids: "yes" token ids (default: derived from the first prompt).
        no_ids: "no" token ids (same default).
        progress: show a progress bar.
    """
    import torch
    from datasets.utils import tqdm  # honours datasets.disable_progress_bars()

    prompts = list(prompts)
    if not prompts:
        return np.empty(0, dtype=np.float64)
    if yes_ids is None or no_ids is None:
        yes_ids, no_ids = answer_token_ids(tokenizer, prompts[0])
    encoded = encode_prompts(tokenizer, prompts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = _input_device(model)
    scores = np.empty(len(prompts), dtype=np.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in tqdm(range(0, len(prompts), batch_size), disable=not progress, desc="Naive scoring"):
                batch = encoded[start : start + batch_size]
                lengths = torch.tensor([len(ids) for ids in batch])
                input_ids = torch.full((len(batch), int(lengths.max())), pad, dtype=torch.long)
                attention_mask = torch.zeros_like(input_ids)
                for row, ids in enumerate(batch):
                    input_ids[row, : len(ids)] = torch.tensor(ids)
                    attention_mask[row, : len(ids)] = 1
                logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
                probabilities = logits.float().softmax(dim=-1)  # full [batch, length, vocab]
                rows = torch.arange(len(batch), device=probabilities.device)
                at_answer = probabilities[rows, (lengths - 1).to(probabilities.device)]
                p_yes = at_answer[:, list(yes_ids)].sum(-1).double()
                p_no = at_answer[:, list(no_ids)].sum(-1).double()
                scores[start : start + len(batch)] = (p_yes / (p_yes + p_no)).cpu().numpy()
    finally:
        model.train(was_training)
    return scores


# --------------------------------------------------------------------------------------------
# Whole dataset splits, resumable
# --------------------------------------------------------------------------------------------
