"""ReiT recipe runs on one setting, selected on validation AUC, with the sanity task as a switch.

    python experiments/recipe.py --name qv-r8-lr1e-3 --lr 1e-3                        # real CTR labels
    python experiments/recipe.py --task sanity --name sanity-qv-r8 --shots 1024       # mean shown rating >= 3.5
    python experiments/recipe.py --name all-r16-lr3e-4 --targets all --lora_r 16 --lr 3e-4 --test

Each run trains a LoRA adapter on SmolLM2-135M-Instruct with the fast CPU recipe (bf16 base,
answer-only head, length-grouped batches), evaluates a fixed validation subset every
``--eval_every`` optimizer steps (AUC / LogLoss / ACC through :class:`CTREvalCallback`), keeps
the best checkpoint by validation AUC and stops early after ``--patience`` evaluations without a
better one. With ``--test`` the best adapter then scores the fixed 1,000-sample test subset with
recent-K and SUBR prompts (scores under ``runs/<dataset>/scores/``). One JSON line per finished
run goes to ``results/recipe.jsonl`` (settings, validation curve, wall times, test metrics); a run
killed mid-way continues from its last checkpoint when started again with the same arguments.
``--restore_row`` appends the line of a run whose test scores were saved but whose process ended before
writing it, rebuilt from the run's ``metrics.json`` and saved scores (marked ``restored``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import EMBEDDER, MODEL, RESULTS, RUNS, append_result, data_dir, done, save_scores, test_subset

LORA_TARGETS = {"qv": ["q_proj", "v_proj"],
                "all": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="run name (results key and folder)")
    parser.add_argument("--task", choices=["ctr", "sanity"], default="ctr")
    parser.add_argument("--dataset", default="ml-latest-small")
    parser.add_argument("--K", type=int, default=10)
    parser.add_argument("--train_type", choices=["simple", "sequential", "mixed"], default="simple")
    parser.add_argument("--test_type", choices=["simple", "sequential"], default="simple")
    parser.add_argument("--shots", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--targets", choices=sorted(LORA_TARGETS), default="qv")
    parser.add_argument("--lora_r", type=int, default=8)
    parser.add_argument("--lora_alpha", type=int, default=None, help="default: 2 x lora_r")
    parser.add_argument("--finetuning", choices=["lora", "full"], default="lora",
                        help="lora: adapters on --targets; full: the decoder layers' own weights")
    parser.add_argument("--top_layers", type=int, default=None, help="train only the last this-many decoder layers")
    parser.add_argument("--total_batch_size", type=int, default=16)
    parser.add_argument("--train_batch_size", type=int, default=8)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max_steps", type=int, default=-1)
    parser.add_argument("--warmup_steps", type=int, default=0)
    parser.add_argument("--eval_every", type=int, default=16, help="optimizer steps between validation scorings")
    parser.add_argument("--eval_size", type=int, default=300)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--test", action="store_true", help="score the fixed test subset with the best adapter")
    parser.add_argument("--collaborative", choices=["none", "item", "item+user", "all"], default="none",
                        help="collaborative statistics in the prompts (ours; none = the paper's prompts)")
    parser.add_argument("--collaborative_ids", action="store_true",
                        help="the CoLLM route (ours): one soft token per user and item from a matrix factorisation of the "
                             "train split; the test also scores the factorisation alone")
    parser.add_argument("--id_projector_lr", type=float, default=1e-3, help="learning rate of the token projector")
    parser.add_argument("--validation_scores", action="store_true",
                        help="for a finished run trained before the end-of-training calibration hook: score its validation "
                             "subset with the kept model into recipe/<name>/validation_scores.jsonl (calibrate_runs.py fits on it)")
    parser.add_argument("--restore_row", action="store_true",
                        help="append the results line of a finished run whose process ended before writing it, rebuilt "
                             "from recipe/<name>/metrics.json and its test scores in scores.parquet (same arguments "
                             "as the run)")
    return parser.parse_args(argv)


def training_data(args, config, model=None, tokenizer=None):
    """The run's rows: real labels, or the sanity task's relabelled prompts (with ``--collaborative_ids`` the
    factorisation is fitted and attached to ``model`` and its tokens added to ``tokenizer`` and the prompts)."""
    from rella_hf.training import build_training_data, load_prompt_datasets, prepare_collaborative_ids
    from rella_hf.training.data import TrainingData, build_eval_rows, build_train_rows
    from rella_hf.training.sanity import relabel_by_shown_ratings

    prompt_datasets = load_prompt_datasets(config, MODEL)
    if args.task == "ctr":
        prompt_datasets = prepare_collaborative_ids(config, prompt_datasets, model, tokenizer)
        return build_training_data(config, prompt_datasets)
    simple = prompt_datasets["simple"]
    train = build_train_rows(relabel_by_shown_ratings(simple["train"]), None, "simple", args.shots,
                             config.pool_size, config.sample_seed)
    evaluation = build_eval_rows(relabel_by_shown_ratings(simple["validation"]), args.eval_size, "simple",
                                 config.sample_seed)
    return TrainingData(train, evaluation, "validation")


def sanity_margins(adapter_dir, evaluation, config) -> list[dict]:
    """Score the validation rows with the selected adapter; AUC by distance of the shown-rating mean from 3.5."""
    import numpy as np

    import rella_hf
    from rella_hf.models import load_tuned_model
    from rella_hf.scoring import CTRScorer, score_dataset
    from rella_hf.training.sanity import auc_by_margin, shown_rating_means

    tuned, tokenizer = load_tuned_model(adapter_dir, MODEL)
    scored = score_dataset(CTRScorer(tuned, tokenizer, batch_size=8), evaluation)
    validation = rella_hf.load_dataset(config.dataset, K=config.K, retrieval="recent", data_dir=config.data_dir,
                                       embedder=EMBEDDER, chat_model=MODEL)["validation"]
    mean_by_sample = dict(zip(validation["sample_id"], shown_rating_means(validation)))
    means = np.array([mean_by_sample[sample_id] for sample_id in evaluation["sample_id"]])
    return auc_by_margin(scored["label"], scored["score"], means)


def run_config(args, adapter_dir):
    """The :class:`ReiTConfig` of a recipe run."""
    from rella_hf.training import ReiTConfig

    return ReiTConfig(
        output_dir=str(adapter_dir), dataset=args.dataset, data_dir=data_dir(args.dataset), K=args.K,
        train_type=args.train_type if args.task == "ctr" else "simple", test_type=args.test_type,
        shots=args.shots, embedder=EMBEDDER, model_name_or_path=MODEL, eval_size=args.eval_size,
        compute_eval_loss=False, learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=args.warmup_steps,
        lora_r=args.lora_r, lora_alpha=args.lora_alpha or 2 * args.lora_r, lora_target_modules=LORA_TARGETS[args.targets],
        finetuning=args.finetuning, top_layers=args.top_layers, collaborative=args.collaborative,
        collaborative_ids=args.collaborative_ids, id_projector_lr=args.id_projector_lr,
        per_device_train_batch_size=args.train_batch_size, per_device_eval_batch_size=8,
        total_batch_size=args.total_batch_size, num_train_epochs=args.epochs, max_steps=args.max_steps,
        eval_strategy="steps", eval_steps=args.eval_every, save_strategy="steps", save_steps=args.eval_every,
        save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="auc",
        early_stopping_patience=args.patience, logging_steps=1, seed=args.seed, report_to="none", resume=True,
    )


def write_validation_scores(args, adapter_dir) -> None:
    """Score a finished run's validation subset (the rows its checkpoint was selected on) with the kept model."""
    from rella_hf.calibration import save_validation_scores
    from rella_hf.metrics import ctr_metrics
    from rella_hf.models import load_tuned_model
    from rella_hf.scoring import CTRScorer

    config = run_config(args, adapter_dir)
    rows = training_data(args, config).eval
    tuned, tokenizer = load_tuned_model(adapter_dir, MODEL)
    scores = CTRScorer(tuned, tokenizer, batch_size=8).score(list(rows["prompt"]))
    save_validation_scores(adapter_dir, rows["label"], scores)
    print(f"{adapter_dir.name} validation ({len(scores)} samples): {json.dumps(ctr_metrics(rows['label'], scores))}")


