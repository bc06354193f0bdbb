"""Publish built datasets and trained LoRA adapters on the Hugging Face Hub, and load them back.

Datasets: :func:`export_dataset` writes a Hub dataset repo folder: parquet shards in one folder
per configuration (``K5-semantic/train-00000-of-00001.parquet``), a ``README.md`` whose YAML header
lists every configuration's ``data_files`` and ``dataset_info`` (the metadata
``DatasetDict.push_to_hub`` writes, so ``datasets.load_dataset(folder_or_repo, "K5-semantic")``
resolves a local folder and the Hub repo the same way) and a card rendered from
``hub_cards/dataset_card.md``. Exporting another configuration into the same folder merges it
into the README. :func:`push_dataset` exports into a staging folder and uploads one configuration
in one commit; :func:`load_published` loads a configuration back by its build settings.

Adapters: :func:`export_adapter` turns a training output folder into a model repo folder
(adapter, tokenizer, training config, metrics, card from ``hub_cards/model_card.md``);
:func:`push_adapter` uploads it; :func:`load_adapter` returns a ready
:class:`~rella_hf.scoring.CTRScorer`.

Tokens: only ever handed to ``huggingface_hub.HfApi(token=...)``, never logged, and every file is
checked not to contain the token before an upload. ``dry_run=True`` returns the
:class:`UploadPlan` (repo, configuration, files) without any network access.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .corpora import Corpus, get_corpus
from .errors import ConfigError, PublishError, RedistributionError, RellaError
from .utils import atomic_write_text

if TYPE_CHECKING:
    from datasets import DatasetDict
    from huggingface_hub import CardData

logger = logging.getLogger(__name__)

DEFAULT_ORDER = "chronological"
DEFAULT_MAX_SHARD_SIZE = "500MB"
#: Per-configuration sidecar holding the corpus and build settings (not a data file).
BUILD_CONFIG_FILENAME = "rella_build_config.json"
README_NAME = "README.md"

_CONFIG_NAME_RE = re.compile(r"^K(?P<K>[1-9][0-9]*)-(?P<retrieval>[a-z0-9_]+)(?:-(?P<order>[a-z0-9_]+))?$")
_SLUG_RE = re.compile(r"^[a-z0-9_]+$")
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")
_HF_TOKEN_VALUE_RE = re.compile(r"hf_[A-Za-z0-9]{20,}")
_SECRET_KEYS = {"token", "hub_token", "hf_token", "auth_token", "access_token", "use_auth_token", "api_key",
                "password", "secret", "hub_private_token"}

RELLA_CITATION = """@inproceedings{lin2024rella,
  title     = {ReLLa: Retrieval-enhanced Large Language Models for Lifelong Sequential Behavior Comprehension in Recommendation},
  author    = {Lin, Jianghao and Shan, Rong and Zhu, Chenxu and Du, Kounianhua and Chen, Bo and Quan, Shigang and Tang, Ruiming and Yu, Yong and Zhang, Weinan},
  booktitle = {Proceedings of the ACM Web Conference 2024},
  year      = {2024},
  eprint    = {2308.11131},
  archivePrefix = {arXiv}
}"""

_MOVIELENS_HOMEPAGE = "https://grouplens.org/datasets/movielens/"
_GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
#: Hub licence metadata of each corpus: (license, license_name, license_link, homepage).
_CORPUS_LICENCE_METADATA: dict[str, tuple[str, str | None, str | None, str]] = {
    "ml-100k": ("other", "movielens-100k", _GROUPLENS + "ml-100k-README.txt", _MOVIELENS_HOMEPAGE),
    "ml-1m": ("other", "movielens-1m", _GROUPLENS + "ml-1m-README.txt", _MOVIELENS_HOMEPAGE),
    "ml-20m": ("other", "movielens-20m", _GROUPLENS + "ml-20m-README.html", _MOVIELENS_HOMEPAGE),
    "ml-25m": ("other", "movielens-25m", _GROUPLENS + "ml-25m-README.html", _MOVIELENS_HOMEPAGE),
    "ml-32m": ("other", "movielens-32m", _GROUPLENS + "ml-32m-README.html", _MOVIELENS_HOMEPAGE),
    "ml-latest": ("other", "movielens-latest", _GROUPLENS + "ml-latest-README.html", _MOVIELENS_HOMEPAGE),
    "ml-latest-small": ("other", "movielens-latest-small", _GROUPLENS + "ml-latest-small-README.html",
                        _MOVIELENS_HOMEPAGE),
    "BookCrossing": ("unknown", None, None, "http://www2.informatik.uni-freiburg.de/~cziegler/BX/ (offline)"),
}

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
}

_ADAPTER_REQUIRED_FILES = ("adapter_model.safetensors", "adapter_config.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                    "chat_template.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json")
_TRAINING_CONFIG_NAMES = ("training_config.json", "training_config.yaml", "training_config.yml")
_METRICS_NAME = "metrics.json"
_METRIC_NOISE = ("runtime", "per_second", "epoch", "flos")
_COUNT_METRICS = {"n", "positives", "num_tokens"}
_CTR_METRICS = {"auc", "logloss", "log_loss", "acc", "accuracy"}
_SPLIT_NAMES = {"train", "validation", "test", "eval"}
_TRAIN_TYPE_RETRIEVAL = {"simple": "recent", "sequential": "semantic",
                         "mixed": "recent and semantic (ReiT: each shot as both prompt kinds)"}
_SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_KNOWN_BASE_LICENCES = {_SMOLLM2_HUB_ID: "apache-2.0"}


# --------------------------------------------------------------------------------------------
# Configuration names
# --------------------------------------------------------------------------------------------


def config_name_for(K: int, retrieval: str, order: str = DEFAULT_ORDER) -> str:
    """Return the Hub configuration name of a build: ``K5-semantic``, ``K30-recent``, ``K5-semantic-similarity``.

    The order suffix appears only when ``order`` is not the default (``"chronological"``).

    Args:
        K: number of history behaviours in each prompt (positive).
        retrieval: retrieval method, e.g. ``"semantic"`` or ``"recent"`` (lowercase letters, digits, ``_``).
        order: order of the retrieved behaviours in the prompt, e.g. ``"chronological"`` or ``"similarity"``.

    Raises:
        ConfigError: for a non-positive K or a retrieval/order that is not a lowercase slug.
    """
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ConfigError(f"K={K!r} is not a positive integer; pass the number of history behaviours per prompt, e.g. K=5")
    for name, value in (("retrieval", retrieval), ("order", order)):
        if not isinstance(value, str) or not _SLUG_RE.match(value):
            raise ConfigError(
                f"{name}={value!r} cannot be part of a configuration name; expected lowercase letters, digits "
                f"or '_' (e.g. 'semantic', 'recent', 'chronological')"
            )
    name = f"K{K}-{retrieval}"
    return name if order == DEFAULT_ORDER else f"{name}-{order}"


def parse_config_name(config_name: str) -> dict[str, Any]:
    """Inverse of :func:`config_name_for`: ``"K5-semantic"`` -> ``{"K": 5, "retrieval": "semantic", "order": "chronological"}``.

    Args:
        config_name: a name produced by :func:`config_name_for`.

    Raises:
        ConfigError: when the name does not have the ``K<k>-<retrieval>[-<order>]`` shape.
    """
    match = _CONFIG_NAME_RE.match(config_name or "")
    if match is None:
        raise ConfigError(
            f"config_name={config_name!r} does not look like 'K<k>-<retrieval>[-<order>]' (e.g. 'K5-semantic'); "
            "build it with rella_hf.hub.config_name_for(K, retrieval, order)"
        )
    return {"K": int(match["K"]), "retrieval": match["retrieval"], "order": match["order"] or DEFAULT_ORDER}


# --------------------------------------------------------------------------------------------
# Licences
# --------------------------------------------------------------------------------------------


def _as_corpus(corpus: str | Corpus) -> Corpus:
    return get_corpus(corpus) if isinstance(corpus, str) else corpus


def check_redistribution(corpus: str | Corpus, permission_to_redistribute: bool = False) -> None:
    """Refuse to publish a corpus whose licence forbids redistribution, unless permission is asserted.

    Args:
        corpus: registered corpus name ("ml-1m", "ml-latest-small", ...) or a Corpus.
        permission_to_redistribute: True only when you hold separate permission from the rights holder.

    Raises:
        RedistributionError: quoting the licence sentence (or saying the licence is unknown).
    """
    corpus = _as_corpus(corpus)
    if corpus.redistributable or permission_to_redistribute:
        return
    licence_kind = _CORPUS_LICENCE_METADATA.get(corpus.name, ("other",))[0]
    reason = "its licence is unknown" if licence_kind == "unknown" else "its licence says"
    raise RedistributionError(
        f"{corpus.name} may not be published: {reason}: \"{corpus.licence}\"; pass "
        f"permission_to_redistribute=True only if you hold that permission from the rights holder, "
        f"or publish a build of a redistributable corpus such as ml-latest-small"
    )


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _library_versions(names: tuple[str, ...]) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _template_path(name: str) -> str:
    """Path of a card template shipped as package data (``rella_hf/hub_cards`` -> ``hub_cards/``)."""
    path = resources.files("rella_hf").joinpath("hub_cards", name)
    if not path.is_file():
        raise PublishError(f"card template {name} is missing from the rella_hf package; reinstall rella-hf")
    return str(path)


def _render_card(card_class, card_data: CardData, template_name: str, fields: dict[str, Any]):
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


def _check_repo_id(repo_id: str) -> None:
    if not isinstance(repo_id, str) or not _REPO_ID_RE.match(repo_id):
        raise ConfigError(f"repo_id={repo_id!r} is not a Hub repository id; expected 'namespace/name', e.g. 'my-org/rella-ml-latest-small'")


def _looks_like_hub_id(name: str) -> bool:
    return bool(_REPO_ID_RE.match(name)) and not name.startswith((".", "~")) and not Path(name).expanduser().exists()


def _size_category(rows: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if rows < bound:
            return label
    return "100M<n<1B"


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def _file_contains(path: Path, needle: bytes, block: int = 1 << 22) -> bool:
    """Whether ``needle`` occurs in the file, read in blocks that overlap by ``len(needle) - 1`` bytes."""
    overlap = len(needle) - 1
    tail = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            window = tail + chunk
            if needle in window:
                return True
            tail = window[-overlap:] if overlap else b""
    return False


def _resolve_token(token: str | None, dry_run: bool) -> str | None:
    """The token an upload would use, to check files against it (``HF_TOKEN``, then the stored login)."""
    if token:
        return token
    if dry_run and os.environ.get("HF_OIDC_RESOURCE"):  # OIDC exchanges a token over the network
        return os.environ.get("HF_TOKEN") or None
    from huggingface_hub import get_token

    return get_token()


def _assert_token_absent(folder: Path, paths_in_repo: list[str], token: str | None) -> None:
    """Raise when any file about to be uploaded contains the token (the token itself is never shown)."""
    if not token:
        return
    needle = token.encode("utf-8")
    for path_in_repo in paths_in_repo:
        if _file_contains(folder / path_in_repo, needle):
            raise PublishError(
                f"{path_in_repo} contains your Hugging Face token; remove it from that file (or its source) "
                "before publishing"
            )


# --------------------------------------------------------------------------------------------
# Upload plans
# --------------------------------------------------------------------------------------------


@dataclass
class PlannedFile:
    """One file of an upload.

    Args:
        path_in_repo: where it lands in the repository.
        size: its size in bytes.
    """

    path_in_repo: str
    size: int


@dataclass
class UploadPlan:
    """What an upload sends (``dry_run=True`` returns it without sending anything).

    Args:
        repo_id: target repository.
        repo_type: ``"dataset"`` or ``"model"``.
        config_name: the dataset configuration uploaded (None for adapters).
        files: every file added or replaced, README.md included.
        delete_patterns: remote files matching these and not in ``files`` are deleted in the same
            commit (stale shards of the same configuration).
        commit_message: the commit's message.
        private: visibility of a newly created repository (None: the Hub's default).
        dry_run: True when nothing was sent.
        commit_url: URL of the commit once uploaded.
    """

    repo_id: str
    repo_type: str
    config_name: str | None
    files: list[PlannedFile]
    delete_patterns: list[str] = field(default_factory=list)
    commit_message: str = ""
    private: bool | None = None
    dry_run: bool = True
    commit_url: str | None = None

    @property
    def paths_in_repo(self) -> list[str]:
        """The ``path_in_repo`` of every planned file, in upload order."""
        return [planned.path_in_repo for planned in self.files]

    def __str__(self) -> str:
        header = f"{'would upload' if self.dry_run else 'uploaded'} {len(self.files)} files to {self.repo_type} repo {self.repo_id}"
        if self.config_name:
            header += f" (config {self.config_name})"
        lines = [header] + [f"  {planned.path_in_repo} ({planned.size} bytes)" for planned in self.files]
        lines += [f"  delete stale: {pattern}" for pattern in self.delete_patterns]
        return "\n".join(lines)


def _plan(folder: Path, paths_in_repo: list[str], **kwargs) -> UploadPlan:
    files = [PlannedFile(path, (folder / path).stat().st_size) for path in paths_in_repo]
    return UploadPlan(files=files, **kwargs)


def _upload(api, folder: Path, plan: UploadPlan, remote_files: list[str]) -> UploadPlan:
    """Send ``plan`` as one commit: add its files, delete stale remote files matching its delete patterns."""
    import fnmatch

    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    planned = set(plan.paths_in_repo)
    stale = [path for path in remote_files if path not in planned
             and any(fnmatch.fnmatchcase(path, pattern) for pattern in plan.delete_patterns)]
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(folder / path)) for path in plan.paths_in_repo]
    operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
    logger.info("Uploading %d files to %s repo %s (%d stale files removed)", len(plan.files), plan.repo_type,
                plan.repo_id, len(stale))
    commit = api.create_commit(repo_id=plan.repo_id, repo_type=plan.repo_type, operations=operations,
                               commit_message=plan.commit_message)
    plan.dry_run = False
    plan.commit_url = getattr(commit, "commit_url", None)
    return plan


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


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
    if corpus.protocol == "chronological":
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
            "user's ratings are shuffled with a fixed seed, the last one becomes the target and the others its "
            "history; the samples are shuffled and split 90/10 into train and test. "
            f"Label: 1 when the rating is above {corpus.label_threshold:g} (implicit 0 ratings are negative)."
        )
    return f"{samples}\n\n{retrieval}"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _config_sections(out_dir: Path, card_data: CardData) -> list[dict[str, Any]]:
    """One card section per configuration recorded in the README metadata (this export's and earlier ones)."""
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    infos = DatasetInfosDict.from_dataset_card_data(card_data)
    sections = []
    for name in MetadataConfigs.from_dataset_card_data(card_data):
        sidecar = _read_json(out_dir / name / BUILD_CONFIG_FILENAME)
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
            "build_config_json": _json_text(sidecar["build_config"]) if sidecar else '"(not recorded)"',
            **settings,
        })
    return sections


