"""The ReiT training configuration: TRL's :class:`~trl.SFTConfig` plus ReLLa's data, model and LoRA fields.

One dataclass holds everything a run needs, so a YAML file under ``trainer_configs/`` and
command-line overrides both parse into it with :class:`trl.TrlParser` (see :func:`parse_config`),
and a notebook builds the same object directly::

    from rella_hf.training import ReiTConfig, run_training

    config = ReiTConfig(output_dir="runs/ml-1m-K5", dataset="ml-1m", data_dir="data/ml-1m", K=5,
                        train_type="mixed", test_type="sequential", shots=256)
    result = run_training(config)

Defaults follow the paper (arXiv 2308.11131, and its released ``finetune.py``): LoRA r=8, alpha=16,
dropout 0.05 on ``q_proj``/``v_proj``, learning rate 1e-3 with a linear schedule, a total batch of
256 reached by gradient accumulation, a 70,000-sample pool drawn with seed 42, 1,000 validation
samples, best checkpoint by validation AUC.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Optional

from trl import ModelConfig, SFTConfig

from ..errors import ConfigError
from ..models import TINY_RANDOM_LLAMA  # noqa: F401 - re-exported: ``model_name_or_path`` of the tiny test model
from ..options import ReLLaDataArguments

if TYPE_CHECKING:
    from peft import LoraConfig

#: Kinds of training prompts: recent-K ("simple"), SUBR ("sequential"), or both per sample (ReiT).
TRAIN_TYPES = ("simple", "sequential", "mixed")
#: Kinds of evaluation prompts.
TEST_TYPES = ("simple", "sequential")
#: What training updates: LoRA adapters, or the decoder layers' own weights.
FINETUNING_METHODS = ("lora", "full")
#: Models with at least this many parameters recompute activations in the backward pass unless
#: ``activation_checkpointing`` is set: a 7B model at 2,048 tokens does not fit a GPU otherwise,
#: while the 135M CPU recipe would only lose a third of its speed.
ACTIVATION_CHECKPOINTING_MIN_PARAMETERS = 1_000_000_000


def hardware_supports_bf16() -> bool:
    """True when this process trains on hardware that computes bfloat16 natively.

    That is an accelerator with bf16 (a CUDA GPU of Ampere or newer, XPU, ...), or a machine without one whose CPU
    has AVX512-BF16 or AMX (there bf16 matmuls run 4-7x faster than float32; ``benchmarks/bench_peak.py``).
    CPUs without native bf16 emulate it, slower than float32, so they train in float32.
    """
    if _accelerator_present():  # CUDA, XPU, MPS, NPU, ...: accelerate knows each one's bf16 support
        from accelerate.utils import is_bf16_available

        return bool(is_bf16_available(ignore_tpu=True))
    from ..models import cpu_has_native_bf16

    return cpu_has_native_bf16()


def _accelerator_present() -> bool:
    import torch

    return torch.accelerator.current_accelerator() is not None


def _deepspeed_requested(deepspeed_config) -> bool:
    """Whether DeepSpeed was asked for, in the config or by ``accelerate launch`` (its environment flag)."""
    return bool(deepspeed_config) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def deepspeed_zero_stage(deepspeed_config) -> int | None:
    """The ZeRO stage a run will use: from ``deepspeed`` (a dict or a JSON file), else from ``accelerate launch``.

    Args:
        deepspeed_config: the ``deepspeed`` training argument (dict, path or None).

    Returns:
        0-3, or None when DeepSpeed is not used or its stage is not known yet.
    """
    import json

    if isinstance(deepspeed_config, str) and os.path.isfile(deepspeed_config):
        with open(deepspeed_config) as handle:
            deepspeed_config = json.load(handle)
    if isinstance(deepspeed_config, dict):
        stage = deepspeed_config.get("zero_optimization", {}).get("stage")
        return int(stage) if stage not in (None, "auto") else None
    if _deepspeed_requested(deepspeed_config):
        stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
        return int(stage) if stage and stage.isdigit() else None
    return None


def _cpu_only_without_deepspeed(deepspeed_config) -> bool:
    """True on a machine without any accelerator, unless DeepSpeed was asked for (it sets up its own backend)."""
    return not _deepspeed_requested(deepspeed_config) and not _accelerator_present()


@dataclass
class ReiTDataArguments(ReLLaDataArguments):
    """The dataset options of a training run: :class:`~rella_hf.options.ReLLaDataArguments` with the trained
    model's own chat template as the default wrapper.

    ``retrieval`` is not read: ``train_type`` / ``test_type`` choose the recent-K and SUBR prompt
    datasets; ``order`` applies to the SUBR ones.

    Args:
        chat_model: tokenizer whose chat template wraps the prompts; ``"auto"`` (default) uses the
            trained model's own (for a published dataset: keeps the wrapping it was built with),
            None the Vicuna v1.1 wrapper.
    """

    chat_model: Optional[str] = field(
        default="auto",
        metadata={"help": "Tokenizer whose chat template wraps prompts; 'auto' = the model's, null = Vicuna."},
    )
    reads_retrieval: ClassVar[bool] = False


@dataclass
class ReiTConfig(SFTConfig, ReiTDataArguments, ModelConfig):
    r"""Configuration of one ReiT (retrieval-enhanced instruction tuning) run.

    Every :class:`trl.SFTConfig` / :class:`transformers.TrainingArguments` field is available too
    (``output_dir``, ``num_train_epochs``, ``per_device_train_batch_size``, ``eval_steps``,
    ``save_steps``, ``load_best_model_at_end``, ...), and so is every :class:`trl.ModelConfig` field,
    declared by trl (``model_revision``, ``dtype``, ``attn_implementation``, ``load_in_8bit``,
    ``load_in_4bit``, ``bnb_4bit_quant_type``, ``use_bnb_nested_quant``, the ``lora_*`` fields,
    ``use_rslora``, ``use_dora``); ``use_peft`` and ``lora_task_type`` are not read (``finetuning``
    chooses LoRA, the task is a causal LM). Defaults that differ from SFTConfig's:
    ``learning_rate=1e-3``; ``bf16`` follows the hardware (True on bf16-capable GPUs and on CPUs
    with native bf16, False elsewhere) unless set, and then the frozen base weights load in bf16
    while the LoRA weights and their optimizer state stay float32; activation checkpointing, unless
    set, is on for models of at least 1B parameters (a 7B model at 2,048 tokens needs it) and off
    below (a 135M model needs a few GB at most and trains a third faster without it);
    ``train_sampling_strategy="group_by_length"`` (batches of similar lengths, little padding); ``report_to="none"``;
    ``use_cpu`` is set on machines without any accelerator (except under DeepSpeed), so that
    several launched CPU processes train together.

    Parameters that control the data:
        dataset, data_dir, cache_dir, K, order, history_format, embedder, pooling, pca_dim,
        chat_model, max_prompt_tokens and the sample protocol: the prompt datasets' options, declared
        once in :class:`~rella_hf.options.ReLLaDataArguments` (see :class:`ReiTDataArguments`);
        ``dataset`` may also be a published Hub repo or an exported folder holding the
        ``K<K>-recent`` / ``K<K>-semantic`` configurations.
        train_type (`str`, defaults to `"mixed"`): ``"simple"`` (recent-K prompts),
            ``"sequential"`` (SUBR prompts, chronological order) or ``"mixed"`` (ReiT: each shot
            twice, once per prompt kind, interleaved, so ``2 * shots`` rows).
        test_type (`str`, defaults to `"sequential"`): prompts of the validation subset,
            ``"simple"`` or ``"sequential"``.
        shots (`int`, defaults to `256`): N, the number of training samples (the first N of the pool).
        pool_size (`int`, defaults to `70000`): size of the seeded pool drawn once from the train
            split; smaller N-shot sets nest inside larger ones.
        sample_seed (`int`, defaults to `42`): seed of the pool draw and of the validation subset
            (``seed`` is the Trainer's own seed: LoRA init, dropout, data order).
        eval_size (`int` or `None`, defaults to `1000`): validation samples scored for AUC /
            LogLoss / ACC at every evaluation; None scores the whole split, 0 disables it.
        eval_split (`str` or `None`): split the evaluation subset comes from; None takes
            ``"validation"``, or ``"test"`` for corpora without one (Book-Crossing).
        compute_eval_loss (`bool`, defaults to `True`): also compute ``eval_loss`` with the
            Trainer's evaluation loop; False reports only the CTR metrics (faster on CPU).

    Parameters that control the model:
        model_name_or_path (`str`, defaults to `"smollm2-135m-instruct"`): Hub id, local folder,
            the offline SmolLM2 alias, or ``"tiny-random-llama"`` (a 2-layer random Llama for tests).
        dtype (`str` or `None`): dtype of the base weights (trl's field); None: bfloat16 with ``bf16``,
            float16 with ``fp16``, float32 otherwise; ``"auto"`` takes the checkpoint's. Recorded as
            ``compute_dtype`` in ``training_config.json``; scoring the adapter uses it unless told
            otherwise. ``model_dtype`` is its deprecated alias.
        load_in_8bit / load_in_4bit (`bool`, trl's fields): quantize the frozen base weights with
            bitsandbytes (``pip install 'rella-hf[quantization]'``, CUDA) as the paper's script does
            (8-bit); LoRA only, and not under ZeRO-3 (DDP or ZeRO-2 work).
        model_revision, attn_implementation, bnb_4bit_quant_type, use_bnb_nested_quant (trl's fields):
            passed to ``from_pretrained``.
        completion_logits_only (`bool`, defaults to `True`): left-pad each batch and compute the
            LM head only at the answer positions (the completion-only loss needs nothing else);
            False keeps TRL's own collator and loss (LM head over every position).
        shared_prefix (`bool`, defaults to `True`): with ``completion_logits_only``, run the tokens all
            rows of a micro-batch start with (chat system turn, the template's opening, ~20 % of a ReLLa
            row) once per micro-batch instead of once per row (:mod:`rella_hf.shared_prefix`); the same
            loss and gradients up to rounding (float32: 1e-6 relative; bf16 autocast: the loss within 0.3 %,
            gradients within ~1.5 %, the size of bf16 rounding with other matmul shapes). Single-process
            runs without activation checkpointing, with the sdpa or eager attention, only (DDP and
            DeepSpeed expect one forward per backward, checkpointing turns the cache off, flash kernels
            refuse padding between prefix and rows); ignored elsewhere.
        cpu_float32_attention (`bool`, defaults to `True`): on CPU, run the SDPA attention of a
            bf16 model in float32 in training passes (its bf16 backward kernel is the slower one;
            :mod:`rella_hf.training.attention`); scoring and evaluation passes are unchanged.

    Parameters that control LoRA:
        lora_r (`int`, defaults to `8`), lora_alpha (`int`, defaults to `16`), lora_dropout
        (`float`, defaults to `0.05`), lora_target_modules (`list[str]`, defaults to
        `["q_proj", "v_proj"]`): turned into a :class:`peft.LoraConfig` by :func:`lora_config`.

    Parameters that choose what trains:
        finetuning (`str`, defaults to `"lora"`): ``"lora"`` trains LoRA adapters (the paper);
            ``"full"`` trains every weight of the decoder layers (embeddings and LM head stay frozen),
            from float32 master weights under bf16 autocast where ``bf16`` is on; the output folder
            then holds a whole model instead of an adapter.
        top_layers (`int` or `None`): train only the last this-many decoder layers (their adapters,
            or their weights with ``finetuning="full"``; None: all). The backward pass then stops at
            the first trained layer, so a step costs less; the layers below keep their pretrained
            function.

    Parameters that add collaborative tokens (:mod:`rella_hf.collaborative_ids`; ours, not the paper's):
        collaborative_ids (`bool`, defaults to `False`): fit a matrix factorisation on the train split
            and put one soft token per user and per item into every prompt; a projector from the
            factorisation's vectors into the embedding space trains with the rest and is saved beside
            the adapter (``collaborative_ids.safetensors``). The backward pass then runs through every
            layer (the tokens enter at the bottom), so ``top_layers`` saves less.
        id_vector_dim (`int`, defaults to `32`), id_fit_epochs (`int`, defaults to `20`): the factorisation
            (at most that many epochs; the one with the best validation-split AUC is kept).
        id_projector_lr (`float` or `None`, defaults to `1e-3`): the projector's learning rate (it starts
            from random weights); None uses ``learning_rate``.

    Parameters that control batching and resuming:
        total_batch_size (`int` or `None`, defaults to `256`): samples per optimizer step across
            all processes; sets ``gradient_accumulation_steps = total / (per_device_train_batch_size
            * world_size)`` (capped at the number of training rows, as the paper's script does).
            None keeps ``gradient_accumulation_steps`` as given.
        early_stopping_patience (`int` or `None`): stop after this many evaluations without a better
            ``metric_for_best_model`` (validation AUC with ``metric_for_best_model="auc"``); needs
            ``load_best_model_at_end``. None trains for the whole schedule.
        resume (`bool`, defaults to `False`): continue from the last checkpoint in ``output_dir``
            (same data order, optimizer, scheduler and RNG state as an uninterrupted run).
    """

    # Defaults that differ from SFTConfig's.
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate of AdamW (paper: 1e-3)."})
    bf16: Optional[bool] = field(
        default=None,
        metadata={"help": "bf16 training (base weights bf16, LoRA weights float32); default: True on GPUs and "
                          "CPUs with native bf16 (AVX512-BF16/AMX), False elsewhere."},
    )
    activation_checkpointing: Optional[bool] = field(
        default=None,
        metadata={"help": "Recompute activations in the backward pass (saves memory, costs an extra forward); "
                          "default: on for models of 1B parameters or more, off below."},
    )
    gradient_checkpointing: Optional[bool] = field(
        default=None, metadata={"help": "Deprecated alias of activation_checkpointing."}
    )
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={"help": "Training sampler: group_by_length (default: batches of similar lengths, little padding), "
                          "random, sequential or batch_rebalance."},
    )
    report_to: Optional[str] = field(
        default="none", metadata={"help": "Integrations to report to (e.g. 'tensorboard', 'trackio'); 'none' for none."}
    )

    # Data (the prompt dataset itself: ReLLaDataArguments' fields).
    train_type: str = field(
        default="mixed",
        metadata={"help": "Training prompts: simple (recent-K), sequential (SUBR) or mixed (ReiT, both).",
                  "choices": list(TRAIN_TYPES)},
    )
    test_type: str = field(
        default="sequential",
        metadata={"help": "Evaluation prompts: simple (recent-K) or sequential (SUBR).", "choices": list(TEST_TYPES)},
    )
    shots: int = field(default=256, metadata={"help": "N: training samples, the first N of the seeded pool."})
    pool_size: int = field(default=70000, metadata={"help": "Size of the seeded pool drawn from the train split."})
    sample_seed: int = field(default=42, metadata={"help": "Seed of the pool draw and of the evaluation subset."})
    eval_size: Optional[int] = field(
        default=1000, metadata={"help": "Evaluation samples scored for AUC/LogLoss/ACC; None all, 0 none."}
    )
    eval_split: Optional[str] = field(
        default=None, metadata={"help": "Split of the evaluation subset; None: validation, else test."}
    )
    completion_logits_only: bool = field(
        default=True,
        metadata={"help": "Left-pad batches and compute the LM head at the answer positions only; false uses "
                          "TRL's collator and loss (LM head over every position)."},
    )
    shared_prefix: bool = field(
        default=True,
        metadata={"help": "Run the prefix all rows of a micro-batch share once per micro-batch (single process, "
                          "with completion_logits_only); same loss up to rounding, about a fifth fewer tokens."},
    )
    cpu_float32_attention: bool = field(
        default=True,
        metadata={"help": "On CPU, run a bf16 model's SDPA attention in float32 in training passes (faster "
                          "backward kernel); scoring and evaluation passes are unchanged."},
    )
    compute_eval_loss: bool = field(
        default=True,
        metadata={"help": "Also run the Trainer's loss loop over the evaluation subset (eval_loss); false "
                          "reports the CTR metrics only, skipping a second pass with full-vocabulary logits."},
    )

    # Model.
    model_name_or_path: str = field(
        default="smollm2-135m-instruct",
        metadata={"help": "Hub id, local folder, 'smollm2-135m-instruct' or 'tiny-random-llama'."},
    )
    dtype: Optional[str] = field(
        default=None,
        metadata={"help": "Base weight dtype: bfloat16, float16, float32 or auto (the checkpoint's); default from "
                          "bf16/fp16 (float32 otherwise).", "choices": ["auto", "bfloat16", "float16", "float32"]},
    )
    model_dtype: Optional[str] = field(default=None, metadata={"help": "Deprecated alias of dtype."})

    # LoRA.
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "v_proj"], metadata={"help": "Module names that get LoRA adapters."}
    )

    # What trains.
    finetuning: str = field(
        default="lora",
        metadata={"help": "lora: LoRA adapters (the paper); full: every weight of the decoder layers "
                          "(float32 master weights, bf16 autocast); the output is then a whole model.",
                  "choices": list(FINETUNING_METHODS)},
    )
    top_layers: Optional[int] = field(
        default=None,
        metadata={"help": "Train only the last this-many decoder layers (None: all); the backward pass stops "
                          "at the first trained layer, so steps are cheaper."},
    )

    # Collaborative tokens (the CoLLM route; ours, not the paper's).
    collaborative_ids: bool = field(
        default=False,
        metadata={"help": "Add one soft token per user and per item: matrix-factorisation vectors fitted on the "
                          "train split, mapped into the LLM's embedding space by a projector that trains with ReiT."},
    )
    id_vector_dim: int = field(default=32, metadata={"help": "Factor size of the matrix factorisation."})
    id_fit_epochs: int = field(
        default=20, metadata={"help": "Most passes of the matrix factorisation over the train split (the epoch with the "
                                      "best validation AUC is kept)."})
    id_projector_lr: Optional[float] = field(
        default=1e-3, metadata={"help": "Learning rate of the collaborative-token projector (None: learning_rate)."}
    )

    # Batching and resuming.
    total_batch_size: Optional[int] = field(
        default=256, metadata={"help": "Samples per optimizer step over all processes (sets gradient accumulation)."}
    )
    early_stopping_patience: Optional[int] = field(
        default=None,
        metadata={"help": "Stop after this many evaluations without a better metric_for_best_model (e.g. "
                          "validation AUC); needs load_best_model_at_end. None: the whole schedule."},
    )
    resume: bool = field(
        default=False, metadata={"help": "Continue from the last checkpoint in output_dir."}
    )

    def __post_init__(self):
        if self.hub_token:
            # The Trainer pickles these arguments into training_args.bin: the token goes to this
            # process's environment, where huggingface_hub finds it, and never into a file.
            os.environ["HF_TOKEN"] = self.hub_token
            self.hub_token = None
        if self.model_dtype is not None and self.dtype is None:
            self.dtype = self.model_dtype
        self.model_dtype = self.dtype  # the old name mirrors the new one, as transformers does for its aliases
        # None asks for the size-based default, resolved by build_trainer once the model is loaded.
        auto_checkpointing = self.activation_checkpointing is None and self.gradient_checkpointing is None
        if self.bf16 is None:
            # DeepSpeed on a CPU-only machine runs without use_cpu, where the Trainer refuses bf16.
            cpu_deepspeed = _deepspeed_requested(self.deepspeed) and not _accelerator_present()
            self.bf16 = False if self.fp16 or cpu_deepspeed else hardware_supports_bf16()
        launched = os.environ.get("LOCAL_RANK", "-1") != "-1"
        if self.ddp_backend is None and launched and _deepspeed_requested(self.deepspeed) and not _accelerator_present():
            # DeepSpeed's CPU accelerator (DS_ACCELERATOR=cpu): accelerate picks no backend on a machine
            # without accelerator, and then counts one process although the group holds all of them.
            self.ddp_backend = "gloo"
        if not self.use_cpu and _cpu_only_without_deepspeed(self.deepspeed):
            # Processes started by torchrun / `accelerate launch` (multi_cpu.yaml) then form a gloo
            # process group; without it each would train alone on the whole data.
            self.use_cpu = True
        self.check_build_options()
        self._validate_reit_fields()
        if self.total_batch_size is not None:
            self.gradient_accumulation_steps = self.accumulation_steps_for(self.total_batch_size)
        super().__post_init__()
        if auto_checkpointing:
            self.activation_checkpointing = self.gradient_checkpointing = None
        if self.device.type == "cpu":
            self.dataloader_pin_memory = False  # pinning needs an accelerator; on CPU it only warns

    def _validate_reit_fields(self) -> None:
        if self.id_projector_lr is not None and not self.id_projector_lr > 0:
            raise ConfigError(f"id_projector_lr={self.id_projector_lr!r} must be positive, or None for learning_rate.")
        if self.train_type not in TRAIN_TYPES:
            raise ConfigError(f"train_type={self.train_type!r} is not one of {', '.join(TRAIN_TYPES)}; pick one of them.")
        if self.test_type not in TEST_TYPES:
            raise ConfigError(f"test_type={self.test_type!r} is not one of {', '.join(TEST_TYPES)}; pick one of them.")
        for name in ("K", "shots", "pool_size", "lora_r", "id_vector_dim", "id_fit_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name}={value!r} must be a positive integer.")
        if self.shots > self.pool_size:
            raise ConfigError(
                f"shots={self.shots} exceeds pool_size={self.pool_size}; the N-shot set is the first N of the pool, "
                "so raise pool_size or lower shots."
            )
        if self.eval_size is not None and self.eval_size < 0:
            raise ConfigError(f"eval_size={self.eval_size} must be >= 0 (0 disables scoring) or None for the whole split.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout={self.lora_dropout} must be in [0, 1).")
        if not self.lora_target_modules:
            raise ConfigError("lora_target_modules is empty; name at least one module, e.g. q_proj v_proj.")
        if self.finetuning not in FINETUNING_METHODS:
            raise ConfigError(f"finetuning={self.finetuning!r} is not one of {', '.join(FINETUNING_METHODS)}.")
        if self.finetuning == "full" and self.push_to_hub:
            raise ConfigError("push_to_hub publishes LoRA adapters with rella-hf's card; a finetuning=full run writes a "
                              "plain transformers model: train without push_to_hub, then push that folder yourself.")
        if self.top_layers is not None and (
                isinstance(self.top_layers, bool) or not isinstance(self.top_layers, int)
                or self.top_layers <= 0):
            raise ConfigError(f"top_layers={self.top_layers!r} must be a positive integer, or None for "
                              "every layer.")
        if self.early_stopping_patience is not None and (
                self.early_stopping_patience < 1 or not self.load_best_model_at_end):
            raise ConfigError(
                f"early_stopping_patience={self.early_stopping_patience} needs a positive value and "
                "load_best_model_at_end=true (with metric_for_best_model, e.g. auc); set both or drop it."
            )
        if self.load_in_8bit and self.load_in_4bit:
            raise ConfigError("load_in_8bit and load_in_4bit were both set; choose one of them.")
        quantized = "load_in_8bit" if self.load_in_8bit else "load_in_4bit" if self.load_in_4bit else None
        if quantized and self.finetuning != "lora":
            raise ConfigError(f"{quantized} quantizes frozen base weights, which only LoRA leaves frozen, but "
                              f"finetuning={self.finetuning!r}; use finetuning=lora or drop {quantized}.")
        if quantized and deepspeed_zero_stage(self.deepspeed) == 3:
            raise ConfigError(f"{quantized} does not work under DeepSpeed ZeRO-3 (bitsandbytes weights cannot be "
                              "partitioned); launch with accelerate_configs/multi_gpu.yaml (DDP) or "
                              "deepspeed_zero2.yaml (ZeRO-2), or drop it.")
        if self.total_batch_size is not None and self.total_batch_size <= 0:
            raise ConfigError(f"total_batch_size={self.total_batch_size} must be positive, or None to keep "
                              "gradient_accumulation_steps as given.")

    def accumulation_steps_for(self, total_batch_size: int, world_size: int | None = None) -> int:
        """Gradient accumulation steps that make ``total_batch_size`` samples per optimizer step.

        Args:
            total_batch_size: samples per optimizer step over all processes.
            world_size: number of training processes (default ``$WORLD_SIZE``, set by
                ``accelerate launch`` / ``torchrun``; 1 otherwise).

        Raises:
            ConfigError: when the total is not a multiple of ``per_device_train_batch_size * world_size``.
        """
        if world_size is None:
            world_size = int(os.environ.get("WORLD_SIZE", "1"))
        per_step = self.per_device_train_batch_size * world_size
        if total_batch_size % per_step:
            raise ConfigError(
                f"total_batch_size={total_batch_size} is not a multiple of per_device_train_batch_size "
                f"({self.per_device_train_batch_size}) x processes ({world_size}) = {per_step}; change one of them."
            )
        return total_batch_size // per_step

    @property
    def base_dtype(self) -> str:
        """Dtype the model is loaded in: ``dtype``, else float32 for full fine-tuning (master weights),
        bfloat16 with ``bf16``, float16 with ``fp16``, float32."""
        if self.dtype is not None:
            return self.dtype
        if self.finetuning == "full":
            return "float32"
        if self.bf16:
            return "bfloat16"
        if self.fp16:
            return "float16"
        return "float32"

    @property
    def wants_sequential(self) -> bool:
        """Whether SUBR (semantic, chronological) prompts are needed for training or evaluation."""
        return self.train_type in ("sequential", "mixed") or (self.test_type == "sequential" and self.eval_size != 0)

    @property
    def wants_simple(self) -> bool:
        """Whether recent-K prompts are needed for training or evaluation."""
        return self.train_type in ("simple", "mixed") or (self.test_type == "simple" and self.eval_size != 0)

    def reit_settings(self) -> dict:
        """The ReLLa-specific fields (data, model, LoRA, batching) as a plain JSON-ready dict."""
        names = (
            "dataset", "data_dir", "train_type", "test_type", "shots", "pool_size", "sample_seed", "eval_size",
            "eval_split", "compute_eval_loss", "model_name_or_path", "model_revision", "model_dtype", "dtype",
            "attn_implementation", "load_in_8bit", "load_in_4bit", "bnb_4bit_quant_type", "completion_logits_only",
            "shared_prefix", "cpu_float32_attention", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "finetuning",
            "top_layers", "collaborative_ids", "id_vector_dim", "id_fit_epochs", "id_projector_lr",
            "total_batch_size", "early_stopping_patience", "resume",
        )
        # retrieval is not a setting of the run: train_type / test_type choose the prompt kinds.
        build = {name: value for name, value in self.build_options().items() if name != "retrieval"}
        return {**build, **{name: getattr(self, name) for name in names}, "compute_dtype": self.compute_dtype}

    @property
    def compute_dtype(self) -> str:
        """Precision the trained model computed in: the base dtype, except bfloat16 / float16 for full
        fine-tuning under autocast (its float32 master weights are only the optimizer's copy)."""
        if self.finetuning == "full" and self.dtype is None and (self.bf16 or self.fp16):
            return "bfloat16" if self.bf16 else "float16"
        return self.base_dtype


def wants_activation_checkpointing(model) -> bool:
    """The default of ``activation_checkpointing``: on for models of at least
    :data:`ACTIVATION_CHECKPOINTING_MIN_PARAMETERS` parameters.

    Args:
        model: the base model (its ZeRO-3 partitions count with their full size).
    """
    total = sum(getattr(parameter, "ds_numel", parameter.numel()) for parameter in model.parameters())
    return total >= ACTIVATION_CHECKPOINTING_MIN_PARAMETERS


def top_layer_indices(top_layers: int | None, num_layers: int) -> list[int]:
    """Indices of the decoder layers that train: the last ``top_layers`` of ``num_layers`` (all when None).

    Raises:
        ConfigError: ``top_layers`` exceeds ``num_layers``.
    """
    if top_layers is None:
        return list(range(num_layers))
    if top_layers > num_layers:
        raise ConfigError(f"top_layers={top_layers} exceeds the model's {num_layers} decoder layers; lower it or "
                          "leave it unset for every layer.")
    return list(range(num_layers - top_layers, num_layers))


def lora_config(config: ReiTConfig, num_layers: int | None = None) -> LoraConfig:
    """The :class:`peft.LoraConfig` described by ``config``'s ``lora_*`` fields (causal LM, no bias).

    Args:
        config: a :class:`ReiTConfig`.
        num_layers: the model's decoder layer count; needed when ``config.top_layers`` is set.

    Raises:
        ConfigError: ``top_layers`` is set without ``num_layers``, or exceeds it.
    """
    from peft import LoraConfig

    layers = None
    if config.top_layers is not None:
        if num_layers is None:
            raise ConfigError("top_layers needs the model's number of decoder layers (num_layers).")
        layers = top_layer_indices(config.top_layers, num_layers)
    optional = {}
    if config.lora_target_parameters:  # peft >= 0.17; passed only when asked for
        optional["target_parameters"] = list(config.lora_target_parameters)
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        layers_to_transform=layers,
        modules_to_save=config.lora_modules_to_save,
        use_rslora=config.use_rslora,
        use_dora=config.use_dora,
        bias="none",
        task_type="CAUSAL_LM",
        **optional,
    )


def make_parser():
    """A :class:`trl.TrlParser` over :class:`ReiTConfig` (``--config file.yaml`` plus ``--key value`` overrides).

    :class:`ReiTConfig` is a :class:`trl.ModelConfig` too, so the parser lists trl's model fields
    (``load_in_8bit``, ``attn_implementation``, ``model_revision``, ...) once, beside SFTConfig's.
    """
    from trl import TrlParser

    return TrlParser((ReiTConfig,))


def parse_config(args: list[str] | None = None) -> ReiTConfig:
    """Parse a YAML config (``--config path``) and command-line overrides into a :class:`ReiTConfig`.

    Args:
        args: the arguments (default ``sys.argv[1:]``), e.g.
            ``["--config", "trainer_configs/smoke-cpu.yaml", "--shots", "32"]``.
    """
    (config,) = make_parser().parse_args_and_config(args=args)
    return config
