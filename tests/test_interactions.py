"""The ``interactions`` corpus: your own log in every format, its protocols, its bad inputs, and the pipeline on it."""

from __future__ import annotations

import glob

import numpy as np
import pandas as pd
import pytest
import yaml
from corpus_fixtures import char_embedder as char_embedder_for
from interaction_fixtures import FORMATS, items_frame, log_frame, write_corpus, write_frame

import rella_hf
from rella_hf.corpora import bundled_ml_latest_small, get_corpus
from rella_hf.errors import ConfigError, DataFormatError
from rella_hf.samples import SampleProtocol, build_samples

#: ml-latest-small's own files, mapped: what the registered corpus reads, named through the config.
ML_LATEST_SMALL = dict(interactions_file="ratings.csv", items_file="movies.csv", user_column="userId",
                       item_column="movieId", user_id_type="int", item_id_type="int", rating_column="rating",
                       timestamp_column="timestamp", timestamp_unit="seconds", rating_min=0.5, rating_max=5,
                       rating_step=0.5, item_text_columns="title,genres", item_noun="movie", interaction_verb="watched")


def _tables(folder, **settings):
    return get_corpus("interactions", settings).read(folder)


@pytest.fixture
def reference(tmp_path):
    settings = write_corpus(tmp_path / "csv", "csv")
    return _tables(tmp_path / "csv", **settings)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_the_same_tables(fmt, tmp_path, reference):
    settings = write_corpus(tmp_path, fmt)
    tables = _tables(tmp_path, **settings)
    pd.testing.assert_frame_equal(tables.interactions, reference.interactions)
    pd.testing.assert_frame_equal(tables.items, reference.items)
    assert tables.interactions["user_id"].iat[0] == "u00" and tables.interactions["timestamp"].dtype == np.int64


def test_items_file_of_another_format_and_text_from_the_log(tmp_path, reference):
    log = log_frame().merge(items_frame(), on="sku")
    write_frame(log, tmp_path / "events.parquet")
    tables = _tables(tmp_path, **{**write_corpus(tmp_path / "unused"), "interactions_file": "events.parquet",
                                  "items_file": None})
    pd.testing.assert_frame_equal(tables.interactions, reference.interactions)
    by_id = tables.items.set_index("item_id").loc[reference.items["item_id"]]
    assert by_id["brand"].tolist() == reference.items["brand"].tolist()


