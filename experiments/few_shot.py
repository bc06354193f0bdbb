"""Few-shot ReiT on the ML-1M copy: K=10, N=512 shots, train_type simple vs mixed.

    python experiments/few_shot.py [--shots 512] [--K 10] [--seeds 42] [--epochs 1] [--total_batch_size 32]
    python experiments/few_shot.py --train_types simple --epochs 2 --seeds 42 43   # equal-steps control

Each run trains a LoRA adapter on SmolLM2-135M-Instruct (paper's LoRA: r=8, alpha=16, dropout 0.05,
q_proj/v_proj, lr 1e-3, linear schedule) and scores the fixed 1,000-sample test subset with both
prompt kinds (recent-K and SUBR). Why these sizes on 2 CPU cores: the paper's total batch of 256
would give 2-4 optimizer steps for 512-1,024 rows, too few to move the adapter; a total batch
of 32 over one epoch gives 16 (simple) / 32 (mixed) steps and fits about half an hour per run.
Mixed trains on twice the rows, hence twice the optimizer steps; ``--train_types simple --epochs 2``
is the control with the same steps and learning-rate schedule as mixed (its setting names carry
``-ep2``). Finished runs are skipped; an interrupted training resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import time

from common import EMBEDDER, MODEL, RESULTS, RUNS, append_result, data_dir, done, save_scores, test_subset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--shots", type=int, default=512)
    parser.add_argument("--K", type=int, default=10)
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--train_types", nargs="+", choices=["simple", "mixed"], default=["simple", "mixed"])
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--total_batch_size", type=int, default=32)
    parser.add_argument("--train_batch_size", type=int, default=4)
    parser.add_argument("--score_batch_size", type=int, default=8)
    parser.add_argument("--bf16", action="store_true", help="bf16 training and scoring (GPUs that support it).")
    args = parser.parse_args()

    from peft import PeftModel

    import rella_hf
    from rella_hf.metrics import ctr_metrics
    from rella_hf.models import load_model
    from rella_hf.scoring import CTRScorer, score_dataset
    from rella_hf.training import ReiTConfig, run_training

    results_file = RESULTS / "few_shot.jsonl"
    run_dir = RUNS / args.dataset
    common = dict(data_dir=data_dir(args.dataset), embedder=EMBEDDER, chat_model=MODEL)
    subsets = {
        "recent": test_subset(rella_hf.load_dataset(args.dataset, K=args.K, retrieval="recent", **common)["test"]),
        "semantic": test_subset(rella_hf.load_dataset(args.dataset, K=args.K, retrieval="semantic", **common)["test"]),
    }
    for seed in args.seeds:
        for train_type in args.train_types:
            epochs_tag = "" if args.epochs == 1 else f"-ep{args.epochs:g}"
            name = f"{train_type}-N{args.shots}-K{args.K}{epochs_tag}-seed{seed}"
            wanted = [f"{args.dataset}/{name}/test-{kind}" for kind in subsets]
            if all(setting in done(results_file) for setting in wanted):
                continue
            adapter_dir = run_dir / "train" / name
            start = time.perf_counter()
            if not (adapter_dir / "adapter_model.safetensors").exists():
                run_training(ReiTConfig(
                    output_dir=str(adapter_dir), dataset=args.dataset, data_dir=common["data_dir"], K=args.K,
                    train_type=train_type, test_type="sequential", shots=args.shots, embedder=EMBEDDER,
                    model_name_or_path=MODEL, num_train_epochs=args.epochs, per_device_train_batch_size=args.train_batch_size,
                    total_batch_size=args.total_batch_size, learning_rate=1e-3, lr_scheduler_type="linear",
                    eval_size=0, eval_strategy="no", save_strategy="steps", save_steps=8, save_total_limit=1,
                    logging_steps=1, seed=seed, report_to="none", resume=True, bf16=args.bf16 or None,
                ))
            train_seconds = time.perf_counter() - start
            model, tokenizer = load_model(MODEL, dtype="bfloat16" if args.bf16 else None)
            tuned = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
            scorer = CTRScorer(tuned, tokenizer, batch_size=args.score_batch_size)
            for kind, subset in subsets.items():
                setting = f"{args.dataset}/{name}/test-{kind}"
                if setting in done(results_file):
                    continue
                scored = score_dataset(scorer, subset, output_dir=run_dir / "partial" / f"{name}-test-{kind}")
                meta = {"stage": f"few-shot {train_type}", "dataset": args.dataset, "K": args.K, "retrieval": kind,
                        "shots": args.shots, "epochs": args.epochs, "seed": seed, "model": MODEL}
                save_scores(run_dir, f"{name}-test-{kind}", scored["label"], scored["score"], meta)
                metrics = ctr_metrics(scored["label"], scored["score"])
                append_result(results_file, {"setting": setting, **meta, **metrics, "train_seconds": round(train_seconds, 1),
                                             "sample_ids_head": scored["sample_id"][:5]})
                print(setting, {key: round(value, 4) for key, value in metrics.items()}, flush=True)


if __name__ == "__main__":
    main()
