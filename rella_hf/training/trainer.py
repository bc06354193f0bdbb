"""ReiT training: TRL's ``SFTTrainer`` with a LoRA adapter, completion-only loss and CTR evaluation.

:func:`run_training` is the whole pipeline (what ``train.py`` and a notebook call):

1. build or load the prompt datasets (recent-K and/or SUBR) with :func:`rella_hf.load_dataset`;
2. take the N-shot training rows and the validation subset (:mod:`rella_hf.training.data`);
3. load the base model, wrap it with LoRA, train with ``SFTTrainer`` (checkpoints every
   ``save_steps``, ``resume=True`` continues from the last one);
4. write the adapter (safetensors), the tokenizer, ``training_config.json`` and ``metrics.json``
   into ``output_dir``.

:func:`train_on_data` runs steps 3-4 on rows you built yourself.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from accelerate.logging import get_logger
from trl import SFTTrainer

from ..errors import ConfigError
from ..models import TRAINING_CONFIG_FILE
from .config import TINY_RANDOM_LLAMA, ReiTConfig, lora_config, wants_activation_checkpointing
from .id_tokens import CollaborativeTokensMixin
from .top_layers import tied_parameter_names, train_top_decoder_layers

if TYPE_CHECKING:
    from .data import TrainingData

# Main process only: every rank runs the same code, one copy of each message is enough.
logger = get_logger(__name__)

METRICS_FILE = "metrics.json"


@dataclass
class TrainingResult:
    """What a run produced.

    Attributes:
        output_dir: folder with the adapter, tokenizer, ``training_config.json`` and ``metrics.json``.
        metrics: the content of ``metrics.json``.
        config: the configuration the run used (gradient accumulation resolved).
    """

    output_dir: Path
    metrics: dict = field(default_factory=dict)
    config: ReiTConfig | None = None


def _main_process_first():
    from accelerate import PartialState

    return PartialState().main_process_first()


def resolve_model_source(config: ReiTConfig) -> tuple[str, str | None]:
    """The model folder/id to load and the ``chat_model`` that wraps the prompts.

    ``tiny-random-llama`` is built on first use; ``chat_model="auto"`` becomes the model's own
    name (for the tiny model, the SmolLM2 tokenizer it was built with, so its prompt datasets
    are the SmolLM2 ones and share their cache).

    Args:
        config: the run configuration.
    """
    from .tiny import TINY_TOKENIZER_SOURCE, build_tiny_random_llama

    name = config.model_name_or_path
    if name == TINY_RANDOM_LLAMA:
        from ..models import outside_zero3_init

        with _main_process_first(), outside_zero3_init():  # built by the main process alone
            path = str(build_tiny_random_llama())
        tokenizer_source = TINY_TOKENIZER_SOURCE
    else:
        path = name
        tokenizer_source = name
    chat_model = tokenizer_source if config.chat_model == "auto" else config.chat_model
    return path, chat_model


def load_model_for_training(config: ReiTConfig, model_path: str | None = None):
    """Load the base model (train mode) and its tokenizer for a run.

    Args:
        config: the run configuration (``model_name_or_path`` and trl's model fields: ``dtype``,
            ``model_revision``, ``attn_implementation``, ``load_in_8bit`` / ``load_in_4bit``, ...).
        model_path: an already resolved folder/id (default: from :func:`resolve_model_source`).

    Returns:
        ``(model, tokenizer)``.
    """
    from ..models import load_model, resolve_model_path

    if model_path is None:
        model_path, _ = resolve_model_source(config)
    with _main_process_first():  # the first SmolLM2 use converts the GGUF once
        model_path = resolve_model_path(model_path)
    # Every process loads at once: under ZeRO-3 loading partitions the weights, a collective step.
    model, tokenizer = load_model(
        model_path, dtype=config.base_dtype, revision=config.model_revision,
        attn_implementation=config.attn_implementation, load_in_8bit=config.load_in_8bit,
        load_in_4bit=config.load_in_4bit, bnb_4bit_quant_type=config.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=config.use_bnb_nested_quant, trust_remote_code=config.trust_remote_code)
    model.train()
    return model, tokenizer


def check_prompt_wrapping(tokenizer, chat_model: str | None) -> None:
    """Refuse a run whose prompts were wrapped for another chat template than the model's.

    Args:
        tokenizer: the trained model's tokenizer.
        chat_model: the tokenizer name/path that wrapped the prompts (None: Vicuna v1.1).

    Raises:
        ConfigError: when the two wrappers render a prompt differently.
    """
    from ..prompts import wrap_prompt

    probe = "Will the user like the movie?"
    wrapper = None
    if chat_model is not None:
        from ..models import load_tokenizer

        wrapper = load_tokenizer(chat_model)
    if wrap_prompt(probe, wrapper) != wrap_prompt(probe, tokenizer):
        raise ConfigError(
            f"chat_model={chat_model!r} wraps prompts differently from the tokenizer of the trained model; "
            "set chat_model to 'auto' (the model's own template) or to a model with the same template."
        )


def effective_total_batch_size(config: ReiTConfig, num_rows: int, world_size: int) -> int | None:
    """Samples per optimizer step: ``total_batch_size`` capped at the training rows.

    The paper's script uses ``min(total_batch_size, rows)`` so a few-shot set smaller than one
    batch still takes one step per epoch; the cap is rounded down to a multiple of
    ``per_device_train_batch_size * world_size`` (at least one such step).

    Args:
        config: the run configuration.
        num_rows: training rows (2N for ``mixed``).
        world_size: number of training processes.
    """
    if config.total_batch_size is None:
        return None
    per_step = config.per_device_train_batch_size * world_size
    capped = min(config.total_batch_size, num_rows)
    return max(per_step, capped // per_step * per_step)


def check_evaluation_setup(config: ReiTConfig, data: TrainingData) -> None:
    """Refuse periodic evaluation or best-checkpoint selection without an evaluation subset.

    Args:
        config: the run configuration.
        data: the run's rows.
    """
    if data.eval is not None:
        return
    if config.eval_strategy != "no" or config.load_best_model_at_end:
        raise ConfigError(
            f"eval_strategy={str(config.eval_strategy.value)!r} / load_best_model_at_end={config.load_best_model_at_end} "
            "need an evaluation subset, but eval_size=0; set eval_size or eval_strategy='no' and "
            "load_best_model_at_end=false."
        )


class ReiTTrainer(CollaborativeTokensMixin, SFTTrainer):
    """``SFTTrainer`` with an answer-only LM head and an evaluation that can skip the loss loop.

    With ``completion_logits_only=True`` (the default) batches come left-padded from
    :class:`~rella_hf.training.collator.LeftPaddingCompletionCollator` and :meth:`compute_loss`
    asks the model for the logits of the answer columns only, the same loss as TRL's
    completion-only NLL without the LM head over every prompt position.

    With ``compute_eval_loss=False`` in the config, :meth:`evaluate` runs no evaluation loop: the
    :class:`~rella_hf.training.CTREvalCallback` fills in (and logs) AUC / LogLoss / ACC, which
    best-checkpoint selection then reads.
    """

    def create_model_card(self, model_name=None, dataset_name=None, tags=None, **kwargs):
        """Write rella-hf's model card (``hub_cards/model_card.md``) into ``output_dir``, not TRL's generic one.

        ``Trainer.push_to_hub`` calls this before uploading the output folder. The card needs the
        run's ``training_config.json`` and ``metrics.json``; before :func:`train_on_data` has written
        them (a push at a checkpoint) no card is written.
        """
        if not self.is_world_process_zero():
            return
        output_dir = Path(self.args.output_dir)
        if not ((output_dir / TRAINING_CONFIG_FILE).is_file() and (output_dir / METRICS_FILE).is_file()):
            logger.info("No model card yet: %s lacks %s or %s.", output_dir, TRAINING_CONFIG_FILE, METRICS_FILE)
            return
        # Publishing sits above training; the card writer is imported only when a push asks for it.
        from ..hub.adapters import write_output_card

        write_output_card(output_dir, repo_id=self.args.hub_model_id)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Completion-only NLL from the answer columns' logits (TRL's own loss when disabled).

        The token statistics (entropy, accuracy, token count) are summed on the device and reduced
        across processes only when they are logged (:meth:`log`): no collective and no host sync
        per micro-step.
        """
        if not getattr(self.args, "completion_logits_only", False) or "position_ids" not in inputs:
            inputs.pop("logits_to_keep", None)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        from .collator import answer_only_loss, answer_window

        labels = inputs["labels"]
        window = inputs.get("logits_to_keep")
        if window is None:  # rows from another collator: read the window from the labels (one host sync)
            window = answer_window(labels)
        prefix = inputs.get("prefix_ids")
        if prefix is None:
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                            position_ids=inputs["position_ids"], use_cache=False, logits_to_keep=int(window))
        else:
            outputs = self._after_shared_prefix(model, prefix, inputs, int(window))
        loss, tokens, entropy, correct = answer_only_loss(outputs.logits, labels, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages the gradients across processes
        mode = "train" if model.training else "eval"
        seen = inputs["attention_mask"].sum() if mode == "train" else torch.zeros((), device=tokens.device)
        step_stats = torch.stack([tokens.float(), entropy.float(), correct.float(), seen.float()])
        pending = self._pending_answer_stats.get(mode)
        self._pending_answer_stats[mode] = step_stats if pending is None else pending + step_stats
        return (loss, outputs) if return_outputs else loss

    @staticmethod
    def _after_shared_prefix(model, prefix_ids, inputs, window: int):
        """The model's outputs for rows that continue ``prefix_ids``, the prefix run once (with its graph)."""
        from ..shared_prefix import forward_after_prefix, prefix_key_values

        key_values = prefix_key_values(model, prefix_ids, logits_to_keep=1)
        return forward_after_prefix(model, inputs["input_ids"], key_values, attention_mask=inputs["attention_mask"],
                                    position_ids=inputs["position_ids"], logits_to_keep=window)

    @property
    def _pending_answer_stats(self) -> dict:
        """Per mode, the device-side sums ``[answer tokens, entropy, correct, input tokens]`` since the last log."""
        if "_answer_stats" not in self.__dict__:
            self._answer_stats = {}
        return self._answer_stats

    def _flush_answer_stats(self, mode: str) -> None:
        """Reduce the pending sums across processes once and turn them into TRL's logged metrics."""
        pending = self._pending_answer_stats.pop(mode, None)
        if pending is None:
            return
        tokens, entropy, correct, seen = self.accelerator.reduce(pending, reduction="sum").tolist()
        self._metrics[mode]["entropy"].append(entropy / tokens if tokens else 0.0)
        self._metrics[mode]["mean_token_accuracy"].append(correct / tokens if tokens else 0.0)
        if mode == "train":
            self._total_train_tokens += int(seen)
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Log ``logs`` with the token statistics accumulated since the last call (one reduction)."""
        self._flush_answer_stats("train" if self.model.training else "eval")
        super().log(logs, start_time)

    def _get_train_sampler(self, train_dataset=None):
        """Length-grouped order drawn from ``(seed, epoch)``, so a resumed run continues the same order."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or dataset is None or "input_ids" not in getattr(
                dataset, "column_names", ()):
            return super()._get_train_sampler(train_dataset)
        from .sampler import SeededLengthGroupedSampler

        lengths = [len(ids) for ids in dataset["input_ids"]]
        step_rows = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return SeededLengthGroupedSampler(lengths, step_rows, seed=self.args.seed)

    def _issue_warnings_after_load(self, load_result):
        """Restoring the best checkpoint of a tied-embedding model (SmolLM2) is complete, not partial.

        The checkpoint stores the shared embedding matrix once, so the LM head's key is "missing" by
        design; transformers would warn that the checkpoint lacks ``lm_head.weight``. Those keys are
        dropped from the warning and the weights re-tied; any other missing key is still reported.
        """
        from ..collaborative_ids import ATTRIBUTE

        shared = tied_parameter_names(self.model)
        missing = [key for key in load_result.missing_keys if key not in shared and ATTRIBUTE not in key]
        if len(missing) < len(load_result.missing_keys):
            self.model.tie_weights()
        return super()._issue_warnings_after_load(load_result._replace(missing_keys=missing))

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        if getattr(self.args, "compute_eval_loss", True) or eval_dataset is not None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        metrics: dict[str, float] = {}
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def build_trainer(config: ReiTConfig, data: TrainingData, model, tokenizer, callbacks=None) -> ReiTTrainer:
    """An ``SFTTrainer`` for ``data`` with LoRA (or full fine-tuning), completion-only loss and CTR evaluation.

    With ``compute_eval_loss=False`` evaluation skips the Trainer's loss loop and reports only
    the callback's AUC / LogLoss / ACC.

    Args:
        config: the run configuration; ``gradient_accumulation_steps`` is recomputed from
            :func:`effective_total_batch_size` when ``total_batch_size`` is set, and an unset
            ``activation_checkpointing`` from the model's size (:func:`wants_activation_checkpointing`).
        data: training rows and the evaluation subset (:class:`~rella_hf.training.data.TrainingData`).
        model: the base model (not yet wrapped with LoRA; with ``finetuning="full"`` its layers
            outside ``top_layers`` are frozen in place).
        tokenizer: its tokenizer.
        callbacks: extra ``TrainerCallback`` objects.
    """
    from .callbacks import CTREvalCallback
    from .data import tokenize_rows

    check_evaluation_setup(config, data)
    total = effective_total_batch_size(config, len(data.train), config.world_size)
    if total is not None and total != config.total_batch_size:
        logger.warning("total_batch_size %d capped at %d (the training set has %d rows).",
                       config.total_batch_size, total, len(data.train))
        config = dataclasses.replace(config, total_batch_size=total)

    if config.activation_checkpointing is None:
        # Set in place (with its deprecated mirror): a dataclasses.replace would set up the devices
        # and the DeepSpeed plugin a second time.
        config.activation_checkpointing = config.gradient_checkpointing = wants_activation_checkpointing(model)

    with _main_process_first():
        train_dataset = tokenize_rows(data.train, tokenizer, config.max_length)
        eval_dataset = None if data.eval is None else tokenize_rows(data.eval, tokenizer, config.max_length)
    all_callbacks = list(callbacks or [])
    if config.early_stopping_patience is not None:
        from transformers import EarlyStoppingCallback

        all_callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    ctr_callback = None
    if data.eval is not None:
        ctr_callback = CTREvalCallback(data.eval["prompt"], data.eval["label"], tokenizer,
                                       batch_size=config.per_device_eval_batch_size)
        all_callbacks.insert(0, ctr_callback)
    collator = None
    if config.completion_logits_only:
        from .collator import LeftPaddingCompletionCollator

        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        # One process only: DDP and DeepSpeed count on one forward call per backward; activation checkpointing
        # turns the key/value cache off; the padding between prefix and rows needs a kernel that takes any mask.
        share = (config.shared_prefix and config.world_size == 1 and not config.deepspeed
                 and not config.activation_checkpointing and config.attn_implementation in (None, "sdpa", "eager"))
        collator = LeftPaddingCompletionCollator(pad_token_id=pad_id or 0, shared_prefix=share)
        from ..lm_heads import contiguous_lm_head_input

        contiguous_lm_head_input(model)
    num_layers = getattr(model.config, "num_hidden_layers", None)
    if config.finetuning == "full":
        train_top_decoder_layers(model, config.top_layers)
    if config.cpu_float32_attention and config.device.type == "cpu":
        from .attention import use_float32_cpu_training_attention

        use_float32_cpu_training_attention(model, autocast_bf16=bool(config.bf16))  # bf16 SDPA backward: slow on CPU
    trainer = ReiTTrainer(
        model=model,
        args=config,
        data_collator=collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=lora_config(config, num_layers) if config.finetuning == "lora" else None,
        callbacks=all_callbacks,
    )
    trainer.unfreeze_collaborative_projector()  # LoRA wrapping and top-layer freezing froze it with the base weights
    if ctr_callback is not None:
        ctr_callback.attach(trainer)
    if trainer.args.device.type == "cpu":
        from .dropout import use_uniform_lora_dropout

        use_uniform_lora_dropout(trainer.model)  # bernoulli_ masks cost 16 % of a CPU step
    return trainer


