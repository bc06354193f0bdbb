"""Raw vs calibrated metrics of the saved experiment scores (issue #37), written into experiments/RESULTS.md.

For every setting under ``experiments/runs/<dataset>/scores``:

- the raw metrics of the paper's score P(yes) / (P(yes) + P(no)) on its test subset: AUC, LogLoss
  (beside the base-rate constant), ACC at 0.5 (beside the best ACC any threshold reaches, a yardstick
  that peeks at the test labels), Brier, ECE (10 equal-mass bins) and its 95 % consistency band,
  the mean score against the positive rate and the spread of the log-odds;
- calibrated metrics when the run saved **validation** scores (``<setting>`` with ``-test-`` read
  as ``-validation-``): Platt scaling fitted there, applied to the test scores. A calibration is
  never fitted on test scores; runs that saved none say so;
- with ``--content_free``, the zero-shot settings of ml-latest-small also get the label-free
  content-free correction (Zhao et al. 2021): SmolLM2 scores the prompts whose history and target
  are "N/A" / "[MASK]" / "" (3 prompts), and ``--check N`` first rescores N saved prompts to show
  the saved scores are this model's.

The table replaces the block between the calibration markers in RESULTS.md (appended before
"## Commands" the first time). ``experiments/analyze.py`` rewrites RESULTS.md from scratch: run
this script after it.

    python experiments/calibrate_runs.py --content_free --check 20
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
from common import EXPERIMENTS, collect_scores, dataset_dirs

BEGIN, END = "<!-- calibrate_runs.py: begin -->", "<!-- calibrate_runs.py: end -->"
MODEL = "smollm2-135m-instruct"


def raw_row(labels: np.ndarray, scores: np.ndarray) -> dict:
    """The raw metrics of one setting, with the yardsticks of issue #37."""
    from rella_hf.calibration import log_odds
    from rella_hf.metrics import best_threshold_accuracy, ctr_metrics, ece_consistency_band

    rate = labels.mean()
    metrics = ctr_metrics(labels, scores)
    metrics.update({
        "constant_logloss": float(-(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))),
        "best_acc": best_threshold_accuracy(labels, scores),
        "ece_band": ece_consistency_band(scores),
        "mean_score": float(scores.mean()),
        "z_std": float(log_odds(scores).std()),
    })
    return metrics


def calibrated_row(labels: np.ndarray, raw: np.ndarray, calibrated: np.ndarray) -> dict:
    """Metrics of calibrated test scores, with the AUC change and the targets' verdicts."""
    from rella_hf.metrics import best_threshold_accuracy, ctr_metrics, ece_consistency_band

    metrics = ctr_metrics(labels, calibrated)
    before = raw_row(labels, raw)
    metrics.update({
        "ece_band": ece_consistency_band(calibrated),
        "auc_change": metrics["auc"] - before["auc"],
        "below_constant": metrics["logloss"] < before["constant_logloss"],
        "acc_gap": best_threshold_accuracy(labels, raw) - metrics["acc"],
    })
    metrics["ece_inside_band"] = metrics["ece"] <= metrics["ece_band"]
    return metrics


def validation_partner(files: dict, name: str) -> str | None:
    """The saved validation scores of test setting ``name``, when the run wrote them, as a key of ``files``
    (:func:`rella_hf.report.load_score_files`): the ``<name -test- -> -validation->`` setting, or the training
    run's own ``recipe/<run>/validation_scores.jsonl`` (written at the end of ReiT since issue #37) for a
    ``recipe-<run>-test-<kind>`` setting."""
    from rella_hf.calibration import VALIDATION_SCORES_FILE

    if "-test-" not in name:
        return None
    candidates = [f"scores/{name.replace('-test-', '-validation-')}.jsonl"]
    if name.startswith("recipe-"):
        candidates.append(f"recipe/{name.removeprefix('recipe-').split('-test-')[0]}/{VALIDATION_SCORES_FILE}")
    return next((key for key in candidates if key in files), None)


