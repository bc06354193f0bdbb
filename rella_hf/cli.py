"""The ``rella-hf`` command line: thin subcommands over the library.

Each subcommand's options are a dataclass parsed by ``transformers.HfArgumentParser`` (so
``--help`` lists every option with its default). Errors are one line without a traceback
(``--debug`` shows it); exit codes: 0 ok, 1 failure, 2 usage or bad input.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command-line input detected by the CLI itself (exit code 2)."""


@dataclass
class DatasetArguments:
    """Which ReLLa prompt dataset (see ``rella_hf.builders.ReLLaConfig``)."""

    dataset: str = field(default="ml-latest-small", metadata={"help": "Corpus: ml-1m, ml-25m, ml-20m, ml-32m, ml-latest, ml-latest-small, ml-100k, BookCrossing, or a published repo/folder 'org/name'."})
    data_dir: Optional[str] = field(default=None, metadata={"help": "Folder with the corpus's original release files (None: download; ml-latest-small is bundled)."})
    K: int = field(default=5, metadata={"help": "History items shown per prompt."})
    retrieval: str = field(default="recent", metadata={"help": "recent (K most recent) or semantic (SUBR: K most similar to the target)."})
    order: str = field(default="chronological", metadata={"help": "SUBR order: chronological or similarity (most similar last)."})
    history_format: str = field(default="list", metadata={"help": "list (the paper's) or lines (one item per line)."})
    embedder: str = field(default="minilm", metadata={"help": "SUBR item embedder: minilm, smollm2, or a model name/path."})
    pooling: str = field(default="average", metadata={"help": "Pooling of LM embedders: average or last."})
    pca_dim: Optional[int] = field(default=None, metadata={"help": "PCA dimensions of item embeddings (paper: 512); None keeps them."})
    chat_model: Optional[str] = field(default="smollm2-135m-instruct", metadata={"help": "Tokenizer whose chat template wraps prompts; 'none' for Vicuna v1.1."})
    max_prompt_tokens: Optional[int] = field(default=None, metadata={"help": "Drop least relevant history items until the wrapped prompt fits."})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "datasets cache folder (default: the datasets cache)."})

    def load(self, split=None):
        """Build or load the dataset these options describe."""
        import rella_hf

        if self.K <= 0:
            raise UsageError(f"--K {self.K}: K must be a positive number of history items")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise UsageError(f"--data_dir {self.data_dir}: no such folder")
        options = {name: value for name, value in asdict(self).items() if name not in ("dataset", "data_dir", "cache_dir", "K", "retrieval")}
        if options["chat_model"] in ("none", "None", ""):
            options["chat_model"] = None
        for option in ("chat_model", "embedder"):
            _check_local_model(f"--{option}", options[option])
        published = "/" in self.dataset and not self.dataset.lower().startswith("rella/")
        if published:
            options = {"order": self.order}
        return rella_hf.load_dataset(self.dataset, K=self.K, retrieval=self.retrieval, split=split,
                                     data_dir=self.data_dir, cache_dir=self.cache_dir, **options)


def _check_local_model(option: str, value: Optional[str]) -> None:
    """A model given as a path (``./x``, ``/x``, ``~/x``) must be an existing folder (not read as a Hub id)."""
    if value is None:
        return
    name = value.split(":", 1)[1] if value.startswith(("st:", "hf:")) else value
    if name.startswith((".", "/", "~")):
        path = Path(name).expanduser()
        if not path.is_dir():
            raise UsageError(f"{option} {value}: {'not a folder' if path.exists() else 'no such folder'}; "
                             "expected a local model folder, a Hub id 'org/name' or a shipped alias")


def _check_output_folder(option: str, value: Optional[str]) -> None:
    """An output folder may be new or an existing folder, never an existing file."""
    if value is not None and Path(value).exists() and not Path(value).is_dir():
        raise UsageError(f"{option} {value}: is a file; expected a folder (new or existing)")