def score_setting(name: str, kind: str) -> str:
    """The saved-scores setting of a run's test: ``kind`` is recent, semantic or factorization (alone)."""
    return f"recipe-{name}-factorization" if kind == "factorization" else f"recipe-{name}-test-{kind}"


def result_row(args, key: str, metrics: dict, train_type: str, compute_dtype: str) -> dict:
    """The results line of a trained run from its arguments and its training metrics (``metrics.json``)."""
    history = metrics["eval_history"]
    best = max(history, key=lambda entry: entry["eval_auc"]) if history else {}
    return {"setting": key, "task": args.task, "dataset": args.dataset, "K": args.K, "train_type": train_type,
            "shots": args.shots, "train_rows": metrics["train_rows"], "lr": args.lr, "targets": args.targets,
            "collaborative": args.collaborative, "collaborative_ids": args.collaborative_ids,
            "factorization": metrics.get("collaborative_ids"),
            "lora_r": args.lora_r, "finetuning": args.finetuning, "top_layers": args.top_layers,
            "total_batch_size": metrics["total_batch_size"], "epochs": args.epochs,
            "steps": metrics["global_step"], "eval_size": args.eval_size, "seed": args.seed,
            "compute_dtype": compute_dtype, "validation_curve": history, "best_validation": best,
            "final_train_loss": metrics["train"].get("train_loss")}