def _existing_corpus(out_dir: Path, card_data: CardData) -> tuple[str, str] | None:
    """``(config_name, corpus)`` of the first other configuration already in ``out_dir`` that names its corpus."""
    from datasets.utils.metadata import MetadataConfigs

    for name in MetadataConfigs.from_dataset_card_data(card_data):
        sidecar = _read_json(out_dir / name / BUILD_CONFIG_FILENAME)
        if sidecar and sidecar.get("corpus"):
            return name, sidecar["corpus"]
    return None


def _carried_settings(dataset_dict: DatasetDict) -> dict:
    """Build settings a DatasetDict built by rella-hf carries in its info ({} for any other dataset)."""
    from .builders import dataset_settings

    for dataset in dataset_dict.values():
        settings = dataset_settings(dataset)
        if settings:
            return settings
    return {}


def _resolve_build(dataset_dict, corpus: str | Corpus | None, build_config: dict | None) -> tuple[Corpus, dict]:
    """The corpus and build settings to record: the arguments, else what the dataset carries."""
    carried = _carried_settings(dataset_dict) if build_config is None or corpus is None else {}
    build_config = dict(carried if build_config is None else build_config)
    corpus = corpus or build_config.get("corpus") or carried.get("corpus")
    if corpus is None:
        raise ConfigError(
            "the source corpus is unknown: the dataset carries no rella-hf build settings and corpus was not "
            "given; pass corpus='ml-latest-small' (or the corpus it was built from)"
        )
    corpus = _as_corpus(corpus)
    recorded = build_config.get("corpus")
    if isinstance(recorded, str) and recorded.lower() != corpus.name.lower():
        raise ConfigError(f"corpus={corpus.name!r} disagrees with the build settings, which say the dataset was built "
                          f"from {recorded!r}; drop corpus= or pass the corpus it was built from")
    return corpus, build_config


