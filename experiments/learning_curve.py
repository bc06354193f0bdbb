"""Learning curves of ReiT: test AUC against the number of training samples N (the paper's figure on N).

    python experiments/learning_curve.py                                   # ml-latest-small, N = 512
    python experiments/learning_curve.py --shots 512 2048 8192 --seeds 42 43
    python experiments/learning_curve.py --dataset ml-1m --shots 512 2048

Every point is one :mod:`recipe` run with ``--test`` (validation-AUC checkpoint selection, then the
fixed 1,000-sample test subset scored with recent-K and SUBR prompts), so a point killed mid-way
resumes from its last checkpoint when this script is started again, and finished points are
skipped (their JSON line is in ``results/recipe.jsonl``). Per N and seed two runs share the
optimizer-step budget: ReiT ``mixed`` (2N rows: recent-K and SUBR prompt of each sample) for
``--epochs`` epochs, and ``simple`` (N rows, recent-K prompts) for twice as many epochs. The recipe
(learning rate, LoRA targets and rank, batch, K) defaults to the best of the recipe search in
``RESULTS.md``. ``analyze.py`` draws the curves with their 95 % intervals and the paired
comparisons.
"""

from __future__ import annotations

import argparse

import recipe


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-latest-small")
    parser.add_argument("--shots", type=int, nargs="+", default=[512], help="N values (samples; mixed trains 2N rows)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--train_types", nargs="+", choices=["mixed", "simple"], default=["mixed", "simple"])
    parser.add_argument("--K", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--targets", choices=sorted(recipe.LORA_TARGETS), default="all")
    parser.add_argument("--lora_r", type=int, default=16)
    parser.add_argument("--finetuning", choices=["lora", "full"], default="lora",
                        help="full: the decoder layers' own weights (points named lc-K5-full15-...)")
    parser.add_argument("--top_layers", type=int, default=None, help="train only the last this-many decoder layers")
    parser.add_argument("--total_batch_size", type=int, default=16)
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs of the mixed run (simple runs twice as many)")
    parser.add_argument("--eval_every", type=int, default=16)
    parser.add_argument("--eval_size", type=int, default=200)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--collaborative", choices=["none", "item", "item+user", "all"], default="none",
                        help="collaborative statistics in the prompts (ours, not the paper's; points named -collab-<mode>)")
    parser.add_argument("--collaborative_ids", action="store_true",
                        help="the CoLLM route (ours): matrix-factorisation soft tokens for user and item (points named -ids)")
    parser.add_argument("--id_projector_lr", type=float, default=1e-3)
    parser.add_argument("--validation_scores", action="store_true",
                        help="score finished points' validation subsets for calibrate_runs.py (runs before the calibration hook)")
    return parser.parse_args(argv)


def point_name(args, train_type: str, shots: int, seed: int) -> str:
    """Run name of one point; ``analyze.py`` parses it back (``lc-K5-mixed-N512-seed42`` for LoRA,
    ``lc-K5-full15-mixed-N512-seed42`` for full fine-tuning of the top 15 layers, ``full`` for all;
    ``-ep4`` after N when the mixed run trains 4 epochs instead of 1; ``-collab-item+user`` before the
    seed for collaborative prompts; ``-ids`` after it for collaborative tokens (``-ids3e-4`` for another
    projector learning rate); ``-val1000`` when validation scores other than 200 samples)."""
    plain_lora = args.finetuning == "lora" and not args.top_layers  # the original points keep their names
    method = "" if plain_lora else f"{args.finetuning}{args.top_layers or ''}-"
    epochs = "" if args.epochs == 1 else f"-ep{args.epochs:g}"  # the mixed run's epochs; simple runs twice as many
    collaborative = "" if args.collaborative == "none" else f"-collab-{args.collaborative}"
    if args.collaborative_ids:
        collaborative += "-ids" if args.id_projector_lr == 1e-3 else f"-ids{args.id_projector_lr:g}"
    validation = "" if args.eval_size == 200 else f"-val{args.eval_size}"
    return f"lc-K{args.K}-{method}{train_type}-N{shots}{epochs}{collaborative}{validation}-seed{seed}"


def main(argv=None) -> None:
    args = parse_args(argv)
    for shots in args.shots:
        for seed in args.seeds:
            for train_type in args.train_types:
                epochs = args.epochs if train_type == "mixed" else 2 * args.epochs  # equal optimizer steps
                recipe.main([
                    "--name", point_name(args, train_type, shots, seed), "--dataset", args.dataset,
                    "--K", str(args.K), "--train_type", train_type, "--shots", str(shots), "--seed", str(seed),
                    "--lr", str(args.lr), "--targets", args.targets, "--lora_r", str(args.lora_r),
                    "--total_batch_size", str(args.total_batch_size), "--epochs", str(epochs),
                    "--eval_every", str(args.eval_every), "--eval_size", str(args.eval_size),
                    "--patience", str(args.patience), "--finetuning", args.finetuning, "--test",
                    "--collaborative", args.collaborative, *(["--validation_scores"] if args.validation_scores else []),
                    *(["--collaborative_ids", "--id_projector_lr", str(args.id_projector_lr)]
                      if args.collaborative_ids else []),
                    *(["--top_layers", str(args.top_layers)] if args.top_layers else []),
                ])


if __name__ == "__main__":
    main()