def restore_row(args, key: str, results_file: Path) -> dict:
    """Rebuild and append the line of a run whose test scores were saved but whose line was not.

    A run resumed over several sessions can have its test scores committed (``scores.parquet``) by a session
    that ended before :func:`append_result`. The line comes from the run's ``metrics.json`` and
    ``training_config.json`` and the saved test scores; the training wall time is unknown (``None``).

    Raises:
        SystemExit: when the run's files or scores are missing, or the arguments contradict its training config.
    """
    from rella_hf.metrics import ctr_metrics
    from rella_hf.report import read_score_pairs

    adapter_dir = RUNS / args.dataset / "recipe" / args.name
    try:
        metrics = json.loads((adapter_dir / "metrics.json").read_text())
        reit = json.loads((adapter_dir / "training_config.json").read_text())["reit"]
    except FileNotFoundError as error:
        raise SystemExit(f"{error.filename}: missing; --restore_row needs the run's metrics.json and training_config.json")
    given = {"K": args.K, "shots": args.shots, "train_type": args.train_type, "finetuning": args.finetuning,
             "top_layers": args.top_layers, "collaborative": args.collaborative, "eval_size": args.eval_size}
    contradicted = {name: (value, reit.get(name)) for name, value in given.items() if reit.get(name) != value}
    if contradicted:
        raise SystemExit(f"{adapter_dir / 'training_config.json'}: the run was trained with other arguments "
                         f"(given, trained): {contradicted}")
    pairs = read_score_pairs(RUNS / args.dataset)
    row = result_row(args, key, metrics, reit["train_type"], reit["compute_dtype"])
    factorization = score_setting(args.name, "factorization")
    if factorization in pairs:  # only runs with collaborative tokens score the factorisation alone
        row["test_factorization"] = ctr_metrics(*pairs[factorization])
    for kind in ("recent", "semantic"):
        setting = score_setting(args.name, kind)
        if setting not in pairs:
            raise SystemExit(f"{RUNS / args.dataset}: no saved scores named {setting}; the run's test was not scored")
        row[f"test_{kind}"] = ctr_metrics(*pairs[setting])
    row.update(train_seconds=None, train_seconds_from_step=None,
               restored="rebuilt from metrics.json and the saved test scores; training wall time unknown")
    append_result(results_file, row)
    return row