def _resolve_config_name(config_name: str | None, build_config: dict) -> str:
    settings = {key: build_config[key] for key in ("K", "retrieval", "order") if build_config.get(key) is not None}
    if config_name is None:
        if "K" not in settings or "retrieval" not in settings:
            raise ConfigError(
                "config_name was not given and build_config lacks K or retrieval; pass config_name=config_name_for(K, retrieval)"
            )
        return config_name_for(settings["K"], settings["retrieval"], settings.get("order", DEFAULT_ORDER))
    if not isinstance(config_name, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", config_name):
        raise ConfigError(f"config_name={config_name!r} is not a valid configuration name; use config_name_for(K, retrieval, order)")
    if "K" in settings and "retrieval" in settings:
        expected = config_name_for(settings["K"], settings["retrieval"], settings.get("order", DEFAULT_ORDER))
        if expected != config_name:
            raise ConfigError(
                f"config_name={config_name!r} disagrees with build_config (K={settings['K']}, retrieval="
                f"{settings['retrieval']!r}, order={settings.get('order', DEFAULT_ORDER)!r} -> {expected!r}); "
                "drop config_name to derive it or fix build_config"
            )
    return config_name


def _write_shards(dataset_dict: DatasetDict, target: Path, config_name: str, max_shard_bytes: int) -> dict[str, dict]:
    """Write every split as ``<split>-XXXXX-of-YYYYY.parquet`` into ``target``; return per-split sizes."""
    written = {}
    for split, dataset in dataset_dict.items():
        # Account for an indices mapping (select/shuffle): only the selected share of the table is written.
        share = len(dataset) / dataset.data.num_rows if dataset.data.num_rows else 0.0
        num_bytes = int(dataset.data.nbytes * share)
        num_shards = max(1, math.ceil(num_bytes / max_shard_bytes)) if len(dataset) else 1
        num_shards = min(num_shards, max(1, len(dataset)))
        parquet_bytes = 0
        for index in range(num_shards):
            shard = dataset.shard(num_shards=num_shards, index=index, contiguous=True)
            path = target / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
            shard.to_parquet(str(path))
            parquet_bytes += path.stat().st_size
        written[split] = {"num_bytes": num_bytes, "num_examples": len(dataset), "parquet_bytes": parquet_bytes,
                          "num_shards": num_shards}
        logger.info("%s/%s: %d rows in %d shards", config_name, split, len(dataset), num_shards)
    return written


def _replace_folder(staged: Path, final: Path) -> None:
    """Move ``staged`` to ``final``, removing the old ``final`` (so no stale shard survives)."""
    if final.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".rella-old-{final.name}-", dir=final.parent))
        os.replace(final, trash / final.name)
        os.replace(staged, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staged, final)