def test_integer_ids_and_timestamp_units_give_the_same_samples(tmp_path):
    log = log_frame()
    base = build_samples(get_corpus("interactions", write_corpus(tmp_path / "s", log=log)),
                         _tables(tmp_path / "s", **write_corpus(tmp_path / "s", log=log)))
    as_ms = log.assign(ts=log["ts"] * 1000)
    as_iso = log.assign(ts=pd.to_datetime(log["ts"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    for name, frame, unit in (("ms", as_ms, "milliseconds"), ("iso", as_iso, "iso")):
        settings = {**write_corpus(tmp_path / name, log=frame), "timestamp_unit": unit}
        samples = build_samples(get_corpus("interactions", settings), _tables(tmp_path / name, **settings))
        for split, frame_ in samples.splits.items():
            expected = base.splits[split]
            assert frame_.drop(columns="timestamp").equals(expected.drop(columns="timestamp")), (name, split)
            factor = 1000 if unit == "milliseconds" else 1
            assert (frame_["timestamp"].to_numpy() == expected["timestamp"].to_numpy() * factor).all()
    ints = log.assign(uid=log["uid"].str[1:].astype(int) + 1, sku=log["sku"].str[4:].astype(int) + 1)
    items = items_frame().assign(sku=lambda frame: frame["sku"].str[4:].astype(int) + 1)
    settings = {**write_corpus(tmp_path / "int", log=ints, items=items), "user_id_type": "int", "item_id_type": "int"}
    tables = _tables(tmp_path / "int", **settings)
    assert tables.interactions["user_id"].dtype == np.int64 and tables.items["item_id"].dtype == np.int64


def test_label_column_replaces_rating_and_threshold(tmp_path):
    log = log_frame().assign(clicked=lambda frame: (frame["stars"] >= 4).astype(int)).drop(columns="stars")
    settings = {**write_corpus(tmp_path, log=log), "label_column": "clicked"}
    corpus = get_corpus("interactions", settings)
    samples = build_samples(corpus, corpus.read(tmp_path))
    test = samples.splits["test"]
    assert set(test["label"]) <= {0, 1} and (test["label"].to_numpy() == test["rating"].to_numpy()).all()
    with pytest.raises(ConfigError, match="label_column='clicked' gives the label"):
        build_samples(corpus, corpus.read(tmp_path), SampleProtocol(label_threshold=0.5))
    dataset = rella_hf.load_dataset("interactions", K=3, data_dir=tmp_path, chat_model=None, min_history=3,
                                    cache_dir=tmp_path / "cache", **settings)
    prompt = dataset["test"][0]["raw_prompt"]
    assert "each is marked liked or not liked" in prompt and "liked)" in prompt and "stars" not in prompt


def test_global_time_split_cuts_the_time_order(tmp_path):
    settings = write_corpus(tmp_path)
    samples = build_samples(get_corpus("interactions", settings), _tables(tmp_path, **settings))
    train, validation, test = (samples.splits[name] for name in ("train", "validation", "test"))
    assert train["timestamp"].max() <= validation["timestamp"].min() <= validation["timestamp"].max() <= test["timestamp"].min()
    n = len(train) + len(validation) + len(test)
    assert (len(train), len(validation)) == (int(0.8 * n), int(0.1 * n))


def test_user_last_out_puts_each_users_last_rating_in_test(tmp_path):
    settings = {**write_corpus(tmp_path), "split_protocol": "user_last_out"}
    tables = _tables(tmp_path, **settings)
    samples = build_samples(get_corpus("interactions", settings), tables, SampleProtocol(min_history=2))
    last = tables.interactions.sort_values(["user_id", "timestamp"]).groupby("user_id").tail(2)
    by_user = last.groupby("user_id")
    test = samples.splits["test"].set_index("user_id")
    validation = samples.splits["validation"].set_index("user_id")
    assert sorted(test.index) == sorted(tables.interactions["user_id"].unique())
    for user, rows in by_user:
        assert test.loc[user, "item_id"] == rows["item_id"].iat[1]
        assert validation.loc[user, "item_id"] == rows["item_id"].iat[0]
    train = samples.splits["train"]
    assert len(train) == len(tables.interactions) - 2 * 10 - 10 * 2  # min_history=2 drops each user's first two
    assert np.array_equal(np.sort(np.concatenate([frame["sample_id"] for frame in samples.splits.values()])),
                          np.arange(len(tables.interactions) - 20))
    with pytest.raises(ConfigError, match="drop the fractions"):
        build_samples(get_corpus("interactions", settings), tables, SampleProtocol(train_fraction=0.5))


def test_k_core_filter_repeats_until_every_user_and_item_has_k(tmp_path):
    # u0 rates a, b, c; u1 rates a, b; u2 rates a. 2-core: u2 goes, then c has one rating and goes; a and b keep 2.
    log = pd.DataFrame({"uid": ["u0", "u0", "u0", "u1", "u1", "u2"], "sku": ["a", "b", "c", "a", "b", "a"],
                        "stars": 4, "ts": np.arange(6) + 1_600_000_000})
    items = pd.DataFrame({"sku": ["a", "b", "c"], "title": ["A", "B", "C"], "brand": "x", "category": "y"})
    settings = {**write_corpus(tmp_path, log=log, items=items), "k_core": 2}
    tables = _tables(tmp_path, **settings)
    assert sorted(zip(tables.interactions["user_id"], tables.interactions["item_id"])) == [
        ("u0", "a"), ("u0", "b"), ("u1", "a"), ("u1", "b")]
    assert tables.items["item_id"].tolist() == ["a", "b"]
    with pytest.raises(ConfigError, match="k_core=3 filter"):
        _tables(tmp_path, **{**settings, "k_core": 3})


def _bad(tmp_path, log=None, items=None, users=False, settings=None, **overrides):
    settings = {**(settings or write_corpus(tmp_path, log=log, items=items, users=users)), **overrides}
    cache = tmp_path / "cache"
    with pytest.raises((DataFormatError, ConfigError)) as caught:
        rella_hf.load_dataset("interactions", K=2, data_dir=tmp_path, cache_dir=cache, chat_model=None, **settings)
    assert not glob.glob(str(cache / "**" / "*.arrow"), recursive=True)  # nothing written
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_bad_inputs_get_one_line_each_and_nothing_written(tmp_path):
    log = log_frame()
    message = _bad(tmp_path / "a", user_column="customer")
    assert "events.csv: has no column 'customer' (user_column); its columns are 'uid', 'sku', 'stars', 'ts'" in message
    repeated = pd.concat([log, log.iloc[[3]]], ignore_index=True)
    message = _bad(tmp_path / "b", log=repeated)
    assert f"line {len(log) + 2}: repeats the (user, item, timestamp) row" in message and "of line 5" in message
    message = _bad(tmp_path / "c", log=log.astype({"ts": object}).assign(ts=lambda f: f["ts"].where(f.index != 4, "soon")))
    assert "line 6: column 'ts' (timestamp_column) holds 'soon'; expected an integer Unix time in seconds" in message
    message = _bad(tmp_path / "d", log=log.assign(stars=lambda f: f["stars"].where(f.index != 2, 6)))
    assert "line 4: column 'stars' (rating_column) holds 6; expected a number from 1 to 5" in message
    message = _bad(tmp_path / "e", items=items_frame().assign(title=lambda f: f["title"].where(f.index != 3, ""),
                                                              brand="", category=""))
    assert "items.csv, line 5: column 'item_id' (item_column) holds 'sku-003'" in message and "has none" in message
    message = _bad(tmp_path / "f", items=items_frame().drop(index=[5]))
    assert "events.csv" in message and "holds 'sku-005'; expected an item listed with text in items.csv" in message
    users = tmp_path / "g"
    settings = write_corpus(users, users=True)
    write_frame(pd.DataFrame({"uid": ["u00", "u01"], "age": 1}), users / "users.csv")
    message = _bad(users, settings=settings)
    assert "column 'uid' (user_column) holds 'u02'; expected a user listed in users.csv (users_file)" in message
    message = _bad(tmp_path / "h", log=log.assign(ts=log["ts"] * 1000))
    assert "expected an integer Unix time in seconds" in message and "timestamp_unit='seconds'" in message
    assert "timestamp_unit is not set" in _bad(tmp_path / "i", timestamp_unit=None)
    assert "unknown file type" in _bad(tmp_path / "j", interactions_file="items.xlsx")
    assert "do(es) not apply" in _bad(tmp_path / "k", category="Toys")
    with pytest.raises(ConfigError, match="appl\\(ies\\) to corpora read from your files"):
        rella_hf.load_dataset("ml-latest-small", K=2, interactions_file="events.csv")
    with pytest.raises(ConfigError, match="timestamp_unit='days' is not one of seconds, milliseconds, iso"):
        rella_hf.load_dataset("interactions", K=2, data_dir=tmp_path / "a", timestamp_unit="days")
    assert settings["users_file"] == "users.csv"


def test_ml_latest_small_through_interactions_gives_the_registered_corpus_samples(tmp_path):
    """Done-when: the registered ml-latest-small reader and ``interactions`` over the same files, mapped, with the
    global-time (ML-1M style) protocol: every sample field but ``item_row`` (a row index into each corpus's own item
    table: the registered one lists unrated movies too) and every dataset column, prompts included, are equal."""
    folder = bundled_ml_latest_small()
    mine = get_corpus("interactions", ML_LATEST_SMALL)
    registered = get_corpus("ml-latest-small")
    ours, theirs = build_samples(mine, mine.read(folder)), build_samples(registered, registered.read(folder))
    for split in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(ours.splits[split].drop(columns="item_row"),
                                      theirs.splits[split].drop(columns="item_row"))
    sizes = dict(train_sample_size=200, test_sample_size=200, chat_model=None)
    built = rella_hf.load_dataset("interactions", K=5, data_dir=folder, cache_dir=tmp_path / "a", **sizes,
                                  **ML_LATEST_SMALL)
    expected = rella_hf.load_dataset("ml-latest-small", K=5, cache_dir=tmp_path / "b", **sizes)
    for split in expected:
        assert built[split].features == expected[split].features
        assert built[split].to_list() == expected[split].to_list(), split


@pytest.fixture
def char_embedder(monkeypatch):
    """Deterministic item embeddings from the characters of the item text (no model download)."""
    seen = []
    embedder = char_embedder_for("test:chars-interactions", 16, 5, seen)
    monkeypatch.setattr("rella_hf.embeddings.get_embedder", lambda name, **kwargs: embedder)
    return seen


def test_subr_token_budget_and_validation_sampling(tmp_path, char_embedder, tiny_bpe_tokenizer):
    settings = write_corpus(tmp_path)
    tokenizer_dir = tmp_path / "tokenizer"
    tiny_bpe_tokenizer.save_pretrained(tokenizer_dir)
    common = dict(data_dir=tmp_path, min_history=3, validation_sample_size=2, **settings)
    semantic = rella_hf.load_dataset("interactions", K=3, retrieval="semantic", chat_model=None,
                                     cache_dir=tmp_path / "c1", **common)
    assert char_embedder[0] == "Here is a product. Its title is Gadget 0. Its brand is Brand 0. Its category is Games."
    assert len(semantic["validation"]) == 2
    tables = _tables(tmp_path, **settings)
    for row in semantic["test"]:
        history = tables.interactions[(tables.interactions["user_id"] == row["user_id"])
                                      & (tables.interactions["timestamp"] < row["timestamp"])]
        assert set(row["history_item_ids"]) <= set(history["item_id"]) and len(row["history_item_ids"]) == 3
        assert row["raw_prompt"].startswith("The user bought the following products in the past, and rated them:")
    def token_counts(dataset):
        return [len(tiny_bpe_tokenizer(prompt)["input_ids"]) for prompt in dataset["test"]["prompt"]]

    full = rella_hf.load_dataset("interactions", K=3, chat_model=str(tokenizer_dir), cache_dir=tmp_path / "c2",
                                 **common)
    limit = max(token_counts(full)) - 5  # the longest prompts must drop an item; none needs to drop all three
    budget = rella_hf.load_dataset("interactions", K=3, chat_model=str(tokenizer_dir), max_prompt_tokens=limit,
                                   cache_dir=tmp_path / "c3", **common)
    assert max(token_counts(budget)) <= limit and min(budget["test"]["history_length"]) >= 3
    assert min(len(ids) for ids in budget["test"]["history_item_ids"]) < 3  # the budget dropped some items


def test_cli_build_with_a_yaml_config_and_export_card(tmp_path, capsys):
    from rella_hf.cli import main

    settings = write_corpus(tmp_path / "data")
    config = tmp_path / "my_data.yaml"
    config.write_text(yaml.safe_dump({"dataset": "interactions", "data_dir": str(tmp_path / "data"), "K": 2,
                                      "chat_model": "none", "min_history": 2, **settings,
                                      "item_text_columns": ["title", "brand"],
                                      "data_source": "our shop's 2024 event log", "data_license": "CC-BY-4.0"}))
    out = tmp_path / "export"
    code = main(["build", "--config", str(config), "--K", "3", "--cache_dir", str(tmp_path / "cache"),
                 "--export_dir", str(out), "--permission_to_redistribute", "true"])
    assert code == 0, capsys.readouterr().err
    card = (out / "README.md").read_text()
    assert "our shop's 2024 event log" in card and "CC-BY-4.0" in card and "interactions" in card
    built = rella_hf.load_dataset(str(out), K=3)
    assert built["test"][0]["raw_prompt"].startswith("The user bought the following products")
    capsys.readouterr()
    assert main(["build", "--config", str(config), "--cache_dir", str(tmp_path / "cache"), "--export_dir",
                 str(tmp_path / "refused")]) == 2
    assert "may not be published" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"dataset": "interactions", "no_such_field": 1}))
    assert main(["build", "--config", str(bad)]) == 2
    assert "unknown option(s) no_such_field" in capsys.readouterr().err


def test_training_reads_its_prompt_datasets_from_interactions(tmp_path, monkeypatch):
    from rella_hf.training import parse_config
    from rella_hf.training.data import build_training_data, load_prompt_datasets

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    settings = write_corpus(tmp_path / "data")
    config_file = tmp_path / "train.yaml"
    config_file.write_text(yaml.safe_dump({"dataset": "interactions", "data_dir": str(tmp_path / "data"), "K": 2,
                                           "min_history": 2, "train_type": "simple", "test_type": "simple",
                                           "shots": 8, "eval_size": 4, "cache_dir": str(tmp_path / "cache"),
                                           **settings}))
    config = parse_config(["--config", str(config_file), "--output_dir", str(tmp_path / "run"), "--bf16", "false",
                           "--per_device_train_batch_size", "4"])
    assert config.interactions_file == "events.csv" and config.item_noun == "product"
    data = build_training_data(config, load_prompt_datasets(config, None))
    assert len(data.train) == 8 and all("products" in prompt for prompt in data.train["prompt"])
