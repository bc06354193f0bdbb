"""Tables, paired bootstrap comparisons and plots of the experiments, into experiments/RESULTS.md.

    python experiments/analyze.py

It first packs loose score files into ``runs/<dataset>/scores.parquet`` (``collect_scores.py``), the
file it reads. Per dataset it renders ``runs/<dataset>/report.md`` with :func:`rella_hf.report.write_report`
(metrics with 95 % bootstrap intervals, ROC, reliability, AUC vs K), then compares settings on
the same test samples with a paired bootstrap (1,000 resamples): a difference is called a win
only when its 95 % interval excludes zero. ``reading.md`` (written by hand after looking at the
numbers) is appended as the plain reading.
"""

from __future__ import annotations

import json
import re
import time

from common import EXPERIMENTS, RESULTS, collect_scores, dataset_dirs, machine

RESAMPLES = 1000
#: Score files of learning-curve points (``learning_curve.py``): K, method (none: LoRA on every layer; ``full15``:
#: full fine-tuning of the top 15 layers), train type, N, epochs of the mixed run (none: 1), collaborative prompt mode
#: (none: the paper's prompts), collaborative tokens (``ids``, the CoLLM route; ``ids3e-4``: another projector
#: learning rate), validation subset size (none: 200), seed, test prompt kind.
LEARNING_CURVE_SETTING = re.compile(
    r"recipe-lc-K(\d+)-(?:((?:full|lora)\d*)-)?(mixed|simple)-N(\d+)(?:-ep([\d.]+))?"
    r"(?:-collab-(item\+user|item|all))?(?:-(ids[\d.e-]*))?(?:-val(\d+))?-seed(\d+)-test-(recent|semantic)")


#: Published numbers drawn as reference lines (not measured here): SIM trained on 8,192 ML-1M samples, from the
#: ReLLa paper as quoted in issue #16.
PUBLISHED_REFERENCES = {"ml-1m": {"SIM N=8192 (paper)": 0.735}}


