"""Publish built prompt datasets as Hub dataset repositories, and load them back.

:func:`export_dataset` writes a Hub dataset repo folder: parquet shards in one folder per
configuration (``K5-semantic/train-00000-of-00001.parquet``), a ``README.md`` whose YAML header
lists every configuration's ``data_files`` and ``dataset_info`` (the metadata
``DatasetDict.push_to_hub`` writes, so ``datasets.load_dataset(folder_or_repo, "K5-semantic")``
resolves a local folder and the Hub repo the same way) and a card rendered from
``hub_cards/dataset_card.md``. Exporting another configuration into the same folder merges it
into the README; the first configuration is the repository's default (``default: true``).
:func:`push_dataset` exports into a staging folder and uploads one configuration with
``HfApi.upload_folder``, pinned to the commit whose README it merged; :func:`load_published` loads a
configuration back by its build settings.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..corpora import Corpus, get_corpus
from ..errors import ConfigError, PublishError, RedistributionError
from ..utils import atomic_write_text
from .cards import json_text, library_versions, read_json, write_dataset_card
from .naming import (
    BUILD_CONFIG_FILENAME,
    DEFAULT_MAX_SHARD_SIZE,
    DEFAULT_ORDER,
    README_NAME,
    check_repo_id,
    config_name_for,
    resolve_config_name,
)
from .upload import (
    UploadPlan,
    assert_token_absent,
    check_upload_target,
    make_plan,
    prepare_branch,
    resolve_token,
    send_plan,
)

if TYPE_CHECKING:
    from datasets import DatasetDict
    from huggingface_hub import CardData

logger = logging.getLogger(__name__)


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
    reason = "its licence is unknown" if corpus.hub_license == "unknown" else "its licence says"
    raise RedistributionError(
        f"{corpus.name} may not be published: {reason}: \"{corpus.licence}\"; pass "
        f"permission_to_redistribute=True only if you hold that permission from the rights holder, "
        f"or publish a build of a redistributable corpus such as ml-latest-small"
    )


def _existing_corpus(out_dir: Path, card_data: CardData) -> tuple[str, str] | None:
    """``(config_name, corpus)`` of the first other configuration already in ``out_dir`` that names its corpus."""
    from datasets.utils.metadata import MetadataConfigs

    for name in MetadataConfigs.from_dataset_card_data(card_data):
        sidecar = read_json(out_dir / name / BUILD_CONFIG_FILENAME)
        if sidecar and sidecar.get("corpus"):
            return name, sidecar["corpus"]
    return None


def _carried_settings(dataset_dict: DatasetDict) -> dict:
    """Build settings a DatasetDict built by rella-hf carries in its info ({} for any other dataset)."""
    from ..builders import dataset_settings

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
    # A corpus read from the user's files takes its source, licence and protocol from the settings.
    corpus = get_corpus(corpus, build_config) if isinstance(corpus, str) else corpus
    recorded = build_config.get("corpus")
    if isinstance(recorded, str) and recorded.lower() != corpus.name.lower():
        raise ConfigError(f"corpus={corpus.name!r} disagrees with the build settings, which say the dataset was built "
                          f"from {recorded!r}; drop corpus= or pass the corpus it was built from")
    return corpus, build_config


def _check_exportable(dataset_dict, build_config: dict):
    """The features shared by every split; refuse an empty dict, mixed features or unserialisable settings."""
    from datasets import DatasetDict

    if not isinstance(dataset_dict, DatasetDict) or len(dataset_dict) == 0:
        raise PublishError(f"expected a non-empty datasets.DatasetDict (train/validation/test), got "
                           f"{type(dataset_dict).__name__}")
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
    return features


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


def _write_configuration(dataset_dict, out_dir: Path, corpus: Corpus, config_name: str, build_config: dict,
                         max_shard_size: int | str) -> dict[str, dict]:
    """Write the configuration's shards and sidecar into ``out_dir/<config_name>`` (replacing it whole)."""
    from datasets.utils.py_utils import convert_file_size_to_int

    staged = Path(tempfile.mkdtemp(prefix=f".rella-staging-{config_name}-", dir=out_dir))
    try:
        written = _write_shards(dataset_dict, staged, config_name, convert_file_size_to_int(max_shard_size))
        sidecar = {"corpus": corpus.name, "config_name": config_name, "build_config": build_config,
                   "splits": {split: sizes["num_examples"] for split, sizes in written.items()},
                   "rella_hf_version": library_versions(("rella-hf",)).get("rella-hf", "unknown")}
        atomic_write_text(staged / BUILD_CONFIG_FILENAME, json_text(sidecar) + "\n")
        _replace_folder(staged, out_dir / config_name)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return written