def _save_atomically(folder: str, save) -> None:
    """Call ``save(temporary_folder)`` and move the result to ``folder``: a failed save leaves nothing."""
    import shutil
    import tempfile

    target = Path(folder)
    if target.exists() and any(target.iterdir()) and not (target / "dataset_dict.json").exists():
        raise UsageError(f"{folder}: exists and does not hold a saved dataset; choose a new folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial"))
    try:
        save(scratch / "out")
        if target.exists():
            shutil.rmtree(target)
        os.replace(scratch / "out", target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class BuildArguments:
    """rella-hf build: build a prompt dataset and optionally save or export it."""

    output_dir: Optional[str] = field(default=None, metadata={"help": "Save the DatasetDict here (datasets.save_to_disk)."})
    export_dir: Optional[str] = field(default=None, metadata={"help": "Export as a Hub dataset folder (parquet configs + card)."})
    permission_to_redistribute: bool = field(default=False, metadata={"help": "With --export_dir: assert you may redistribute a corpus whose licence forbids it."})


@dataclass
class EmbedArguments:
    """rella-hf embed: compute (or load cached) item embeddings of a corpus."""

    dataset: str = field(default="ml-latest-small", metadata={"help": "Corpus name."})
    data_dir: Optional[str] = field(default=None, metadata={"help": "Folder with the corpus files."})
    embedder: str = field(default="minilm", metadata={"help": "minilm, smollm2, or a model name/path."})
    pooling: str = field(default="average", metadata={"help": "average or last (LM embedders)."})
    pca_dim: Optional[int] = field(default=None, metadata={"help": "PCA dimensions; None keeps the model's."})
    output: Optional[str] = field(default=None, metadata={"help": "Write the [items x dim] float32 matrix here (.npy) and the item ids beside it."})


@dataclass
class ScoreArguments:
    """rella-hf score: zero-shot (or adapter) CTR scores of a split, and their metrics."""

    model: str = field(default="smollm2-135m-instruct", metadata={"help": "Causal LM: Hub id, local folder, or the offline smollm2-135m-instruct."})
    adapter: Optional[str] = field(default=None, metadata={"help": "LoRA adapter folder or Hub repo to apply to --model."})
    split: str = field(default="test", metadata={"help": "Split to score."})
    limit: Optional[int] = field(default=None, metadata={"help": "Score a seeded subset of this many samples (None: all)."})
    seed: int = field(default=42, metadata={"help": "Seed of the subset."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per forward pass."})
    output_dir: str = field(default="runs/score", metadata={"help": "Run folder: scores/<setting>.jsonl (resumable) and metrics."})
    setting: Optional[str] = field(default=None, metadata={"help": "Name of this setting in the run folder (default: K<K>-<retrieval>[-adapter])."})


@dataclass
class TrainArguments:
    """rella-hf train: ReiT LoRA training from a trainer_configs YAML (other options override it)."""

    config: str = field(metadata={"help": "YAML of rella_hf.training.ReiTConfig fields, e.g. trainer_configs/demo-cpu.yaml."})
    accelerate_config: Optional[str] = field(default=None, metadata={"help": "Relaunch with accelerate: a YAML path or a shipped name (single_gpu, multi_gpu, multi_cpu, deepspeed_zero2, deepspeed_zero3)."})


@dataclass
class EvaluateArguments:
    """rella-hf evaluate: AUC / LogLoss / ACC (with bootstrap intervals) of saved scores."""

    scores: str = field(metadata={"help": "A scores/<setting>.jsonl file, a scores.parquet, or a run folder (all its settings)."})
    bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples for 95 percent intervals (0: none)."})


@dataclass
class PushArguments:
    """rella-hf push: publish a trained adapter, or a built dataset (with the dataset options)."""

    repo_id: str = field(metadata={"help": "Hub repo 'org/name'."})
    adapter_dir: Optional[str] = field(default=None, metadata={"help": "Training output folder to publish as an adapter; omit to publish the dataset described by the dataset options."})
    permission_to_redistribute: bool = field(default=False, metadata={"help": "Assert you may redistribute a corpus whose licence forbids it."})
    private: bool = field(default=False, metadata={"help": "Create the repo private."})
    dry_run: bool = field(default=False, metadata={"help": "Print the upload plan (files, repo, config) without uploading."})


@dataclass
class ReportArguments:
    """rella-hf report: markdown report with plots from a run folder."""

    run_dir: str = field(metadata={"help": "Run folder with scores/*.jsonl (and train/*/metrics.json)."})
    title: Optional[str] = field(default=None, metadata={"help": "Report title."})
    bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples for intervals (0: none)."})


def _parse(dataclass_types, argv, prog):
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_types, prog=prog)
    parser.add_argument("--debug", action="store_true", help="Show the full traceback on errors.")
    parsed = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if parsed[-1]:
        raise UsageError(f"unknown option(s) {' '.join(parsed[-1])}; see {prog} --help")
    return parsed[:-1]


def _print_json(payload) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=float))


