"""The CTR evaluation callback: AUC / LogLoss / ACC of the model being trained, at every evaluation.

At each ``Trainer`` evaluation the callback scores a fixed validation subset with the fast path
of :class:`rella_hf.scoring.CTRScorer` (last-position logits only, no full-vocabulary logits kept
across prompts) and adds ``eval_auc``, ``eval_logloss`` and ``eval_acc`` to the evaluation
metrics. Because it adds them to the metrics dict the Trainer is about to compare, setting
``metric_for_best_model="auc"`` with ``load_best_model_at_end=True`` selects the best checkpoint
by validation AUC, as the paper does.

:class:`StopOnSignal` turns Ctrl-C / SIGTERM during training into a checkpoint at the end of the current
optimizer step, then stops; :func:`last_complete_checkpoint` is what a resumed run continues from.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from accelerate.logging import get_logger
from transformers import TrainerCallback

# Main process only: every rank runs the same code, one copy of each message is enough.
logger = get_logger(__name__)

#: Metrics of :func:`rella_hf.metrics.ctr_metrics` the callback reports.
REPORTED_METRICS = ("auc", "logloss", "acc")


class CTREvalCallback(TrainerCallback):
    """Score a validation subset at every evaluation and report AUC / LogLoss / ACC.

    Args:
        prompts: wrapped validation prompts.
        labels: their 0/1 labels.
        tokenizer: the model's tokenizer.
        batch_size: prompts per forward pass.
        metric_key_prefix: prefix of the reported keys (``"eval"`` gives ``eval_auc``, ...).
        max_length: longest prompt in tokens (longer ones lose their beginning); None keeps all.

    Attributes:
        history: one dict per evaluation: ``step``, ``epoch`` and the prefixed metrics.
    """

    def __init__(
        self,
        prompts: Sequence[str],
        labels: Sequence[int],
        tokenizer,
        batch_size: int = 8,
        metric_key_prefix: str = "eval",
        max_length: int | None = None,
    ):
        from ..errors import ConfigError

        if len(prompts) != len(labels):
            raise ConfigError(f"{len(prompts)} prompts but {len(labels)} labels were given; pass one label per prompt.")
        if len(prompts) == 0:
            raise ConfigError("the CTR evaluation subset is empty; pass at least one prompt or drop the callback.")
        self.prompts = list(prompts)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(np.unique(self.labels)) < 2:
            raise ConfigError(
                f"the CTR evaluation subset has {len(self.labels)} samples of a single class, so AUC is undefined; "
                "raise eval_size."
            )
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.metric_key_prefix = metric_key_prefix
        self.max_length = max_length
        self.history: list[dict] = []
        #: The validation scores of each evaluated step (so the end-of-training calibration reuses them).
        self.scores_by_step: dict[int, np.ndarray] = {}
        self._trainer = None

    def attach(self, trainer) -> CTREvalCallback:
        """Let the callback log its metrics through ``trainer.log`` (loggers, ``log_history``).

        Args:
            trainer: the ``Trainer`` this callback is registered with.
        """
        self._trainer = trainer
        return self

    def score(self, model) -> np.ndarray:
        """P(yes)/(P(yes)+P(no)) of every validation prompt under ``model``.

        Every process scores a strided share and receives all scores. The list is padded to a
        multiple of the number of processes first, so each process runs the same number of
        forward passes (ZeRO-3 gathers parameters collectively and would hang otherwise).

        Args:
            model: the model being trained (a ``PeftModel``); it is put in eval mode while scoring
                and back to its previous mode afterwards.
        """
        from accelerate import PartialState

        from ..scoring import CTRScorer

        processes = PartialState().num_processes
        prompts = self.prompts
        padding = (-len(prompts)) % processes
        if padding:
            prompts = prompts + [prompts[-1]] * padding
        scorer = CTRScorer(model, self.tokenizer, batch_size=self.batch_size, max_length=self.max_length)
        scores = scorer.score(prompts, progress=False)
        return scores[: len(self.prompts)]

    def compute(self, model, step: int | None = None) -> dict[str, float]:
        """The prefixed CTR metrics of ``model`` on the validation subset.

        Args:
            model: the model to score.
            step: the training step, under which the scores are kept in :attr:`scores_by_step`.
        """
        from ..metrics import ctr_metrics

        scores = self.score(model)
        if step is not None:
            self.scores_by_step[step] = scores
        metrics = ctr_metrics(self.labels, scores)
        return {f"{self.metric_key_prefix}_{name}": float(metrics[name]) for name in REPORTED_METRICS}

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        """Add the CTR metrics to ``metrics`` (so best-checkpoint selection sees them) and log them."""
        if model is None:
            logger.warning("CTREvalCallback got no model at evaluation; skipping CTR metrics.")
            return control
        ctr = self.compute(model, step=state.global_step)
        if metrics is not None:
            metrics.update(ctr)
        self.history.append({"step": state.global_step, "epoch": state.epoch, **ctr})
        if self._trainer is not None:
            self._trainer.log(dict(ctr))
        elif state.is_world_process_zero:
            logger.info("step %d: %s", state.global_step, ctr)
        return control


#: Written into ``output_dir`` by a run stopped by Ctrl-C / SIGTERM; the next run there resumes from its checkpoint.
INTERRUPTED_FILE = "interrupted.json"


class StopOnSignal(TrainerCallback):
    """Checkpoint and stop once SIGINT / SIGTERM arrived (recorded by :func:`rella_hf.interrupts.deferred_signals`).

    At the end of the current optimizer step the Trainer saves a checkpoint (after an evaluation due at
    that step, so a resumed run selects the same best checkpoint); then ``interrupted.json`` names it and
    :class:`rella_hf.interrupts.Interrupted` is raised. The next run with the same ``output_dir`` resumes there.

    Args:
        request: the :class:`rella_hf.interrupts.StopRequest` the signal handler fills.
    """

    def __init__(self, request):
        self.request = request

    def on_step_end(self, args, state, control, **kwargs):
        if self.request.signum is not None:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        from ..interrupts import Interrupted
        from ..utils import atomic_write_text

        if self.request.signum is not None:
            if state.is_world_process_zero:
                atomic_write_text(Path(args.output_dir) / INTERRUPTED_FILE, json.dumps(
                    {"checkpoint": f"checkpoint-{state.global_step}", "signal": int(self.request.signum)}) + "\n")
            raise Interrupted(self.request.signum)
        return control


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The ``checkpoint-<step>`` folder of ``output_dir`` with the highest step whose ``trainer_state.json``
    (written last by the Trainer) reads back, or None; a checkpoint cut short (a full disk, a kill) is skipped.

    Args:
        output_dir: the training output folder.
    """
    folder = Path(output_dir)
    steps = sorted((int(path.name.split("-")[1]), path) for path in folder.glob("checkpoint-*")
                   if path.is_dir() and path.name.split("-")[1].isdigit()) if folder.is_dir() else []
    for step, path in reversed(steps):
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            logging.getLogger(__name__).warning("%s is incomplete (no readable trainer_state.json); not resuming "
                                                "from it.", path)
            continue
        return str(path)
    return None


def final_model_step(trainer) -> int | None:
    """The step whose evaluation scored the model a trainer ends with, or None.

    That is the best checkpoint's step where ``load_best_model_at_end`` restored it, else the last
    step when it was evaluated.

    Args:
        trainer: a trainer after ``train()``.
    """
    state, args = trainer.state, trainer.args
    if args.load_best_model_at_end and state.best_model_checkpoint:
        return int(Path(state.best_model_checkpoint).name.rsplit("-", 1)[-1])
    evaluated = [entry["step"] for entry in state.log_history if "eval_auc" in entry]
    return state.global_step if evaluated and evaluated[-1] == state.global_step else None


def final_model_scores(trainer) -> np.ndarray | None:
    """The validation scores a :class:`CTREvalCallback` of ``trainer`` computed for the model it ends with, or None.

    None when that model was never scored in this process (no callback, no evaluation of it, or one
    before a resume).

    Args:
        trainer: a trainer after ``train()``.
    """
    step = final_model_step(trainer)
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, CTREvalCallback) and step in callback.scores_by_step:
            return callback.scores_by_step[step]
    return None
