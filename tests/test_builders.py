from pathlib import Path

import numpy as np
import pytest
from corpus_fixtures import write_book_crossing, write_ml1m

import rella_hf
from rella_hf.builders import ReLLaConfig, dataset_settings, get_builder_class
from rella_hf.embeddings import ItemEmbedder
from rella_hf.errors import ConfigError, RellaError

VICUNA = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the user's questions. USER: ")


class CountingEmbedder(ItemEmbedder):
    """Deterministic embeddings from the text's characters; counts how often it is asked."""

    calls = 0
    identity = "test:counting"
    pooling = "model"

    def encode(self, texts, batch_size=32, progress=True):
        type(self).calls += 1
        vectors = np.zeros((len(texts), 16), dtype=np.float32)
        for row, text in enumerate(texts):
            for position, char in enumerate(text.encode()):
                vectors[row, (char + position) % 16] += 1.0
        return vectors


@pytest.fixture
def counting_embedder(monkeypatch, tmp_path):
    CountingEmbedder.calls = 0
    monkeypatch.setenv("RELLA_HF_CACHE", str(tmp_path / "rella-cache"))
    monkeypatch.setattr("rella_hf.embeddings.get_embedder", lambda name, **kwargs: CountingEmbedder())
    return CountingEmbedder


def test_ml1m_prompt_matches_the_template_exactly(tmp_path):
    ds = rella_hf.load_dataset("ml-1m", K=3, data_dir=write_ml1m(tmp_path / "data"), chat_model=None,
                               cache_dir=tmp_path / "cache")
    assert set(ds) == {"train", "test"}  # 6 samples: int(0.1 * 6) = 0 in validation, an empty split is left out
    first = ds["train"][0]  # user 1 (female, K-12 student, under 18), target Heat, history items 3, 4, 5
    raw = (
        "The user is a female. Her job is K-12 student. Her age is under 18.\n"
        "She watched the following movies in order in the past, and rated them:\n"
        "['0. Grumpier Old Men (1995) (4 stars)', '1. Waiting to Exhale (1995) (1 star)', "
        "'2. Father of the Bride Part II (1995) (4 stars)']\n"
        "Based on the movies she has watched, deduce if she will like the movie ***Heat (1995)***.\n"
        "Note that more stars the user rated the movie, the user liked the movie more.\n"
        "You should ONLY tell me yes or no."
    )
    assert first["raw_prompt"] == raw
    assert first["prompt"] == VICUNA + raw + " ASSISTANT:"
    assert first["completion"] == " No." and first["label"] == 0
    assert first["history_item_ids"] == [3, 4, 5] and first["history_ratings"] == [4.0, 1.0, 4.0]


def test_book_crossing_splits_and_string_ids(tmp_path):
    ds = rella_hf.load_dataset("BookCrossing", K=2, data_dir=write_book_crossing(tmp_path / "data"), chat_model=None,
                               cache_dir=tmp_path / "cache")
    assert set(ds) == {"train", "test"}
    row = ds["train"][0]
    assert isinstance(row["item_id"], str) and all(isinstance(item, str) for item in row["history_item_ids"])
    assert row["raw_prompt"].startswith("The user's location is ")


def test_bundled_default_config_builds_offline(tmp_path, models_in_isolated_cache):
    # the default chat_model is the offline SmolLM2: its template wraps the prompt
    ds = rella_hf.load_dataset("ml-latest-small", K=5, cache_dir=tmp_path / "cache", split="test")
    assert len(ds) == 9_780
    row = ds[0]
    assert row["prompt"].startswith("<|im_start|>") and row["prompt"].endswith("<|im_start|>assistant\n")
    assert row["raw_prompt"] in row["prompt"]
    assert row["completion"] in ("Yes.", "No.")
    assert len(row["history_item_ids"]) == 5
    assert dataset_settings(ds)["K"] == 5 and dataset_settings(ds)["corpus"] == "ml-latest-small"


def test_semantic_build_and_cache_reuse(tmp_path, counting_embedder):
    data = write_ml1m(tmp_path / "data")
    kwargs = dict(data_dir=data, chat_model=None, cache_dir=tmp_path / "cache")
    semantic = rella_hf.load_dataset("ml-1m", K=2, retrieval="semantic", **kwargs)
    assert counting_embedder.calls == 1
    recent = rella_hf.load_dataset("ml-1m", K=2, retrieval="recent", **kwargs)
    # same samples, same ids, only the history differs
    assert semantic["train"]["sample_id"] == recent["train"]["sample_id"]
    assert semantic["train"]["label"] == recent["train"]["label"]
    # an unchanged config is reused from the Arrow cache: the embedder is not called again
    again = rella_hf.load_dataset("ml-1m", K=2, retrieval="semantic", **kwargs)
    assert counting_embedder.calls == 1
    assert again["test"]["prompt"] == semantic["test"]["prompt"]
    # a changed config is a new dataset, but the item embeddings come from the embedding cache
    wider = rella_hf.load_dataset("ml-1m", K=4, retrieval="semantic", **kwargs)
    assert counting_embedder.calls == 1
    assert all(len(ids) == 4 for ids in wider["train"]["history_item_ids"])


