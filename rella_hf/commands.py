"""The ``rella-hf`` subcommands: one options dataclass and one small function per command.

Each subcommand's options are dataclasses parsed by ``transformers.HfArgumentParser`` (so
``--help`` lists every option with its default); the dataset options are
:class:`rella_hf.options.ReLLaDataArguments`, the same ones the library, the training config and
the demo use. The work is done by the library; :mod:`rella_hf.cli` only dispatches and turns
errors into one line and an exit code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .options import ReLLaDataArguments


class UsageError(Exception):
    """Bad command-line input detected by the CLI itself (exit code 2)."""


def load_data(data: ReLLaDataArguments, split=None, engine: str = "inprocess", spark_master: Optional[str] = None):
    """Build or load the dataset the dataset options describe, after the CLI's own checks of paths
    (``engine``, ``spark_master``: see :func:`rella_hf.load_dataset`)."""
    from . import ENGINES
    from .loading import load_from_arguments

    if data.data_dir is not None and not Path(data.data_dir).is_dir():
        raise UsageError(f"--data_dir {data.data_dir}: no such folder")
    for option in ("chat_model", "embedder"):
        _check_local_model(f"--{option}", getattr(data, option))
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine}: expected one of {', '.join(ENGINES)}")
    if spark_master is not None and engine != "spark":
        raise UsageError("--spark_master needs --engine spark")
    if engine == "inprocess":
        return load_from_arguments(data, split=split)
    from . import load_dataset

    options = data.build_options()
    K, retrieval = options.pop("K"), options.pop("retrieval")
    return load_dataset(data.dataset, K=K, retrieval=retrieval, split=split, data_dir=data.data_dir,
                        cache_dir=data.cache_dir, engine=engine, spark_master=spark_master, **options)


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

    output_dir: Optional[str] = field(default=None, metadata={
        "help": "Save the DatasetDict here (datasets.save_to_disk)."})
    export_dir: Optional[str] = field(default=None, metadata={
        "help": "Export as a Hub dataset folder (parquet configs + card)."})
    permission_to_redistribute: bool = field(default=False, metadata={
        "help": "With --export_dir: assert you may redistribute a corpus whose licence forbids it."})
    engine: str = field(default="inprocess", metadata={
        "help": "inprocess (the corpus in this process) or spark (the same rows built on Apache Spark; "
                "needs rella-hf[spark] and Java 17+)."})
    spark_master: Optional[str] = field(default=None, metadata={
        "help": "With --engine spark: the Spark master URL (default local[2])."})


@dataclass
class EmbedArguments:
    """rella-hf embed: compute (or load cached) item embeddings of a corpus (dataset, data_dir, embedder,
    pooling and pca_dim are the dataset options)."""

    output: Optional[str] = field(default=None, metadata={
        "help": "Write the [items x dim] float32 matrix here (.npy) and the item ids beside it."})


@dataclass
class ScoreArguments:
    """rella-hf score: zero-shot (or adapter) CTR scores of a split, and their metrics."""

    model: str = field(default="smollm2-135m-instruct", metadata={
        "help": "Causal LM: Hub id, local folder, or the offline smollm2-135m-instruct."})
    adapter: Optional[str] = field(default=None, metadata={"help": "LoRA adapter folder or Hub repo to apply to --model."})
    split: str = field(default="test", metadata={"help": "Split to score."})
    limit: Optional[int] = field(default=None, metadata={"help": "Score a seeded subset of this many samples (None: all)."})
    seed: int = field(default=42, metadata={"help": "Seed of the subset."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per forward pass."})
    output_dir: str = field(default="runs/score", metadata={
        "help": "Run folder: scores/<setting>.jsonl (resumable) and metrics."})
    setting: Optional[str] = field(default=None, metadata={
        "help": "Name of this setting in the run folder (default: K<K>-<retrieval>[-adapter])."})
    calibration: Optional[str] = field(default=None, metadata={
        "help": "calibration.json (or its folder) fitted for this model by rella-hf calibrate; adds score_calibrated "
                "beside the raw score (an adapter's own calibration.json is applied without this)."})


@dataclass
class TrainArguments:
    """rella-hf train: ReiT LoRA training from a trainer_configs YAML (other options override it)."""

    config: str = field(metadata={
        "help": "YAML of rella_hf.training.ReiTConfig fields, e.g. trainer_configs/demo-cpu.yaml."})
    accelerate_config: Optional[str] = field(default=None, metadata={
        "help": "Launch with accelerate: a YAML path or a shipped name (single_gpu, multi_gpu, multi_cpu, "
                "deepspeed_zero2, deepspeed_zero3)."})


@dataclass
class EvaluateArguments:
    """rella-hf evaluate: AUC / LogLoss / ACC / Brier / ECE (with bootstrap intervals) of saved scores, raw and
    (where saved) calibrated."""

    scores: str = field(metadata={
        "help": "A scores/<setting>.jsonl file, a scores.parquet, or a run folder (all its settings)."})
    bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples for 95 percent intervals (0: none)."})


@dataclass
class PushArguments:
    """rella-hf push: publish a trained adapter, or a built dataset (with the dataset options)."""

    repo_id: str = field(metadata={"help": "Hub repo 'org/name'."})
    adapter_dir: Optional[str] = field(default=None, metadata={
        "help": "Training output folder to publish as an adapter; omit to publish the dataset described by the "
                "dataset options."})
    permission_to_redistribute: bool = field(default=False, metadata={
        "help": "Assert you may redistribute a corpus whose licence forbids it."})
    private: bool = field(default=False, metadata={"help": "Create the repo private."})
    base_model: Optional[str] = field(default=None, metadata={
        "help": "With --adapter_dir: Hub id of the base model to record (default: from the training config; the "
                "offline SmolLM2 route records HuggingFaceTB/SmolLM2-135M-Instruct)."})
    dataset_repo_id: Optional[str] = field(default=None, metadata={
        "help": "With --adapter_dir: Hub dataset repo of the training data (card metadata and model-index results)."})
    revision: Optional[str] = field(default=None, metadata={
        "help": "Branch to commit to (created when missing); default: the main branch."})
    create_pr: bool = field(default=False, metadata={
        "help": "Open a pull request instead of committing to the branch."})
    dry_run: bool = field(default=False, metadata={
        "help": "Print the upload plan (files, repo, config) without uploading."})


@dataclass
class CalibrateArguments:
    """rella-hf calibrate: fit calibration.json for an adapter (or a base model) on a labelled validation split."""

    model: str = field(default="smollm2-135m-instruct", metadata={
        "help": "Causal LM: Hub id, local folder (a full fine-tune's output folder too), or the offline alias."})
    adapter: Optional[str] = field(default=None, metadata={
        "help": "Local adapter folder to calibrate; calibration.json is written into it."})
    method: str = field(default="platt", metadata={
        "help": "platt (a*z+b), temperature (z/T), isotonic, or content_free (no labels: Zhao et al. 2021).",
        "choices": ["platt", "temperature", "isotonic", "content_free"]})
    split: str = field(default="validation", metadata={
        "help": "Labelled split to fit on (the test split is refused; content_free reads only its prompts)."})
    limit: Optional[int] = field(default=1000, metadata={"help": "Fit on a seeded subset of this many samples."})
    seed: int = field(default=42, metadata={"help": "Seed of the subset."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per forward pass."})
    scores: Optional[str] = field(default=None, metadata={
        "help": "Fit on saved scores of the split instead (a scores/<setting>.jsonl or .parquet of this model)."})
    output_dir: Optional[str] = field(default=None, metadata={
        "help": "Folder for calibration.json (default: --adapter, or --model when it is a local folder)."})


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
    if ReLLaDataArguments in dataclass_types:
        parser.add_argument("--config", default=None, help="YAML of dataset options (e.g. my_data.yaml for "
                            "--dataset interactions); options given as flags override it.")
        _config_defaults(parser, argv, prog)
    parsed = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if parsed[-1]:
        raise UsageError(f"unknown option(s) {' '.join(parsed[-1])}; see {prog} --help")
    return parsed[:-1]


def _config_defaults(parser, argv, prog) -> None:
    """The ``--config`` YAML's keys become the parser's defaults, so flags on the command line override them."""
    import yaml

    path = next((argv[index + 1] for index, token in enumerate(argv[:-1]) if token == "--config"), None)
    path = path or next((token.split("=", 1)[1] for token in argv if token.startswith("--config=")), None)
    if path is None:
        return
    try:
        values = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise UsageError(f"--config {path}: could not be read as YAML ({error})") from None
    if not isinstance(values, dict):
        raise UsageError(f"--config {path}: expected a mapping of option names to values")
    known = {action.dest for action in parser._actions} - {"help", "config", "debug"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"--config {path}: unknown option(s) {', '.join(unknown)}; see {prog} --help")
    parser.set_defaults(**values)


def _print_json(payload) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=float))


def cmd_build(argv):
    data, build, _ = _parse((ReLLaDataArguments, BuildArguments), argv, "rella-hf build")
    _check_output_folder("--output_dir", build.output_dir)
    _check_output_folder("--export_dir", build.export_dir)
    ds = load_data(data, engine=build.engine, spark_master=build.spark_master)
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
    data, args, _ = _parse((ReLLaDataArguments, EmbedArguments), argv, "rella-hf embed")
    from .builders.base import ReLLaConfig, item_embeddings
    from .samples import load_samples

    if args.output is not None and (Path(args.output).is_dir() or not args.output.endswith(".npy")):
        raise UsageError(f"--output {args.output}: expected a file name ending in .npy")
    _check_local_model("--embedder", data.embedder)
    samples = load_samples(data.dataset, data_dir=data.data_dir, settings=data)
    config = ReLLaConfig(name="embed", retrieval="semantic", embedder=data.embedder, pooling=data.pooling,
                         pca_dim=data.pca_dim)
    vectors = item_embeddings(samples, config)
    print(f"{vectors.shape[0]:,} items x {vectors.shape[1]} dims ({data.embedder}, cached under the rella-hf cache)")
    if args.output:
        from .utils import atomic_save_npy, atomic_write_text

        atomic_save_npy(args.output, vectors)
        atomic_write_text(Path(args.output).with_suffix(".item_ids.json"), json.dumps(samples.items["item_id"].tolist()))
        print(f"wrote {args.output}")


def cmd_score(argv):
    data, args, _ = _parse((ReLLaDataArguments, ScoreArguments), argv, "rella-hf score")
    from .metrics import ctr_metrics
    from .models import load_model, model_source_exists
    from .report import write_scores
    from .samples import seeded_subset
    from .scoring import CTRScorer, score_dataset
    from .utils import check_name

    if args.adapter is None and not model_source_exists(args.model):
        raise UsageError(f"--model {args.model}: not a readable model folder, the offline alias or a Hub id")
    setting = check_name(args.setting, "--setting") if args.setting else None
    _check_output_folder("--output_dir", args.output_dir)
    if args.adapter:
        _check_adapter(args.adapter)
    calibration = None
    if args.calibration:  # checked against the model's fingerprint before any model loads
        from .calibration import load_calibration, model_fingerprint

        if not Path(args.calibration).exists():
            raise UsageError(f"--calibration {args.calibration}: no such file or folder")
        calibration = load_calibration(args.calibration, expected_fingerprint=model_fingerprint(args.adapter or args.model))
        if calibration is None:
            raise UsageError(f"--calibration {args.calibration}: the folder holds no calibration.json")
    dataset = load_data(data, split=args.split)
    if args.limit is not None:
        dataset = seeded_subset(dataset, args.limit, args.seed)
    if args.adapter:
        from .hub import load_adapter

        with _model_loading("--adapter", args.adapter):
            scorer = load_adapter(args.adapter, base_model=args.model, batch_size=args.batch_size)
    else:
        with _model_loading("--model", args.model):
            model, tokenizer = load_model(args.model)
        scorer = CTRScorer(model, tokenizer, batch_size=args.batch_size)
    if calibration is not None:
        scorer.calibration = calibration
    setting = setting or f"K{data.K}-{data.retrieval}" + ("-adapter" if args.adapter else "")
    run_dir = Path(args.output_dir)
    scored = score_dataset(scorer, dataset, output_dir=run_dir / "partial" / setting)
    write_scores(run_dir, setting, scored["label"], scored["score"],
                 {"stage": "adapter" if args.adapter else "zero-shot", "K": data.K, "retrieval": data.retrieval,
                  "dataset": data.dataset, "model": args.model, "adapter": args.adapter},
                 raw_prompts=scored["raw_prompt"] if "raw_prompt" in scored.column_names else None,
                 calibrated_scores=scored["score_calibrated"] if "score_calibrated" in scored.column_names else None)
    results = {setting: ctr_metrics(scored["label"], scored["score"])}
    if "score_calibrated" in scored.column_names:
        results[f"{setting} (calibrated)"] = ctr_metrics(scored["label"], scored["score_calibrated"])
    _print_json(results)


def _check_adapter(source: str) -> None:
    """A local adapter folder needs its config and a readable weights file (checked before any model loads)."""
    folder = Path(source)
    if not folder.exists():
        if source.startswith((".", "/", "~")):
            raise UsageError(f"--adapter {source}: no such folder; expected a training output folder or a Hub repo id")
        return  # a Hub repo id
    if not folder.is_dir() or not (folder / "adapter_config.json").is_file():
        raise UsageError(f"--adapter {source}: not an adapter folder; expected adapter_config.json and "
                         f"adapter_model.safetensors in it")
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


def _split_accelerate_flags(argv: list[str]) -> tuple[str | None, list[str], list[str]]:
    """``(--accelerate_config value, flags of accelerate launch, everything else)`` of ``rella-hf train``'s argv.

    A flag goes to ``accelerate launch`` only when it is one of its options and no training field has
    that name (``--gradient_accumulation_steps`` and ``--debug`` stay with the training); every other
    flag passes through to the training's own parser.
    """
    import dataclasses

    from accelerate.commands.launch import launch_command_parser

    from .training import ReiTConfig

    parser = launch_command_parser()
    training = {f"--{item.name}" for item in dataclasses.fields(ReiTConfig)} | {"--config", "--debug"}
    takes_value = {option: action.nargs != 0 for action in parser._actions for option in action.option_strings}
    launcher, accelerate_flags, rest = None, [], []
    tokens = iter(argv)
    for token in tokens:
        flag, has_value, value = token.partition("=")
        if flag == "--accelerate_config":
            launcher = value if has_value else next(tokens, None)
        elif flag in takes_value and flag not in training:
            accelerate_flags.append(token)
            if takes_value[flag] and not has_value:
                accelerate_flags.append(next(tokens, ""))
        else:
            rest.append(token)
    return launcher, accelerate_flags, rest


def _accelerate_config_file(launcher: str) -> str:
    """A YAML path, or the path of one shipped in ``rella_hf/accelerate_configs``."""
    config_file = Path(launcher)
    if not config_file.exists():
        config_file = Path(__file__).resolve().parent / "accelerate_configs" / f"{launcher}.yaml"
    if not config_file.exists():
        raise UsageError(f"--accelerate_config {launcher}: neither a file nor a shipped config name")
    return str(config_file)


def cmd_train(argv):
    # --accelerate_config and accelerate's own flags go to accelerate's launch_command; every other
    # flag goes to the training's TrlParser (YAML + overrides) in the launched processes.
    if any(flag in argv for flag in ("-h", "--help")):
        from .training import make_parser

        print("usage: rella-hf train --config YAML [--accelerate_config NAME_OR_YAML] [accelerate launch flags] "
              "[--<ReiTConfig field> VALUE ...]\n")
        print("  --accelerate_config: launch with accelerate (a YAML, or one of single_gpu, multi_gpu, multi_cpu, "
              "deepspeed_zero2, deepspeed_zero3 shipped with rella-hf); any `accelerate launch` flag (e.g. "
              "--num_processes 2) launches too. Default: None (this process).\n")
        make_parser().print_help()
        return
    launcher, accelerate_flags, rest = _split_accelerate_flags(argv)
    if "--config" not in rest and not any(token.startswith("--config=") for token in rest):
        raise UsageError("rella-hf train needs --config trainer_configs/<setting>.yaml")
    if launcher or accelerate_flags:
        from accelerate.commands.launch import launch_command, launch_command_parser

        config = ["--config_file", _accelerate_config_file(launcher)] if launcher else []
        args = launch_command_parser().parse_args([*config, *accelerate_flags, "--module", "rella_hf.cli", "train", *rest])
        launch_command(args)
        return
    _train_here(rest)


def _train_here(argv: list[str]) -> None:
    from .errors import RellaError
    from .training import parse_config, run_training

    try:
        config = parse_config(argv)
    except RellaError:
        raise
    except ValueError as error:  # the parser's "arguments not used" (an unknown key) and TrainingArguments' checks
        raise UsageError(f"{' '.join(argv)}: {str(error).splitlines()[0] if str(error) else 'invalid'}; "
                         "see rella-hf train --help for the fields") from error
    _check_output_folder("output_dir", config.output_dir)
    result = run_training(config)
    if config.process_index == 0:
        _print_json({"output_dir": str(result.output_dir), "final_eval": result.metrics.get("final_eval", {})})


def cmd_evaluate(argv):
    args, _ = _parse((EvaluateArguments,), argv, "rella-hf evaluate")
    from .metrics import ctr_metrics
    from .report import bootstrap_interval, read_score_pairs

    path = Path(args.scores)
    if not path.is_dir() and path.suffix not in (".jsonl", ".parquet"):
        raise UsageError(f"--scores {args.scores}: expected a run folder, a .jsonl or a .parquet file")
    if not path.exists():
        raise UsageError(f"--scores {args.scores}: no such file")
    pairs = read_score_pairs(path)
    if not pairs:
        raise UsageError(f"--scores {args.scores}: no scores found")
    from .metrics import ece_consistency_band
    from .report import read_calibrated_pairs

    # Calibrated scores (score_calibrated) are evaluated beside the raw ones, never instead of them.
    pairs.update({f"{name} (calibrated)": pair for name, pair in read_calibrated_pairs(path).items()})
    results = {}
    for name, (labels, scores) in pairs.items():
        results[name] = ctr_metrics(labels, scores)
        results[name]["ece_band"] = ece_consistency_band(scores)
        if args.bootstrap:
            intervals = bootstrap_interval(labels, scores, args.bootstrap)
            results[name].update({f"{key}_ci": value for key, value in intervals.items()})
    _print_json(results)


def cmd_calibrate(argv):
    data, args, _ = _parse((ReLLaDataArguments, CalibrateArguments), argv, "rella-hf calibrate")
    from .calibration import calibrate_on_dataset, fit_calibration, model_fingerprint
    from .collaborative_ids import with_collaborative_tokens
    from .report import read_score_pairs

    if args.split == "test":
        raise UsageError("--split test: a calibration is fitted on validation samples only, never on the test split")
    if args.adapter is not None:
        if not Path(args.adapter).is_dir():
            raise UsageError(f"--adapter {args.adapter}: expected a local adapter folder (calibration.json goes into it)")
        _check_adapter(args.adapter)
    target = args.output_dir or args.adapter or (args.model if Path(args.model).is_dir() else None)
    if target is None:
        raise UsageError(f"--model {args.model} is no local folder; pass --output_dir for calibration.json")
    _check_output_folder("--output_dir", target)
    name = f"{args.model} + {args.adapter}" if args.adapter else args.model
    fingerprint = model_fingerprint(args.adapter or args.model)
    if args.scores:
        if args.method == "content_free":
            raise UsageError("--scores with --method content_free: the content-free fit scores its own prompts")
        pairs = read_score_pairs(args.scores)
        if len(pairs) != 1:
            raise UsageError(f"--scores {args.scores}: expected one setting's scores, found {len(pairs)}")
        labels, scores = next(iter(pairs.values()))
        calibration = fit_calibration(labels, scores, args.method, fingerprint=fingerprint, model=name,
                                      fitted_on=f"{args.split} split (saved scores {Path(args.scores).name})")
    else:
        scorer = _calibration_scorer(args)
        dataset = load_data(data, split=args.split)
        if args.limit is not None:
            from .samples import seeded_subset

            dataset = seeded_subset(dataset, args.limit, args.seed)
        dataset = with_collaborative_tokens(dataset, scorer.model)
        calibration = calibrate_on_dataset(scorer, dataset, args.method, fingerprint=fingerprint, model=name,
                                           split=args.split)
    Path(target).mkdir(parents=True, exist_ok=True)
    path = calibration.save(target)
    _print_json({"calibration": str(path), "method": calibration.method, "parameters": calibration.parameters,
                 "n": calibration.n, "positive_rate": calibration.positive_rate, **calibration.extra})


def _calibration_scorer(args):
    """The raw scorer of the model ``rella-hf calibrate`` fits for (an existing calibration is not applied)."""
    from .models import load_model, model_source_exists
    from .scoring import CTRScorer

    if args.adapter:
        from .hub import load_adapter

        with _model_loading("--adapter", args.adapter):
            scorer = load_adapter(args.adapter, base_model=args.model, batch_size=args.batch_size)
        scorer.calibration = None  # a refit starts from the raw scores
        return scorer
    if not model_source_exists(args.model):
        raise UsageError(f"--model {args.model}: not a readable model folder, the offline alias or a Hub id")
    with _model_loading("--model", args.model):
        model, tokenizer = load_model(args.model)
    return CTRScorer(model, tokenizer, batch_size=args.batch_size)


def cmd_push(argv):
    data, args, _ = _parse((ReLLaDataArguments, PushArguments), argv, "rella-hf push")
    from .hub import config_name_for, push_adapter, push_dataset

    upload = dict(private=args.private, revision=args.revision, create_pr=args.create_pr, dry_run=args.dry_run)
    if args.adapter_dir:
        if not Path(args.adapter_dir).is_dir():
            raise UsageError(f"--adapter_dir {args.adapter_dir}: no such folder")
        plan = push_adapter(args.adapter_dir, args.repo_id, base_model=args.base_model,
                            dataset_repo_id=args.dataset_repo_id, **upload)
    else:
        plan = push_dataset(load_data(data), args.repo_id, config_name_for(data.K, data.retrieval, data.order),
                            permission_to_redistribute=args.permission_to_redistribute, **upload)
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
        rows = [("raw", values)] + ([("calibrated", values["calibrated"])] if "calibrated" in values else [])
        for kind, row in rows:
            print(f"{name:20s} {kind:10s} AUC {row['auc']:.4f}  LogLoss {row['logloss']:.4f}  ACC {row['acc']:.4f}  "
                  f"ECE {row['ece']:.4f} (95 % band {row['ece_band']:.4f})")
    comparisons = Path(report).with_name("comparisons.json")
    for row in json.loads(comparisons.read_text()) if comparisons.is_file() else []:
        low, high = row["ci"]
        verdict = "interval excludes 0" if row["excludes_zero"] else "interval includes 0: no significant difference"
        print(f"{row['a']} vs {row['b']}: AUC {row['difference']:+.4f} [{low:+.4f}, {high:+.4f}] ({verdict})")
    run_file = Path(report).with_name("run.json")
    timing = json.loads(run_file.read_text()).get("timing") if run_file.is_file() else None
    if timing:
        from .demo import timing_table

        print("\n" + timing_table(timing))