def _record_configuration(card_data: CardData, config_name: str, splits, features, written: dict) -> None:
    """Add the configuration's ``configs`` and ``dataset_info`` entries (the ones push_to_hub writes) to ``card_data``.

    The first configuration of a repository is marked ``default: true`` (and stays the default when
    others are added), so ``datasets.load_dataset(repo)`` loads it without a configuration name.
    """
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo
    from datasets.utils.metadata import MetadataConfigs

    others = {name: entry for name, entry in MetadataConfigs.from_dataset_card_data(card_data).items() if name != config_name}
    entry = {"data_files": [{"split": split, "path": f"{config_name}/{split}-*"} for split in splits]}
    if not any(other.get("default") for other in others.values()):
        entry["default"] = True
    MetadataConfigs({config_name: entry}).to_dataset_card_data(card_data)
    info = DatasetInfo(
        features=features,
        splits=SplitDict({split: SplitInfo(name=split, num_bytes=sizes["num_bytes"], num_examples=sizes["num_examples"])
                          for split, sizes in written.items()}),
        download_size=sum(sizes["parquet_bytes"] for sizes in written.values()),
        dataset_size=sum(sizes["num_bytes"] for sizes in written.values()),
    )
    DatasetInfosDict({config_name: info}).to_dataset_card_data(card_data)


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
    from huggingface_hub import DatasetCard, DatasetCardData

    corpus, build_config = _resolve_build(dataset_dict, corpus, build_config)
    check_redistribution(corpus, permission_to_redistribute)
    config_name = resolve_config_name(config_name, build_config)
    features = _check_exportable(dataset_dict, build_config)
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
    written = _write_configuration(dataset_dict, out_dir, corpus, config_name, build_config, max_shard_size)
    # The same YAML structures DatasetDict.push_to_hub writes, merged with what the README already lists.
    _record_configuration(card_data, config_name, list(dataset_dict), features, written)
    write_dataset_card(out_dir, card_data, corpus, features, repo_id)
    return out_dir


def _fetch_published(api, repo_id: str, folder: Path, config_name: str, revision: str | None) -> str | None:
    """Download the README and the other configurations' sidecars at the branch head; return the head's sha
    (None for a repository or branch not created yet).

    The head commit is what the upload is pinned to (``parent_commit``): if another push lands in
    between, the Hub refuses this commit instead of letting it drop that push's configuration.
    """
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        head = api.repo_info(repo_id, repo_type="dataset", revision=revision).sha
        remote_files = list(api.list_repo_files(repo_id, repo_type="dataset", revision=head))
    except (RepositoryNotFoundError, RevisionNotFoundError):  # created below, once the export has passed every check
        return None
    wanted = [path for path in remote_files if path == README_NAME or (
        path.endswith("/" + BUILD_CONFIG_FILENAME) and not path.startswith(config_name + "/"))]
    for path in wanted:
        api.hf_hub_download(repo_id, path, repo_type="dataset", revision=head, local_dir=str(folder))
    return head


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
    revision: str | None = None,
    create_pr: bool = False,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    dry_run: bool = False,
    export_dir: str | os.PathLike | None = None,
) -> UploadPlan:
    """Upload a built dataset as one configuration of a Hub dataset repository (``HfApi.upload_folder``).

    The repository's README is merged: configurations already published stay listed. Stale
    shards of the same configuration are deleted in the same commit (``delete_patterns``), which
    is pinned to the commit the README was read from (``parent_commit``).

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
        revision: branch to commit to (created from the default branch when missing); None: the default branch.
        create_pr: open a pull request against the default branch instead of committing to it (not with ``revision``).
        max_shard_size: largest in-memory size of one parquet shard.
        dry_run: only export and return the plan; no network access.
        export_dir: keep the exported folder here (default: a temporary folder, removed afterwards).

    Returns:
        The :class:`UploadPlan`; with ``dry_run=False`` it also carries the commit (and PR) URL.
    """
    check_repo_id(repo_id)
    check_upload_target(revision, create_pr)
    corpus, build_config = _resolve_build(dataset_dict, corpus, build_config)
    check_redistribution(corpus, permission_to_redistribute)
    resolved_name = resolve_config_name(config_name, build_config)
    with tempfile.TemporaryDirectory(prefix="rella-push-dataset-") as scratch:
        folder = Path(export_dir) if export_dir is not None else Path(scratch) / "repo"
        folder.mkdir(parents=True, exist_ok=True)
        api, head = None, None
        if not dry_run:
            from huggingface_hub import HfApi

            api = HfApi(token=token)
            head = _fetch_published(api, repo_id, folder, resolved_name, revision)
        export_dataset(dataset_dict, folder, corpus, resolved_name, build_config, permission_to_redistribute,
                       repo_id=repo_id, max_shard_size=max_shard_size)
        config_files = sorted(path.relative_to(folder).as_posix() for path in (folder / resolved_name).iterdir())
        paths = [README_NAME] + config_files
        assert_token_absent(folder, paths, resolve_token(token, dry_run))
        plan = make_plan(folder, paths, repo_id=repo_id, repo_type="dataset", config_name=resolved_name,
                         delete_patterns=[f"{resolved_name}/*"], private=private, revision=revision,
                         create_pr=create_pr, parent_commit=head,
                         commit_message=commit_message or f"Upload configuration {resolved_name} with rella-hf")
        if dry_run:
            return plan
        prepare_branch(api, plan)
        return send_plan(api, folder, plan)


