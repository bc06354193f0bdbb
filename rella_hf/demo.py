"""The end-to-end demo: build, zero-shot score, ReiT-finetune, score again, report.

Everything runs offline on the bundled ml-latest-small and the offline SmolLM2-135M-Instruct. On a
host that computes bf16 natively the defaults train ReiT on 1,536 rows (N=768 mixed, 96 steps of 16)
by full fine-tuning of the top 15 decoder layers, which on this model reads the history from far
fewer rows than LoRA does (``--finetuning lora --learning_rate 1e-3 --top_layers 30`` is the LoRA
alternative, all linear layers r=16, about twice the wall time for a smaller gain; measured in
``experiments/reading.md``); on a float32-only host, where each step costs several times more, the
``float32`` recipe trains 1,280 rows (N=640, 80 steps) with shorter prompts (K=4), the top 10 layers and one
validation scoring (:data:`RECIPES`). Each step's result is saved in the run
folder, so a rerun skips finished steps. The run ends with a per-stage timing table, the host's
kind and the 15-minute budget (:func:`timing_table`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Optional

from .errors import ConfigError
from .options import ReLLaDataArguments

if TYPE_CHECKING:
    from .training import ReiTConfig

logger = logging.getLogger(__name__)

#: Paired comparisons the demo's report makes: ReiT against zero-shot on the same prompts.
COMPARISONS = [("ReiT-recent", "zero-shot-recent"), ("ReiT-semantic", "zero-shot-semantic")]


#: The demo's training recipe per compute dtype, fixed (never sized from a live speed probe, so a host kind's results
#: reproduce): ``bfloat16`` on hosts that compute bf16 natively (``trainer_configs/demo-cpu.yaml``), ``float32`` on the
#: others (``trainer_configs/demo-cpu-float32.yaml``): N=640 (1,280 rows, 80 steps) with K=4 prompts, the top 10 layers
#: trained and one validation scoring instead of two, since each step costs several times more there (fewer rows,
#: fewer trained layers, shorter prompts or smaller steps measured no significant gain: README "Host kinds"). A field
#: given on the command line overrides its recipe value.
RECIPES = {
    "bfloat16": {"K": 5, "shots": 768, "top_layers": 15, "eval_size": 100, "eval_every": 48, "learning_rate": 5e-5},
    "float32": {"K": 4, "shots": 640, "top_layers": 10, "eval_size": 100, "eval_every": 80, "learning_rate": 5e-5},
}
#: The YAML that states each recipe for ``rella-hf train`` / ``train.py`` (a test keeps them equal).
RECIPE_FILES = {"bfloat16": "trainer_configs/demo-cpu.yaml", "float32": "trainer_configs/demo-cpu-float32.yaml"}

#: LoRA target sets of the demo's ``lora_targets`` option.
LORA_TARGET_SETS = {"qv": ["q_proj", "v_proj"],
                    "all": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


@dataclass
class DemoConfig(ReLLaDataArguments):
    """Settings of :func:`run_demo` (each is also a ``rella-hf demo`` option).

    The dataset options are :class:`~rella_hf.options.ReLLaDataArguments`' (the demo builds both the
    recent-K and the SUBR prompts, so ``retrieval`` is not read); ``chat_model="auto"`` wraps the
    prompts with the demo model's own chat template.
    """

    K: Optional[int] = field(default=None, metadata={"help": "History items shown per prompt; default: the recipe's."})
    chat_model: Optional[str] = field(default="auto", metadata={
        "help": "Tokenizer whose chat template wraps prompts; 'auto' = the demo model's, 'none' = Vicuna."})
    reads_retrieval: ClassVar[bool] = False
    output_dir: str = field(default="runs/demo", metadata={"help": "Run folder: scores, adapter, report.md, plots."})
    model: str = field(default="smollm2-135m-instruct", metadata={"help": "Causal LM to score and finetune."})
    test_size: int = field(default=200, metadata={"help": "Fixed, seeded test subset scored in every setting."})
    recipe: str = field(default="auto", metadata={
        "help": "Training recipe: 'auto' = by the compute dtype (bfloat16 where the CPU computes it natively, "
                "float32 elsewhere; $RELLA_HF_FORCE_FLOAT32=1 forces float32), or name one.",
        "choices": ["auto", *RECIPES]})
    shots: Optional[int] = field(default=None, metadata={
        "help": "N: training samples of the ReiT mixed set (2N rows); default: the recipe's."})
    epochs: float = field(default=1.0, metadata={"help": "Training epochs over the 2N rows."})
    train_batch_size: int = field(default=8, metadata={"help": "Rows per forward pass while training."})
    total_batch_size: int = field(default=16, metadata={"help": "Rows per optimizer step (gradient accumulation)."})
    learning_rate: Optional[float] = field(default=None, metadata={
        "help": "Peak learning rate (measured: 5e-5 for full fine-tuning, 1e-3 for LoRA); default: the recipe's."})
    lr_scheduler_type: str = field(default="linear", metadata={
        "help": "Learning-rate schedule after the peak: 'linear' decays to 0 at the last step, 'constant' holds it."})
    lora_targets: str = field(default="all", metadata={"help": "LoRA on 'qv' (q_proj, v_proj: the paper) or 'all' linear layers.",
                                                         "choices": sorted(LORA_TARGET_SETS)})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (alpha = 2 x rank)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA inputs."})
    finetuning: str = field(default="full", metadata={
        "help": "lora: LoRA adapters; full: the decoder layers' own weights (set learning_rate to match).",
        "choices": ["lora", "full"]})
    top_layers: Optional[int] = field(default=None, metadata={
        "help": "Train only the last this-many decoder layers (the model's layer count: all); cheaper steps; "
                "default: the recipe's."})
    eval_size: Optional[int] = field(default=None, metadata={
        "help": "Validation samples scored for AUC during training (0: none); default: the recipe's."})
    eval_every: Optional[int] = field(default=None, metadata={
        "help": "Optimizer steps between validation scorings, the best is kept; default: the recipe's."})
    score_batch_size: int = field(default=8, metadata={"help": "Prompts per scoring forward pass."})
    seed: int = field(default=42, metadata={"help": "Seed of the test subset, shots and training."})
    skip_training: bool = field(default=False, metadata={"help": "Only zero-shot scoring (no finetuning)."})
    probe_host: bool = field(default=True, metadata={
        "help": "Measure the float32 (and native bf16) matmul rate for the timing table (a few seconds)."})

    def __post_init__(self):
        if self.recipe == "auto":
            from .models import default_dtype

            self.recipe = "bfloat16" if str(default_dtype()) == "torch.bfloat16" else "float32"
        if self.recipe not in RECIPES:
            raise ConfigError(f"recipe={self.recipe!r} is not one of auto, {', '.join(RECIPES)}.")
        for name, value in RECIPES[self.recipe].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        super().__post_init__()
        for name in ("K", "test_size", "shots", "train_batch_size", "total_batch_size", "score_batch_size", "lora_r",
                     "eval_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be positive")
        if self.eval_size < 0:
            raise ConfigError(f"eval_size={self.eval_size} must be >= 0 (0 trains without validation).")
        if self.top_layers <= 0:
            raise ConfigError(f"top_layers={self.top_layers} must be positive (the model's layer count: every layer).")
        if self.finetuning not in ("lora", "full"):
            raise ConfigError(f"finetuning={self.finetuning!r} is not one of full, lora.")
        if self.lora_targets not in LORA_TARGET_SETS:
            raise ConfigError(f"lora_targets={self.lora_targets!r} is not one of {', '.join(sorted(LORA_TARGET_SETS))}.")

    def reit_config(self, adapter_dir) -> "ReiTConfig":
        """The :class:`~rella_hf.training.ReiTConfig` of the demo's ReiT run (validation AUC selects the checkpoint)."""
        from .training import ReiTConfig

        validate = self.eval_size > 0
        data = {name: value for name, value in self.build_options().items() if name != "retrieval"}
        return ReiTConfig(
            output_dir=str(adapter_dir), dataset=self.dataset, data_dir=self.data_dir, cache_dir=self.cache_dir,
            **data, train_type="mixed", test_type="sequential", shots=self.shots, model_name_or_path=self.model,
            num_train_epochs=self.epochs,
            per_device_train_batch_size=self.train_batch_size, total_batch_size=self.total_batch_size,
            learning_rate=self.learning_rate, lr_scheduler_type=self.lr_scheduler_type,
            lora_r=self.lora_r, lora_alpha=2 * self.lora_r,
            lora_dropout=self.lora_dropout, finetuning=self.finetuning, top_layers=self.top_layers,
            lora_target_modules=LORA_TARGET_SETS[self.lora_targets], eval_size=self.eval_size,
            compute_eval_loss=False, per_device_eval_batch_size=self.score_batch_size,
            eval_strategy="steps" if validate else "no", eval_steps=self.eval_every,
            save_strategy="steps" if validate else "no", save_steps=self.eval_every, save_total_limit=2,
            load_best_model_at_end=validate, metric_for_best_model="auc" if validate else None,
            logging_steps=1, seed=self.seed, report_to="none",
            resume=any(Path(adapter_dir).glob("checkpoint-*")),  # an interrupted demo continues its training
        )