def cmd_build(argv):
    data, build, _ = _parse((DatasetArguments, BuildArguments), argv, "rella-hf build")
    _check_output_folder("--output_dir", build.output_dir)
    _check_output_folder("--export_dir", build.export_dir)
    ds = data.load()
    print(ds)
    if build.output_dir:
        _save_atomically(build.output_dir, lambda folder: ds.save_to_disk(str(folder)))
        print(f"saved to {build.output_dir}")
    if build.export_dir:
        from .hub import config_name_for, export_dataset

        export_dataset(ds, build.export_dir, config_name=config_name_for(data.K, data.retrieval, data.order),
                       permission_to_redistribute=build.permission_to_redistribute)
        print(f"exported to {build.export_dir}")


def cmd_embed(argv):
    args, _ = _parse((EmbedArguments,), argv, "rella-hf embed")
    import numpy as np

    from .builders.base import ReLLaConfig, item_embeddings
    from .samples import load_samples

    if args.output is not None and (Path(args.output).is_dir() or not args.output.endswith(".npy")):
        raise UsageError(f"--output {args.output}: expected a file name ending in .npy")
    _check_local_model("--embedder", args.embedder)
    samples = load_samples(args.dataset, data_dir=args.data_dir)
    config = ReLLaConfig(name="embed", retrieval="semantic", embedder=args.embedder, pooling=args.pooling,
                         pca_dim=args.pca_dim)
    vectors = item_embeddings(samples, config)
    print(f"{vectors.shape[0]:,} items x {vectors.shape[1]} dims ({args.embedder}, cached under the rella-hf cache)")
    if args.output:
        from .utils import atomic_save_npy, atomic_write_text

        atomic_save_npy(args.output, vectors)
        atomic_write_text(Path(args.output).with_suffix(".item_ids.json"), json.dumps(samples.items["item_id"].tolist()))
        print(f"wrote {args.output}")


def cmd_score(argv):
    data, args, _ = _parse((DatasetArguments, ScoreArguments), argv, "rella-hf score")
    from .demo import fixed_subset
    from .metrics import ctr_metrics
    from .models import load_model
    from .report import write_scores
    from .scoring import CTRScorer, score_dataset

    from .utils import check_name

    if args.adapter is None and not _model_reachable(args.model):
        raise UsageError(f"--model {args.model}: not a readable model folder, the offline alias or a Hub id")
    setting = check_name(args.setting, "--setting") if args.setting else None
    _check_output_folder("--output_dir", args.output_dir)
    if args.adapter:
        _check_adapter(args.adapter)
    dataset = data.load(split=args.split)
    if args.limit is not None:
        dataset = fixed_subset(dataset, args.limit, args.seed)
    if args.adapter:
        from .hub import load_adapter

        with _model_loading("--adapter", args.adapter):
            scorer = load_adapter(args.adapter, base_model=args.model, batch_size=args.batch_size)
    else:
        with _model_loading("--model", args.model):
            model, tokenizer = load_model(args.model)
        scorer = CTRScorer(model, tokenizer, batch_size=args.batch_size)
    setting = setting or f"K{data.K}-{data.retrieval}" + ("-adapter" if args.adapter else "")
    run_dir = Path(args.output_dir)
    scored = score_dataset(scorer, dataset, output_dir=run_dir / "partial" / setting)
    write_scores(run_dir, setting, scored["label"], scored["score"],
                 {"stage": "adapter" if args.adapter else "zero-shot", "K": data.K, "retrieval": data.retrieval,
                  "dataset": data.dataset, "model": args.model, "adapter": args.adapter},
                 raw_prompts=scored["raw_prompt"] if "raw_prompt" in scored.column_names else None)
    _print_json({setting: ctr_metrics(scored["label"], scored["score"])})


def _check_adapter(source: str) -> None:
    """A local adapter folder needs its config and a readable weights file (checked before any model loads)."""
    folder = Path(source)
    if not folder.exists():
        if source.startswith((".", "/", "~")):
            raise UsageError(f"--adapter {source}: no such folder; expected a training output folder or a Hub repo id")
        return  # a Hub repo id
    if not folder.is_dir() or not (folder / "adapter_config.json").is_file():
        raise UsageError(f"--adapter {source}: not an adapter folder; expected adapter_config.json and adapter_model.safetensors in it")
    weights = folder / "adapter_model.safetensors"
    if weights.exists():
        from safetensors import safe_open

        try:
            with safe_open(str(weights), framework="numpy") as handle:
                handle.keys()
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
            raise UsageError(f"--adapter {source}: {weights.name} is corrupt or cut ({str(error).splitlines()[0][:80]}); "
                             "copy or train the adapter again") from None