def export_dataset(
    dataset_dict: DatasetDict,
    out_dir: str | os.PathLike,
    corpus: str | Corpus | None = None,
    config_name: str | None = None,
    build_config: dict | None = None,
    permission_to_redistribute: bool = False,
    *,
    repo_id: str | None = None,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
) -> Path:
    """Write a built dataset as one configuration of a Hub dataset repository folder.

    The folder gets ``<config>/<split>-XXXXX-of-YYYYY.parquet`` shards, ``<config>/rella_build_config.json``
    (corpus and build settings) and a README.md whose YAML lists ``configs`` (data_files) and
    ``dataset_info`` (features, split sizes) of every configuration in the folder, followed by the
    dataset card. Re-exporting a configuration replaces its shards; other configurations are kept.

    Args:
        dataset_dict: the built dataset (train/validation/test, or train/test).
        out_dir: the repository folder (created if needed).
        corpus: the source corpus's registered name (e.g. "ml-latest-small") or Corpus; None takes
            it from the build settings the dataset carries (``rella_hf.load_dataset`` builds).
        config_name: configuration name; None derives it from the build settings' K/retrieval/order.
        build_config: the build settings recorded in the card and the sidecar (K, retrieval, order,
            history_format, embedder, protocol, ...), JSON-serialisable; None takes the settings the
            dataset carries.
        permission_to_redistribute: assert that you hold permission to redistribute a corpus whose
            licence forbids it (ML-1M, ML-100K, ML-25M, Book-Crossing).
        repo_id: the Hub repository the folder is meant for, used in the card's loading examples
            (default: the folder path).
        max_shard_size: largest in-memory size of one parquet shard (bytes or e.g. "500MB").

    Returns:
        ``out_dir`` as a Path.

    Raises:
        RedistributionError: the corpus may not be redistributed and no permission was asserted.
        PublishError: the folder already holds configurations of another corpus, or splits disagree
            on their features.
        ConfigError: a config name that is invalid or disagrees with ``build_config``.
    """
    from datasets import DatasetDict
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo
    from datasets.utils.metadata import MetadataConfigs
    from datasets.utils.py_utils import convert_file_size_to_int
    from huggingface_hub import DatasetCard, DatasetCardData

    if not isinstance(dataset_dict, DatasetDict) or len(dataset_dict) == 0:
        raise PublishError(f"expected a non-empty datasets.DatasetDict (train/validation/test), got {type(dataset_dict).__name__}")
    corpus, build_config = _resolve_build(dataset_dict, corpus, build_config)
    check_redistribution(corpus, permission_to_redistribute)
    config_name = _resolve_config_name(config_name, build_config)
    first_split = next(iter(dataset_dict))
    features = dataset_dict[first_split].features
    for split, dataset in dataset_dict.items():
        if dataset.features != features:
            raise PublishError(f"split {split!r} has features {dataset.features} but {first_split!r} has {features}; "
                               "every split of a configuration must share its columns")
    try:
        json.dumps(build_config)
    except TypeError as error:
        raise ConfigError(f"build_config must be JSON-serialisable to be recorded in the card ({error}); "
                          "convert paths and objects to strings") from None

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    readme = out_dir / README_NAME
    card_data = DatasetCard.load(readme).data if readme.is_file() else DatasetCardData()
    existing = _existing_corpus(out_dir, card_data)
    if existing is not None and existing[1] != corpus.name:
        raise PublishError(
            f"{out_dir} already holds configuration {existing[0]!r} built from {existing[1]}, but this build is from "
            f"{corpus.name}; export each corpus into its own folder (repository)"
        )

    staged = Path(tempfile.mkdtemp(prefix=f".rella-staging-{config_name}-", dir=out_dir))
    try:
        written = _write_shards(dataset_dict, staged, config_name, convert_file_size_to_int(max_shard_size))
        sidecar = {"corpus": corpus.name, "config_name": config_name, "build_config": build_config,
                   "splits": {split: sizes["num_examples"] for split, sizes in written.items()},
                   "rella_hf_version": _library_versions(("rella-hf",)).get("rella-hf", "unknown")}
        atomic_write_text(staged / BUILD_CONFIG_FILENAME, _json_text(sidecar) + "\n")
        _replace_folder(staged, out_dir / config_name)
    finally:
        shutil.rmtree(staged, ignore_errors=True)

    # The same YAML structures DatasetDict.push_to_hub writes, merged with what the README already lists.
    MetadataConfigs({config_name: {"data_files": [{"split": split, "path": f"{config_name}/{split}-*"}
                                                  for split in dataset_dict]}}).to_dataset_card_data(card_data)
    info = DatasetInfo(
        features=features,
        splits=SplitDict({split: SplitInfo(name=split, num_bytes=sizes["num_bytes"], num_examples=sizes["num_examples"])
                          for split, sizes in written.items()}),
        download_size=sum(sizes["parquet_bytes"] for sizes in written.values()),
        dataset_size=sum(sizes["num_bytes"] for sizes in written.values()),
    )
    DatasetInfosDict({config_name: info}).to_dataset_card_data(card_data)

    licence, licence_name, licence_link, homepage = _CORPUS_LICENCE_METADATA.get(
        corpus.name, ("other", None, None, "not recorded"))
    total_rows = max(sum(split.num_examples or 0 for split in config_info.splits.values())
                     for config_info in DatasetInfosDict.from_dataset_card_data(card_data).values())
    pretty_name = f"ReLLa CTR prompts from {corpus.name}"
    # Keys someone added to the README by hand (e.g. gating prompts) are kept; ours are refreshed.
    header = DatasetCardData(**{
        **card_data.to_dict(),
        "pretty_name": pretty_name, "language": ["en"], "license": licence, "license_name": licence_name,
        "license_link": licence_link, "task_categories": ["text-classification"],
        "tags": ["recommendation", "ctr-prediction", "rella", "lifelong-user-behavior", corpus.name.lower()],
        "size_categories": [_size_category(total_rows)], "source_datasets": ["extended"],
    })
    if corpus.redistributable:
        status = "allowed by the licence; this transformation is distributed under the same licence conditions"
    else:
        status = ("the licence does not allow redistribution; the uploader asserted (permission_to_redistribute=True) "
                  "that they hold separate permission from the rights holder")
    people = ("their ratings and their profile (" + ", ".join(corpus.profile_columns) + ")"
              if corpus.profile_columns else "their ratings only")
    feature_rows = [{"name": name, "type": _feature_type(feature),
                     "description": _COLUMN_DESCRIPTIONS.get(name, "column added by the build")}
                    for name, feature in features.items()]
    fields = {
        "pretty_name": pretty_name,
        "corpus_name": corpus.name,
        "rella_hf_version": _library_versions(("rella-hf",)).get("rella-hf", "unknown"),
        "corpus_description": (corpus.__doc__ or corpus.name).strip().splitlines()[0],
        "corpus_homepage": homepage,
        "licence_summary": f"{licence}" + (f" ({licence_name}, {licence_link})" if licence_link else ""),
        "licence_sentence": corpus.licence,
        "redistribution_status": status,
        "protocol_description": _protocol_description(corpus),
        "config_sections": _config_sections(out_dir, card_data),
        "repo_id": repo_id or str(out_dir),
        "features": feature_rows,
        "people_description": people,
        "library_versions": _library_versions(("rella-hf", "datasets", "huggingface_hub", "pyarrow")),
        "rella_citation": RELLA_CITATION,
        "corpus_citation": corpus.citation or "not recorded",
    }
    card = _render_card(DatasetCard, header, "dataset_card.md", fields)
    atomic_write_text(readme, str(card))
    return out_dir


