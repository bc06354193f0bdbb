"""Publish trained LoRA adapters as Hub model repositories, and load them back as CTR scorers.

:func:`export_adapter` turns a training output folder into a model repo folder (adapter,
tokenizer, training config, metrics, card from ``hub_cards/model_card.md``) whose
``adapter_config.json`` names the base model by its Hub id, so plain
``peft.AutoPeftModelForCausalLM.from_pretrained(repo)`` finds it; :func:`push_adapter` uploads
it; :func:`load_adapter` returns a ready :class:`~rella_hf.scoring.CTRScorer`. A ``calibration.json``
fitted for the adapter (:mod:`rella_hf.calibration`) travels with it and is applied on load.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ConfigError, PublishError
from ..utils import atomic_write_text
from .cards import SMOLLM2_HUB_ID, card_metrics, json_text, reit_settings, write_model_card
from .naming import README_NAME, check_repo_id, looks_like_hub_id
from .upload import (
    UploadPlan,
    assert_token_absent,
    check_upload_target,
    make_plan,
    prepare_branch,
    redact,
    resolve_token,
    send_plan,
)

logger = logging.getLogger(__name__)

_ADAPTER_REQUIRED_FILES = ("adapter_model.safetensors", "adapter_config.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                    "chat_template.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json")
_TRAINING_CONFIG_NAME = "training_config.json"  # rella_hf.models.TRAINING_CONFIG_FILE (kept import-free here)
_METRICS_NAME = "metrics.json"
_CALIBRATION_NAME = "calibration.json"  # rella_hf.calibration.CALIBRATION_FILE (kept import-free here)
# rella_hf.collaborative_ids.SETTINGS_FILE / WEIGHTS_FILE: a run's collaborative tokens (kept import-free here).
_COLLABORATIVE_FILES = ("collaborative_ids.json", "collaborative_ids.safetensors")
_LOCAL_BASE_WARNING = "Base model %s is a local path; pass base_model=<Hub id> so others can load the adapter."


def base_model_identity(name: str, warn: bool = True) -> tuple[str, str | None, str, bool]:
    """``(name for adapter_config.json, Hub id or None, display name, offline GGUF route)`` of a base model.

    SmolLM2's converted cache folder and its alias are recorded as the Hub id of the model the
    GGUF was quantized from (``HuggingFaceTB/SmolLM2-135M-Instruct``), so PEFT alone finds a base;
    the last element says the adapter was trained on the dequantized GGUF weights instead.
    """
    from ..models import CONVERSION_MARKER, SMOLLM2_ALIASES, SMOLLM2_NAME

    path = Path(name).expanduser()
    if name.lower() in SMOLLM2_ALIASES or (path.name == SMOLLM2_NAME and (path / CONVERSION_MARKER).is_file()):
        return SMOLLM2_HUB_ID, SMOLLM2_HUB_ID, f"{SMOLLM2_HUB_ID} (Q4_1 GGUF dequantized by rella-hf, alias {SMOLLM2_NAME})", True
    if looks_like_hub_id(name):
        return name, name, name, False
    if warn:
        logger.warning(_LOCAL_BASE_WARNING, name)
    return name, None, name, False


def _resolve_base(base_model: str | None, adapter_config: dict, training_config: dict, source: Path):
    """The base model identity to record: ``base_model``, else whichever of the configs' names is a Hub id."""
    if base_model:
        return base_model_identity(str(base_model))
    # The adapter config names the weights actually loaded (often a local cache folder); the training
    # config names what the user asked for (an alias or a Hub id). Prefer whichever is a Hub id.
    candidates = [name for name in (adapter_config.get("base_model_name_or_path"),
                                    reit_settings(training_config, source / _TRAINING_CONFIG_NAME).get("model_name_or_path"))
                  if isinstance(name, str) and name]
    if not candidates:
        raise PublishError(f"{source} records no base model; pass base_model=<Hub id>")
    identities = [base_model_identity(name, warn=False) for name in candidates]
    identity = next((found for found in identities if found[1]), identities[0])
    if identity[1] is None:
        logger.warning(_LOCAL_BASE_WARNING, identity[0])
    return identity


def _adapter_repo_files(folder: Path) -> list[str]:
    """The files of an exported adapter folder that belong in the repository, README.md first."""
    names = (README_NAME, *_ADAPTER_REQUIRED_FILES, *_TOKENIZER_FILES, _TRAINING_CONFIG_NAME, _METRICS_NAME,
             _CALIBRATION_NAME, *_COLLABORATIVE_FILES)
    present = sorted(name for name in names[1:] if (folder / name).is_file())
    return [README_NAME] + present


def _read_training_config(path: Path) -> dict:
    loaded = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise PublishError(f"{path} holds a {type(loaded).__name__}, expected a mapping of training settings")
    return loaded