def main(argv=None) -> None:
    args = parse_args(argv)
    import rella_hf
    from rella_hf.metrics import ctr_metrics
    from rella_hf.models import load_tuned_model
    from rella_hf.scoring import CTRScorer, score_dataset
    from rella_hf.training import train_on_data
    from rella_hf.training.trainer import load_model_for_training

    results_file = RESULTS / "recipe.jsonl"
    key = f"{args.dataset}/{args.task}/{args.name}"
    if args.validation_scores:
        write_validation_scores(args, RUNS / args.dataset / "recipe" / args.name)
        return
    finished = done(results_file)
    if args.restore_row and key not in finished:
        row = restore_row(args, key, results_file)
        print(f"{key} restored: test {json.dumps({kind: row[f'test_{kind}']['auc'] for kind in ('recent', 'semantic')})}")
        return
    if key in finished:
        print(f"{key} is done: {json.dumps(finished[key]['best_validation'])}")
        return
    run_dir = RUNS / args.dataset
    adapter_dir = run_dir / "recipe" / args.name
    config = run_config(args, adapter_dir)
    started = time.perf_counter()
    model, tokenizer = load_model_for_training(config)
    data = training_data(args, config, model, tokenizer)
    result = train_on_data(config, data, model, tokenizer,
                           extra_metrics={"task": args.task, "shots": args.shots, "K": args.K})
    train_seconds = time.perf_counter() - started
    # train_seconds covers this process only: a resumed run says from which step it was timed.
    resumed_from = result.metrics["resumed_from"]
    resumed_from_step = int(Path(resumed_from).name.rsplit("-", 1)[-1]) if resumed_from else 0
    row = result_row(args, key, result.metrics, config.train_type, config.compute_dtype)
    row.update(train_seconds=round(train_seconds, 1), train_seconds_from_step=resumed_from_step)
    best = row["best_validation"]
    print(f"{key}: best validation {json.dumps(best)} after {round(train_seconds)} s", flush=True)

    if args.task == "sanity" and data.eval is not None:
        row["validation_auc_by_margin"] = sanity_margins(adapter_dir, data.eval, config)
        print(f"{key} validation AUC by distance of the shown-rating mean from 3.5: "
              f"{json.dumps(row['validation_auc_by_margin'])}", flush=True)

    if args.test and args.task == "ctr":
        from rella_hf.collaborative_ids import add_id_tokens, collaborative_ids_of

        tuned, tokenizer = load_tuned_model(adapter_dir, MODEL)
        scorer = CTRScorer(tuned, tokenizer, batch_size=8)
        ids = collaborative_ids_of(tuned)
        common = dict(data_dir=data_dir(args.dataset), embedder=EMBEDDER, chat_model=MODEL, collaborative=args.collaborative)
        for kind in ("recent", "semantic"):
            subset = test_subset(rella_hf.load_dataset(args.dataset, K=args.K, retrieval=kind, **common)["test"])
            if ids is not None:
                subset = add_id_tokens(subset, ids)
                if kind == "recent":  # the factorisation alone, on the same samples: what the tokens carry
                    factorization = ids.factorization.predict(subset["user_id"], subset["item_id"])
                    meta = {"stage": f"recipe {args.name} factorisation", "dataset": args.dataset, "seed": args.seed}
                    save_scores(run_dir, score_setting(args.name, "factorization"), subset["label"], factorization, meta)
                    row["test_factorization"] = ctr_metrics(subset["label"], factorization)
                    print(f"{key} test factorisation alone: {json.dumps(row['test_factorization'])}", flush=True)
            score_start = time.perf_counter()
            scored = score_dataset(scorer, subset, output_dir=run_dir / "partial" / score_setting(args.name, kind))
            meta = {"stage": f"recipe {args.name}", "dataset": args.dataset, "K": args.K, "retrieval": kind,
                    "shots": args.shots, "seed": args.seed, "model": MODEL, "collaborative": args.collaborative,
                    "collaborative_ids": args.collaborative_ids}
            save_scores(run_dir, score_setting(args.name, kind), scored["label"], scored["score"], meta)
            row[f"test_{kind}"] = {**ctr_metrics(scored["label"], scored["score"]),
                                   "seconds": round(time.perf_counter() - score_start, 1)}
            print(f"{key} test {kind}: {json.dumps(row[f'test_{kind}'])}", flush=True)
    append_result(results_file, row)


if __name__ == "__main__":
    main()
