"""The end-to-end demo: build, zero-shot score, ReiT-finetune, score again, report.

Everything runs offline on the bundled ml-latest-small and the offline SmolLM2-135M-Instruct, in
about a quarter of an hour on two CPU cores with the defaults. Each step's result is saved in the
run folder, so a rerun skips finished steps.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """Settings of :func:`run_demo` (each is also a ``rella-hf demo`` option)."""

    output_dir: str = field(default="runs/demo", metadata={"help": "Run folder: scores, adapter, report.md, plots."})
    dataset: str = field(default="ml-latest-small", metadata={"help": "Corpus (the bundled ml-latest-small works offline)."})
    data_dir: Optional[str] = field(default=None, metadata={"help": "Folder of the corpus files (None: bundled/download)."})
    K: int = field(default=5, metadata={"help": "History items per prompt."})
    embedder: str = field(default="minilm", metadata={"help": "SUBR item embedder: minilm (fast) or smollm2 (the paper's LLM pooling)."})
    model: str = field(default="smollm2-135m-instruct", metadata={"help": "Causal LM to score and finetune."})
    test_size: int = field(default=200, metadata={"help": "Fixed, seeded test subset scored in every setting."})
    shots: int = field(default=32, metadata={"help": "N: training samples of the ReiT mixed set (2N rows)."})
    epochs: float = field(default=1.0, metadata={"help": "Training epochs over the 2N rows."})
    train_batch_size: int = field(default=4, metadata={"help": "Rows per forward pass while training."})
    total_batch_size: int = field(default=16, metadata={"help": "Rows per optimizer step (gradient accumulation)."})
    learning_rate: float = field(default=1e-3, metadata={"help": "LoRA learning rate (paper: 1e-3)."})
    score_batch_size: int = field(default=8, metadata={"help": "Prompts per scoring forward pass."})
    seed: int = field(default=42, metadata={"help": "Seed of the test subset, shots and training."})
    skip_training: bool = field(default=False, metadata={"help": "Only zero-shot scoring (no finetuning)."})

    def __post_init__(self):
        for name in ("K", "test_size", "shots", "train_batch_size", "total_batch_size", "score_batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be positive")


def fixed_subset(dataset, size: int, seed: int):
    """A seeded subset of ``size`` rows, kept in dataset order (the same rows for every prompt kind)."""
    if size >= len(dataset):
        return dataset
    rows = np.sort(np.random.default_rng(seed).choice(len(dataset), size=size, replace=False))
    return dataset.select(rows.tolist())


def _score_setting(run_dir: Path, setting: str, scorer, subset, meta: dict) -> None:
    from .report import write_scores
    from .scoring import score_dataset

    if (run_dir / "scores" / f"{setting}.jsonl").exists():
        logger.info("%s already scored; skipping", setting)
        return
    start = time.perf_counter()
    scored = score_dataset(scorer, subset, output_dir=run_dir / "partial" / setting)
    meta = dict(meta, seconds=round(time.perf_counter() - start, 1))
    write_scores(run_dir, setting, scored["label"], scored["score"], meta, raw_prompts=scored["raw_prompt"])


def run_demo(config: DemoConfig) -> Path:
    """Run the demo and return the path of its ``report.md``.

    Steps: build the K-item dataset with recent and SUBR histories; zero-shot score a fixed test
    subset with both prompt kinds; ReiT-finetune LoRA on an N-shot mixed set; score the same subset
    with the adapter; write ``report.md``, PNG plots and ``metrics.json``.
    """
    import rella_hf

    from .models import load_model
    from .report import write_report
    from .scoring import CTRScorer

    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    chat_model = config.model
    datasets_by_kind = {
        kind: rella_hf.load_dataset(config.dataset, K=config.K, retrieval=retrieval, data_dir=config.data_dir,
                                    embedder=config.embedder, chat_model=chat_model)
        for kind, retrieval in (("recent", "recent"), ("semantic", "semantic"))
    }
    subsets = {kind: fixed_subset(ds["test"], config.test_size, config.seed) for kind, ds in datasets_by_kind.items()}
    from .samples import load_samples

    statistics = load_samples(config.dataset, data_dir=config.data_dir).statistics()
    info = {"title": f"rella-hf demo: {config.dataset}, K={config.K}, {config.model}",
            "config": asdict(config), "dataset": statistics}
    (run_dir / "run.json").write_text(json.dumps(info, indent=2))

    model, tokenizer = load_model(config.model)
    scorer = CTRScorer(model, tokenizer, batch_size=config.score_batch_size)
    for kind, subset in subsets.items():
        _score_setting(run_dir, f"zero-shot-{kind}", scorer, subset,
                       {"stage": "zero-shot", "K": config.K, "retrieval": kind, "model": config.model})

    if not config.skip_training:
        from peft import PeftModel

        from .training import ReiTConfig, run_training

        adapter_dir = run_dir / "train" / "reit"
        if not (adapter_dir / "adapter_model.safetensors").exists():
            run_training(ReiTConfig(
                output_dir=str(adapter_dir), dataset=config.dataset, data_dir=config.data_dir, K=config.K,
                train_type="mixed", test_type="sequential", shots=config.shots, embedder=config.embedder,
                model_name_or_path=config.model, num_train_epochs=config.epochs,
                per_device_train_batch_size=config.train_batch_size, total_batch_size=config.total_batch_size,
                learning_rate=config.learning_rate, eval_size=0, eval_strategy="no", save_strategy="no",
                logging_steps=1, seed=config.seed, report_to="none",
            ))
        tuned = PeftModel.from_pretrained(model, str(adapter_dir))
        tuned.eval()
        tuned_scorer = CTRScorer(tuned, tokenizer, batch_size=config.score_batch_size)
        for kind, subset in subsets.items():
            _score_setting(run_dir, f"ReiT-{kind}", tuned_scorer, subset,
                           {"stage": "ReiT", "K": config.K, "retrieval": kind, "model": config.model,
                            "shots": config.shots})
    info["wall_seconds"] = round(time.perf_counter() - started, 1)
    (run_dir / "run.json").write_text(json.dumps(info, indent=2))
    return write_report(run_dir)
