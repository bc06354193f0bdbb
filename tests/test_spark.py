"""The Spark engine (rella_hf.spark) on local[2]: the in-process rows, the in-process errors, plain-datasets output."""

from __future__ import annotations

import glob
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from corpus_fixtures import bx_many_rating_lines, bx_rating_lines, ml1m_ratings, write_book_crossing, write_ml1m, write_ml_latest
from corpus_fixtures import char_embedder as char_embedder_for

import rella_hf
from rella_hf.builders import ReLLaConfig
from rella_hf.corpora import get_corpus
from rella_hf.errors import ConfigError, DataFormatError

if importlib.util.find_spec("pyspark") is None:
    pytest.skip("pyspark is not installed; pip install 'rella-hf[spark]' (make install does)", allow_module_level=True)

from rella_hf.spark import java_missing, prompt_frames, spark_session  # noqa: E402

if java_missing():
    pytest.skip(f"Spark tests need Java 17+: {java_missing()}", allow_module_level=True)

_SYNTH = Path(__file__).resolve().parents[1] / "benchmarks" / "synth_corpus.py"


@pytest.fixture(scope="session")
def spark():
    """One local[2] session for the whole run: two shuffle partitions, UI off, driver on 127.0.0.1."""
    session = spark_session("local[2]", {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2",
                                         "spark.driver.memory": "1g"})
    assert session.conf.get("spark.ui.enabled") == "false"
    assert session.conf.get("spark.driver.host") == "127.0.0.1"
    yield session
    session.stop()


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory):
    """A tiny synthetic ML-25M-format corpus (81 users, 12,500 ratings): long histories, real ties."""
    spec = importlib.util.spec_from_file_location("synth_corpus", _SYNTH)
    synth = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("synth_corpus", synth)
    spec.loader.exec_module(synth)
    return synth.generate(0.0005, tmp_path_factory.mktemp("synth"), seed=5, progress=False)


@pytest.fixture
def char_embedder(monkeypatch):
    """Deterministic item embeddings from characters (the driver computes embeddings, so patching works)."""
    embedder = char_embedder_for("test:chars-spark", 24, 7)
    monkeypatch.setattr("rella_hf.embeddings.get_embedder", lambda name, **kwargs: embedder)


def _rows(dataset) -> dict:
    return {name: split.to_list() for name, split in dataset.items()}


def _both(spark, tmp_path, name, **kwargs):
    inprocess = rella_hf.load_dataset(name, cache_dir=tmp_path / "in", **kwargs)
    on_spark = rella_hf.load_dataset(name, cache_dir=tmp_path / "spark", engine="spark", spark_session=spark, **kwargs)
    return inprocess, on_spark


@pytest.mark.parametrize("retrieval", ["recent", "semantic"])
def test_ml1m_fixture_rows_are_identical(spark, tmp_path, char_embedder, retrieval):
    folder = write_ml1m(tmp_path / "data")
    inprocess, on_spark = _both(spark, tmp_path, "ml-1m", K=3, retrieval=retrieval, data_dir=folder, chat_model=None)
    assert _rows(on_spark) == _rows(inprocess)
    assert on_spark["train"].features == inprocess["train"].features
    assert on_spark["train"].info.description == inprocess["train"].info.description


@pytest.mark.parametrize("lines,retrieval", [("fixture", "recent"), ("many", "recent"), ("many", "semantic")])
def test_book_crossing_rows_are_identical(spark, tmp_path, char_embedder, lines, retrieval):
    # ISBN string ids, users' profiles, keyed-hash shuffles computed on the executors.
    rating_lines = bx_rating_lines() if lines == "fixture" else bx_many_rating_lines()
    folder = write_book_crossing(tmp_path / "data", rating_lines)
    inprocess, on_spark = _both(spark, tmp_path, "BookCrossing", K=3, retrieval=retrieval, data_dir=folder,
                                chat_model=None)
    assert sum(len(split) for split in inprocess.values()) == (3 if lines == "fixture" else 8)
    assert _rows(on_spark) == _rows(inprocess)
    assert on_spark["train"].features == inprocess["train"].features


def test_book_crossing_with_another_seed_and_min_user_ratings(spark, tmp_path):
    folder = write_book_crossing(tmp_path / "data", bx_many_rating_lines(seed=1))
    inprocess, on_spark = _both(spark, tmp_path, "BookCrossing", K=2, data_dir=folder, chat_model=None, seed=7,
                                min_user_ratings=9, train_fraction=0.5)
    assert _rows(on_spark) == _rows(inprocess)


