"""Markdown reports with plots from a run folder: the demo's and the experiments'.

A run folder holds:

- ``run.json``: ``{"title": ..., "config": {...}, "dataset": {statistics}, "comparisons": [[a, b], ...]}``
  (all optional; each comparison is a paired-bootstrap AUC difference of two settings);
- ``scores/<setting>.jsonl``: one JSON object per scored sample with at least ``label`` and
  ``score`` (P(yes), the paper's raw score), optionally ``score_calibrated`` (the same sample's
  calibrated probability, :mod:`rella_hf.calibration`) and ``raw_prompt``; and ``scores/<setting>.meta.json`` with what the
  setting is (``stage`` e.g. "zero-shot" / "ReiT", ``K``, ``retrieval``, ``model``...);
- or all of a run's score files (``scores/*.jsonl`` with their ``.meta.json``, and the training runs'
  ``validation_scores.jsonl``) packed into one ``scores.parquet`` by :func:`pack_scores`, read the same way
  (a loose file wins over its packed copy);
- ``train/<run>/metrics.json`` or ``trainer_state.json`` whose ``log_history`` has the training losses
  (and ``eval_history`` the validation AUC of each evaluation).

:func:`write_report` computes the metrics of every setting (with bootstrap intervals), draws a bar
chart of AUC with intervals, ROC curves and reliability diagrams (raw and calibrated side by side) of the best
settings, the
training loss, the validation AUC during training and AUC against K, and writes ``report.md``,
``metrics.json`` (``comparisons.json`` when comparisons were asked for) and the PNGs into the folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataFormatError, shorten
from .metrics import ctr_metrics
from .utils import atomic_write_bytes, atomic_write_text, check_name, natural_key

#: All score files of a run folder packed into one (:func:`pack_scores`).
PACKED_SCORES = "scores.parquet"
_VALIDATION_SCORES = "validation_scores.jsonl"  # rella_hf.calibration.VALIDATION_SCORES_FILE (a higher layer)


def _loose_score_files(run_dir: Path) -> list[Path]:
    """``scores/*.jsonl`` and the training runs' ``validation_scores.jsonl`` (checkpoints skipped)."""
    kept = [path for path in run_dir.glob(f"*/*/{_VALIDATION_SCORES}") if not path.parent.name.startswith("checkpoint-")]
    return sorted(run_dir.glob("scores/*.jsonl")) + sorted(kept)


def load_score_files(run_dir: str | Path) -> dict[str, dict]:
    """Every score file of a run folder, packed or loose: its path relative to ``run_dir`` (``scores/<setting>.jsonl``,
    ``recipe/<run>/validation_scores.jsonl``) -> ``{"labels", "scores", "calibrated", "prompts", "meta"}``.

    ``calibrated`` is None unless every row has a ``score_calibrated`` (no mixing of the two); a loose file
    wins over its packed copy.
    """
    run_dir = Path(run_dir)
    files = {}
    packed = run_dir / PACKED_SCORES
    if packed.is_file():
        import pyarrow.parquet as pq

        table = pq.read_table(packed)
        missing = {"file", "label", "score", "score_calibrated", "raw_prompt", "meta"} - set(table.column_names)
        if missing:
            raise DataFormatError(packed, f"lacks the columns {sorted(missing)}; expected a file written by pack_scores")
        frame = table.to_pandas()
        for name, rows in frame.groupby("file", sort=False):
            files[name] = _score_file(rows["label"].to_numpy(), rows["score"].to_numpy(), rows["score_calibrated"].tolist(),
                                      rows["raw_prompt"].tolist(), rows["meta"].iloc[0])
    for path in _loose_score_files(run_dir):
        rows = _read_score_rows(path)
        meta_path = path.with_name(path.stem + ".meta.json")
        files[path.relative_to(run_dir).as_posix()] = _score_file(
            [row["label"] for row in rows], [row["score"] for row in rows], [row.get("score_calibrated") for row in rows],
            [row.get("raw_prompt") for row in rows], meta_path.read_text() if meta_path.exists() else None)
    return files