def find_resume_checkpoint(config: ReiTConfig) -> str | None:
    """The checkpoint to resume from: ``resume_from_checkpoint``, else the last complete one when ``resume``
    or when the previous run in ``output_dir`` was stopped by Ctrl-C / SIGTERM (``interrupted.json``).

    Args:
        config: the run configuration.
    """
    from .callbacks import INTERRUPTED_FILE, last_complete_checkpoint

    if config.resume_from_checkpoint:
        return config.resume_from_checkpoint
    if not (config.resume or (Path(config.output_dir) / INTERRUPTED_FILE).is_file()):
        return None
    last = last_complete_checkpoint(config.output_dir)
    if last is None:
        logger.warning("resume=True but %s holds no checkpoint; training from the start.", config.output_dir)
    return last


def _json_ready(value):
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _write_json(path: Path, payload: dict) -> None:
    from ..utils import atomic_write_text

    atomic_write_text(path, json.dumps(_json_ready(payload), indent=2, sort_keys=True) + "\n")


def final_evaluation(trainer) -> dict:
    """Evaluation metrics of the model the trainer ends with.

    When that model was already evaluated (the best checkpoint restored by
    ``load_best_model_at_end``, or an evaluation at the last step), its logged metrics are
    returned instead of scoring the same model on the same subset again.

    Args:
        trainer: a trainer after ``train()``.
    """
    from .callbacks import final_model_step

    state, step = trainer.state, final_model_step(trainer)
    if step is not None:
        logged = {}
        for entry in state.log_history:
            if entry.get("step") == step:
                logged.update({key: value for key, value in entry.items() if key.startswith("eval_")})
        if "eval_auc" in logged:
            return logged
    return trainer.evaluate()