def _rows(name):
    path = RESULTS / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _comparisons(dataset, settings):
    from rella_hf.metrics import paired_difference
    from rella_hf.utils import natural_key

    pairs = []
    names = set(settings)
    for name in sorted(names, key=natural_key):
        if name.startswith("zero-shot-") and name.endswith("-semantic"):
            other = name.replace("-semantic", "-recent")
            if other in names:
                pairs.append((name, other, "SUBR vs recent-K, zero-shot"))
        if name.startswith("history-mean-") and name.endswith("-semantic"):
            other = name.replace("-semantic", "-recent")
            if other in names:
                pairs.append((name, other, "SUBR vs recent-K items, no LLM (mean rating)"))
        if name.startswith("mixed-"):
            other = name.replace("mixed-", "simple-", 1)
            if other in names:
                pairs.append((name, other, "ReiT mixed vs simple tuning"))
            equal_steps = re.sub(r"-seed", "-ep2-seed", other, count=1)
            if equal_steps in names:
                pairs.append((name, equal_steps, "ReiT mixed vs simple at equal steps (2 epochs)"))
        if name.startswith(("mixed-", "simple-")):
            meta = settings[name]["meta"]
            untuned = f"zero-shot-K{meta.get('K')}-{meta.get('retrieval')}"
            if untuned in names:
                pairs.append((name, untuned, "few-shot tuned vs zero-shot, same prompts"))
            if name.endswith("-test-semantic") and name.replace("-test-semantic", "-test-recent") in names:
                pairs.append((name, name.replace("-test-semantic", "-test-recent"), "SUBR vs recent-K test prompts, tuned"))
        curve_point = LEARNING_CURVE_SETTING.fullmatch(name)
        if curve_point:
            K, method, train_type, shots, epochs, collaborative, ids, validation, seed, kind = curve_point.groups()
            prefix = f"recipe-lc-K{K}-{method + '-' if method else ''}"
            ep = f"-ep{epochs}" if epochs else ""
            if ids:
                without = name.replace(f"-{ids}-", "-", 1)
                # The paper-prompt points of the first curves validated on 200 samples and carry no -val in their name.
                without = next((other for other in (without, re.sub(r"-val\d+", "", without)) if other in names), None)
                if without:
                    pairs.append((name, without, "collaborative tokens vs the same prompts without them"))
                sentences = name.replace(f"-{ids}-", "-collab-item+user-", 1)
                if not collaborative and sentences in names:
                    pairs.append((name, sentences, "collaborative tokens vs collaborative sentences (item+user), same N"))
                factorization = name.rsplit("-test-", 1)[0] + "-factorization"
                if factorization in names:
                    pairs.append((name, factorization, "LLM with collaborative tokens vs its factorisation alone"))
            elif collaborative:
                paper = f"{prefix}{train_type}-N{shots}{ep}-seed{seed}-test-{kind}"
                if paper in names:
                    pairs.append((name, paper, "collaborative prompts vs the paper's, same N (validation subsets differ)"))
                fewer = name.replace("-collab-all-", "-collab-item+user-", 1)
                if collaborative == "all" and fewer in names:
                    pairs.append((name, fewer, "collaborative all vs item+user (+ the shown items' community means), same N"))
            if ids or collaborative:
                llm = "collaborative-token LLM" if ids else "collaborative-prompt LLM"
                same_numbers = (f"logistic-stats-all-recentK{K}",) if collaborative == "all" else ()
                for statistics in (*same_numbers, f"logistic-stats-recentK{K}", "logistic-stats", "lightgbm-K10-collab"):
                    if statistics in names:
                        pairs.append((name, statistics, f"{llm} vs the statistics without an LLM"))
                continue
            if train_type == "mixed":
                other = f"{prefix}simple-N{shots}{ep}-seed{seed}-test-{kind}"
                if other in names:
                    pairs.append((name, other, "ReiT mixed vs simple at equal steps"))
            one_epoch = f"{prefix}{train_type}-N{shots}-seed{seed}-test-{kind}"
            if epochs and one_epoch in names:
                pairs.append((name, one_epoch, f"{epochs} epochs vs 1 epoch of the same rows"))
            lora_point = f"recipe-lc-K{K}-{train_type}-N{shots}{ep}-seed{seed}-test-{kind}"
            if method and lora_point in names:
                pairs.append((name, lora_point, f"{method} fine-tuning vs LoRA (all layers), same N"))
            if kind == "semantic" and name.replace("-test-semantic", "-test-recent") in names:
                pairs.append((name, name.replace("-test-semantic", "-test-recent"), "SUBR vs recent-K test prompts, tuned"))
            if f"zero-shot-K{K}-{kind}" in names:
                pairs.append((name, f"zero-shot-K{K}-{kind}", "few-shot tuned vs zero-shot, same prompts"))
            if f"history-mean-K{K}-recent" in names:
                pairs.append((name, f"history-mean-K{K}-recent", "tuned LLM vs mean rating of the K recent items"))
    # The paper-faithful LightGBM (ids and history features) is the yardstick; "-collab" is compared above.
    baseline = "lightgbm-K10" if "lightgbm-K10" in names else next((name for name in names if name.startswith("lightgbm")), None)
    if baseline:
        for name in sorted(names, key=natural_key):
            if name.startswith(("mixed-", "simple-", "zero-shot-", "recipe-lc-")) and not name.endswith("-factorization"):
                pairs.append((name, baseline, "LLM vs full-shot LightGBM"))
    lines = []
    for a, b, what in pairs:
        labels = settings[a]["labels"]
        if (labels != settings[b]["labels"]).any():
            lines.append(f"| {what} | {a} | {b} | not paired: the label vectors differ | | |")
            continue
        verdict = paired_difference(labels, settings[a]["scores"], settings[b]["scores"], "auc", RESAMPLES)
        winner = {"a": a, "b": b, None: "no significant difference"}[verdict["win"]]
        lines.append(f"| {what} | {a} | {b} | {verdict['difference']:+.4f} | "
                     f"[{verdict['ci'][0]:+.4f}, {verdict['ci'][1]:+.4f}] | {winner} |")
    return lines