def published_configs(folder: str | os.PathLike) -> list[str] | None:
    """Names of the configurations an exported folder's README lists, or None when ``folder`` is no such folder."""
    readme = Path(folder) / README_NAME
    if not readme.is_file():
        return None
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    return list(MetadataConfigs.from_dataset_card_data(DatasetCard.load(readme).data))


def published_build_config(repo_id_or_folder: str | os.PathLike, config_name: str, *, revision: str | None = None,
                           token: str | bool | None = None) -> dict | None:
    """The build settings stored beside a published configuration (its ``rella_build_config.json``), or None.

    Args:
        repo_id_or_folder: an exported folder or a Hub dataset repository id.
        config_name: the configuration, e.g. ``"K5-semantic"``.
        revision: Hub revision to read (ignored for a folder).
        token: Hugging Face token for private repositories.
    """
    local = Path(repo_id_or_folder) / config_name / BUILD_CONFIG_FILENAME
    if Path(repo_id_or_folder).is_dir():
        sidecar = read_json(local)
    else:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

        try:
            path = hf_hub_download(str(repo_id_or_folder), f"{config_name}/{BUILD_CONFIG_FILENAME}",
                                   repo_type="dataset", revision=revision, token=token)
        except (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError):
            return None  # a repository not exported by rella-hf, or offline: nothing to compare with
        sidecar = read_json(Path(path))
    return sidecar.get("build_config") if isinstance(sidecar, dict) else None


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
        load_kwargs: passed to ``datasets.load_dataset`` (``cache_dir``, ``revision``, ``token``,
            ``streaming``, ...).

    Raises:
        ConfigError: when the repository or folder has no such configuration; the message lists those it has.
    """
    import datasets

    config_name = config_name_for(K, retrieval, order)
    source = str(repo_id_or_folder)
    available = published_configs(source)
    if available is not None and config_name not in available:
        raise ConfigError(f"{source} has no configuration {config_name!r} (K={K}, retrieval={retrieval!r}, "
                          f"order={order!r}); it has {', '.join(available) or 'none'}")
    try:
        return datasets.load_dataset(source, config_name, split=split, **load_kwargs)
    except ValueError as error:
        if config_name in str(error) and "not found" in str(error).lower():
            raise ConfigError(f"{source} has no configuration {config_name!r} (K={K}, retrieval={retrieval!r}, "
                              f"order={order!r}): {error}") from error
        raise


__all__ = ["check_redistribution", "export_dataset", "load_published", "published_build_config", "published_configs",
           "push_dataset"]