def _score_file(labels, scores, calibrated: list, prompts: list, meta: str | None) -> dict:
    present = len(calibrated) > 0 and all(isinstance(value, (int, float)) and value == value for value in calibrated)
    return {"labels": np.asarray(labels, dtype=np.int64), "scores": np.asarray(scores, dtype=np.float64),
            "calibrated": np.asarray(calibrated, dtype=np.float64) if present else None,
            "prompts": [prompt if isinstance(prompt, str) else None for prompt in prompts],
            "meta": json.loads(meta) if isinstance(meta, str) and meta else {}}


def load_settings(run_dir: str | Path) -> dict[str, dict]:
    """Read every ``scores/<setting>.jsonl`` of a run, loose or packed: setting -> {labels, scores, calibrated, meta, prompts}."""
    files = load_score_files(run_dir)
    names = {Path(name).stem: name for name in files if name.startswith("scores/") and name.count("/") == 1}
    return {setting: files[names[setting]] for setting in sorted(names, key=natural_key)}


def pack_scores(run_dir: str | Path) -> Path | None:
    """Pack a run folder's loose score files into ``scores.parquet`` and delete them; idempotent.

    Packs ``scores/*.jsonl`` (with ``.meta.json``) and ``*/*/validation_scores.jsonl`` into one row per
    sample (``file``, ``label``, ``score``, ``score_calibrated``, ``raw_prompt``, ``meta``), merged with what
    is packed already (a loose file replaces its packed copy). The file is written atomically and read
    back before any loose file is deleted; with no loose file nothing is written.

    Returns:
        The packed file, or None when the folder holds no score file at all.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    loose = _loose_score_files(run_dir)
    packed = run_dir / PACKED_SCORES
    if not loose:
        return packed if packed.is_file() else None
    files = load_score_files(run_dir)
    names = sorted(files, key=natural_key)
    sizes = [len(files[name]["labels"]) for name in names]

    def column(key, fill):
        return [value for name in names for value in
                (list(files[name][key]) if files[name][key] is not None else [fill] * len(files[name]["labels"]))]

    metas = [json.dumps(files[name]["meta"], indent=2, sort_keys=True) if files[name]["meta"] else None for name in names]
    table = pa.table({
        "file": pa.array(np.repeat(np.array(names, dtype=object), sizes).tolist(), pa.string()),
        "label": pa.array(column("labels", 0), pa.int64()),
        "score": pa.array(column("scores", 0.0), pa.float64()),
        "score_calibrated": pa.array(column("calibrated", None), pa.float64()),
        "raw_prompt": pa.array(column("prompts", None), pa.string()),
        "meta": pa.array(np.repeat(np.array(metas, dtype=object), sizes).tolist(), pa.string()),
    })
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write_bytes(packed, sink.getvalue().to_pybytes())
    if pq.read_table(packed).num_rows != table.num_rows:  # pragma: no cover - a disk that lies
        raise DataFormatError(packed, "reads back with another row count; the loose score files were kept")
    for path in loose:
        path.with_name(path.stem + ".meta.json").unlink(missing_ok=True)
        path.unlink()
    return packed


def _read_score_rows(path: Path) -> list[dict]:
    """The records of a scores JSONL file; a cut or foreign line is a :class:`DataFormatError` with its line."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("label"), int) or not isinstance(row.get("score"), (int, float)):
            raise DataFormatError(path, f"{shorten(line)} is not a score record; expected JSON like "
                                        '{"label": 0, "score": 0.42} (rerun rella-hf score to rewrite a cut file)', number)
        rows.append(row)
    return rows