def _keep_finished_run_timing(metrics: dict, output_dir: Path, checkpoint: str | None, global_step: int) -> None:
    """A rerun that resumed from the final checkpoint trained nothing: keep the run's own ``train`` block."""
    step = checkpoint.rstrip("/").rsplit("-", 1)[-1] if checkpoint else ""
    if not step.isdigit() or int(step) != global_step or not (output_dir / METRICS_FILE).is_file():
        return
    previous = json.loads((output_dir / METRICS_FILE).read_text())
    if previous.get("train"):
        metrics["train"] = previous["train"]
        metrics["resumed_from"] = previous.get("resumed_from")


def train_on_data(config: ReiTConfig, data: TrainingData, model=None, tokenizer=None, callbacks=None,
                  extra_metrics: dict | None = None) -> TrainingResult:
    """Train a LoRA adapter on prepared rows and write the outputs into ``config.output_dir``.

    Args:
        config: the run configuration.
        data: training rows and evaluation subset.
        model: the base model (default: loaded from ``config.model_name_or_path``).
        tokenizer: its tokenizer (loaded with the model when None).
        callbacks: extra ``TrainerCallback`` objects.
        extra_metrics: entries added to ``metrics.json`` (e.g. data sizes).

    Returns:
        A :class:`TrainingResult`.
    """
    check_evaluation_setup(config, data)
    if model is None:
        model, tokenizer = load_model_for_training(config)
    elif tokenizer is None:
        raise ConfigError("a model was given without its tokenizer; pass both or neither.")
    trainer = build_trainer(config, data, model, tokenizer, callbacks)
    config = trainer.args
    checkpoint = find_resume_checkpoint(config)
    from ..interrupts import deferred_signals
    from .callbacks import INTERRUPTED_FILE, StopOnSignal

    with deferred_signals() as request:  # Ctrl-C / SIGTERM: checkpoint at the end of the step, then stop
        trainer.add_callback(StopOnSignal(request))
        train_output = trainer.train(resume_from_checkpoint=checkpoint)
    state = trainer.state
    # Read before the final evaluation, which logs its metrics too; log_history survives resuming.
    eval_history = [
        {key: value for key, value in entry.items() if key in ("step", "epoch") or key.startswith("eval_")}
        for entry in state.log_history if "eval_auc" in entry
    ]
    final_eval = final_evaluation(trainer) if data.eval is not None else {}
    output_dir = Path(config.output_dir)
    metrics = {
        "train": dict(train_output.metrics),
        "final_eval": {key: value for key, value in final_eval.items() if key.startswith("eval_")},
        "eval_history": eval_history,
        "log_history": [entry for entry in state.log_history if "loss" in entry],
        "best_checkpoint": state.best_model_checkpoint,
        "best_metric": state.best_metric,
        "global_step": state.global_step,
        "resumed_from": checkpoint,
        "train_rows": len(data.train),
        "eval_rows": 0 if data.eval is None else len(data.eval),
        "eval_split": data.eval_split,
        "total_batch_size": config.total_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "world_size": config.world_size,
        **(extra_metrics or {}),
    }
    metrics.update(trainer.collaborative_metrics())
    _keep_finished_run_timing(metrics, output_dir, checkpoint, state.global_step)
    if trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        settings = {"reit": config.reit_settings(), "training_arguments": config.to_dict()}
        _write_json(output_dir / TRAINING_CONFIG_FILE, settings)
        _write_json(output_dir / METRICS_FILE, metrics)
    # After the two files: with push_to_hub, save_model pushes the folder with rella-hf's card (create_model_card).
    trainer.save_model(str(output_dir))  # adapter (safetensors) + tokenizer
    trainer.accelerator.wait_for_everyone()
    from ..calibration import fit_after_training  # calibration.json beside the saved weights (validation only)
    from .callbacks import final_model_scores

    fit_after_training(trainer, data, output_dir, scores=final_model_scores(trainer))  # scored once, not twice
    (output_dir / INTERRUPTED_FILE).unlink(missing_ok=True)
    if hasattr(trainer, "end"):  # transformers >= 5.18: close trackers and the process group
        trainer.end()
    return TrainingResult(output_dir=output_dir, metrics=_json_ready(metrics), config=config)