def test_bad_book_crossing_ratings_give_the_in_process_error(spark, tmp_path):
    folder = write_book_crossing(tmp_path / "data", bx_rating_lines()[:3] + ['"1";"0300000001X";"11"'])
    expected = _inprocess_error("BookCrossing", folder)
    assert "\n" not in expected
    assert _spark_error(spark, "BookCrossing", folder) == expected
    with pytest.raises(ConfigError, match="min_user_ratings=6 filter"):
        prompt_frames(spark, "BookCrossing", write_book_crossing(tmp_path / "few", bx_rating_lines()[:5]),
                      ReLLaConfig(K=2, chat_model=None))


@pytest.mark.parametrize("retrieval,order", [("recent", "chronological"), ("semantic", "chronological"),
                                             ("semantic", "similarity")])
def test_sampled_splits_of_a_synthetic_corpus_are_identical(spark, tmp_path, char_embedder, synth_folder, retrieval,
                                                            order):
    # Sampled train/validation/test (seeded subsets), ties on timestamps, histories of hundreds of items.
    inprocess, on_spark = _both(spark, tmp_path, "ml-25m", K=5, retrieval=retrieval, order=order,
                                data_dir=synth_folder, chat_model=None, train_sample_size=300,
                                validation_sample_size=40, test_sample_size=200)
    assert {name: len(split) for name, split in inprocess.items()} == {"train": 300, "validation": 40, "test": 200}
    assert _rows(on_spark) == _rows(inprocess)


@pytest.mark.parametrize("collaborative,retrieval", [("item", "recent"), ("all", "semantic")])
def test_collaborative_rows_are_identical_on_a_synthetic_corpus(spark, tmp_path, char_embedder, synth_folder,
                                                                collaborative, retrieval):
    # Same-second ties across users, sampled splits: every item statistic needs the whole log's earlier ratings.
    inprocess, on_spark = _both(spark, tmp_path, "ml-25m", K=5, retrieval=retrieval, collaborative=collaborative,
                                data_dir=synth_folder, chat_model=None, train_sample_size=200,
                                validation_sample_size=40, test_sample_size=100)
    rows = _rows(inprocess)
    assert any(row["item_prior_ratings"] > 0 for row in rows["test"])
    assert _rows(on_spark) == rows
    assert on_spark["train"].features == inprocess["train"].features


def test_collaborative_book_crossing_rows_are_identical(spark, tmp_path):
    # The reference is the train split's users' ratings; a train sample's own rating is subtracted.
    folder = write_book_crossing(tmp_path / "data", bx_many_rating_lines(seed=4))
    inprocess, on_spark = _both(spark, tmp_path, "BookCrossing", K=3, collaborative="item+user", data_dir=folder,
                                chat_model=None)
    assert _rows(on_spark) == _rows(inprocess)


def test_split_fractions_and_min_history_are_honoured(spark, tmp_path, synth_folder):
    inprocess, on_spark = _both(spark, tmp_path, "ml-25m", K=2, data_dir=synth_folder, chat_model=None,
                                min_history=50, train_fraction=0.5, validation_fraction=0.25, test_sample_size=100)
    assert _rows(on_spark) == _rows(inprocess)
    assert min(on_spark["test"]["history_length"]) >= 50


@pytest.mark.parametrize("fmt,retrieval,protocol", [("csv", "recent", "global_time"), ("parquet", "semantic", "global_time"),
                                                     ("jsonl.gz", "recent", "user_last_out")])
def test_interactions_rows_are_identical(spark, tmp_path, char_embedder, fmt, retrieval, protocol):
    # Your own log: string user and item ids, repeats of an item at another time, both split protocols.
    from interaction_fixtures import items_frame, log_frame, write_corpus

    log = log_frame(users=14, per_user=11, items=16)
    log = pd.concat([log, log.iloc[[0]].assign(ts=log["ts"].iat[0] + 7)], ignore_index=True)
    settings = write_corpus(tmp_path / "data", fmt, log=log, items=items_frame(16))
    inprocess, on_spark = _both(spark, tmp_path, "interactions", K=3, retrieval=retrieval,
                                data_dir=tmp_path / "data", chat_model=None, min_history=3, split_protocol=protocol, test_sample_size=9,
                                train_sample_size=40, **settings)
    assert _rows(on_spark) == _rows(inprocess)
    assert on_spark["train"].features == inprocess["train"].features
    assert inprocess["test"].features["user_id"].dtype == "string"