def test_semantic_history_is_the_most_similar_chronologically(tmp_path, counting_embedder):
    from rella_hf.builders.base import item_embeddings
    from rella_hf.samples import load_samples

    data = write_ml1m(tmp_path / "data")
    ds = rella_hf.load_dataset("ml-1m", K=2, retrieval="semantic", data_dir=data, chat_model=None,
                               cache_dir=tmp_path / "cache", split="test")
    samples = load_samples("ml-1m", data_dir=data)
    config = ReLLaConfig(name="check", K=2, retrieval="semantic")
    vectors = item_embeddings(samples, config)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    frame = samples.splits["test"]
    for row, shown in zip(frame.itertuples(), ds["history_item_ids"]):
        history = samples.log.iloc[row.history_offset: row.history_offset + row.history_length]
        scores = unit[history["item_row"].to_numpy()] @ unit[row.item_row]
        positions = np.arange(len(history))
        best = sorted(positions[np.lexsort((-positions, -scores))][:2])
        assert shown == samples.items["item_id"].to_numpy()[history["item_row"].to_numpy()[best]].tolist()


def test_token_budget_keeps_the_question(tmp_path, models_in_isolated_cache):
    from rella_hf.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    data = write_ml1m(tmp_path / "data")
    full = rella_hf.load_dataset("ml-1m", K=5, data_dir=data, cache_dir=tmp_path / "cache", split="train")
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in full["prompt"]]
    budget = min(lengths) - 8
    fitted = rella_hf.load_dataset("ml-1m", K=5, data_dir=data, cache_dir=tmp_path / "cache", split="train",
                                   max_prompt_tokens=budget)
    for prompt, raw, ids, full_raw, full_ids in zip(fitted["prompt"], fitted["raw_prompt"], fitted["history_item_ids"],
                                                    full["raw_prompt"], full["history_item_ids"]):
        assert len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) <= budget
        # profile and question are intact; only history items went
        assert raw.split("\n", 2)[0] == full_raw.split("\n", 2)[0]
        assert raw.split("\nBased on", 1)[1] == full_raw.split("\nBased on", 1)[1]
        assert len(ids) < len(full_ids) and ids == full_ids[len(full_ids) - len(ids):]  # oldest dropped first


def test_bad_configs():
    with pytest.raises(ConfigError, match="K=0"):
        ReLLaConfig(name="x", K=0)
    with pytest.raises(ConfigError, match="retrieval='newest'"):
        ReLLaConfig(name="x", retrieval="newest")
    with pytest.raises(ConfigError, match="order='similarity' needs retrieval='semantic'"):
        ReLLaConfig(name="x", order="similarity")
    with pytest.raises(RellaError, match="unknown dataset 'ml-3m'"):
        get_builder_class("ml-3m")
    assert get_builder_class("rella/ml-1m").CORPUS == "ml-1m"


def test_book_crossing_cache_key_holds_the_sampler_version(tmp_path):
    """Book-Crossing's keyed-hash sampler made new rows: an entry keyed as before must not be served;
    MovieLens samplers did not change, so their keys (and existing cache entries) stay as they were."""
    from rella_hf.builders.fingerprint import corpus_files_digest
    from rella_hf.corpora import get_corpus
    from rella_hf.loading import make_builder
    from rella_hf.utils import fingerprint
    from rella_hf.version import __version__

    def old_key(corpus, folder):
        return fingerprint("rella-hf", __version__, corpus_files_digest(get_corpus(corpus), folder))[:16]

    bx_folder, ml_folder = write_book_crossing(tmp_path / "bx"), write_ml1m(tmp_path / "ml")
    bx = make_builder("BookCrossing", data_dir=bx_folder, cache_dir=tmp_path / "cache")
    ml = make_builder("ml-1m", data_dir=ml_folder, cache_dir=tmp_path / "cache")
    assert bx.hash != old_key("BookCrossing", bx_folder) and bx.hash in bx.cache_dir
    assert ml.hash == old_key("ml-1m", ml_folder)


# ---- the dispatch rule and the datasets builder contract ----------------------------------------

def test_a_corpus_name_wins_over_a_folder_of_that_name(tmp_path, monkeypatch, models_in_isolated_cache):
    """The new user's layout: ``ml-1m.zip`` unpacked in the working directory makes ``./ml-1m/``."""
    import zipfile

    from corpus_fixtures import release_zip

    from rella_hf.loading import is_published

    archive = tmp_path / "ml-1m.zip"
    archive.write_bytes(release_zip(write_ml1m(tmp_path / "release"), "ml-1m"))
    work = tmp_path / "work"
    work.mkdir()
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(work)
    monkeypatch.chdir(work)
    assert sorted(path.name for path in (work / "ml-1m").iterdir()) == ["movies.dat", "ratings.dat", "users.dat"]
    ds = rella_hf.load_dataset("ml-1m", K=5, data_dir="ml-1m")
    assert set(ds) == {"train", "test"} and all(len(ids) == 5 for ids in ds["train"]["history_item_ids"])
    assert dataset_settings(ds["train"])["corpus"] == "ml-1m"
    # the one rule: registered names (any case, "rella/" prefix) are corpora; other folders and "org/name" are published
    assert not any(is_published(name) for name in ("ml-1m", "ML-1M", "rella/ml-1m"))
    assert is_published("./ml-1m") and is_published("my-org/rella-ml-1m") and not is_published("ml-2m")
    with pytest.raises(RellaError, match="unknown dataset 'ml-2m'"):
        rella_hf.load_dataset("ml-2m", K=5)