def push_dataset(
    dataset_dict: DatasetDict,
    repo_id: str,
    config_name: str | None = None,
    *,
    corpus: str | Corpus | None = None,
    build_config: dict | None = None,
    permission_to_redistribute: bool = False,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    dry_run: bool = False,
    export_dir: str | os.PathLike | None = None,
) -> UploadPlan:
    """Upload a built dataset as one configuration of a Hub dataset repository, in one commit.

    The repository's README is merged: configurations already published stay listed. Stale
    shards of the same configuration are deleted in the same commit.

    Args:
        dataset_dict: the built dataset.
        repo_id: ``"namespace/name"`` of the dataset repository (created if missing).
        config_name: configuration name; None derives it from ``build_config``.
        corpus: the source corpus's registered name (decides whether publishing is allowed); None
            takes it from the build settings the dataset carries.
        build_config: build settings recorded in the card; None takes those the dataset carries.
        permission_to_redistribute: assert that you hold permission to redistribute the corpus.
        token: Hugging Face token; None uses the usual mechanisms (``HF_TOKEN``, ``hf auth login``).
            It is never logged or written anywhere.
        private: visibility of a newly created repository.
        commit_message: the commit's message (default names the configuration).
        max_shard_size: largest in-memory size of one parquet shard.
        dry_run: only export and return the plan; no network access.
        export_dir: keep the exported folder here (default: a temporary folder, removed afterwards).

    Returns:
        The :class:`UploadPlan`; with ``dry_run=False`` it also carries the commit URL.
    """
    _check_repo_id(repo_id)
    corpus, build_config = _resolve_build(dataset_dict, corpus, build_config)
    check_redistribution(corpus, permission_to_redistribute)
    resolved_name = _resolve_config_name(config_name, build_config)
    with tempfile.TemporaryDirectory(prefix="rella-push-dataset-") as scratch:
        folder = Path(export_dir) if export_dir is not None else Path(scratch) / "repo"
        folder.mkdir(parents=True, exist_ok=True)
        api, remote_files = None, []
        if not dry_run:
            from huggingface_hub import HfApi

            from huggingface_hub.errors import RepositoryNotFoundError

            api = HfApi(token=token)
            try:
                remote_files = list(api.list_repo_files(repo_id, repo_type="dataset"))
            except RepositoryNotFoundError:  # created below, once the export has passed every check
                remote_files = []
            # Bring the published README and the other configurations' build settings in, so the merge keeps them.
            wanted = [path for path in remote_files if path == README_NAME or (
                path.endswith("/" + BUILD_CONFIG_FILENAME) and not path.startswith(resolved_name + "/"))]
            for path in wanted:
                api.hf_hub_download(repo_id, path, repo_type="dataset", local_dir=str(folder))
        export_dataset(dataset_dict, folder, corpus, resolved_name, build_config, permission_to_redistribute,
                       repo_id=repo_id, max_shard_size=max_shard_size)
        config_files = sorted(path.relative_to(folder).as_posix() for path in (folder / resolved_name).iterdir())
        paths = [README_NAME] + config_files
        _assert_token_absent(folder, paths, _resolve_token(token, dry_run))
        plan = _plan(folder, paths, repo_id=repo_id, repo_type="dataset", config_name=resolved_name,
                     delete_patterns=[f"{resolved_name}/*"], private=private,
                     commit_message=commit_message or f"Upload configuration {resolved_name} with rella-hf")
        if dry_run:
            return plan
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        return _upload(api, folder, plan, remote_files)