def test_amazon_rows_are_identical(spark, tmp_path):
    from test_amazon import CATEGORY, write_amazon

    write_amazon(tmp_path / "data")
    inprocess, on_spark = _both(spark, tmp_path, "amazon-2023", K=2, category=CATEGORY, data_dir=tmp_path / "data",
                                chat_model=None, min_history=2)
    assert _rows(on_spark) == _rows(inprocess)


def _spark_error(spark, corpus: str, folder: Path) -> str:
    with pytest.raises(DataFormatError) as caught:
        prompt_frames(spark, corpus, folder, ReLLaConfig(K=2, chat_model=None))
    return str(caught.value)


def _inprocess_error(corpus: str, folder: Path) -> str:
    with pytest.raises(DataFormatError) as caught:
        get_corpus(corpus).read(folder)
    return str(caught.value)


_ML1M_BAD = {
    "field count": lambda rows: rows[:4] + ["1::5::4"] + rows[4:],
    "not an integer": lambda rows: rows[:6] + ["2::1::four::95"] + rows[6:],
    "rating out of range": lambda rows: rows[:3] + ["1::8::6::400"] + rows[3:],
    "unknown item": lambda rows: rows + ["3::99::4::400"],
    "unknown user": lambda rows: rows + ["9::1::4::400"],
    "negative timestamp": lambda rows: rows[:10] + ["2::2::3::-5"] + rows[10:],
    "duplicate pair": lambda rows: rows + ["2::8::1::999"],
    "two rules broken, the earlier rule wins": lambda rows: rows[:2] + ["1::99::4::400"] + rows[2:] + ["0::1::4::5"],
    "separator stand-in": lambda rows: rows[:1] + ["1::8::4::400\x1f"] + rows[1:],
}


@pytest.mark.parametrize("case", sorted(_ML1M_BAD))
def test_bad_ml1m_ratings_give_the_in_process_error(spark, tmp_path, case):
    folder = write_ml1m(tmp_path / "data", _ML1M_BAD[case](ml1m_ratings()))
    expected = _inprocess_error("ml-1m", folder)
    assert _spark_error(spark, "ml-1m", folder) == expected
    assert "\n" not in expected


def _latest_with(tmp_path, edit) -> Path:
    folder = write_ml_latest(tmp_path / "data")
    path = folder / "ratings.csv"
    path.write_bytes(edit(path.read_bytes()))
    return folder


_LATEST_BAD = {
    "wrong header": lambda data: data.replace(b"userId,movieId", b"user,movie", 1),
    "undecodable byte": lambda data: data.replace(b"2,21,3.0", b"2,21,3.0\xff", 1),
    "half-star step": lambda data: data.replace(b"1,11,3.5", b"1,11,3.7", 1),
    "cut last line": lambda data: data.rstrip(b"\r\n")[:-3],
    "empty file": lambda data: b"",
    "byte and header both bad: bytes first": lambda data: data.replace(b"userId", b"uid", 1).replace(b"2,21,3.0", b"2,21,\xff", 1),
}


@pytest.mark.parametrize("case", sorted(_LATEST_BAD))
def test_bad_ml_latest_ratings_give_the_in_process_error(spark, tmp_path, case):
    folder = _latest_with(tmp_path, _LATEST_BAD[case])
    assert _spark_error(spark, "ml-25m", folder) == _inprocess_error("ml-25m", folder)


def test_a_line_deep_in_a_gzipped_file_is_numbered_as_in_process(spark, tmp_path):
    import gzip

    folder = write_ml1m(tmp_path / "data", ml1m_ratings() + ["3::1::4::x"])
    raw = (folder / "ratings.dat").read_bytes()
    (folder / "ratings.dat").unlink()
    (folder / "ratings.dat.gz").write_bytes(gzip.compress(raw))
    expected = _inprocess_error("ml-1m", folder)
    assert "line 22" in expected
    assert _spark_error(spark, "ml-1m", folder) == expected


