"""Bad input never becomes bad data (issue #17).

Every case feeds one faulty input and asserts: the error class or exit code, the message's key
words (file, line, column, value, expectation), that nothing was left behind, and that the next,
corrected run works. Tiny fixture corpora are written into ``tmp_path``; no model is loaded.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from corpus_fixtures import (
    ml1m_ratings,
    write_book_crossing,
    write_ml1m,
    write_ml100k,
    write_ml_latest,
)

import rella_hf
from rella_hf.cli import main
from rella_hf.corpora import get_corpus
from rella_hf.errors import ConfigError, DataFormatError, RellaError

WRITERS = {"ml-1m": write_ml1m, "ml-25m": write_ml_latest, "ml-100k": write_ml100k, "BookCrossing": write_book_crossing}


def _replace_line(data: bytes, number: int, new: bytes) -> bytes:
    """Replace 1-based line ``number`` (keeping its line end)."""
    lines = data.split(b"\n")
    ending = b"\r" if lines[number - 1].endswith(b"\r") else b""
    lines[number - 1] = new + ending
    return b"\n".join(lines)


def _append_line(data: bytes, new: bytes) -> bytes:
    ending = b"\r\n" if data.endswith(b"\r\n") else b"\n"
    return data + new + ending


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


# --------------------------------------------------------------------------------------------
# Corpus validation: one faulty file, then the original file again
# --------------------------------------------------------------------------------------------

# (corpus, file, how to break it, key words of the message)
CORPUS_CASES = {
    "ml1m-rating-7": ("ml-1m", "ratings.dat", lambda d: _replace_line(d, 2, b"1::2::7::101"),
                      ["ratings.dat, line 2", "'rating'", "7", "from 1 to 5"]),
    "ml1m-rating-negative": ("ml-1m", "ratings.dat", lambda d: _replace_line(d, 3, b"1::3::-1::102"),
                             ["ratings.dat, line 3", "-1", "from 1 to 5"]),
    "ml1m-rating-0": ("ml-1m", "ratings.dat", lambda d: _replace_line(d, 1, b"1::1::0::100"),
                      ["line 1", "'rating'", "0"]),
    "ml1m-user-id-0": ("ml-1m", "ratings.dat", lambda d: _replace_line(d, 4, b"0::4::1::103"),
                       ["ratings.dat, line 4", "'user_id'", "positive integer id"]),
    "ml1m-item-id-negative": ("ml-1m", "ratings.dat", lambda d: _replace_line(d, 5, b"1::-6::2::104"),
                              ["line 5", "'item_id'", "-6"]),
    "ml1m-negative-timestamp": ("ml-1m", "ratings.dat", lambda d: _replace_line(d, 6, b"1::5::4::-104"),
                                ["line 6", "'timestamp'", "-104", "Unix seconds"]),
    "ml1m-millisecond-timestamp": ("ml-1m", "ratings.dat", lambda d: _replace_line(d, 7, b"1::7::5::978300760000"),
                                   ["line 7", "978300760000", "1970-2100"]),
    "ml1m-unknown-user": ("ml-1m", "ratings.dat", lambda d: _append_line(d, b"9::1::5::400"),
                          ["ratings.dat, line 22", "'user_id'", "9", "users.dat"]),
    "ml1m-unknown-movie": ("ml-1m", "ratings.dat", lambda d: _append_line(d, b"3::99::5::400"),
                           ["ratings.dat, line 22", "'item_id'", "99", "movies.dat"]),
    "ml1m-cut-last-record": ("ml-1m", "ratings.dat", lambda d: d.rstrip(b"\n")[:-2],
                             ["ratings.dat, line 21", "no line end", "cut off", "3::8::5::3"]),
    "ml1m-cut-users": ("ml-1m", "users.dat", lambda d: d.rstrip(b"\n")[:-3],
                       ["users.dat, line 3", "no line end"]),
    "ml1m-user-file-id-0": ("ml-1m", "users.dat", lambda d: _replace_line(d, 2, b"0::M::56::16::70072"),
                            ["users.dat, line 2", "'user_id'", "0"]),
    "ml1m-movie-file-id-0": ("ml-1m", "movies.dat", lambda d: _replace_line(d, 3, b"0::Grumpier Old Men (1995)::Comedy"),
                             ["movies.dat, line 3", "'item_id'"]),
    "ml-latest-rating-nan": ("ml-25m", "ratings.csv", lambda d: _replace_line(d, 3, b"1,11,nan,1001"),
                             ["ratings.csv, line 3", "'rating'", "nan", "from 0.5 to 5 in steps of 0.5"]),
    "ml-latest-rating-empty": ("ml-25m", "ratings.csv", lambda d: _replace_line(d, 4, b"1,21,,1002"),
                               ["ratings.csv, line 4", "'rating'"]),
    "ml-latest-rating-5.5": ("ml-25m", "ratings.csv", lambda d: _replace_line(d, 2, b"1,1,5.5,1000"),
                             ["line 2", "5.5", "from 0.5 to 5"]),
    "ml-latest-rating-0": ("ml-25m", "ratings.csv", lambda d: _replace_line(d, 5, b"1,31,0.0,1003"),
                           ["line 5", "0.0"]),
    "ml-latest-rating-off-step": ("ml-25m", "ratings.csv", lambda d: _replace_line(d, 6, b"1,41,3.25,1004"),
                                  ["line 6", "3.25", "steps of 0.5"]),
    "ml-latest-rating-inf": ("ml-25m", "ratings.csv", lambda d: _replace_line(d, 7, b"1,51,inf,1005"),
                             ["line 7", "inf"]),
    "ml-latest-user-negative": ("ml-25m", "ratings.csv", lambda d: _replace_line(d, 8, b"-2,1,4.0,2000"),
                                ["line 8", "'user_id'", "-2"]),
    "ml-latest-unknown-movie": ("ml-25m", "ratings.csv", lambda d: _append_line(d, b"2,77,4.0,3000"),
                                ["ratings.csv, line 14", "77", "movies.csv"]),
    "ml-latest-cut-last-record": ("ml-25m", "ratings.csv", lambda d: d.rstrip(b"\r\n")[:-2],
                                  ["ratings.csv, line 13", "no line end"]),
    "ml-latest-movie-id-0": ("ml-25m", "movies.csv", lambda d: _replace_line(d, 4, b"0,Get Shorty (1995),Comedy"),
                             ["movies.csv, line 4", "'item_id'", "0"]),
    "ml100k-rating-6": ("ml-100k", "u.data", lambda d: _replace_line(d, 2, b"1\t2\t6\t880000101"),
                        ["u.data, line 2", "'rating'", "6", "from 1 to 5"]),
    "ml100k-unknown-user": ("ml-100k", "u.data", lambda d: _append_line(d, b"4\t1\t3\t880000500"),
                            ["u.data, line 19", "u.user"]),
    "ml100k-age-0": ("ml-100k", "u.user", lambda d: _replace_line(d, 2, b"2|0|F|other|94043"),
                     ["u.user, line 2", "'age'", "age in years"]),
    "ml100k-genre-flag-2": ("ml-100k", "u.item", lambda d: d.replace(b"|0|1|1|1|", b"|0|2|1|1|", 1),
                            ["u.item, line 1", "genre", "2", "genre flag"]),
    "bx-rating-11": ("BookCrossing", "BX-Book-Ratings.csv", lambda d: _replace_line(d, 3, b'"1";"030000001X";"11"'),
                     ["BX-Book-Ratings.csv, line 3", "'rating'", "11", "from 0 to 10"]),
    "bx-rating-negative": ("BookCrossing", "BX-Book-Ratings.csv",
                           lambda d: _replace_line(d, 2, b'"1";"030000000X";"-1"'), ["line 2", "-1"]),
    "bx-unknown-user": ("BookCrossing", "BX-Book-Ratings.csv", lambda d: _append_line(d, b'"99";"030000000X";"5"'),
                        ["BX-Book-Ratings.csv, line 29", "99", "BX-Users.csv"]),
    "bx-user-id-0-after-multiline-location": (
        "BookCrossing", "BX-Users.csv", lambda d: d.replace(b'"7";"somewhere', b'"0";"somewhere'),
        # record 7 starts on line 9: user 6's Location holds a line break
        ["BX-Users.csv, line 9", "'user_id'", "0"]),
    "bx-duplicate-user": ("BookCrossing", "BX-Users.csv", lambda d: _append_line(d, b'"2";"x, y, usa";"30"'),
                          ["BX-Users.csv", "duplicate"]),
    "bx-cut-ratings": ("BookCrossing", "BX-Book-Ratings.csv", lambda d: d.rstrip(b"\r\n")[:-1],
                       ["BX-Book-Ratings.csv, line 28", "no line end"]),
    "bx-neither-encoding": ("BookCrossing", "BX-Books.csv", lambda d: d.replace(b"Book 2", b"Book \x81\xe9 2"),
                            ["BX-Books.csv", "utf-8", "cp1252", "0x81", "line 4"]),
    "bx-no-listed-book-rated": ("BookCrossing", "BX-Book-Ratings.csv",
                                lambda d: d.replace(b'"03', b'"93'), ["BX-Book-Ratings.csv", "no rating is left",
                                                                      "BX-Books.csv"]),
    "bx-no-valid-isbn": ("BookCrossing", "BX-Books.csv",
                         lambda d: d.split(b"\n", 1)[0] + b'\n"0-1";"T";"A";"2000";"P";"s";"m";"l"\r\n',
                         ["BX-Books.csv", "no book is left", "ISBN"]),
}


@pytest.mark.parametrize("case", sorted(CORPUS_CASES))
def test_faulty_corpus_file_is_refused_then_fixed_file_reads(case, tmp_path):
    corpus_name, name, breaker, keywords = CORPUS_CASES[case]
    folder = WRITERS[corpus_name](tmp_path / "data")
    good = (folder / name).read_bytes()
    expected = get_corpus(corpus_name).read(folder)
    (folder / name).write_bytes(breaker(good))
    before = _files(folder)
    with pytest.raises(DataFormatError) as caught:
        get_corpus(corpus_name).read(folder)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    for word in keywords:
        assert word in message, (word, message)
    assert _files(folder) == before  # validation never rewrites the user's files
    (folder / name).write_bytes(good)
    again = get_corpus(corpus_name).read(folder)
    assert again.interactions.equals(expected.interactions)


def test_cut_gzip_stream_is_refused(tmp_path):
    folder = write_ml1m(tmp_path / "data")
    raw = (folder / "ratings.dat").read_bytes()
    (folder / "ratings.dat").unlink()
    (folder / "ratings.dat.gz").write_bytes(gzip.compress(raw)[:-12])
    with pytest.raises(DataFormatError, match=r"ratings\.dat\.gz.*gzip stream is cut"):
        get_corpus("ml-1m").read(folder)
    (folder / "ratings.dat.gz").write_bytes(gzip.compress(raw))
    assert len(get_corpus("ml-1m").read(folder).interactions) == 21


def test_gzip_of_a_cut_file_is_refused(tmp_path):
    folder = write_ml1m(tmp_path / "data")
    raw = (folder / "ratings.dat").read_bytes()
    (folder / "ratings.dat").unlink()
    (folder / "ratings.dat.gz").write_bytes(gzip.compress(raw.rstrip(b"\n")[:-2]))
    with pytest.raises(DataFormatError, match=r"ratings\.dat\.gz, line 21: .*no line end"):
        get_corpus("ml-1m").read(folder)
    (folder / "ratings.dat.gz").write_bytes(gzip.compress(raw))
    assert len(get_corpus("ml-1m").read(folder).interactions) == 21


@pytest.mark.parametrize("corpus_name, name", [("ml-1m", "ratings.dat"), ("BookCrossing", "BX-Books.csv")])
def test_folder_where_a_file_belongs_is_refused(corpus_name, name, tmp_path):
    folder = WRITERS[corpus_name](tmp_path / "data")
    good = (folder / name).read_bytes()
    (folder / name).unlink()
    (folder / name).mkdir()
    with pytest.raises(DataFormatError, match=f"{name}: is a folder, not a file"):
        get_corpus(corpus_name).read(folder)
    (folder / name).rmdir()
    (folder / name).write_bytes(good)
    assert len(get_corpus(corpus_name).read(folder).interactions) > 0


def _bx_titles(folder):
    return get_corpus("BookCrossing").read(folder).items.set_index("item_id")["title"]


def test_book_crossing_resaved_as_utf8_reads_the_same_text(tmp_path):
    original = _bx_titles(write_book_crossing(tmp_path / "cp1252"))
    folder = write_book_crossing(tmp_path / "utf8")
    for name in ("BX-Users.csv", "BX-Books.csv", "BX-Book-Ratings.csv"):
        path = folder / name
        path.write_bytes(path.read_bytes().decode("cp1252").encode("utf-8"))
    resaved = _bx_titles(folder)
    assert "\u201cquoted\u201d" in resaved["0312000001"]
    assert "\u00e2\u20ac" not in resaved["0312000001"]  # no mojibake
    assert resaved.equals(original)


def test_book_crossing_utf8_with_bom_reads_the_same_text(tmp_path):
    original = _bx_titles(write_book_crossing(tmp_path / "cp1252"))
    folder = write_book_crossing(tmp_path / "bom")
    path = folder / "BX-Books.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().decode("cp1252").encode("utf-8"))
    assert _bx_titles(folder).equals(original)


def test_overlong_bad_field_is_shortened(tmp_path):
    folder = write_ml1m(tmp_path / "data")
    huge = "x" * 200_000
    path = folder / "movies.dat"
    path.write_bytes(path.read_bytes() + f"{huge}::Title::Drama\n".encode())
    with pytest.raises(DataFormatError) as caught:
        get_corpus("ml-1m").read(folder)
    message = str(caught.value)
    assert "movies.dat, line 9" in message and len(message) < 700 and "characters" in message


# --------------------------------------------------------------------------------------------
# Builders: errors from generation, empty results, K, unknown options, content-keyed cache
# --------------------------------------------------------------------------------------------


def _build(data, cache, **kwargs):
    kwargs.setdefault("K", 3)
    return rella_hf.load_dataset("ml-1m", data_dir=data, cache_dir=cache, chat_model=None, **kwargs)


def _arrow_files(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.arrow")) if cache.exists() else []


def test_error_inside_generation_is_our_error_not_datasets(tmp_path):
    data, cache = write_ml1m(tmp_path / "data"), tmp_path / "cache"
    with pytest.raises(ConfigError, match="max_prompt_tokens needs chat_model") as caught:
        _build(data, cache, max_prompt_tokens=50)
    assert "DatasetGenerationError" not in repr(caught.value)
    assert _arrow_files(cache) == [] and not list(cache.rglob("*.incomplete*"))
    assert _build(data, cache)["train"].num_rows == 4


def test_unknown_option_is_a_config_error(tmp_path):
    data, cache = write_ml1m(tmp_path / "data"), tmp_path / "cache"
    with pytest.raises(ConfigError, match=r"unknown option\(s\) Kk .*expected ReLLaConfig fields"):
        _build(data, cache, Kk=4)
    assert _arrow_files(cache) == []
    assert _build(data, cache)["test"].num_rows == 2


def test_huge_K_fails_before_allocating(tmp_path):
    data, cache = write_ml1m(tmp_path / "data"), tmp_path / "cache"
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"K=1000000000 exceeds the longest history .*\(7 items\); choose K <= 7"):
        _build(data, cache, K=10**9)
    assert time.perf_counter() - start < 20
    assert _arrow_files(cache) == []
    assert _build(data, cache, K=7)["train"].num_rows == 4


@pytest.mark.parametrize("corpus, writer, option, words", [
    ("ml-1m", write_ml1m, {"min_history": 50}, ["min_history=50", "longest history is 7", "lower min_history"]),
    ("BookCrossing", write_book_crossing, {"min_user_ratings": 50}, ["min_user_ratings=50", "most ratings any user has is 8"]),
])
def test_filter_that_removes_everything_is_named(corpus, writer, option, words, tmp_path):
    data, cache = writer(tmp_path / "data"), tmp_path / "cache"
    with pytest.raises(ConfigError) as caught:
        rella_hf.load_dataset(corpus, K=2, data_dir=data, cache_dir=cache, chat_model=None, **option)
    for word in words:
        assert word in str(caught.value)
    assert _arrow_files(cache) == []
    assert rella_hf.load_dataset(corpus, K=2, data_dir=data, cache_dir=cache, chat_model=None)["train"].num_rows > 0


def test_data_dir_that_is_a_file_is_a_config_error(tmp_path):
    bogus = tmp_path / "ratings.dat"
    bogus.write_text("1::1::5::100\n")
    with pytest.raises(ConfigError, match="is not a folder; expected one holding users.dat"):
        _build(bogus, tmp_path / "cache")


def test_fixed_corpus_file_is_rebuilt_not_served_stale(tmp_path):
    data, cache = write_ml1m(tmp_path / "data"), tmp_path / "cache"
    first = _build(data, cache)["test"]
    assert list(first["rating"]) == [3.0, 5.0]
    ratings = ml1m_ratings()
    ratings[-1] = "3::8::2::307"  # the test sample's rating changes
    (data / "ratings.dat").write_bytes(("\n".join(ratings) + "\n").encode())
    second = _build(data, cache)["test"]
    assert list(second["rating"]) == [3.0, 2.0] and list(second["label"]) == [0, 0]


def test_same_size_same_mtime_edit_is_caught_by_inode_or_hash(tmp_path):
    data, cache = write_ml1m(tmp_path / "data"), tmp_path / "cache"
    path = data / "ratings.dat"
    assert list(_build(data, cache)["test"]["rating"]) == [3.0, 5.0]
    stat = path.stat()
    edited = path.read_bytes().replace(b"3::8::5::307", b"3::8::1::307")
    replacement = tmp_path / "new.dat"
    replacement.write_bytes(edited)
    os.replace(replacement, path)  # editors save by rename: same size, new inode
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert list(_build(data, cache)["test"]["rating"]) == [3.0, 1.0]


def test_touched_but_unchanged_file_reuses_the_cache(tmp_path):
    data, cache = write_ml1m(tmp_path / "data"), tmp_path / "cache"
    first = _build(data, cache)
    files, entries = first["train"].cache_files, _arrow_files(cache)
    os.utime(data / "ratings.dat", (time.time() + 100, time.time() + 100))
    second = _build(data, cache)
    assert second["train"].cache_files == files and _arrow_files(cache) == entries


# --------------------------------------------------------------------------------------------
# Embedding cache integrity
# --------------------------------------------------------------------------------------------


class CountingEmbedder:
    identity = "test:counting"
    pooling = "average"

    def __init__(self):
        self.calls = 0

    def encode(self, texts, batch_size=32, progress=True):
        self.calls += 1
        return np.arange(len(texts) * 4, dtype=np.float32).reshape(len(texts), 4)


TEXTS = ["a movie", "another movie", "a book"]


def _cached_npy(folder: Path) -> Path:
    (path,) = list(folder.glob("*.npy"))
    return path


@pytest.mark.parametrize("damage", ["flip-byte", "truncate", "lose-sidecar", "wrong-checksum"])
def test_damaged_embedding_cache_is_rebuilt_never_used(damage, tmp_path):
    from rella_hf.embeddings import embed_items

    embedder = CountingEmbedder()
    expected = embed_items(TEXTS, embedder, cache_dir=tmp_path, progress=False)
    path = _cached_npy(tmp_path)
    data = path.read_bytes()
    if damage == "flip-byte":
        path.write_bytes(data[:-5] + bytes([data[-5] ^ 0x40]) + data[-4:])
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "lose-sidecar":
        path.with_suffix(".json").unlink()
    else:
        sidecar = json.loads(path.with_suffix(".json").read_text())
        path.with_suffix(".json").write_text(json.dumps({**sidecar, "sha256": "0" * 64}))
    with pytest.warns(UserWarning, match="does not match its checksum; recomputing"):
        again = embed_items(TEXTS, embedder, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again, expected)
    assert embedder.calls == 2
    assert not list(tmp_path.glob(".*.tmp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt entry is whole again: no warning, no encoding
        np.testing.assert_array_equal(embed_items(TEXTS, embedder, cache_dir=tmp_path, progress=False), expected)
    assert embedder.calls == 2


# --------------------------------------------------------------------------------------------
# Command line: exit codes, one line, nothing left behind, the next correct run works
# --------------------------------------------------------------------------------------------


def _run(capsys, argv, code):
    result = main(argv)
    captured = capsys.readouterr()
    assert result == code, (result, captured.err)
    assert "Traceback" not in captured.err, captured.err
    # datasets' progress bars may share stderr; our message is exactly one line of its own
    (err,) = [line for line in captured.err.replace("\r", "\n").splitlines() if line.startswith("rella-hf")]
    return err


def _tree(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def ml1m(tmp_path):
    data = write_ml1m(tmp_path / "data")
    return data, ["--dataset", "ml-1m", "--data_dir", str(data), "--K", "3", "--chat_model", "none",
                  "--cache_dir", str(tmp_path / "cache")]


def test_cli_build_bad_rating_exits_2_then_fixed_build_works(ml1m, tmp_path, capsys):
    data, common = ml1m
    good = (data / "ratings.dat").read_bytes()
    (data / "ratings.dat").write_bytes(_replace_line(good, 2, b"1::2::7::101"))
    err = _run(capsys, ["build", *common, "--output_dir", str(tmp_path / "out")], 2)
    assert "ratings.dat, line 2" in err and "'rating'" in err and "from 1 to 5" in err
    assert not (tmp_path / "out").exists() and _arrow_files(tmp_path / "cache") == []
    (data / "ratings.dat").write_bytes(good)
    assert main(["build", *common, "--output_dir", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "dataset_dict.json").exists()


def test_cli_build_huge_K_exits_2(ml1m, capsys):
    _, common = ml1m
    err = _run(capsys, ["build", *common[:-6], "--K", "1000000000", *common[-4:]], 2)
    assert "K=1000000000 exceeds the longest history" in err
    assert main(["build", *common]) == 0


def test_cli_generation_error_is_one_line_exit_2(ml1m, capsys):
    _, common = ml1m
    err = _run(capsys, ["build", *common, "--max_prompt_tokens", "5"], 2)
    assert "max_prompt_tokens needs chat_model" in err and "DatasetGenerationError" not in err


def test_cli_unknown_user_in_ratings_exits_2(ml1m, capsys):
    data, common = ml1m
    good = (data / "ratings.dat").read_bytes()
    (data / "ratings.dat").write_bytes(_append_line(good, b"9::1::5::400"))
    err = _run(capsys, ["build", *common], 2)
    assert "ratings.dat, line 22" in err and "users.dat" in err
    (data / "ratings.dat").write_bytes(good)
    assert main(["build", *common]) == 0


@pytest.mark.parametrize("option", ["--chat_model", "--embedder"])
def test_cli_missing_local_model_path_is_named_not_a_hub_id(option, ml1m, tmp_path, capsys):
    _, common = ml1m
    common = [token for token in common if token not in ("--chat_model", "none")]
    argv = ["build", *common, option, str(tmp_path / "no-model"), "--retrieval", "semantic"]
    if option == "--embedder":
        argv += ["--chat_model", "none"]
    err = _run(capsys, argv, 2)
    assert f"{option} {tmp_path / 'no-model'}: no such folder" in err and "repo id" not in err.lower()
    assert _arrow_files(tmp_path / "cache") == []


def test_cli_output_dir_that_is_a_file_exits_2_and_keeps_the_file(ml1m, tmp_path, capsys):
    _, common = ml1m
    target = tmp_path / "out"
    target.write_text("mine")
    err = _run(capsys, ["build", *common, "--output_dir", str(target)], 2)
    assert "is a file" in err and target.read_text() == "mine"
    assert _arrow_files(tmp_path / "cache") == []
    target.unlink()
    assert main(["build", *common, "--output_dir", str(target)]) == 0


def test_cli_output_dir_with_foreign_files_is_not_overwritten(ml1m, tmp_path, capsys):
    _, common = ml1m
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    err = _run(capsys, ["build", *common, "--output_dir", str(target)], 2)
    assert "does not hold a saved dataset" in err
    assert _tree(target) == ["notes.txt"] and not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert main(["build", *common, "--output_dir", str(tmp_path / "fresh")]) == 0


def test_cli_rebuild_into_a_saved_dataset_replaces_it(ml1m, tmp_path, capsys):
    _, common = ml1m
    target = tmp_path / "out"
    assert main(["build", *common, "--output_dir", str(target)]) == 0
    assert main(["build", *common, "--output_dir", str(target)]) == 0
    assert (target / "dataset_dict.json").exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".out.")]


@pytest.mark.parametrize("setting", ["../../x", "/tmp/abs", "a/b", "..", ".hidden", "x" * 200, "a b"])
def test_cli_score_setting_must_be_a_plain_name(setting, ml1m, tmp_path, capsys):
    _, common = ml1m
    run = tmp_path / "runs" / "r"
    err = _run(capsys, ["score", *common, "--model", "tiny-random-llama", "--setting", setting,
                        "--output_dir", str(run)], 2)
    assert "--setting" in err and "not a plain name" in err and len(err) < 400
    assert _tree(tmp_path / "runs") == [] and not (tmp_path / "x").exists() and _arrow_files(tmp_path / "cache") == []


def test_library_write_scores_refuses_escaping_setting(tmp_path):
    from rella_hf.report import write_scores

    with pytest.raises(ConfigError, match="not a plain name"):
        write_scores(tmp_path / "run", "../escape", [0, 1], [0.2, 0.8], {})
    assert not (tmp_path / "escape.jsonl").exists() and not (tmp_path / "run").exists()
    assert write_scores(tmp_path / "run", "K5-recent", [0, 1], [0.2, 0.8], {}).exists()


def test_cli_score_output_dir_that_is_a_file_exits_2(ml1m, tmp_path, capsys):
    _, common = ml1m
    target = tmp_path / "run"
    target.write_text("mine")
    err = _run(capsys, ["score", *common, "--model", "tiny-random-llama", "--output_dir", str(target)], 2)
    assert "--output_dir" in err and "is a file" in err and target.read_text() == "mine"


def _adapter(folder: Path, weights: bytes | None) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "x"}))
    if weights is not None:
        (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


@pytest.mark.parametrize("weights", [b"\x00\x01garbage", b"\xff" * 8 + b"{}", b""])
def test_cli_corrupt_adapter_weights_exit_2_before_any_build(weights, ml1m, tmp_path, capsys):
    _, common = ml1m
    adapter = _adapter(tmp_path / "adapter", weights)
    err = _run(capsys, ["score", *common, "--adapter", str(adapter), "--output_dir", str(tmp_path / "run")], 2)
    assert "adapter_model.safetensors is corrupt or cut" in err
    assert not (tmp_path / "run").exists() and _arrow_files(tmp_path / "cache") == []


def test_cli_adapter_folder_without_config_exits_2(ml1m, tmp_path, capsys):
    _, common = ml1m
    folder = tmp_path / "adapter"
    folder.mkdir()
    err = _run(capsys, ["score", *common, "--adapter", str(folder), "--output_dir", str(tmp_path / "run")], 2)
    assert "not an adapter folder" in err and "adapter_config.json" in err


def test_cli_unreadable_model_config_exits_2(ml1m, tmp_path, capsys):
    _, common = ml1m
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama", ')
    err = _run(capsys, ["score", *common, "--model", str(model), "--output_dir", str(tmp_path / "run")], 2)
    assert f"--model {model}: cannot be loaded" in err and "config.json" in err
    assert not (tmp_path / "run" / "scores").exists()


def _scores(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD_SCORES = ['{"label": 1, "score": 0.9}', '{"label": 0, "score": 0.2}', '{"label": 1, "score": 0.6}',
               '{"label": 0, "score": 0.4}']


@pytest.mark.parametrize("bad, line", [
    ('{"label": 1, "sco', 3),  # cut while being written
    ('{"label": 1}', 2),  # no score
    ("[1, 0.5]", 1),  # not a record
    ('{"label": "yes", "score": 0.5}', 4),
])
def test_cli_evaluate_bad_scores_file_exits_2_with_line(bad, line, tmp_path, capsys):
    lines = list(GOOD_SCORES)
    lines[line - 1] = bad
    path = _scores(tmp_path / "run" / "scores" / "K5-recent.jsonl", lines)
    err = _run(capsys, ["evaluate", "--scores", str(path), "--bootstrap", "0"], 2)
    assert f"K5-recent.jsonl, line {line}" in err and "not a score record" in err
    _scores(path, GOOD_SCORES)
    assert main(["evaluate", "--scores", str(path), "--bootstrap", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["K5-recent"]["n"] == 4


def test_cli_evaluate_missing_scores_file_exits_2(tmp_path, capsys):
    err = _run(capsys, ["evaluate", "--scores", str(tmp_path / "nope.jsonl")], 2)
    assert "no such file" in err


def test_cli_evaluate_run_folder_with_a_cut_file_exits_2(tmp_path, capsys):
    _scores(tmp_path / "run" / "scores" / "K5-recent.jsonl", GOOD_SCORES)
    _scores(tmp_path / "run" / "scores" / "K10-recent.jsonl", [*GOOD_SCORES[:3], '{"label": 0, "sc'])
    err = _run(capsys, ["evaluate", "--scores", str(tmp_path / "run"), "--bootstrap", "0"], 2)
    assert "K10-recent.jsonl, line 4" in err


def test_cli_report_on_empty_folder_exits_2_and_writes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    err = _run(capsys, ["report", "--run_dir", str(run)], 2)
    assert "nothing to report" in err and _tree(run) == []
    _scores(run / "scores" / "K5-recent.jsonl", GOOD_SCORES)
    assert main(["report", "--run_dir", str(run), "--bootstrap", "0"]) == 0
    assert (run / "report.md").exists()


def test_cli_report_with_cut_scores_exits_2_and_writes_no_report(tmp_path, capsys):
    run = tmp_path / "run"
    _scores(run / "scores" / "K5-recent.jsonl", [*GOOD_SCORES, '{"lab'])
    err = _run(capsys, ["report", "--run_dir", str(run), "--bootstrap", "0"], 2)
    assert "K5-recent.jsonl, line 5" in err
    assert not (run / "report.md").exists() and not (run / "metrics.json").exists()


def _train_yaml(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "train.yaml"
    config.write_text(f"output_dir: {tmp_path / 'train-out'}\ndataset: ml-latest-small\nK: 5\nshots: 8\n"
                      f"pool_size: 16\n{extra}")
    return config


def test_cli_train_unknown_yaml_key_exits_2(tmp_path, capsys):
    config = _train_yaml(tmp_path, "learning_rat: 0.1\n")
    err = _run(capsys, ["train", "--config", str(config)], 2)
    assert "learning_rat" in err and not (tmp_path / "train-out").exists()


def test_cli_train_missing_yaml_exits_2(tmp_path, capsys):
    err = _run(capsys, ["train", "--config", str(tmp_path / "nope.yaml")], 2)
    assert "nope.yaml" in err


def test_cli_train_invalid_yaml_exits_2(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("output_dir: [unclosed\n")
    err = _run(capsys, ["train", "--config", str(config)], 2)
    assert "YAML" in err or "bad.yaml" in err


def test_cli_train_output_dir_that_is_a_file_exits_2(tmp_path, capsys):
    (tmp_path / "train-out").write_text("mine")
    err = _run(capsys, ["train", "--config", str(_train_yaml(tmp_path))], 2)
    assert "output_dir" in err and "is a file" in err and (tmp_path / "train-out").read_text() == "mine"


def test_hub_token_never_reaches_the_pickled_training_arguments(tmp_path, monkeypatch):
    from rella_hf.training import parse_config

    monkeypatch.delenv("HF_TOKEN", raising=False)
    secret = "hf_" + "Z" * 30
    config = parse_config(["--config", str(_train_yaml(tmp_path)), "--hub_token", secret])
    assert config.hub_token is None and os.environ["HF_TOKEN"] == secret
    assert secret.encode() not in pickle.dumps(config)
    assert secret not in config.to_json_string()


def test_cli_embed_output_must_be_an_npy_file(ml1m, tmp_path, capsys):
    data, _ = ml1m
    err = _run(capsys, ["embed", "--dataset", "ml-1m", "--data_dir", str(data), "--output", str(tmp_path)], 2)
    assert "--output" in err and ".npy" in err
    err = _run(capsys, ["embed", "--dataset", "ml-1m", "--data_dir", str(data), "--output", str(tmp_path / "x.txt")], 2)
    assert not (tmp_path / "x.txt").exists()


def test_cli_bug_exits_1_with_one_line_and_debug_shows_traceback(monkeypatch, capsys):
    import rella_hf.cli as cli

    def broken(argv):
        raise TypeError("unsupported operand " + "y" * 5000)

    monkeypatch.setitem(cli.COMMANDS, "evaluate", (broken, "broken"))
    err = _run(capsys, ["evaluate"], 1)
    assert "TypeError" in err and "--debug" in err and "bug" in err and len(err) < 800
    with pytest.raises(TypeError):
        main(["evaluate", "--debug"])


def test_cli_long_bad_field_is_one_short_line(ml1m, capsys):
    data, common = ml1m
    path = data / "movies.dat"
    good = path.read_bytes()
    path.write_bytes(good + ("9::" + "t" * 200_000 + "::Drama::extra\n").encode())
    err = _run(capsys, ["build", *common], 2)
    assert "movies.dat, line 9" in err and len(err) < 800
    path.write_bytes(good)
    assert main(["build", *common]) == 0


def test_rella_errors_stay_value_errors():
    for error in (DataFormatError("f.csv", "bad", 3), ConfigError("x")):
        assert isinstance(error, RellaError) and isinstance(error, ValueError)


def test_a_download_error_is_an_os_error_not_a_value_error():
    from rella_hf.cli import user_mistake
    from rella_hf.errors import DownloadError

    error = DownloadError("ml-1m has no reachable official download; pass data_dir=")
    assert isinstance(error, RellaError) and isinstance(error, OSError) and not isinstance(error, ValueError)
    assert str(error) == "ml-1m has no reachable official download; pass data_dir="
    assert user_mistake(error) == str(error)  # still one line, exit 2
    assert str(DataFormatError("f.csv", "bad", 3)) == "f.csv, line 3: bad"