def _check_output_folder(source: Path) -> Path:
    """The training config file of a complete training output folder; refuse an incomplete one, naming what lacks."""
    missing = [name for name in _ADAPTER_REQUIRED_FILES if not (source / name).is_file()]
    training_config_path = source / _TRAINING_CONFIG_NAME
    if not training_config_path.is_file():
        missing.append(_TRAINING_CONFIG_NAME)
    if not (source / _METRICS_NAME).is_file():
        missing.append(_METRICS_NAME)
    if not (source / "tokenizer_config.json").is_file():
        missing.append("tokenizer files (tokenizer_config.json)")
    if missing:
        raise PublishError(
            f"{source} lacks {', '.join(missing)}; expected a rella-hf training output folder "
            "(save the adapter with safetensors, the tokenizer, the training config and the evaluation metrics)"
        )
    return training_config_path


def _copy_adapter_files(source: Path, out_dir: Path, adapter_config: dict, training_config: dict,
                        training_config_path: Path) -> None:
    """Copy the adapter, tokenizer, (redacted) training config and metrics into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # Leftovers of an earlier export must not be uploaded.
    for name in (*_TOKENIZER_FILES, _CALIBRATION_NAME, *_COLLABORATIVE_FILES):
        if (out_dir / name).is_file() and not (source / name).is_file():
            (out_dir / name).unlink()
    shutil.copyfile(source / "adapter_model.safetensors", out_dir / "adapter_model.safetensors")
    atomic_write_text(out_dir / "adapter_config.json", json_text(adapter_config) + "\n")
    for name in (*_TOKENIZER_FILES, *_COLLABORATIVE_FILES):
        if (source / name).is_file():
            shutil.copyfile(source / name, out_dir / name)
    atomic_write_text(out_dir / training_config_path.name, json_text(training_config) + "\n")
    shutil.copyfile(source / _METRICS_NAME, out_dir / _METRICS_NAME)
    if _checked_calibration(source) is not None:  # the copied weights keep the fingerprint
        shutil.copyfile(source / _CALIBRATION_NAME, out_dir / _CALIBRATION_NAME)


def _checked_calibration(source: Path) -> dict | None:
    """The output folder's ``calibration.json`` content, refused when it belongs to other weights; None without one."""
    if not (source / _CALIBRATION_NAME).is_file():
        return None
    from ..calibration import load_calibration, model_fingerprint

    return load_calibration(source, expected_fingerprint=model_fingerprint(source)).to_dict()


def export_adapter(
    output_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    repo_id: str | None = None,
    base_model: str | None = None,
    dataset_repo_id: str | None = None,
    license: str | None = None,
    license_name: str | None = None,
) -> Path:
    """Turn a training output folder into a model repository folder with a model card.

    Copies the adapter (``adapter_model.safetensors``, ``adapter_config.json``), the tokenizer
    files, ``training_config.json`` (secrets redacted), ``metrics.json`` and
    ``calibration.json`` when the run fitted one, and writes
    README.md from ``hub_cards/model_card.md``. Checkpoint folders and optimizer states are left out.

    Args:
        output_dir: the trainer's output folder.
        out_dir: the repository folder to write (created; files of the same names are replaced).
        repo_id: the model repository it is meant for (used in the card's loading examples).
        base_model: base model to record (Hub id); default: the training config's, else the adapter
            config's ``base_model_name_or_path`` (the offline SmolLM2 route records
            ``HuggingFaceTB/SmolLM2-135M-Instruct``). Written into the copied ``adapter_config.json``
            and the card's ``base_model``.
        dataset_repo_id: Hub dataset repository of the training data; adds the card's ``datasets``
            and ``model-index`` (metrics) metadata.
        license: licence of the adapter (default: the base model's when known, else "other").
        license_name: name of an "other" licence (default "unknown").

    Raises:
        PublishError: when required files are missing or metrics.json is empty.
    """
    source, out_dir = Path(output_dir), Path(out_dir)
    if out_dir.exists() and out_dir.resolve() == source.resolve():
        raise PublishError(f"out_dir {out_dir} is the training output folder itself; export into another folder")
    training_config_path, training_config, metric_rows, adapter_config = _card_inputs(source)
    base = _resolve_base(base_model, adapter_config, training_config, source)
    adapter_config["base_model_name_or_path"] = base[0]
    _copy_adapter_files(source, out_dir, adapter_config, training_config, training_config_path)
    write_model_card(out_dir, repo_id=repo_id, training_config=training_config, adapter_config=adapter_config,
                     metric_rows=metric_rows, base=base, dataset_repo_id=dataset_repo_id, license=license,
                     license_name=license_name, calibration=_checked_calibration(source))
    return out_dir