def content_free_calibration(raw_prompts: list[str], saved: np.ndarray, check: int):
    """The content-free correction of SmolLM2, and the largest |rescored - saved| of ``check`` prompts."""
    from rella_hf.calibration import content_free_prompts, fit_content_free, model_fingerprint
    from rella_hf.models import load_model
    from rella_hf.prompts import wrap_prompts
    from rella_hf.scoring import CTRScorer

    model, tokenizer = load_model(MODEL)
    scorer = CTRScorer(model, tokenizer, batch_size=8)
    drift = None
    if check:
        rescored = scorer.score(wrap_prompts(raw_prompts[:check], tokenizer), progress=False)
        drift = float(np.abs(rescored - saved[:check]).max())
    free = content_free_prompts(raw_prompts)
    free_scores = scorer.score(wrap_prompts(free, tokenizer), progress=False)
    calibration = fit_content_free(free_scores, fingerprint=model_fingerprint(MODEL), model=MODEL)
    return calibration, free_scores, drift


def _cells(metrics: dict) -> str:
    return (f"{metrics['auc']:.4f} | {metrics['logloss']:.4f} | {metrics['acc']:.3f} | {metrics['brier']:.4f} | "
            f"{metrics['ece']:.3f} [{metrics['ece_band']:.3f}]")