def prepare_training_data(config: ReiTConfig, chat_model: str | None, model=None, tokenizer=None) -> TrainingData:
    """Build (or load from cache) the prompt datasets and take the run's rows from them.

    The main process builds the datasets first; the others then read them from the cache. With
    ``collaborative_ids`` the factorisation is fitted and attached to ``model`` and its tokens added
    to ``tokenizer`` and the prompts (:func:`~rella_hf.training.id_tokens.prepare_collaborative_ids`).

    Args:
        config: the run configuration.
        chat_model: tokenizer that wraps the prompts (see :func:`resolve_model_source`).
        model, tokenizer: the model to train and its tokenizer (needed with ``collaborative_ids``).
    """
    from ..models import outside_zero3_init
    from .data import build_training_data, load_prompt_datasets
    from .id_tokens import prepare_collaborative_ids

    if config.collaborative_ids and (model is None or tokenizer is None):
        raise ConfigError("collaborative_ids=true needs the model and tokenizer to attach the collaborative tokens to")
    # Item embedders load on the main process alone: under ZeRO-3 they must not partition (that
    # would wait for the other processes, which wait at the barrier).
    with _main_process_first(), outside_zero3_init():
        prompt_datasets = load_prompt_datasets(config, chat_model)
    if config.collaborative_ids:
        with _main_process_first():
            prompt_datasets = prepare_collaborative_ids(config, prompt_datasets, model, tokenizer)
    return build_training_data(config, prompt_datasets)


def run_training(config: ReiTConfig, callbacks=None) -> TrainingResult:
    """Run one ReiT training end to end (data, model, LoRA training, outputs).

    Args:
        config: the run configuration (see :class:`~rella_hf.training.ReiTConfig`).
        callbacks: extra ``TrainerCallback`` objects.

    Returns:
        A :class:`TrainingResult` whose ``output_dir`` holds ``adapter_model.safetensors``,
        ``adapter_config.json``, the tokenizer files, ``training_config.json`` and ``metrics.json``.
    """
    model_path, chat_model = resolve_model_source(config)
    model, tokenizer = load_model_for_training(config, model_path)
    if config.chat_model != "auto":
        check_prompt_wrapping(tokenizer, chat_model)
    data = prepare_training_data(config, chat_model, model, tokenizer)
    extra = {"dataset": config.dataset, "K": config.K, "train_type": config.train_type,
             "test_type": config.test_type, "shots": config.shots}
    return train_on_data(config, data, model, tokenizer, callbacks, extra_metrics=extra)