def load_published(
    repo_id_or_folder: str | os.PathLike,
    K: int,
    retrieval: str,
    order: str = DEFAULT_ORDER,
    split: str | None = None,
    **load_kwargs,
):
    """Load a published configuration with ``datasets.load_dataset(repo, config_name_for(K, retrieval, order))``.

    Args:
        repo_id_or_folder: Hub dataset repository id or an exported folder.
        K: number of history behaviours per prompt.
        retrieval: retrieval method ("semantic", "recent", ...).
        order: order of the retrieved behaviours (default "chronological").
        split: one split ("train", "validation", "test") or None for all.
        load_kwargs: passed to ``datasets.load_dataset`` (``cache_dir``, ``revision``, ``token``, ...).

    Raises:
        ConfigError: when the repository or folder has no such configuration; the message lists those it has.
    """
    import datasets

    config_name = config_name_for(K, retrieval, order)
    source = str(repo_id_or_folder)
    readme = Path(source) / README_NAME
    if readme.is_file():
        from datasets.utils.metadata import MetadataConfigs
        from huggingface_hub import DatasetCard

        available = list(MetadataConfigs.from_dataset_card_data(DatasetCard.load(readme).data))
        if config_name not in available:
            raise ConfigError(f"{source} has no configuration {config_name!r} (K={K}, retrieval={retrieval!r}, "
                              f"order={order!r}); it has {', '.join(available) or 'none'}")
    try:
        return datasets.load_dataset(source, config_name, split=split, **load_kwargs)
    except ValueError as error:
        if config_name in str(error) and "not found" in str(error).lower():
            raise ConfigError(f"{source} has no configuration {config_name!r} (K={K}, retrieval={retrieval!r}, "
                              f"order={order!r}): {error}") from error
        raise


# --------------------------------------------------------------------------------------------
# Adapters
# --------------------------------------------------------------------------------------------


def _redact(value: Any) -> Any:
    """Copy of a config with secrets blanked: secret-named keys and any ``hf_...`` token-shaped string."""
    if isinstance(value, dict):
        return {key: ("<redacted>" if str(key).lower() in _SECRET_KEYS and item not in (None, "", False, True)
                      else _redact(item)) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item) for item in value]
    if isinstance(value, str) and _HF_TOKEN_VALUE_RE.search(value):
        return _HF_TOKEN_VALUE_RE.sub("<redacted>", value)
    return value


def _find(config: dict, *names: str) -> Any:
    """First non-None value of any of ``names`` in a possibly nested config, shallow levels first."""
    level = [config]
    while level:
        for mapping in level:
            for name in names:
                if mapping.get(name) is not None:
                    return mapping[name]
        level = [value for mapping in level for value in mapping.values() if isinstance(value, dict)]
    return None