def test_output_loads_with_plain_datasets(spark, tmp_path, synth_folder):
    import datasets

    settings = dict(K=4, data_dir=synth_folder, chat_model=None, train_sample_size=120, test_sample_size=60)
    built = rella_hf.load_dataset("ml-25m", cache_dir=tmp_path / "cache", engine="spark", spark_session=spark, **settings)
    # The parquet shards beside the cache entry, read by the plain parquet builder.
    shards = {name: sorted(glob.glob(str(tmp_path / "cache" / "**" / f"*.spark-parquet/{name}/part-*.parquet"),
                                     recursive=True)) for name in built}
    assert all(shards.values())
    plain = datasets.load_dataset("parquet", data_files=shards, cache_dir=str(tmp_path / "plain"))
    for name in built:
        assert plain[name].to_list() == built[name].to_list()
    # Dataset.from_spark on the rendered DataFrame of a split.
    frames = prompt_frames(spark, "ml-25m", synth_folder, ReLLaConfig(K=4, chat_model=None, train_sample_size=120,
                                                                      test_sample_size=60))
    try:
        from_spark = datasets.Dataset.from_spark(frames.split("test"), cache_dir=str(tmp_path / "from_spark"))
        assert from_spark.to_list() == built["test"].to_list()
    finally:
        frames.release()


def test_either_engine_reuses_the_other_engines_cache_entry(spark, tmp_path, monkeypatch):
    folder = write_ml1m(tmp_path / "data")
    first = rella_hf.load_dataset("ml-1m", K=2, data_dir=folder, chat_model=None, cache_dir=tmp_path / "cache")
    monkeypatch.setattr("rella_hf.spark.build.prompt_frames", lambda *args, **kwargs: pytest.fail("rebuilt on Spark"))
    again = rella_hf.load_dataset("ml-1m", K=2, data_dir=folder, chat_model=None, cache_dir=tmp_path / "cache",
                                  engine="spark", spark_session=spark)
    assert _rows(again) == _rows(first)
    assert not glob.glob(str(tmp_path / "cache" / "**" / "*.spark-parquet"), recursive=True)


def test_spark_build_exports_with_its_dataset_card(spark, tmp_path):
    from rella_hf.hub import config_name_for, export_dataset

    built = rella_hf.load_dataset("ml-latest-small", K=2, chat_model=None, cache_dir=tmp_path / "cache",
                                  engine="spark", spark_session=spark, train_sample_size=50, test_sample_size=20)
    export_dataset(built, tmp_path / "export", config_name=config_name_for(2, "recent", "chronological"))
    card = (tmp_path / "export" / "README.md").read_text()
    assert "ml-latest-small" in card
    assert glob.glob(str(tmp_path / "export" / "**" / "*.parquet"), recursive=True)


def test_engine_options_are_checked(spark, tmp_path):
    with pytest.raises(ConfigError, match="engine='bogus' is not one of inprocess, spark"):
        rella_hf.load_dataset("ml-latest-small", engine="bogus")
    with pytest.raises(ConfigError, match="need engine='spark'"):
        rella_hf.load_dataset("ml-latest-small", spark_master="local[2]")
    with pytest.raises(ConfigError, match="K=50 exceeds the longest history"):
        rella_hf.load_dataset("ml-1m", K=50, data_dir=write_ml1m(tmp_path / "data"), chat_model=None,
                              engine="spark", spark_session=spark, cache_dir=tmp_path / "cache2")


def test_cli_build_takes_the_engine(capsys):
    from rella_hf.cli import main

    assert main(["build", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--engine" in out and "--spark_master" in out


def test_worker_context_is_keyed_by_build_not_by_object_address(monkeypatch):
    """A long-lived Python worker must not hand one build's context (retriever, items) to a later
    build whose broadcast object happens to reuse the same memory address."""
    import pandas as pd

    from rella_hf.spark import render

    class Reused:  # one object, two builds: what address reuse looks like to the worker
        value = None

    monkeypatch.setattr(render, "_WORKER_CACHE", {})
    items = {8: np.arange(8), 200: np.arange(200)}
    contexts = []
    for build_id, count in (("first", 8), ("second", 200)):
        Reused.value = {"build_id": build_id, "corpus": "ml-1m", "config": ReLLaConfig(K=2, chat_model=None),
                        "items": pd.DataFrame({"item_id": items[count]}), "users": None, "vectors": None}
        contexts.append(render._context(Reused))
    assert len(contexts[0]["items"]) == 8 and len(contexts[1]["items"]) == 200
    assert list(render._WORKER_CACHE) == ["second"]  # earlier builds' contexts are released
    assert render._context(Reused) is contexts[1]  # and a build's own tasks reuse it
