"""SDPA attention whose training passes run in float32 on CPU, for bf16 models.

PyTorch's CPU flash-attention kernel is slower in bf16 than in float32, and its backward pass
is what makes it costly: 36 ms against 31 ms for one forward + backward of an 8 x 300-token
SmolLM2 layer (9 query heads, 3 key/value heads; ``benchmarks/RESULTS.md``), 28 % of a bf16 LoRA
step. Casting query, key and value to float32 for the kernel and its result back to bf16 keeps
every matmul of the model in bf16 and the logits as close to the float32 model's (SmolLM2, 4 x 200
tokens: mean absolute logit error 0.094 against 0.092 with bf16 attention). Passes without
gradients (scoring, evaluation) and other devices use plain SDPA, so scores do not change.

Full fine-tuning keeps float32 master weights under bf16 autocast, where autocast would run the
kernel in bf16 too; those passes are caught as well. Only the trained top layers run the attention
backward there, so the step gains little (top 15 of 30 layers, batch 8: 3.08 s with the bf16
kernel, 3.12 s with this one, within noise; ``bench_train.py --lora-costs``): it is kept for the
float32 attention gradients, at no measurable cost.
"""

from __future__ import annotations

import torch

from ..utils import unwrap_adapter

#: The ``attn_implementation`` name this module registers with transformers.
FLOAT32_CPU_TRAINING_SDPA = "rella_sdpa_float32_cpu_training"


def _bf16_kernel_in_training(query) -> bool:
    """Whether plain SDPA would run its kernel in bf16 for a pass that will be backpropagated on CPU."""
    if query.device.type != "cpu" or not torch.is_grad_enabled():
        return False
    if query.dtype == torch.bfloat16:
        return True
    # Float32 master weights under bf16 autocast: RoPE hands float32 query/key (value stays bf16),
    # and autocast would cast all three down to bf16 for the kernel.
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def _sdpa_float32_for_cpu_training(module, query, key, value, attention_mask, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if _bf16_kernel_in_training(query):
        # The Trainer's bf16 autocast would cast the inputs straight back to bf16 for SDPA.
        with torch.autocast(device_type="cpu", enabled=False):
            output, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(),
                                                     attention_mask, **kwargs)
        return output.to(torch.bfloat16), weights  # the dtype plain SDPA would have returned
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register_float32_cpu_training_sdpa() -> str:
    """Register the attention with transformers (idempotent) and return its ``attn_implementation`` name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(FLOAT32_CPU_TRAINING_SDPA, _sdpa_float32_for_cpu_training)
    AttentionMaskInterface.register(FLOAT32_CPU_TRAINING_SDPA, sdpa_mask)
    return FLOAT32_CPU_TRAINING_SDPA


def use_float32_cpu_training_attention(model, autocast_bf16: bool = False) -> bool:
    """Switch a bf16 model that runs SDPA attention to the float32-for-CPU-training variant.

    Models on other attention implementations (eager, flash-attention, custom kernels) or in
    another dtype are left as they are.

    Args:
        model: a transformers ``PreTrainedModel`` (before or after PEFT wrapping).
        autocast_bf16: the model trains under bf16 autocast, so a float32 model (full fine-tuning's
            master weights) also hands bf16 query/key/value to its attention.

    Returns:
        Whether the model was switched.
    """
    base = unwrap_adapter(model)
    config = getattr(base, "config", None)
    computes_bf16 = base.dtype == torch.bfloat16 or (autocast_bf16 and base.dtype == torch.float32)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa" or not computes_bf16:
        return False
    base.set_attn_implementation(register_float32_cpu_training_sdpa())
    return base.config._attn_implementation == FLOAT32_CPU_TRAINING_SDPA