class _model_loading:
    """Turn a model that cannot be loaded from a user-given path into a usage error (exit 2)."""

    def __init__(self, option: str, value: str):
        self.option, self.value = option, value

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        from .errors import RellaError

        if error is None or isinstance(error, (RellaError, UsageError)) or not isinstance(error, (OSError, ValueError)):
            return False
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"{self.option} {self.value}: cannot be loaded ({first[:160]}); "
                         "expected a complete model folder (config.json, weights, tokenizer) or a Hub id") from error


def _model_reachable(name: str) -> bool:
    if name.lower().startswith(("smollm2", "tiny-random-llama")):
        return True
    path = Path(name)
    if path.exists():
        return path.is_dir() and os.access(path, os.R_OK) and (path / "config.json").exists()
    return "/" in name and not name.startswith((".", "/"))  # a Hub id


def cmd_train(argv):
    # Everything but --accelerate_config goes to the training's own TrlParser (YAML + overrides).
    if any(flag in argv for flag in ("-h", "--help")):
        from .training import make_parser

        print("usage: rella-hf train --config YAML [--accelerate_config NAME_OR_YAML] [--<ReiTConfig field> VALUE ...]\n")
        print("  --accelerate_config: relaunch with accelerate (a YAML, or one of single_gpu, multi_gpu, multi_cpu, "
              "deepspeed_zero2, deepspeed_zero3 shipped with rella-hf). Default: None (this process).\n")
        make_parser().print_help()
        return
    launcher, rest = None, []
    iterator = iter(argv)
    for token in iterator:
        if token == "--accelerate_config":
            launcher = next(iterator, None)
        elif token.startswith("--accelerate_config="):
            launcher = token.split("=", 1)[1]
        else:
            rest.append(token)
    if "--config" not in rest and not any(token.startswith("--config=") for token in rest):
        raise UsageError("rella-hf train needs --config trainer_configs/<setting>.yaml")
    if launcher:
        import subprocess

        config_file = Path(launcher)
        if not config_file.exists():
            config_file = Path(__file__).resolve().parent / "accelerate_configs" / f"{launcher}.yaml"
        if not config_file.exists():
            raise UsageError(f"--accelerate_config {launcher}: neither a file nor a shipped config name")
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
                   "-m", "rella_hf.cli", "train", *rest]
        raise SystemExit(subprocess.call(command))
    from .errors import RellaError
    from .training import parse_config, run_training

    try:
        config = parse_config(rest)
    except RellaError:
        raise
    except ValueError as error:  # the parser's "arguments not used" (an unknown key) and TrainingArguments' checks
        raise UsageError(f"{' '.join(rest)}: {str(error).splitlines()[0] if str(error) else 'invalid'}; "
                         "see rella-hf train --help for the fields") from error
    _check_output_folder("output_dir", config.output_dir)
    result = run_training(config)
    if config.process_index == 0:
        _print_json({"output_dir": str(result.output_dir), "final_eval": result.metrics.get("final_eval", {})})


def cmd_evaluate(argv):
    args, _ = _parse((EvaluateArguments,), argv, "rella-hf evaluate")
    import numpy as np

    from .metrics import ctr_metrics
    from .report import bootstrap_interval, load_settings

    path = Path(args.scores)
    if path.is_dir():
        settings = load_settings(path)
        pairs = {name: (data["labels"], data["scores"]) for name, data in settings.items()}
    elif path.suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(path)
        pairs = {path.stem: (frame["label"].to_numpy(), frame["score"].to_numpy())}
    elif path.suffix == ".jsonl":
        from .report import _read_score_rows

        if not path.is_file():
            raise UsageError(f"--scores {args.scores}: no such file")
        rows = _read_score_rows(path)
        pairs = {path.stem: (np.array([r["label"] for r in rows]), np.array([r["score"] for r in rows]))} if rows else {}
    else:
        raise UsageError(f"--scores {args.scores}: expected a run folder, a .jsonl or a .parquet file")
    if not pairs:
        raise UsageError(f"--scores {args.scores}: no scores found")
    results = {}
    for name, (labels, scores) in pairs.items():
        results[name] = ctr_metrics(labels, scores)
        if args.bootstrap:
            results[name].update({f"{key}_ci": value for key, value in bootstrap_interval(labels, scores, args.bootstrap).items()})
    _print_json(results)


def cmd_push(argv):
    data, args, _ = _parse((DatasetArguments, PushArguments), argv, "rella-hf push")
    from .hub import config_name_for, push_adapter, push_dataset

    if args.adapter_dir:
        if not Path(args.adapter_dir).is_dir():
            raise UsageError(f"--adapter_dir {args.adapter_dir}: no such folder")
        plan = push_adapter(args.adapter_dir, args.repo_id, private=args.private, dry_run=args.dry_run)
    else:
        plan = push_dataset(data.load(), args.repo_id, config_name_for(data.K, data.retrieval, data.order),
                            permission_to_redistribute=args.permission_to_redistribute, private=args.private,
                            dry_run=args.dry_run)
    print(plan)


