"""Computing a batch's common token prefix once.

Every ReLLa prompt of a corpus starts with the same tokens: the chat wrapper's system turn and the
template's opening sentence (42 of ~207 tokens on ml-latest-small at K=5, SmolLM2's chat template).
Causal attention makes the keys and values of those tokens independent of whatever follows them,
so a batch can run them once, at batch size 1, and hand the result to the rest of every row as a
key/value cache: the same arithmetic as running each row whole (up to float rounding), with ~20 %
fewer tokens through the model. The scorer uses it for every batch it runs with padding
(:class:`~rella_hf.scoring.CTRScorer`), ReiT training for every micro-batch
(:class:`~rella_hf.training.collator.LeftPaddingCompletionCollator` with ``shared_prefix=True``);
gradients reach the prefix's computation once per batch, summed over its rows, as they would
through each row's own copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .utils import unwrap_adapter

if TYPE_CHECKING:
    import torch

#: Below this many common tokens a separate prefix pass costs more than it saves.
MIN_SHARED_TOKENS = 8


def shared_prefix_length(sequences: Sequence[Sequence[int]], minimum: int = MIN_SHARED_TOKENS) -> int:
    """Length of the token prefix all ``sequences`` share, leaving each at least one token of its own.

    Returns 0 when the shared part is shorter than ``minimum`` (not worth a pass of its own) or when
    there are no sequences.
    """
    if not sequences:
        return 0
    import numpy as np

    limit = min(len(ids) for ids in sequences) - 1
    if limit < minimum:
        return 0
    block = np.array([ids[:limit] for ids in sequences], dtype=np.int64)
    differs = np.flatnonzero((block != block[0]).any(axis=0))
    length = int(differs[0]) if differs.size else limit
    return length if length >= minimum else 0


def prefix_key_values(module, prefix_ids: Sequence[int] | torch.Tensor, device=None, **kwargs) -> list[tuple]:
    """Per decoder layer, the ``(key, value)`` tensors of ``prefix_ids`` run through ``module`` at batch size 1.

    ``module`` is a backbone or a whole causal LM (``kwargs`` go to its forward, e.g. ``logits_to_keep=1``).
    Runs under the caller's grad mode: inside training the tensors carry the graph back to the
    trainable layers.

    Raises:
        ModelError: the forward returned no key/value cache.
    """
    import torch

    ids = prefix_ids if isinstance(prefix_ids, torch.Tensor) else torch.tensor(list(prefix_ids), dtype=torch.long)
    ids = ids.reshape(1, -1)
    if device is not None:
        ids = ids.to(device)
    outputs = module(input_ids=ids, use_cache=True, **kwargs)
    # transformers >= 5.25 returns the cache as `cache`, earlier versions as `past_key_values`.
    cache = getattr(outputs, "cache", None)
    if cache is None:
        cache = getattr(outputs, "past_key_values", None)
    if cache is None:
        from .errors import ModelError

        raise ModelError(f"{type(module).__name__} returned no key/value cache for the shared prefix; run with the "
                         "shared prefix off (shared_prefix=false / share_prefix=False).")
    return [(layer.keys, layer.values) for layer in cache.layers]


def expanded_cache(key_values: list[tuple], batch_size: int, config=None):
    """A fresh ``DynamicCache`` holding ``key_values`` repeated for ``batch_size`` rows (views, no copies).

    A forward pass appends its own keys and values to the cache it is given; a fresh one per batch
    keeps the prefix's tensors untouched for the next batch.
    """
    from transformers import DynamicCache

    rows = [(key.expand(batch_size, -1, -1, -1), value.expand(batch_size, -1, -1, -1)) for key, value in key_values]
    return DynamicCache(ddp_cache_data=rows, config=config)


def cache_keyword(model) -> str:
    """The forward keyword that takes a key/value cache: ``cache`` (transformers >= 5.25) or ``past_key_values``."""
    import inspect

    base = unwrap_adapter(model)
    base = getattr(base, "module", base)  # DDP
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def forward_after_prefix(module, input_ids: torch.Tensor, key_values: list[tuple], **kwargs):
    """``module``'s outputs for ``input_ids`` (``[rows, tokens]``) continuing the prefix in ``key_values``.

    ``module`` is a backbone or a whole causal LM. Positions continue after the prefix; ``kwargs``
    (an attention mask over prefix + rows, position ids, ``logits_to_keep``) go to the forward unchanged.
    """
    cache = expanded_cache(key_values, input_ids.shape[0], getattr(module, "config", None))
    return module(input_ids=input_ids, use_cache=True, **{cache_keyword(module): cache}, **kwargs)