def build_section(content_free: bool, check: int) -> tuple[list[str], dict]:
    """The markdown block and the numbers behind it."""
    from rella_hf.calibration import CalibrationError
    from rella_hf.report import load_score_files, load_settings

    lines = [BEGIN, "## Calibration of the saved scores (issue #37, `experiments/calibrate_runs.py`)", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `python experiments/calibrate_runs.py"
             f"{' --content_free' if content_free else ''}{f' --check {check}' if check else ''}`. Raw: the paper's "
             "P(yes) / (P(yes) + P(no)) on each test subset. ECE: 10 equal-mass bins, in brackets the 95 % consistency "
             "band of a perfectly calibrated model with the same predictions (labels resampled from the predictions "
             "1,000 times). `const`: LogLoss of predicting the subset's positive rate. `best ACC`: the best accuracy "
             "any threshold reaches on that subset (peeks at the test labels; a yardstick only). `mean p`: mean "
             "score; `sd z`: spread of the log-odds log P(yes) - log P(no).", ""]
    numbers: dict = {}
    validation_found = False
    collect_scores()  # the analysis reads each dataset's scores.parquet
    for dataset_dir in dataset_dirs():
        settings, files = load_settings(dataset_dir), load_score_files(dataset_dir)
        if not settings:
            continue
        lines += [f"### {dataset_dir.name}: raw scores", "",
                  "| setting | n | pos. rate | mean p | sd z | AUC | LogLoss | ACC | Brier | ECE [band] | const | best ACC |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        calibrated_lines = []
        for name, data in settings.items():
            if "-validation-" in name:
                continue
            labels, scores = data["labels"], data["scores"]
            row = raw_row(labels, scores)
            numbers[f"{dataset_dir.name}/{name}"] = {"raw": row}
            lines.append(f"| {name} | {row['n']} | {labels.mean():.3f} | {row['mean_score']:.3f} | {row['z_std']:.2f} | "
                         f"{_cells(row)} | {row['constant_logloss']:.4f} | {row['best_acc']:.3f} |")
            partner = validation_partner(files, name)
            if partner is not None:
                from rella_hf.calibration import fit_calibration

                validation_found = True
                valid_labels, valid_scores = files[partner]["labels"], files[partner]["scores"]
                for method in ("platt", "temperature", "isotonic"):
                    try:
                        calibration = fit_calibration(valid_labels, valid_scores, method, fingerprint=f"name:{name}",
                                                      fitted_on=Path(partner).name)
                    except CalibrationError as error:
                        calibrated_lines.append(f"| {name} | {method}: not fitted ({error}) | | | | | | | | |")
                        continue
                    result = calibrated_row(labels, scores, calibration.transform(scores))
                    numbers[f"{dataset_dir.name}/{name}"][method] = result
                    calibrated_lines.append(
                        f"| {name} | {method} on {calibration.n} validation (rate {calibration.positive_rate:.3f}) | "
                        f"{_cells(result)} | {result['auc_change']:+.1e} | {'yes' if result['below_constant'] else 'no'} "
                        f"| {result['acc_gap']:+.3f} |")
        lines.append("")
        if content_free and dataset_dir.name == "ml-latest-small":
            calibrated_lines += _content_free_lines(settings, check, numbers)
        if calibrated_lines:
            lines += [f"### {dataset_dir.name}: calibrated", "",
                      "| setting | calibrated by | AUC | LogLoss | ACC | Brier | ECE [band] | AUC change | "
                      "LogLoss < const | best ACC - ACC |", "|---|---|---|---|---|---|---|---|---|---|",
                      *calibrated_lines, ""]
    if not validation_found:
        lines += ["No run under `experiments/runs` saved validation scores (their training runs scored the validation "
                  "subset for checkpoint selection but kept only its AUC / LogLoss / ACC, and the tuned weights are "
                  "not kept), so no tuned setting can be calibrated here without fitting on test scores, which this "
                  "script never does: the calibrated columns of the tuned runs are **not checkable** from the saved "
                  "files. Runs trained from now on write `calibration.json` beside their weights (fitted on the "
                  "validation subset they score) and `score_calibrated` beside `score` in their score files.", ""]
    return lines + [END], numbers


def _content_free_lines(settings: dict, check: int, numbers: dict) -> list[str]:
    """Rows of the content-free correction for the zero-shot settings that kept their raw prompts."""
    zero_shot = {name: data for name, data in settings.items() if name.startswith("zero-shot") and all(data["prompts"])}
    if not zero_shot:
        return []
    first = zero_shot[min(zero_shot, key=lambda name: (len(name), name))]
    calibration, free_scores, drift = content_free_calibration(first["prompts"], first["scores"], check)
    numbers["content_free"] = {"bias": calibration.parameters["bias"], "content_free_scores": free_scores.tolist(),
                               "rescoring_max_abs_difference": drift}
    lines = []
    for name, data in zero_shot.items():
        # ml-latest prompts carry no profile: every setting's content-free prompts are these same three.
        result = calibrated_row(data["labels"], data["scores"], calibration.transform(data["scores"]))
        numbers[f"ml-latest-small/{name}"]["content_free"] = result
        lines.append(f"| {name} | content-free, bias {calibration.parameters['bias']:+.3f} | {_cells(result)} | "
                     f"{result['auc_change']:+.1e} | {'yes' if result['below_constant'] else 'no'} | "
                     f"{result['acc_gap']:+.3f} |")
    note = (f"Content-free prompts scored {', '.join(f'{value:.3f}' for value in free_scores)}"
            + (f"; {check} saved prompts rescored now differ from their saved scores by at most {drift:.1e}" if check
               else "") + ".")
    return lines + ["", note, ""]


def write_section(lines: list[str], results: Path) -> None:
    """Replace the marked block of RESULTS.md (or insert it before "## Commands", else at the end)."""
    text = results.read_text() if results.exists() else ""
    block = "\n".join(lines)
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda match: block, text)
    elif "\n## Commands" in text:
        head, tail = text.split("\n## Commands", 1)
        text = f"{head}\n{block}\n\n## Commands{tail}"
    else:
        text = f"{text.rstrip()}\n\n{block}\n"
    results.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--content_free", action="store_true",
                        help="Score the 3 content-free prompts with SmolLM2 for the ml-latest-small zero-shot rows.")
    parser.add_argument("--check", type=int, default=0, help="Rescore this many saved prompts first (consistency).")
    parser.add_argument("--results", default=str(EXPERIMENTS / "RESULTS.md"), help="Markdown file to update.")
    parser.add_argument("--json", default=None, help="Also write the numbers here.")
    args = parser.parse_args(argv)
    lines, numbers = build_section(args.content_free, args.check)
    write_section(lines, Path(args.results))
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2, default=float))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