def cmd_report(argv):
    args, _ = _parse((ReportArguments,), argv, "rella-hf report")
    from .report import write_report

    if not Path(args.run_dir).is_dir():
        raise UsageError(f"--run_dir {args.run_dir}: no such folder")
    print(write_report(args.run_dir, title=args.title, n_resamples=args.bootstrap))


def cmd_demo(argv):
    from .demo import DemoConfig, run_demo

    (config, _) = _parse((DemoConfig,), argv, "rella-hf demo")
    report = run_demo(config)
    print(f"report: {report}")
    metrics = json.loads(Path(report).with_name("metrics.json").read_text())
    for name, values in metrics.items():
        print(f"{name:24s} AUC {values['auc']:.4f}  LogLoss {values['logloss']:.4f}  ACC {values['acc']:.4f}")
    comparisons = Path(report).with_name("comparisons.json")
    for row in json.loads(comparisons.read_text()) if comparisons.is_file() else []:
        low, high = row["ci"]
        verdict = "interval excludes 0" if row["excludes_zero"] else "interval includes 0: no significant difference"
        print(f"{row['a']} vs {row['b']}: AUC {row['difference']:+.4f} [{low:+.4f}, {high:+.4f}] ({verdict})")


COMMANDS = {
    "build": (cmd_build, "Build a ReLLa prompt dataset (recent or SUBR histories)."),
    "embed": (cmd_embed, "Compute or load cached item embeddings."),
    "score": (cmd_score, "Zero-shot or adapter CTR scores of a split, with metrics."),
    "train": (cmd_train, "ReiT LoRA training from a YAML config (optionally under accelerate)."),
    "evaluate": (cmd_evaluate, "Metrics with bootstrap intervals of saved scores."),
    "push": (cmd_push, "Publish a dataset or an adapter on the Hub (or --dry_run)."),
    "report": (cmd_report, "Markdown report with plots from a run folder."),
    "demo": (cmd_demo, "The end-to-end demo on the bundled data and offline model."),
}


def _usage() -> str:
    lines = ["usage: rella-hf <command> [options] [--debug]", "", "commands:"]
    lines += [f"  {name:9s} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "rella-hf <command> --help lists every option with its default."]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Entry point of ``rella-hf``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return EXIT_OK if argv else EXIT_USAGE
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"rella-hf: error: unknown command {name!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_USAGE
    debug = "--debug" in rest
    rest = [token for token in rest if token != "--debug"]

    try:
        COMMANDS[name][0](rest)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2, message already printed)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        print(f"rella-hf {name}: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as error:  # noqa: BLE001 - the CLI's contract is one line, not a traceback
        if debug:
            raise
        mistake = user_mistake(error)
        if mistake is not None:
            print(f"rella-hf {name}: error: {_one_line(mistake)}", file=sys.stderr)
            return EXIT_USAGE
        print(f"rella-hf {name}: error: {type(error).__name__}: {_one_line(str(error))} "
              "(this is a bug in rella-hf or a library; rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


_FILE_MISTAKES = (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError)
#: Library errors that mean bad input, by class name (their modules are not imported for this).
_MISTAKE_CLASSES = {
    "HFValidationError": "not an existing local path, nor a valid Hub repo id 'org/name'",
    "RepositoryNotFoundError": "no such Hub repository (or it is private); check the name or pass a local folder",
    "SafetensorError": "a .safetensors file is corrupt or cut; copy or write it again",
    "YAMLError": "not valid YAML; fix the config file",
}


def user_mistake(error: BaseException) -> Optional[str]:
    """The one-line message of an error caused by the user's input, or None for a bug (exit 1)."""
    from .errors import RellaError

    if isinstance(error, (UsageError, RellaError)):
        return str(error) or type(error).__name__
    if isinstance(error, _FILE_MISTAKES):
        where = f"{error.filename}: " if getattr(error, "filename", None) else ""
        return f"{where}{error.strerror or error}"
    for kind in type(error).__mro__:
        if kind.__name__ in _MISTAKE_CLASSES:
            return f"{_one_line(str(error))}: {_MISTAKE_CLASSES[kind.__name__]}"
    return None


def _one_line(message: str, limit: int = 600) -> str:
    """The first non-empty line of ``message``, at most ``limit`` characters."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return first if len(first) <= limit else f"{first[:limit]}... ({len(first):,} characters)"


if __name__ == "__main__":
    sys.exit(main())