def read_score_pairs(source: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{setting: (labels, scores)}`` of saved scores: a run folder (all its settings), a ``scores/<setting>.jsonl``
    file or a ``.parquet`` file with ``label`` and ``score`` columns.

    Raises:
        DataFormatError: for a missing file or a path of another kind.
    """
    path = Path(source)
    if path.is_dir():
        return {name: (data["labels"], data["scores"]) for name, data in load_settings(path).items()}
    if not path.is_file():
        raise DataFormatError(path, "no such file; expected a run folder, a .jsonl or a .parquet file of scores")
    if path.suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(path)
        if "file" in frame.columns:
            raise DataFormatError(path, "holds a whole run's packed scores (pack_scores); pass the run folder instead")
        return {path.stem: (frame["label"].to_numpy(), frame["score"].to_numpy())}
    if path.suffix == ".jsonl":
        rows = _read_score_rows(path)
        if not rows:
            return {}
        return {path.stem: (np.array([row["label"] for row in rows]), np.array([row["score"] for row in rows]))}
    raise DataFormatError(path, "expected a run folder, a .jsonl or a .parquet file of scores")


def read_calibrated_pairs(source: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{setting: (labels, calibrated scores)}`` of the saved scores that carry ``score_calibrated`` (see
    :func:`read_score_pairs` for the sources); settings without it are left out."""
    path = Path(source)
    if path.is_dir():
        return {name: (data["labels"], data["calibrated"]) for name, data in load_settings(path).items()
                if data["calibrated"] is not None}
    if path.suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(path)
        if "score_calibrated" not in frame.columns:
            return {}
        return {path.stem: (frame["label"].to_numpy(), frame["score_calibrated"].to_numpy())}
    rows = _read_score_rows(path)
    if not rows or not all(isinstance(row.get("score_calibrated"), (int, float)) for row in rows):
        return {}
    return {path.stem: (np.array([row["label"] for row in rows]), np.array([row["score_calibrated"] for row in rows]))}


def write_scores(run_dir: str | Path, setting: str, labels, scores, meta: dict, raw_prompts=None,
                 calibrated_scores=None) -> Path:
    """Write one setting's scores (and what it is) where :func:`write_report` finds them.

    ``setting`` must be a plain name (see :func:`rella_hf.utils.check_name`): it becomes a file name.
    ``calibrated_scores`` (one per sample, or None) are written as ``score_calibrated`` beside the
    raw ``score``, which is written unchanged.
    """
    check_name(setting, "setting")
    folder = Path(run_dir, "scores")
    folder.mkdir(parents=True, exist_ok=True)
    prompts = raw_prompts if raw_prompts is not None else [None] * len(labels)
    calibrated = calibrated_scores if calibrated_scores is not None else [None] * len(labels)
    if len(calibrated) != len(labels):
        raise ConfigError(f"{len(calibrated)} calibrated scores for {len(labels)} samples; pass one per sample.")
    lines = [
        json.dumps({"label": int(label), "score": float(score),
                    **({"score_calibrated": float(value)} if value is not None else {}),
                    **({"raw_prompt": prompt} if prompt else {})})
        for label, score, value, prompt in zip(labels, scores, calibrated, prompts)
    ]
    atomic_write_text(folder / f"{setting}.meta.json", json.dumps(meta, indent=2, sort_keys=True))
    return atomic_write_text(folder / f"{setting}.jsonl", "\n".join(lines) + "\n")


def _training_losses(run_dir: Path) -> dict[str, tuple[list[float], list[float]]]:
    """Loss curves of the trainings under ``run_dir/train``: a run's ``metrics.json`` (its
    ``log_history``) or a Trainer's ``trainer_state.json``, checkpoints skipped."""
    curves = {}
    for path in sorted(run_dir.glob("train/**/*.json")):
        if path.name not in ("metrics.json", "trainer_state.json") or path.parent.name.startswith("checkpoint-"):
            continue
        name = str(path.parent.relative_to(run_dir / "train"))
        if name in curves:
            continue
        history = json.loads(path.read_text()).get("log_history", [])
        points = [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]
        if points:
            curves[name] = ([step for step, _ in points], [loss for _, loss in points])
    return curves


def _validation_curves(run_dir: Path) -> dict[str, tuple[list[float], list[float]]]:
    """Validation AUC per evaluation step of the trainings under ``run_dir/train`` (``metrics.json``'s ``eval_history``)."""
    curves = {}
    for path in sorted(run_dir.glob("train/**/metrics.json")):
        if path.parent.name.startswith("checkpoint-"):
            continue
        history = json.loads(path.read_text()).get("eval_history", [])
        points = [(entry["step"], entry["eval_auc"]) for entry in history if entry.get("eval_auc") is not None]
        if points:
            curves[str(path.parent.relative_to(run_dir / "train"))] = ([s for s, _ in points], [a for _, a in points])
    return curves


def _plot_validation_auc(curves, path):
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, (steps, aucs) in curves.items():
        axis.plot(steps, aucs, marker="o", label=name)
    axis.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
    axis.set(title="Validation AUC during training", xlabel="Optimizer step", ylabel="AUC")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def compare_settings(settings: dict, pairs, n_resamples: int = 1000) -> list[dict]:
    """Paired-bootstrap AUC differences ``a - b`` for each ``(a, b)`` pair of scored settings.

    Both settings must have scored the same samples in the same order (the same labels).

    Args:
        settings: ``load_settings`` output.
        pairs: ``(a, b)`` setting names; pairs naming a missing setting are skipped.
        n_resamples: bootstrap resamples.

    Returns:
        One dict per pair: ``a``, ``b``, ``difference``, ``ci`` (95 %), ``excludes_zero``.
    """
    from .metrics import paired_difference

    rows = []
    for a, b in pairs:
        if a not in settings or b not in settings:
            continue
        if not np.array_equal(settings[a]["labels"], settings[b]["labels"]):
            raise DataFormatError(a, f"scored other samples than {b}; a paired comparison needs the same samples")
        result = paired_difference(settings[a]["labels"], settings[a]["scores"], settings[b]["scores"], "auc",
                                   n_resamples=n_resamples)
        low, high = result["ci"]
        rows.append({"a": a, "b": b, "difference": result["difference"], "ci": (low, high),
                     "excludes_zero": bool(low > 0 or high < 0)})
    return rows


def _best_settings(settings, limit: int | None) -> dict:
    """The ``limit`` settings of highest AUC (all of them when ``limit`` is None), best first."""
    ranked = sorted(settings.items(), key=lambda item: -np.nan_to_num(item[1]["metrics"]["auc"], nan=-1.0))
    return dict(ranked[:limit] if limit else ranked)


def _plot_roc(settings, path, limit: int | None = None):
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    figure, axis = plt.subplots(figsize=(6, 5))
    for name, data in _best_settings(settings, limit).items():
        if len(set(data["labels"].tolist())) < 2:
            continue
        fpr, tpr, _ = roc_curve(data["labels"], data["scores"])
        axis.plot(fpr, tpr, label=f"{name} (AUC {data['metrics']['auc']:.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="chance")
    title = f"ROC curves of the {limit} best settings" if limit and len(settings) > limit else "ROC curves"
    axis.set(title=title, xlabel="False positive rate", ylabel="True positive rate")
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def reliability_points(labels, scores, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``(mean score, positive rate)`` per equal-mass bin, the bins :func:`rella_hf.metrics.expected_calibration_error` uses.

    Args:
        labels: 0/1 labels.
        scores: probabilities.
        bins: number of bins (at most the number of samples).
    """
    from .metrics import _equal_mass_bins

    scores = np.asarray(scores, dtype=np.float64)
    bins = min(bins, len(scores))
    which = _equal_mass_bins(scores, bins)
    counts = np.bincount(which, minlength=bins)
    return (np.bincount(which, weights=scores, minlength=bins) / counts,
            np.bincount(which, weights=np.asarray(labels, dtype=np.float64), minlength=bins) / counts)


def _plot_calibration(settings, path, bins: int = 10):
    """Reliability diagrams (10 equal-mass bins): raw scores left, calibrated ones right when any setting has them."""
    import matplotlib.pyplot as plt

    panels = [("raw P(yes)", "scores")]
    if any(data.get("calibrated") is not None for data in settings.values()):
        panels.append(("calibrated", "calibrated"))
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5), squeeze=False)
    for axis, (title, key) in zip(axes[0], panels):
        for name, data in settings.items():
            if data.get(key) is None:
                continue
            mean_score, positive_rate = reliability_points(data["labels"], data[key], bins)
            ece = data["metrics"].get("ece") if key == "scores" else data.get("calibrated_metrics", {}).get("ece")
            axis.plot(mean_score, positive_rate, marker="o", label=name + (f" (ECE {ece:.3f})" if ece is not None else ""))
        axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
        axis.set(title=f"Reliability diagram, {title}", xlabel="Mean predicted probability in bin (equal-mass bins)",
                 ylabel="Observed positive rate", xlim=(0, 1), ylim=(0, 1))
        axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _plot_losses(curves, path):
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, (steps, losses) in curves.items():
        axis.plot(steps, losses, marker=".", label=name)
    axis.set(title="Training loss", xlabel="Optimizer step", ylabel="Loss (answer tokens)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _plot_auc_vs_k(settings, path) -> bool:
    import matplotlib.pyplot as plt

    lines: dict[tuple, list[tuple[int, float, float, float]]] = {}
    for data in settings.values():
        meta = data["meta"]
        if "K" not in meta or "retrieval" not in meta:
            continue
        key = (meta.get("stage", ""), meta.get("dataset", ""), meta["retrieval"])
        low, high = data["metrics"].get("auc_ci", (np.nan, np.nan))
        lines.setdefault(key, []).append((int(meta["K"]), data["metrics"]["auc"], low, high))
    # A setting measured at one K only (a tuned model, a baseline) is no curve; the bar chart shows it.
    lines = {key: points for key, points in lines.items() if len({k for k, *_ in points}) > 1}
    if not lines:
        return False
    figure, axis = plt.subplots(figsize=(6, 4))
    for (stage, dataset, retrieval), points in sorted(lines.items()):
        points.sort()
        ks, aucs, lows, highs = map(np.array, zip(*points))
        label = " ".join(part for part in (dataset, stage, retrieval) if part)
        axis.errorbar(ks, aucs, yerr=[aucs - lows, highs - aucs], marker="o", capsize=3, label=label)
    axis.set(title="AUC vs K (95% bootstrap intervals)", xlabel="K (history items in the prompt)", ylabel="AUC")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def _plot_auc_bars(settings, path):
    """Horizontal bars of every setting's AUC with its 95 % bootstrap interval, grouped by stage."""
    import matplotlib.pyplot as plt

    ordered = sorted(settings.items(), key=lambda item: (str(item[1]["meta"].get("stage", "")), natural_key(item[0])))
    names = [name for name, _ in ordered]
    aucs = np.array([data["metrics"]["auc"] for _, data in ordered], dtype=np.float64)
    intervals = np.array([data["metrics"].get("auc_ci", (np.nan, np.nan)) for _, data in ordered], dtype=np.float64)
    stages = sorted({str(data["meta"].get("stage", "")) for _, data in ordered})
    colours = {stage: plt.cm.tab10(index % 10) for index, stage in enumerate(stages)}
    figure, axis = plt.subplots(figsize=(7, 0.32 * len(names) + 1.4))
    positions = np.arange(len(names))
    errors = np.vstack([aucs - intervals[:, 0], intervals[:, 1] - aucs])
    axis.barh(positions, aucs - 0.5, left=0.5, xerr=np.nan_to_num(errors), capsize=3,
              color=[colours[str(data["meta"].get("stage", ""))] for _, data in ordered])
    axis.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    axis.set_yticks(positions, names, fontsize=7)
    axis.invert_yaxis()
    axis.set(title="AUC by setting, 95% bootstrap intervals\n(bars start at chance, 0.5)", xlabel="AUC")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[stage]) for stage in stages]
    axis.legend(handles, [stage or "(no stage)" for stage in stages], fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def bootstrap_interval(labels, scores, n_resamples: int = 1000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95 % percentile bootstrap intervals of AUC, LogLoss and ACC over the samples.

    Args:
        labels: 0/1 labels.
        scores: P(yes) per sample.
        n_resamples: bootstrap resamples.
        seed: resampling seed (the same seed resamples the same indices for every setting).
    """
    from .metrics import paired_bootstrap_samples

    draws = paired_bootstrap_samples(labels, {"s": scores}, n_resamples=n_resamples, seed=seed)["s"]
    return {name: tuple(np.nanpercentile(values, [2.5, 97.5]).tolist()) for name, values in draws.items()}


def _require_matplotlib() -> None:
    """Plots need matplotlib, an optional dependency: fail at once with the install hint."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("reports draw plots with matplotlib, which is not installed; "
                          "run `pip install 'rella-hf[plots]'` (or `pip install matplotlib`)")


def write_report(run_dir: str | Path, title: str | None = None, n_resamples: int = 1000,
                 examples: int = 3, roc_limit: int | None = 6) -> Path:
    """Compute metrics and plots of a run folder and write ``report.md`` and ``metrics.json`` into it.

    Args:
        run_dir: the run folder (layout in the module docstring).
        title: report title (default: ``run.json``'s title or the folder name).
        n_resamples: bootstrap resamples for the 95 % intervals (0 skips them).
        examples: how many example prompts with their P(yes) to show.
        roc_limit: draw the ROC curves of this many best settings by AUC (None: all); more than
            half a dozen curves are unreadable.

    Returns:
        The path of ``report.md``.
    """
    _require_matplotlib()
    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    settings = load_settings(run_dir)
    if not settings and not _training_losses(run_dir):
        raise DataFormatError(run_dir, "holds no scores/*.jsonl and no train/*/metrics.json, so there is nothing to "
                                       "report; expected a run folder written by rella-hf score or rella-hf train")
    from .metrics import ece_consistency_band

    for data in settings.values():
        data["metrics"] = ctr_metrics(data["labels"], data["scores"])
        data["metrics"]["ece_band"] = ece_consistency_band(data["scores"])
        if n_resamples:
            for name, interval in bootstrap_interval(data["labels"], data["scores"], n_resamples).items():
                data["metrics"][f"{name}_ci"] = interval
        if data.get("calibrated") is not None:
            calibrated = ctr_metrics(data["labels"], data["calibrated"])
            calibrated["ece_band"] = ece_consistency_band(data["calibrated"])
            if n_resamples:
                for name, interval in bootstrap_interval(data["labels"], data["calibrated"], n_resamples).items():
                    calibrated[f"{name}_ci"] = interval
            data["calibrated_metrics"] = calibrated
    title = title or info.get("title") or run_dir.name
    lines = [f"# {title}", ""]
    if info.get("config"):
        lines += ["## Configuration", "", "```json", json.dumps(info["config"], indent=2, sort_keys=True), "```", ""]
    stats = info.get("dataset")
    if stats:
        lines += ["## Dataset", "", "| statistic | value |", "|---|---|"]
        lines += [f"| users | {stats.get('users', '')} |", f"| items | {stats.get('items', '')} |"]
        lines += [f"| {split} samples | {count:,} |" for split, count in stats.get("samples", {}).items()]
        lengths = stats.get("history_length", {})
        if lengths:
            lines.append("| history length (min / p25 / median / p75 / p90 / max) | "
                         + " / ".join(f"{lengths[key]:.0f}" for key in ("min", "p25", "median", "p75", "p90", "max")) + " |")
        lines.append("")
    if settings:
        lines += ["## Metrics", "", "95 % bootstrap intervals over the scored samples in brackets. ECE: 10 equal-mass "
                  "bins; \"band\" is the 95 % ECE a perfectly calibrated model with the same predictions reaches by "
                  "chance (labels resampled from the predictions 1,000 times, Bröcker & Smith 2007).", ""]
        groups = [("Raw scores (the paper's P(yes) / (P(yes) + P(no)))", {name: data["metrics"] for name, data in
                                                                          settings.items()})]
        calibrated = {name: data["calibrated_metrics"] for name, data in settings.items() if "calibrated_metrics" in data}
        if calibrated:
            groups.append(("Calibrated (map fitted on validation samples, applied to these)", calibrated))
        for heading, rows in groups:
            lines += [f"**{heading}**", "", "| setting | n | positives | AUC | LogLoss | ACC | Brier | ECE | ECE band |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for name, metric in rows.items():
                def cell(key, metric=metric):
                    interval = metric.get(f"{key}_ci")
                    suffix = f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else ""
                    return f"{metric[key]:.4f}{suffix}"

                lines.append(f"| {name} | {metric['n']} | {metric['positives']} | {cell('auc')} | {cell('logloss')} | "
                             f"{cell('acc')} | {metric['brier']:.4f} | {metric['ece']:.4f} | {metric['ece_band']:.4f} |")
            lines.append("")
        _plot_auc_bars(settings, run_dir / "auc_bars.png")
        _plot_roc(settings, run_dir / "roc.png", roc_limit)
        _plot_calibration(_best_settings(settings, roc_limit), run_dir / "calibration.png")
        shown_roc = f" of the {roc_limit} best settings by AUC" if roc_limit and len(settings) > roc_limit else ""
        lines += ["## AUC by setting", "", "![AUC by setting](auc_bars.png)", "",
                  f"## ROC curves{shown_roc}", "", "![ROC curves](roc.png)", "", f"## Calibration{shown_roc}", "",
                  "![Reliability diagram](calibration.png)", ""]
        if _plot_auc_vs_k(settings, run_dir / "auc_vs_k.png"):
            lines += ["## AUC vs K", "", "![AUC vs K](auc_vs_k.png)", ""]
    comparisons = compare_settings(settings, info.get("comparisons", []), n_resamples or 1000) if settings else []
    if comparisons:
        lines += ["## Paired comparisons", "", "AUC difference on the same samples, 95 % paired-bootstrap interval.", "",
                  "| setting | minus | AUC difference | 95 % interval | excludes 0 |", "|---|---|---|---|---|"]
        lines += [f"| {row['a']} | {row['b']} | {row['difference']:+.4f} | [{row['ci'][0]:+.4f}, {row['ci'][1]:+.4f}] | "
                  f"{'yes' if row['excludes_zero'] else 'no'} |" for row in comparisons]
        lines.append("")
    curves = _training_losses(run_dir)
    if curves:
        _plot_losses(curves, run_dir / "loss.png")
        lines += ["## Training loss", "", "![Training loss](loss.png)", ""]
    validation = _validation_curves(run_dir)
    if validation:
        _plot_validation_auc(validation, run_dir / "validation_auc.png")
        lines += ["## Validation AUC during training", "", "![Validation AUC](validation_auc.png)", ""]
    shown = [(name, data) for name, data in settings.items() if any(data["prompts"])]
    if shown and examples:
        lines += ["## Example prompts", ""]
        name, data = shown[0]
        for index in range(min(examples, len(data["prompts"]))):
            lines += [f"**{name}**, sample {index}: label {data['labels'][index]}, P(yes) = {data['scores'][index]:.3f}",
                      "", "```text", data["prompts"][index] or "", "```", ""]
    metrics = {name: {key: value for key, value in data["metrics"].items()} | {"meta": data["meta"]}
               | ({"calibrated": data["calibrated_metrics"]} if "calibrated_metrics" in data else {})
               for name, data in settings.items()}
    if comparisons:
        atomic_write_text(run_dir / "comparisons.json", json.dumps(comparisons, indent=2, default=float))
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True, default=float))
    return atomic_write_text(run_dir / "report.md", "\n".join(lines))