def _card_inputs(source: Path) -> tuple[Path, dict, list, dict]:
    """``(training config path, redacted training config, metric rows, adapter config)`` of an output folder."""
    training_config_path = _check_output_folder(source)
    training_config = redact(_read_training_config(training_config_path))
    metrics = json.loads((source / _METRICS_NAME).read_text(encoding="utf-8"))
    metric_rows = card_metrics(metrics) if isinstance(metrics, dict) else []
    if not metric_rows:
        raise PublishError(f"{source / _METRICS_NAME} holds no numeric metrics; evaluate the adapter before publishing it")
    adapter_config = json.loads((source / "adapter_config.json").read_text(encoding="utf-8"))
    return training_config_path, training_config, metric_rows, adapter_config


def write_output_card(output_dir: str | os.PathLike, *, repo_id: str | None = None,
                      dataset_repo_id: str | None = None) -> Path:
    """Write the model card into a training output folder itself, for ``Trainer.push_to_hub``.

    Its ``adapter_config.json`` then names the base model by its Hub id (when one is known), as an
    exported folder's does, so what the Trainer pushes loads with plain PEFT.

    Args:
        output_dir: the training output folder (adapter, tokenizer, training config and metrics written).
        repo_id: the model repository it is pushed to.
        dataset_repo_id: Hub dataset repository of the training data (card metadata).

    Returns:
        The written ``README.md``.
    """
    source = Path(output_dir)
    _, training_config, metric_rows, adapter_config = _card_inputs(source)
    base = _resolve_base(None, adapter_config, training_config, source)
    if base[1] is not None and adapter_config.get("base_model_name_or_path") != base[0]:
        adapter_config["base_model_name_or_path"] = base[0]
        atomic_write_text(source / "adapter_config.json", json_text(adapter_config) + "\n")
    write_model_card(source, repo_id=repo_id, training_config=training_config, adapter_config=adapter_config,
                     metric_rows=metric_rows, base=base, dataset_repo_id=dataset_repo_id,
                     calibration=_checked_calibration(source))
    return source / README_NAME


def push_adapter(
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    base_model: str | None = None,
    dataset_repo_id: str | None = None,
    license: str | None = None,
    license_name: str | None = None,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    dry_run: bool = False,
    export_dir: str | os.PathLike | None = None,
) -> UploadPlan:
    """Upload a trained adapter (see :func:`export_adapter` for what is sent) to a model repository.

    Args:
        output_dir: the trainer's output folder.
        repo_id: ``"namespace/name"`` of the model repository (created if missing).
        base_model: base model Hub id to record (default: from the training/adapter config).
        dataset_repo_id: Hub dataset repository of the training data (for the card's metadata).
        license: licence of the adapter (default: the base model's when known, else "other").
        license_name: name of an "other" licence (default "unknown").
        token: Hugging Face token; None uses the usual mechanisms. Never logged or written.
        private: visibility of a newly created repository.
        commit_message: the commit's message.
        revision: branch (created when missing) or pull request ref (``refs/pr/3``) to commit to; None: the
            default branch.
        create_pr: open a pull request against the default branch instead of committing to it (not with ``revision``).
        dry_run: only export and return the plan; no network access.
        export_dir: keep the exported folder here (default: a temporary folder).

    Returns:
        The :class:`UploadPlan`; with ``dry_run=False`` it also carries the commit (and PR) URL.
    """
    check_repo_id(repo_id)
    check_upload_target(revision, create_pr)
    with tempfile.TemporaryDirectory(prefix="rella-push-adapter-") as scratch:
        folder = Path(export_dir) if export_dir is not None else Path(scratch) / "repo"
        export_adapter(output_dir, folder, repo_id=repo_id, base_model=base_model, dataset_repo_id=dataset_repo_id,
                       license=license, license_name=license_name)
        paths = _adapter_repo_files(folder)
        assert_token_absent(folder, paths, resolve_token(token, dry_run))
        plan = make_plan(folder, paths, repo_id=repo_id, repo_type="model", config_name=None, private=private,
                         revision=revision, create_pr=create_pr,
                         commit_message=commit_message or "Upload ReLLa adapter with rella-hf")
        if dry_run:
            return plan
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        prepare_branch(api, plan)
        return send_plan(api, folder, plan)


def _trained_base(source: str, hub_kwargs: dict) -> str | None:
    """The offline SmolLM2 alias when the adapter's training config says it was trained on that route, else None.

    Such adapters record SmolLM2's Hub id for PEFT, but their metrics hold for the dequantized GGUF
    weights, which the alias rebuilds offline.
    """
    from ..models import SMOLLM2_ALIASES, SMOLLM2_NAME

    path = Path(source) / _TRAINING_CONFIG_NAME
    if not Path(source).is_dir():
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        try:
            path = Path(hf_hub_download(source, _TRAINING_CONFIG_NAME, **hub_kwargs))
        except (EntryNotFoundError, LocalEntryNotFoundError):
            return None
    if not path.is_file():
        return None
    reit = _read_training_config(path).get("reit")
    name = reit.get("model_name_or_path") if isinstance(reit, dict) else None
    return SMOLLM2_NAME if isinstance(name, str) and name.lower() in SMOLLM2_ALIASES else None


