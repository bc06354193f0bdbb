"""Few-shot ReiT training (retrieval-enhanced instruction tuning) of LoRA adapters with TRL.

Entry points (heavy modules load on first use, so ``import rella_hf.training`` stays light)::

    from rella_hf.training import ReiTConfig, run_training

    result = run_training(ReiTConfig(output_dir="runs/demo", dataset="ml-latest-small", K=5, shots=64))
    print(result.metrics["final_eval"])

- :class:`ReiTConfig` (``config``): TRL's ``SFTConfig`` plus data / model / LoRA fields;
  :func:`parse_config` reads a YAML (``--config``) with command-line overrides.
- :func:`run_training` (``trainer``): data -> model -> LoRA training -> adapter + metrics;
  :func:`train_on_data` and :func:`build_trainer` for rows you built yourself.
- :func:`build_train_rows`, :func:`build_eval_rows`, :func:`sample_pool`, :func:`tokenize_rows` (``data``).
- :class:`CTREvalCallback` (``callbacks``): AUC / LogLoss / ACC at each evaluation.
- :func:`build_tiny_random_llama` (``tiny``): the ``tiny-random-llama`` test model.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ReiTConfig": "config",
    "TRAIN_TYPES": "config",
    "TEST_TYPES": "config",
    "lora_config": "config",
    "make_parser": "config",
    "parse_config": "config",
    "hardware_supports_bf16": "config",
    "TrainingData": "data",
    "sample_pool": "data",
    "shot_positions": "data",
    "build_train_rows": "data",
    "build_eval_rows": "data",
    "build_training_data": "data",
    "load_prompt_datasets": "data",
    "prepare_collaborative_ids": "id_tokens",
    "tokenize_rows": "data",
    "CTREvalCallback": "callbacks",
    "TrainingResult": "trainer",
    "ReiTTrainer": "trainer",
    "run_training": "trainer",
    "train_on_data": "trainer",
    "build_trainer": "trainer",
    "prepare_training_data": "trainer",
    "load_model_for_training": "trainer",
    "build_tiny_random_llama": "tiny",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