def test_split_generators_only_declare_splits(tmp_path, monkeypatch):
    from rella_hf.corpora.base import Corpus
    from rella_hf.loading import make_builder

    reads = []
    original = Corpus.read
    monkeypatch.setattr(Corpus, "read", lambda self, *args, **kwargs: reads.append(args) or original(self, *args, **kwargs))
    data = write_ml1m(tmp_path / "data")
    builder = make_builder("ml-1m", K=3, data_dir=data, chat_model=None, cache_dir=tmp_path / "cache")
    generators = builder._split_generators(dl_manager=None)
    assert [generator.name for generator in generators] == ["train", "validation", "test"]
    assert [generator.gen_kwargs for generator in generators] == [{"split": name, "folder": str(data)}
                                                                  for name in ("train", "validation", "test")]
    assert reads == []  # declaring the splits read nothing
    builder.download_and_prepare()
    assert reads == [(str(data),)]  # the generate step read the corpus once for all three splits
    assert builder._prepared is None  # and kept nothing once the splits were written
    assert builder.info.splits["validation"].num_examples == 0
    with pytest.raises(ConfigError, match="split 'validation' of this ml-1m build has no samples"):
        builder.as_dataset(split="validation")


def test_download_goes_through_the_builders_download_manager(tmp_path, monkeypatch):
    """No data_dir: the official archive is fetched by the download manager ``datasets`` hands the builder,
    checked against the published MD5 and unpacked by it; the rows equal those of the unpacked folder."""
    import hashlib

    import datasets
    from corpus_fixtures import release_zip

    from rella_hf.corpora import get_corpus
    from rella_hf.errors import DownloadError

    release = write_ml1m(tmp_path / "release")
    served = tmp_path / "served.zip"
    served.write_bytes(release_zip(release, "ml-1m"))
    asked = []

    def download(self, url):
        asked.append((url, self.download_config.cache_dir))
        copy = tmp_path / f"downloaded-{len(asked)}.zip"
        copy.write_bytes(served.read_bytes())
        return str(copy)

    monkeypatch.setattr(datasets.DownloadManager, "download", download)
    corpus_class = type(get_corpus("ml-1m"))
    with pytest.raises(DownloadError, match="does not match its published MD5 c4d9eecfca2ab87c1945afe126590906"):
        rella_hf.load_dataset("ml-1m", K=3, chat_model=None, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("**/dataset_info.json"))  # nothing a later run takes for complete
    monkeypatch.setattr(corpus_class, "download_md5", hashlib.md5(served.read_bytes()).hexdigest())
    downloaded = rella_hf.load_dataset("ml-1m", K=3, chat_model=None, cache_dir=tmp_path / "cache")
    assert [url for url, _ in asked] == [corpus_class.download_url] * 2
    assert asked[-1][1].startswith(str(tmp_path / "cache"))  # the builder's own download manager
    from_folder = rella_hf.load_dataset("ml-1m", K=3, chat_model=None, data_dir=release, cache_dir=tmp_path / "other")
    for split in from_folder:
        assert downloaded[split].to_list() == from_folder[split].to_list()


def test_settings_are_recorded_beside_the_data_not_in_the_description(tmp_path):
    import json
    import os

    from rella_hf.builders.base import SETTINGS_FILENAME
    from rella_hf.loading import make_builder

    data = write_ml1m(tmp_path / "data")
    kwargs = dict(K=3, retrieval="recent", data_dir=data, chat_model=None, cache_dir=tmp_path / "cache")
    ds = rella_hf.load_dataset("ml-1m", **kwargs)
    builder = make_builder("ml-1m", **kwargs)
    recorded = json.loads((Path(builder.cache_dir) / SETTINGS_FILENAME).read_text())
    assert recorded == dict(builder.config.build_settings(), corpus="ml-1m") == dataset_settings(ds["test"])
    assert recorded["K"] == 3 and recorded["chat_model"] is None and "{" not in ds["train"].info.description
    # an entry an earlier release made (no settings file) gets it the next time it is served
    os.remove(Path(builder.cache_dir) / SETTINGS_FILENAME)
    again = rella_hf.load_dataset("ml-1m", **kwargs)
    assert dataset_settings(again["train"]) == recorded
    assert dataset_settings(ds["train"].flatten_indices(keep_in_memory=True)) == {}  # held in memory: unknown
