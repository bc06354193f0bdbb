"""What a causal LM offers a CTR scorer: its forward's keywords, its backbone and LM head, where inputs go.

Shared by the scorer (:mod:`rella_hf.scoring`), the reference scorer and the trainer, which all reach
past ``model(...)`` into the backbone and the head.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from .utils import unwrap_adapter

if TYPE_CHECKING:
    import torch


def _forward_parameters(model) -> tuple[set[str], bool]:
    """Keyword names the underlying model's forward accepts, and whether it takes ``**kwargs``."""
    base = unwrap_adapter(model)
    parameters = inspect.signature(base.forward).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return set(parameters), takes_kwargs


#: Head settings that make logits more than ``lm_head(hidden)``; a model with any of them scores
#: through its own forward.
_SCALED_HEAD_SETTINGS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                         "logits_scaling")


def _causal_lm_and_head(model):
    """The causal LM under a possible PEFT wrapper, and its output embeddings (None when it has none)."""
    causal_lm = unwrap_adapter(model)
    get_head = getattr(causal_lm, "get_output_embeddings", None)
    return causal_lm, get_head() if callable(get_head) else None


def answer_head(model):
    """``(backbone, lm_head)`` when the answer logits are ``lm_head(backbone(ids).last_hidden_state)``, else None.

    That holds for the decoder-only LMs of transformers (Llama, Qwen, Mistral, GPT-2, ...), PEFT
    wrapped or not. Not for heads that scale or cap their logits, nor for parameters partitioned
    by DeepSpeed ZeRO-3 (the head's rows cannot be read directly there).

    Args:
        model: a causal LM, possibly a ``PeftModel``.
    """
    import torch

    causal_lm, lm_head = _causal_lm_and_head(model)
    backbone = getattr(causal_lm, getattr(causal_lm, "base_model_prefix", ""), None)
    if not isinstance(backbone, torch.nn.Module) or not isinstance(lm_head, torch.nn.Linear):
        return None
    config = getattr(causal_lm, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if any(getattr(text_config, name, None) not in (None, 1, 1.0) for name in _SCALED_HEAD_SETTINGS):
        return None
    if hasattr(lm_head.weight, "ds_id") or lm_head.weight.dim() != 2 or lm_head.weight.numel() == 0:
        return None
    return backbone, lm_head


def contiguous_lm_head_input(model) -> None:
    """Make the LM head's input contiguous (once per model).

    ``logits_to_keep`` slices the last positions out of the hidden states; a non-contiguous 3-D
    input makes ``torch.matmul`` expand the head's weight for every row, a ``batch x hidden x
    vocabulary`` copy (4 x 576 x 49,152 values per SmolLM2 call, a third of a training step on CPU).

    Args:
        model: a causal LM, possibly wrapped (PEFT).
    """
    import torch

    _, lm_head = _causal_lm_and_head(model)
    if not isinstance(lm_head, torch.nn.Module) or getattr(lm_head, "_rella_contiguous_input", False):
        return
    lm_head.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]) if args else None)
    lm_head._rella_contiguous_input = True


def _runs_alone_by_default(model) -> bool:
    """Whether prompts run one per forward pass by default: a CPU model in a 16-bit dtype."""
    import torch

    parameter = next(model.parameters(), None)
    if parameter is None:
        return False
    return parameter.device.type == "cpu" and parameter.dtype in (torch.bfloat16, torch.float16)


def _input_device(model) -> torch.device:
    # With a device_map the embeddings sit on the first device; that is where inputs go.
    return model.get_input_embeddings().weight.device