def _flatten_metrics(metrics: dict, prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten_metrics(value, name + "/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append((name, value))
    return rows


def _card_metrics(metrics: dict) -> list[tuple[str, float | int, str | None]]:
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


def _training_summary(training_config: dict) -> dict[str, Any]:
    """K, retrieval, train type, shots, dataset and configurations of a run, from its (possibly nested) config.

    rella-hf runs record ``train_type`` (simple = recent-K prompts, sequential = SUBR prompts,
    mixed = both, ReiT) and ``test_type`` rather than a retrieval method; other configs may record
    ``retrieval`` / ``config_name`` directly.
    """
    K = _find(training_config, "K", "k")
    train_type = _find(training_config, "train_type")
    retrieval = _find(training_config, "retrieval")
    order = _find(training_config, "order") or DEFAULT_ORDER
    names = {}  # prompt kind of a rella-hf run -> the dataset configuration holding those prompts
    if isinstance(K, int) and not isinstance(K, bool) and K > 0:
        names = {"simple": config_name_for(K, "recent"), "sequential": config_name_for(K, "semantic")}
    dataset_config = _find(training_config, "config_name", "dataset_config")
    if dataset_config is None and names:
        if isinstance(retrieval, str) and _SLUG_RE.match(retrieval):
            dataset_config = config_name_for(K, retrieval, order)
        elif train_type in names:
            dataset_config = names[train_type]
        elif train_type == "mixed":
            dataset_config = f"{names['simple']} + {names['sequential']}"
    test_type = _find(training_config, "test_type")
    eval_config = names.get(test_type) if test_type else (dataset_config if dataset_config and "+" not in dataset_config else None)
    trained_on = _find(training_config, "dataset_name", "dataset", "dataset_path")
    corpus = None
    for candidate in (_find(training_config, "corpus"), trained_on):
        try:
            corpus = get_corpus(candidate) if isinstance(candidate, str) else None
        except RellaError:  # a Hub dataset id or a path rather than a registered corpus name
            continue
        if corpus is not None:
            break
    return {
        "K": K, "train_type": train_type, "dataset_config": dataset_config, "eval_config": eval_config,
        "retrieval": retrieval or _TRAIN_TYPE_RETRIEVAL.get(train_type),
        "shots": _find(training_config, "shots", "num_shots", "train_size", "train_sample_size"),
        "trained_on": trained_on or _find(training_config, "corpus"), "corpus": corpus,
    }


def _base_model_identity(name: str, warn: bool = True) -> tuple[str, str | None, str]:
    """``(name to record in adapter_config.json, Hub id or None, display name)`` of a base model.

    SmolLM2's converted cache folder (and its alias) map to the alias, which rella-hf resolves
    offline to the same dequantized weights the adapter was trained on.
    """
    from .models import CONVERSION_MARKER, SMOLLM2_ALIASES, SMOLLM2_NAME

    path = Path(name).expanduser()
    if name.lower() in SMOLLM2_ALIASES or (path.name == SMOLLM2_NAME and (path / CONVERSION_MARKER).is_file()):
        return SMOLLM2_NAME, _SMOLLM2_HUB_ID, f"{_SMOLLM2_HUB_ID} (Q4_1 GGUF dequantized by rella-hf, alias {SMOLLM2_NAME})"
    if _looks_like_hub_id(name):
        return name, name, name
    if warn:
        logger.warning("Base model %s is a local path; pass base_model=<Hub id> so others can load the adapter.", name)
    return name, None, name


def _adapter_repo_files(folder: Path) -> list[str]:
    """The files of an exported adapter folder that belong in the repository, README.md first."""
    names = (README_NAME, *_ADAPTER_REQUIRED_FILES, *_TOKENIZER_FILES, *_TRAINING_CONFIG_NAMES, _METRICS_NAME)
    present = sorted(name for name in names[1:] if (folder / name).is_file())
    return [README_NAME] + present


def _read_training_config(path: Path) -> dict:
    import yaml

    text = path.read_text(encoding="utf-8")
    loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(loaded, dict):
        raise PublishError(f"{path} holds a {type(loaded).__name__}, expected a mapping of training settings")
    return loaded


def export_adapter(
    output_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    repo_id: str | None = None,
    base_model: str | None = None,
    dataset_repo_id: str | None = None,
    license: str | None = None,
) -> Path:
    """Turn a training output folder into a model repository folder with a model card.

    Copies the adapter (``adapter_model.safetensors``, ``adapter_config.json``), the tokenizer
    files, ``training_config.json``/``.yaml`` (secrets redacted) and ``metrics.json``, and writes
    README.md from ``hub_cards/model_card.md``. Checkpoint folders and optimizer states are left out.

    Args:
        output_dir: the trainer's output folder.
        out_dir: the repository folder to write (created; files of the same names are replaced).
        repo_id: the model repository it is meant for (used in the card's loading examples).
        base_model: base model to record (Hub id); default: the training config's, else the adapter
            config's ``base_model_name_or_path``. Written into the copied ``adapter_config.json``.
        dataset_repo_id: Hub dataset repository of the training data; adds the card's ``datasets``
            and ``model-index`` (metrics) metadata.
        license: licence of the adapter (default: the base model's when known, else "other").

    Raises:
        PublishError: when required files are missing or metrics.json is empty.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    source, out_dir = Path(output_dir), Path(out_dir)
    if out_dir.exists() and out_dir.resolve() == source.resolve():
        raise PublishError(f"out_dir {out_dir} is the training output folder itself; export into another folder")
    missing = [name for name in _ADAPTER_REQUIRED_FILES if not (source / name).is_file()]
    training_config_path = next((source / name for name in _TRAINING_CONFIG_NAMES if (source / name).is_file()), None)
    if training_config_path is None:
        missing.append("training_config.json (or .yaml)")
    if not (source / _METRICS_NAME).is_file():
        missing.append(_METRICS_NAME)
    if not (source / "tokenizer_config.json").is_file():
        missing.append("tokenizer files (tokenizer_config.json)")
    if missing:
        raise PublishError(
            f"{source} lacks {', '.join(missing)}; expected a rella-hf training output folder "
            "(save the adapter with safetensors, the tokenizer, the training config and the evaluation metrics)"
        )
    training_config = _redact(_read_training_config(training_config_path))
    metrics = json.loads((source / _METRICS_NAME).read_text(encoding="utf-8"))
    metric_rows = _card_metrics(metrics) if isinstance(metrics, dict) else []
    if not metric_rows:
        raise PublishError(f"{source / _METRICS_NAME} holds no numeric metrics; evaluate the adapter before publishing it")
    adapter_config = json.loads((source / "adapter_config.json").read_text(encoding="utf-8"))

    if base_model:
        base_for_config, base_hub_id, base_display = _base_model_identity(str(base_model))
    else:
        # The adapter config names the weights actually loaded (often a local cache folder); the training
        # config names what the user asked for (an alias or a Hub id). Prefer whichever is a Hub id.
        candidates = [name for name in (adapter_config.get("base_model_name_or_path"),
                                        _find(training_config, "base_model", "model_name_or_path", "model_name"))
                      if isinstance(name, str) and name]
        if not candidates:
            raise PublishError(f"{source} records no base model; pass base_model=<Hub id>")
        identities = [_base_model_identity(name, warn=False) for name in candidates]
        base_for_config, base_hub_id, base_display = next((found for found in identities if found[1]), identities[0])
        if base_hub_id is None:
            logger.warning("Base model %s is a local path; pass base_model=<Hub id> so others can load the adapter.",
                           base_for_config)
    adapter_config["base_model_name_or_path"] = base_for_config

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (*_TOKENIZER_FILES, *_TRAINING_CONFIG_NAMES):  # leftovers of an earlier export must not be uploaded
        if (out_dir / name).is_file() and not (source / name).is_file():
            (out_dir / name).unlink()
    shutil.copyfile(source / "adapter_model.safetensors", out_dir / "adapter_model.safetensors")
    atomic_write_text(out_dir / "adapter_config.json", _json_text(adapter_config) + "\n")
    for name in _TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, out_dir / name)
    if training_config_path.suffix == ".json":
        atomic_write_text(out_dir / training_config_path.name, _json_text(training_config) + "\n")
    else:
        import yaml

        atomic_write_text(out_dir / training_config_path.name, yaml.safe_dump(training_config, sort_keys=False))
    shutil.copyfile(source / _METRICS_NAME, out_dir / _METRICS_NAME)

    run = _training_summary(training_config)
    corpus = run["corpus"]
    dataset_name = dataset_repo_id or run["trained_on"]
    not_recorded = "not recorded"
    eval_results = None
    if dataset_repo_id:
        eval_results = [
            EvalResult(task_type="text-classification", dataset_type=dataset_repo_id, dataset_name=dataset_repo_id,
                       dataset_config=run["eval_config"], dataset_split=split, metric_type=name.split("/")[-1],
                       metric_name=name, metric_value=value)
            for name, value, split in _leaderboard_metrics(metric_rows)
        ] or None
    model_name = (repo_id or out_dir.name).split("/")[-1]
    header = ModelCardData(
        base_model=base_hub_id, datasets=[dataset_repo_id] if dataset_repo_id else None,
        library_name="peft", license=license or _KNOWN_BASE_LICENCES.get(base_hub_id or "", "other"),
        pipeline_tag="text-generation", tags=["rella", "recommendation", "ctr-prediction", "lora", "peft"],
        language=["en"], model_name=model_name, eval_results=eval_results,
    )
    fields = {
        "model_title": f"ReLLa CTR adapter {model_name}",
        "base_model_name": base_display,
        "base_model_id": base_hub_id or base_for_config,
        "dataset_name": dataset_name or not_recorded,
        "dataset_config": run["dataset_config"] or not_recorded,
        "eval_config": run["eval_config"] or not_recorded,
        "eval_split": next((split for _, _, split in metric_rows if split), not_recorded),
        "K": run["K"] if run["K"] is not None else not_recorded,
        "retrieval": run["retrieval"] or not_recorded,
        "train_type": run["train_type"] or not_recorded,
        "shots": run["shots"] or not_recorded,
        "lora_r": adapter_config.get("r", not_recorded),
        "lora_alpha": adapter_config.get("lora_alpha", not_recorded),
        "lora_dropout": adapter_config.get("lora_dropout", not_recorded),
        "lora_target_modules": ", ".join(sorted(adapter_config.get("target_modules") or [])) or not_recorded,
        # rella-hf runs keep the ReLLa settings under "reit"; the full TrainingArguments stay in the file.
        "training_config_json": _json_text(training_config.get("reit") if isinstance(training_config.get("reit"), dict)
                                           else training_config),
        "metrics": [{"name": name, "value": _metric_text(value)} for name, value, _ in metric_rows],
        "repo_id": repo_id or str(out_dir),
        "corpus_name": corpus.name if corpus is not None else (run["trained_on"] or not_recorded),
        "corpus_licence_sentence": corpus.licence if corpus is not None else "see the licence of the training corpus",
        "library_versions": _library_versions(("rella-hf", "transformers", "peft", "trl", "torch", "huggingface_hub")),
        "rella_citation": RELLA_CITATION,
    }
    card = _render_card(ModelCard, header, "model_card.md", fields)
    atomic_write_text(out_dir / README_NAME, str(card))
    return out_dir


def push_adapter(
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    base_model: str | None = None,
    dataset_repo_id: str | None = None,
    license: str | None = None,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
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
        token: Hugging Face token; None uses the usual mechanisms. Never logged or written.
        private: visibility of a newly created repository.
        commit_message: the commit's message.
        dry_run: only export and return the plan; no network access.
        export_dir: keep the exported folder here (default: a temporary folder).

    Returns:
        The :class:`UploadPlan`; with ``dry_run=False`` it also carries the commit URL.
    """
    _check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="rella-push-adapter-") as scratch:
        folder = Path(export_dir) if export_dir is not None else Path(scratch) / "repo"
        export_adapter(output_dir, folder, repo_id=repo_id, base_model=base_model, dataset_repo_id=dataset_repo_id,
                       license=license)
        paths = _adapter_repo_files(folder)
        _assert_token_absent(folder, paths, _resolve_token(token, dry_run))
        plan = _plan(folder, paths, repo_id=repo_id, repo_type="model", config_name=None, private=private,
                     commit_message=commit_message or "Upload ReLLa adapter with rella-hf")
        if dry_run:
            return plan
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        return _upload(api, folder, plan, [])


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
        base_model: base model to load instead of the adapter config's ``base_model_name_or_path``
            (Hub id, folder, or ``smollm2-135m-instruct``).
        batch_size: scoring batch size.
        dtype: compute dtype (default: the one a local adapter was trained in, as its
            ``training_config.json`` records; else chosen from the hardware).
        device: device (default: the GPU when there is one).
        revision: Hub revision of the adapter repository.
        token: Hugging Face token for private repositories.

    Returns:
        ``rella_hf.scoring.CTRScorer`` over the ``PeftModel``, with the adapter's own tokenizer
        when it ships one (else the base model's).
    """
    from peft import PeftConfig, PeftModel

    from .models import adapter_compute_dtype, load_model, load_tokenizer
    from .scoring import CTRScorer

    source = str(repo_or_path)
    hub_kwargs = {"revision": revision, "token": token} if not Path(source).is_dir() else {}
    hub_kwargs = {key: value for key, value in hub_kwargs.items() if value is not None}
    config = PeftConfig.from_pretrained(source, **hub_kwargs)
    base = base_model or config.base_model_name_or_path
    if not base:
        raise ConfigError(f"{source} records no base model; pass base_model=<Hub id or folder>")
    if dtype is None and Path(source).is_dir():
        dtype = adapter_compute_dtype(source)  # score in the precision it was trained in
    model, tokenizer = load_model(base, dtype=dtype, device=device)
    has_tokenizer = (Path(source) / "tokenizer_config.json").is_file() if Path(source).is_dir() else True
    if has_tokenizer:
        try:
            tokenizer = load_tokenizer(source) if not hub_kwargs else _hub_tokenizer(source, hub_kwargs)
        except OSError:  # a Hub repository without tokenizer files: the base model's tokenizer fits
            pass
    peft_model = PeftModel.from_pretrained(model, source, is_trainable=False, **hub_kwargs)
    peft_model.eval()
    return CTRScorer(peft_model, tokenizer, batch_size=batch_size)


def _hub_tokenizer(repo_id: str, hub_kwargs: dict):
    """Tokenizer of a Hub adapter repository, prepared like :func:`rella_hf.models.load_tokenizer`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(repo_id, **hub_kwargs)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


__all__ = [
    "BUILD_CONFIG_FILENAME", "PlannedFile", "RELLA_CITATION", "UploadPlan", "check_redistribution", "config_name_for",
    "export_adapter", "export_dataset", "load_adapter", "load_published", "parse_config_name", "push_adapter",
    "push_dataset",
]