def _learning_curve(dataset_dir, metrics) -> list[str]:
    """Plot test AUC vs N: a panel per test prompt kind, a line per K x tuning x train type x epochs
    (95 % intervals of the first seed, seeds averaged).

    Horizontal lines mark the no-LLM references measured on the same test subset (the mean rating
    of the K and of the 10 recent items, LightGBM trained on the whole train split) and the published
    numbers of ``PUBLISHED_REFERENCES``. Returns the report lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points: dict[tuple[str, str, str, str, str], dict[int, list]] = {}
    for name, values in metrics.items():
        match = LEARNING_CURVE_SETTING.fullmatch(name)
        if match:
            K, method, train_type, shots, epochs, collaborative, ids, _validation, _seed, kind = match.groups()
            tuning = (method or "lora") + (f", collaborative {collaborative}" if collaborative else "") \
                + (f", collaborative tokens ({ids})" if ids else "")
            line = (kind, K, tuning, train_type, epochs or "1")
            points.setdefault(line, {}).setdefault(int(shots), []).append(values)
    if not points:
        return []
    # One panel per test prompt kind: a dozen lines on one axis cannot be told apart.
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    panels = dict(zip(("recent", "semantic"), axes))
    rows = ["| K | tuning | train | epochs (mixed) | test prompts | N | seeds | test AUC (mean) | 95 % CI (first seed) |",
            "|---|---|---|---|---|---|---|---|---|"]
    # One colour per setting in both panels, so that one legend below them serves both.
    settings = sorted({line[1:] for line in points}, key=lambda setting: (int(setting[0]), setting))
    palette = plt.get_cmap("tab20" if len(settings) > 10 else "tab10")
    colors = {setting: palette(index % palette.N) for index, setting in enumerate(settings)}
    for (kind, K, method, train_type, epochs), by_shots in sorted(points.items(),
                                                                  key=lambda item: (item[0][0], int(item[0][1]), item[0])):
        shots = sorted(by_shots)
        means = [sum(v["auc"] for v in by_shots[n]) / len(by_shots[n]) for n in shots]
        lows = [mean - by_shots[n][0]["auc_ci"][0] for n, mean in zip(shots, means)]
        highs = [by_shots[n][0]["auc_ci"][1] - mean for n, mean in zip(shots, means)]
        panels[kind].errorbar(shots, means, yerr=[lows, highs], marker="o", capsize=3,
                              color=colors[(K, method, train_type, epochs)],
                              label=f"{method}, {train_type}, K={K}" + (f", {epochs} epochs" if epochs != "1" else ""))
        for n, mean in zip(shots, means):
            low, high = by_shots[n][0]["auc_ci"]
            rows.append(f"| {K} | {method} | {train_type} | {epochs} | {kind} | {n} | {len(by_shots[n])} | {mean:.4f} | "
                        f"[{low:.4f}, {high:.4f}] |")
    K = min(int(line[1]) for line in points)
    references = {name: metrics[name]["auc"] for name in dict.fromkeys(
        (f"history-mean-K{K}-recent", "history-mean-K10-recent", "lightgbm-K10", "lightgbm-K10-collab",
         f"logistic-stats-recentK{K}")) if name in metrics}
    published = PUBLISHED_REFERENCES.get(dataset_dir.name, {})
    references.update(published)
    for kind, axis in panels.items():
        for (reference, auc), style in zip(references.items(), (":", "-.", "--", (0, (1, 3)), (0, (5, 1)), (0, (3, 1, 1, 1)),
                                                                 (0, (1, 1)))):
            # In the legend, not on the line: the references sit within 0.02 of each other.
            color = "darkred" if reference in published else "grey"
            axis.axhline(auc, linestyle=style, color=color, label=f"{reference} {auc:.3f}")
        axis.axhline(0.5, color="lightgrey", linewidth=0.8)
        axis.set_xscale("log", base=2)
        axis.set_xlabel("N training samples (mixed: 2N rows; simple: N rows, twice the epochs)")
        axis.set_title(f"{'SUBR' if kind == 'semantic' else 'recent-K'} test prompts")
    axes[0].set_ylabel("test AUC (1,000 fixed samples)")
    figure.suptitle(f"ReiT learning curve, {dataset_dir.name}")
    # Below the panels, not inside: inside, it hid the points at the largest N.
    legend = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    legend_height = 0.17 * -(-len(legend) // 3)  # inches: 3 columns of 7-point entries
    width, panels_height = figure.get_size_inches()
    figure.set_size_inches(width, panels_height + legend_height)
    figure.legend(legend.values(), legend.keys(), loc="lower center", ncol=3, fontsize=7, frameon=False)
    figure.tight_layout(rect=(0, legend_height / (panels_height + legend_height) + 0.01, 1, 1))
    figure.savefig(dataset_dir / "learning_curve.png", dpi=120)
    plt.close(figure)
    return ["Learning curve (`experiments/learning_curve.py`):", "", *rows, "",
            f"![{dataset_dir.name} learning curve](runs/{dataset_dir.name}/learning_curve.png)", ""]


def _tuning(row: dict) -> str:
    """What a recipe run trained: ``LoRA all r16`` or ``full, top 15 layers``."""
    layers = f", top {row['top_layers']} layers" if row.get("top_layers") else ""
    if row.get("finetuning") == "full":
        return f"full{layers}"
    return f"LoRA {row['targets']} r{row['lora_r']}{layers}"


def _recipe_section() -> list[str]:
    """The recipe runs of ``results/recipe.jsonl``: sanity task and real labels, best validation AUC, wall time."""
    rows = _rows("recipe")
    if not rows:
        return []
    out = ["## Recipe runs (`experiments/recipe.py`)", "",
           "Validation AUC on a fixed validation subset, scored every `eval_every` optimizer steps; the best checkpoint "
           "is kept. Task `sanity`: the label is mean(shown ratings) >= 3.5 (a working pipeline reaches AUC >= 0.95); "
           "task `ctr`: the real labels. SmolLM2-135M-Instruct; LoRA: bf16 base weights, adapters float32; full: "
           "float32 master weights of the trained layers, bf16 autocast.", "",
           "| run | task | K | train type | rows | lr | tuning | total batch | steps | validation AUC by step | best | "
           "train s | test AUC recent / SUBR |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        curve = ", ".join(f"{entry['step']}: {entry['eval_auc']:.3f}" for entry in row["validation_curve"])
        best = row.get("best_validation") or {}
        tests = " / ".join(f"{row[key]['auc']:.4f}" for key in ("test_recent", "test_semantic") if key in row) or "-"
        # A restored line (recipe.py --restore_row) has no training wall time.
        seconds = "-" if row["train_seconds"] is None else f"{row['train_seconds']:,.0f}"
        out.append(f"| {row['setting'].split('/')[-1]} | {row['task']} | {row['K']} | {row['train_type']} | "
                   f"{row['train_rows']} | {row['lr']:g} | {_tuning(row)} | {row['total_batch_size']} | "
                   f"{row['steps']} | {curve} | {best.get('eval_auc', float('nan')):.3f} | {seconds} | "
                   f"{tests} |")
    return out + [""]


def main() -> None:
    from rella_hf.report import load_settings, write_report

    out = ["# Experiments: SUBR, ReiT and a classical baseline on CPU with SmolLM2-135M-Instruct", "",
           f"Generated {time.strftime('%Y-%m-%d %H:%M')} on {machine()} by `python experiments/analyze.py`.", ""]
    collect_scores()  # the analysis reads each dataset's scores.parquet
    for dataset_dir in dataset_dirs():
        dataset = dataset_dir.name
        settings = load_settings(dataset_dir)
        if not settings:
            continue
        (dataset_dir / "run.json").write_text(json.dumps({"title": f"Experiments on {dataset}"}))
        write_report(dataset_dir, n_resamples=RESAMPLES, examples=0 if dataset == "ml-1m" else 2)
        metrics = json.loads((dataset_dir / "metrics.json").read_text())
        out += [f"## {dataset}", "", f"Full report with plots: [runs/{dataset}/report.md](runs/{dataset}/report.md)", "",
                "| setting | n | AUC [95 % CI] | LogLoss [95 % CI] | ACC [95 % CI] |", "|---|---|---|---|---|"]
        for name, values in metrics.items():
            def cell(key):
                low, high = values.get(f"{key}_ci", (float("nan"), float("nan")))
                return f"{values[key]:.4f} [{low:.4f}, {high:.4f}]"
            out.append(f"| {name} | {values['n']} | {cell('auc')} | {cell('logloss')} | {cell('acc')} |")
        out += ["", "Paired bootstrap of the AUC difference (a - b) on the same test samples:", "",
                "| comparison | a | b | AUC(a) - AUC(b) | 95 % CI | win |", "|---|---|---|---|---|---|"]
        out += _comparisons(dataset, settings) + [""]
        out += _learning_curve(dataset_dir, metrics)
        for plot in ("auc_bars.png", "auc_vs_k.png", "roc.png", "calibration.png", "loss.png"):
            if (dataset_dir / plot).exists():
                out += [f"![{dataset} {plot}](runs/{dataset}/{plot})", ""]
    out += _recipe_section()
    timings = []
    for name in ("zero_shot", "few_shot", "baseline", "prompt_signal", "recipe"):
        for row in _rows(name):
            parts = [f"{key.removesuffix('seconds').rstrip('_') or 'total'} {row[key]:,.1f}"
                     for key in row if key.endswith("seconds") and row[key] is not None]
            if row.get("restored"):  # recipe.py --restore_row: the training time was not recorded
                parts.insert(0, "train unknown (line restored)")
            timings.append(f"| {row['setting']} | {', '.join(parts)} | {row.get('finished', '')} | {row.get('machine', '')} |")
    out += ["## Wall times", "", "| setting | seconds (per stage) | finished | machine |", "|---|---|---|---|", *timings, ""]
    out += ["## Commands", "", "```bash",
            "python experiments/zero_shot.py          # K in {5,10,20,30} x {recent, semantic}, both datasets",
            "python experiments/few_shot.py           # ML-1M copy, K=10, N=512, simple vs mixed",
            "python experiments/few_shot.py --seeds 43                                   # second seed",
            "python experiments/few_shot.py --train_types simple --epochs 2 --seeds 42 43  # equal-steps control",
            "pip install -e .[experiments]            # LightGBM, for the baseline",
            "python experiments/baseline_gbdt.py      # LightGBM, whole train split",
            "python experiments/prompt_signal.py      # no LLM: mean rating of the K prompt items",
            "python experiments/recipe.py --task sanity --name sanity-K5-all-r16-lr1e-3 --K 5 --shots 1024 --targets all "
            "--lora_r 16 --eval_size 200   # the sanity task",
            "python experiments/learning_curve.py --shots 512 2048 8192 --seeds 42 43   # ReiT learning curves",
            "python experiments/learning_curve.py --dataset ml-1m --finetuning full --top_layers 15 --lr 5e-5 "
            "--train_types mixed --shots 2048 --eval_size 1000 --eval_every 64 --collaborative item+user "
            "[--collaborative_ids]   # #33: statistics [+ collaborative tokens]; tokens alone: no --collaborative",
            "python experiments/collect_scores.py     # pack loose score files into runs/<dataset>/scores.parquet",
            "python experiments/analyze.py            # this file", "```", ""]
    reading = EXPERIMENTS / "reading.md"
    if reading.exists():
        out += [reading.read_text()]
    (EXPERIMENTS / "RESULTS.md").write_text("\n".join(out))
    print(EXPERIMENTS / "RESULTS.md")


if __name__ == "__main__":
    main()