def load_adapter(
    repo_or_path: str | os.PathLike,
    base_model: str | None = None,
    *,
    batch_size: int = 8,
    dtype: str | None = None,
    device: str | None = None,
    revision: str | None = None,
    token: str | None = None,
):
    """Load a published (or exported) adapter onto its base model and return a ready scorer.

    Args:
        repo_or_path: Hub model repository id or a local adapter folder.
        base_model: base model to load instead of the recorded one (Hub id, folder, or
            ``smollm2-135m-instruct``). Default: the offline SmolLM2 route when the adapter was
            trained on it (its training config says so), else ``base_model_name_or_path``.
        batch_size: scoring batch size.
        dtype: compute dtype (default: the one a local adapter was trained in, as its
            ``training_config.json`` records; else chosen from the hardware).
        device: device (default: the GPU when there is one).
        revision: Hub revision of the adapter repository.
        token: Hugging Face token for private repositories.

    Returns:
        ``rella_hf.scoring.CTRScorer`` over the ``PeftModel``, with the adapter's own tokenizer
        when it ships one (else the base model's), and the adapter's ``calibration.json`` when it
        has one (raw scores unchanged; ``scorer.calibrate`` gives the calibrated probabilities); a run with
        collaborative tokens gets them attached (rewrite prompts with :func:`rella_hf.collaborative_ids.add_id_tokens`).

    Raises:
        CalibrationError: when the adapter's ``calibration.json`` does not parse or was fitted for
            other weights.
    """
    from peft import PeftConfig, PeftModel

    from ..models import adapter_compute_dtype, load_model, load_tokenizer
    from ..scoring import CTRScorer

    source = str(repo_or_path)
    local = Path(source).is_dir()
    hub_kwargs = {} if local else {key: value for key, value in {"revision": revision, "token": token}.items()
                                   if value is not None}
    config = PeftConfig.from_pretrained(source, **hub_kwargs)
    calibration = _adapter_calibration(source, hub_kwargs)  # a foreign one is refused before any model loads
    base = base_model or _trained_base(source, hub_kwargs) or config.base_model_name_or_path
    if not base:
        raise ConfigError(f"{source} records no base model; pass base_model=<Hub id or folder>")
    if dtype is None and local:
        dtype = adapter_compute_dtype(source)  # score in the precision it was trained in
    model, tokenizer = load_model(base, dtype=dtype, device=device)
    if not local or (Path(source) / "tokenizer_config.json").is_file():
        try:
            tokenizer = load_tokenizer(source, **hub_kwargs)
        except OSError:  # a Hub repository without tokenizer files: the base model's tokenizer fits
            pass
    peft_model = PeftModel.from_pretrained(model, source, is_trainable=False, **hub_kwargs)
    peft_model.eval()
    collaborative_folder = _collaborative_ids_folder(source, hub_kwargs)
    if collaborative_folder is not None:
        from ..collaborative_ids import attach_saved_collaborative_ids

        attach_saved_collaborative_ids(peft_model, tokenizer, collaborative_folder)
    return CTRScorer(peft_model, tokenizer, batch_size=batch_size, calibration=calibration)


def _collaborative_ids_folder(source: str, hub_kwargs: dict) -> Path | None:
    """The folder holding the adapter's collaborative tokens (local, or downloaded from the Hub); None without them."""
    if Path(source).is_dir():
        return Path(source) if (Path(source) / _COLLABORATIVE_FILES[0]).is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        paths = [hf_hub_download(source, name, **hub_kwargs) for name in _COLLABORATIVE_FILES]
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return None
    return Path(paths[0]).parent


def _adapter_calibration(source: str, hub_kwargs: dict):
    """The adapter's checked ``calibration.json`` (local folder or Hub repository), or None when it has none."""
    from ..calibration import load_calibration, model_fingerprint

    if Path(source).is_dir():
        if not (Path(source) / _CALIBRATION_NAME).is_file():
            return None
        return load_calibration(source, expected_fingerprint=model_fingerprint(source))
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        path = hf_hub_download(source, _CALIBRATION_NAME, **hub_kwargs)
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return None
    weights = hf_hub_download(source, _ADAPTER_REQUIRED_FILES[0], **hub_kwargs)
    return load_calibration(path, expected_fingerprint=model_fingerprint(source, weights=[weights]))


__all__ = ["base_model_identity", "export_adapter", "load_adapter", "push_adapter", "write_output_card"]
