"""A tiny random Llama with SmolLM2's tokenizer, for tests, CI and smoke runs.

``model_name_or_path: tiny-random-llama`` in a training config builds it once into the rella-hf
cache (2 layers, hidden size 64, SmolLM2's vocabulary and chat template), so a smoke run needs no
download and trains in seconds. Its weights come from a fixed seed: every process of an
``accelerate launch`` and every machine builds the same model.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import TINY_RANDOM_LLAMA

#: The tokenizer (vocabulary and chat template) the tiny model is built with.
TINY_TOKENIZER_SOURCE = "smollm2-135m-instruct"

#: Shape of the tiny model (the project's test convention).
TINY_LLAMA_SHAPE = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
)
_MARKER = "rella_hf_tiny_model.json"


def build_tiny_random_llama(save_dir: str | os.PathLike | None = None, seed: int = 0,
                            tokenizer_source: str | os.PathLike = TINY_TOKENIZER_SOURCE) -> Path:
    """Build (once) and return the folder of a tiny random Llama with SmolLM2's tokenizer.

    Staged, marked complete and locked by :func:`rella_hf.utils.build_folder_once`, so concurrent
    processes (``accelerate launch``) build it once and never read a partial folder.

    Args:
        save_dir: target folder (default ``<rella-hf cache>/models/tiny-random-llama-seed<seed>``).
        seed: seed of the random weights.
        tokenizer_source: where SmolLM2's tokenizer comes from (the alias, or a converted folder).

    Returns:
        A folder loadable with ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer``.
    """
    from ..models import cache_root
    from ..utils import build_folder_once

    target = Path(save_dir) if save_dir is not None else cache_root() / "models" / f"{TINY_RANDOM_LLAMA}-seed{seed}"

    def build(staged: Path) -> dict:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        from ..models import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_source)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=True,
            **TINY_LLAMA_SHAPE,
        )
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            model = LlamaForCausalLM(config)
        finally:
            torch.random.set_rng_state(generator_state)
        model.save_pretrained(staged, safe_serialization=True)
        tokenizer.save_pretrained(staged)
        return {"seed": seed, **TINY_LLAMA_SHAPE}

    return build_folder_once(target, _MARKER, build)