def _score_setting(run_dir: Path, setting: str, scorer, subset, meta: dict) -> None:
    from .report import write_scores
    from .scoring import score_dataset

    if (run_dir / "scores" / f"{setting}.jsonl").exists():
        logger.info("%s already scored; skipping", setting)
        return
    start = time.perf_counter()
    scored = score_dataset(scorer, subset, output_dir=run_dir / "partial" / setting)
    meta = dict(meta, seconds=round(time.perf_counter() - start, 1))
    calibrated = scored["score_calibrated"] if "score_calibrated" in scored.column_names else None
    write_scores(run_dir, setting, scored["label"], scored["score"], meta, raw_prompts=scored["raw_prompt"],
                 calibrated_scores=calibrated)


#: The demo's promise on every host kind (README): wall time from start to report, builds included.
BUDGET_SECONDS = 15 * 60
#: Rows of the timing table, in the order the demo runs them.
STAGES = ("host probe", "build", "zero-shot scoring", "training", "validation scoring", "end of training",
          "final scoring", "report")


@contextlib.contextmanager
def _timed(stages: dict, name: str):
    """Add the wall seconds of the ``with`` block to ``stages[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - start


def _training_clock(stages: dict):
    """A ``TrainerCallback`` that moves the time of each evaluation (validation scoring) out of "training".

    An evaluation runs between a step's ``on_step_end`` and the callbacks' ``on_evaluate``; what follows
    ``on_train_end`` (saving the weights, the end-of-training calibration) is "end of training".
    """
    from transformers import TrainerCallback

    class TrainingClock(TrainerCallback):
        def __init__(self):
            self.step_end = None

        def on_step_end(self, args, state, control, **kwargs):
            self.step_end = time.perf_counter()

        def on_evaluate(self, args, state, control, **kwargs):
            if self.step_end is not None:
                stages["validation scoring"] = stages.get("validation scoring", 0.0) + time.perf_counter() - self.step_end

        def on_train_end(self, args, state, control, **kwargs):
            stages["_train_end"] = time.perf_counter()

    return TrainingClock()


def timing_table(timing: dict) -> str:
    """The demo's per-stage table (markdown) with the host line, the budget and the measured wall time.

    Args:
        timing: ``run.json``'s ``timing`` entry: ``host`` (:meth:`rella_hf.hardware.HostFacts.to_dict`),
            ``recipe``, ``stages`` (seconds by name; a stage the run skipped as done is absent),
            ``wall_seconds`` and ``budget_seconds``.
    """
    from .hardware import HostFacts

    host = HostFacts(**{key: value for key, value in timing["host"].items() if key != "kind"})
    wall, budget = timing["wall_seconds"], timing["budget_seconds"]
    lines = [f"Host: {host.describe()}", f"Recipe: {timing['recipe']}", "",
             "| stage | seconds | share |", "|---|---|---|"]
    for name in STAGES:
        seconds = timing["stages"].get(name)
        lines.append(f"| {name} | {seconds:.1f} | {100 * seconds / wall:.0f} % |" if seconds is not None
                     else f"| {name} | - | done before (skipped) |")
    other = wall - sum(timing["stages"].values())
    lines.append(f"| other (imports, run files) | {other:.1f} | {100 * other / wall:.0f} % |")
    verdict = "within" if wall <= budget else "OVER"
    lines += ["", f"Wall time {wall / 60:.1f} min ({wall:.0f} s) against a budget of {budget / 60:.0f} min: {verdict} "
                  "budget."]
    return "\n".join(lines)


def _frozen_layer_states(config: DemoConfig, model):
    """The recorder of the layers a full fine-tune of the top ``top_layers`` leaves frozen, or None."""
    layers = getattr(model.config, "num_hidden_layers", None)
    if config.skip_training or config.finetuning != "full" or not layers:
        return None
    from .frozen_states import FrozenLayerStates

    return FrozenLayerStates(layers - config.top_layers) if config.top_layers < layers else None


def run_demo(config: DemoConfig) -> Path:
    """Run the demo and return the path of its ``report.md``.

    Steps: build the K-item dataset with recent and SUBR histories; zero-shot score a fixed test
    subset with both prompt kinds; ReiT-finetune on an N-shot mixed set (full fine-tuning of the
    top layers by default, or LoRA), keeping the checkpoint of best validation AUC and then deleting
    the checkpoints (the run also fits ``calibration.json`` on its validation subset); score the same
    subset with the tuned model (in the precision it was trained in), raw and calibrated;
    write ``report.md`` (with the paired-bootstrap AUC gain of ReiT over zero-shot,
    the training loss and the validation AUC curves), PNG plots, ``metrics.json`` and
    ``comparisons.json``.
    """
    from .hardware import probe_host
    from .loading import load_from_arguments
    from .models import load_model
    from .report import write_report
    from .scoring import CTRScorer

    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stages: dict[str, float] = {}
    with _timed(stages, "host probe"):  # under 5 s; it describes the host for the timing table, it sizes nothing
        host = probe_host(measure=config.probe_host)
    build_started = time.perf_counter()
    chat_model = config.model if config.chat_model == "auto" else config.chat_model
    datasets_by_kind = {
        kind: load_from_arguments(config, retrieval=kind, order="chronological" if kind == "recent" else config.order,
                                  chat_model=chat_model)
        for kind in ("recent", "semantic")
    }
    from .samples import load_samples, seeded_subset

    subsets = {kind: seeded_subset(ds["test"], config.test_size, config.seed) for kind, ds in datasets_by_kind.items()}
    statistics = load_samples(config.dataset, data_dir=config.data_dir).statistics()
    info = {"title": f"rella-hf demo: {config.dataset}, K={config.K}, {config.model}",
            "config": asdict(config), "dataset": statistics}
    (run_dir / "run.json").write_text(json.dumps(info, indent=2))

    model, tokenizer = load_model(config.model)
    stages["build"] = time.perf_counter() - build_started
    # Full fine-tuning of the top layers leaves the bottom ones as they are: the tuned model's scoring replays
    # their output for the test subset from the zero-shot pass (the same values, half the work at top_layers=15).
    frozen_states = _frozen_layer_states(config, model)
    scorer = CTRScorer(model, tokenizer, batch_size=config.score_batch_size, frozen_states=frozen_states)
    for kind, subset in subsets.items():
        with _timed(stages, "zero-shot scoring"):
            _score_setting(run_dir, f"zero-shot-{kind}", scorer, subset,
                           {"stage": "zero-shot", "K": config.K, "retrieval": kind, "model": config.model})

    if not config.skip_training:
        from .calibration import load_calibration, model_fingerprint
        from .models import load_tuned_model
        from .training import run_training

        adapter_dir = run_dir / "train" / "reit"
        weights = "model.safetensors" if config.finetuning == "full" else "adapter_model.safetensors"
        if not (adapter_dir / weights).exists():
            training_started = time.perf_counter()
            run_training(config.reit_config(adapter_dir), callbacks=[_training_clock(stages)])
            # Checkpoints only serve an interrupted run; a full fine-tune's are ~0.9 GB each.
            for checkpoint in adapter_dir.glob("checkpoint-*"):
                shutil.rmtree(checkpoint)
            ended = time.perf_counter()
            train_end = stages.pop("_train_end", ended)
            stages["end of training"] = ended - train_end
            stages["training"] = train_end - training_started - stages.get("validation scoring", 0.0)
        final_started = time.perf_counter()
        del scorer, model  # the tuned model is loaded in the precision its run trained in
        tuned, tokenizer = load_tuned_model(adapter_dir, config.model)
        # Fitted by the training run on the validation scores it already computes (never on this test subset).
        calibration = load_calibration(adapter_dir, expected_fingerprint=model_fingerprint(adapter_dir))
        if calibration is None:
            logger.warning("%s has no calibration.json (trained before calibration existed?): raw scores only.",
                           adapter_dir)
        tuned_scorer = CTRScorer(tuned, tokenizer, batch_size=config.score_batch_size, calibration=calibration,
                                 frozen_states=frozen_states)
        for kind, subset in subsets.items():
            _score_setting(run_dir, f"ReiT-{kind}", tuned_scorer, subset,
                           {"stage": "ReiT", "K": config.K, "retrieval": kind, "model": config.model,
                            "shots": config.shots})
        stages["final scoring"] = time.perf_counter() - final_started  # the tuned model's loading included
        info["comparisons"] = COMPARISONS
    info["wall_seconds"] = round(time.perf_counter() - started, 1)
    (run_dir / "run.json").write_text(json.dumps(info, indent=2))
    with _timed(stages, "report"):
        report = write_report(run_dir)
    info["wall_seconds"] = round(time.perf_counter() - started, 1)
    info["timing"] = {"host": host.to_dict(), "recipe": f"{config.recipe} ({RECIPE_FILES[config.recipe]})",
                      "budget_seconds": BUDGET_SECONDS, "wall_seconds": info["wall_seconds"],
                      "stages": {name: round(seconds, 1) for name, seconds in stages.items()}}
    (run_dir / "run.json").write_text(json.dumps(info, indent=2))
    return report
