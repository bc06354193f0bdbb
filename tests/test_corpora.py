import gzip
import hashlib
import io
import zipfile

import pytest
from corpus_fixtures import write_book_crossing, write_ml1m, write_ml100k, write_ml_latest

from rella_hf.corpora import CORPORA, bundled_ml_latest_small, get_corpus
from rella_hf.corpora.book_crossing import age_bucket, location_country
from rella_hf.errors import DataFormatError, DownloadError, RellaError


def test_ml1m_profiles_and_items(tmp_path):
    tables = get_corpus("ml-1m").read(write_ml1m(tmp_path))
    users = tables.users.set_index("user_id")
    assert users.loc[1].tolist() == ["female", "under 18", "K-12 student"]
    assert users.loc[2].tolist() == ["male", "above 56", "self-employed"]
    assert users.loc[3].tolist() == ["male", "25-34", "scientist"]
    items = tables.items.set_index("item_id")
    assert items.loc[1, "genre"] == "Animation"  # first genre only
    assert items.loc[8, "title"] == "Cité des enfants perdus, La (1995)"  # ISO-8859-1 decoded
    assert tables.interactions.shape == (21, 4)


def test_ml1m_reads_gzipped_ratings(tmp_path):
    folder = write_ml1m(tmp_path)
    raw = (folder / "ratings.dat").read_bytes()
    (folder / "ratings.dat").unlink()
    (folder / "ratings.dat.gz").write_bytes(gzip.compress(raw))
    assert get_corpus("ml-1m").read(folder).interactions.shape[0] == 21


def test_ml_latest_format(tmp_path):
    tables = get_corpus("ml-25m").read(write_ml_latest(tmp_path))
    items = tables.items.set_index("item_id")
    assert items.loc[11, "title"] == "American President, The (1995)"
    assert items.loc[1, "genre"] == "Adventure"
    assert items.loc[51, "genre"] == "(no genres listed)"
    assert set(tables.interactions["rating"]) >= {3.5, 0.5}
    assert list(tables.users.columns) == ["user_id"]  # no profile in this family


def test_ml100k_genres_and_ages(tmp_path):
    tables = get_corpus("ml-100k").read(write_ml100k(tmp_path))
    genres = tables.items.set_index("item_id")["genre"].to_dict()
    assert genres == {1: "Animation", 2: "Action", 3: "unknown", 4: "Drama", 5: "Comedy", 6: "War"}
    users = tables.users.set_index("user_id")
    assert users.loc[1, "age"] == "18-24" and users.loc[2, "age"] == "50-55" and users.loc[3, "age"] == "under 18"
    assert users.loc[2, "gender"] == "female" and users.loc[1, "job"] == "technician"


def test_book_crossing_fields(tmp_path):
    tables = get_corpus("BookCrossing").read(write_book_crossing(tmp_path))
    users = tables.users.set_index("user_id")
    assert users["location"].to_dict() == {
        1: "USA", 2: "USA", 3: "Russia", 4: "UK", 5: "Portugal", 6: "Italy", 7: "unknown", 8: "unknown"
    }
    assert users["age"].to_dict() == {
        1: "unknown", 2: "18-24", 3: "40-44", 4: "unknown", 5: "60+", 6: "unknown", 7: "25-29", 8: "30-34"
    }
    items = tables.items.set_index("item_id")
    assert "0-bad-isbn" not in items.index  # ISBNs of letters/digits only
    assert items.loc["030000003X", "author"] == "unknown"
    assert items.loc["030000004X", "year"] == "unknown" and items.loc["030000005X", "year"] == "unknown"
    assert items.loc["030000006X", "publisher"] == "unknown"
    assert items.loc["0312000001", "title"] == 'Says "Hi" “quoted”'  # escaped quotes, cp1252 bytes
    assert (tables.interactions["item_id"] != "0-bad-isbn").all()
    assert (tables.interactions["timestamp"] == -1).all()


def test_location_and_age_rules():
    import pandas as pd

    assert location_country(pd.Series(["a, b, u.s.a.", "x, england", "x, new zealand", "x, ", None, "x, we`re global!"])).tolist() == [
        "USA", "UK", "New Zealand", "unknown", "unknown", "unknown"
    ]
    assert age_bucket(pd.Series(["5", "17", "18", "59", "60", "100", "101", None, "abc"])).tolist() == [
        "under 18", "under 18", "18-24", "55-59", "60+", "60+", "unknown", "unknown", "unknown"
    ]


def test_bundled_ml_latest_small_is_complete():
    folder = bundled_ml_latest_small()
    assert (folder / "README.txt").exists()  # licence travels with the data
    tables = get_corpus("ml-latest-small").read()
    assert tables.interactions.shape[0] == 100_836
    assert tables.users.shape[0] == 610 and tables.items.shape[0] == 9_742


# ---- bad input: one line naming the file, the line and what was expected -------------------

def _error(folder, name="ml-1m"):
    with pytest.raises(DataFormatError) as info:
        get_corpus(name).read(folder)
    return str(info.value)


def test_missing_file(tmp_path):
    folder = write_ml1m(tmp_path)
    (folder / "ratings.dat").unlink()
    message = _error(folder)
    assert "ratings.dat" in message and "not found" in message


def test_wrong_separator(tmp_path):
    folder = write_ml1m(tmp_path, ratings=[line.replace("::", ",") for line in [
        "1::1::5::100"]])
    message = _error(folder)
    assert "ratings.dat, line 1" in message and "expected 4 fields" in message


def test_wrong_column_count(tmp_path):
    ratings = ["1::1::5::100", "1::2::3::101", "1::3::4::102::extra"]
    message = _error(write_ml1m(tmp_path, ratings=ratings))
    assert "ratings.dat, line 3" in message and "found 5" in message


def test_non_integer_id(tmp_path):
    ratings = ["1::1::5::100", "x1::2::3::101"]
    message = _error(write_ml1m(tmp_path, ratings=ratings))
    assert "ratings.dat, line 2" in message and "integer" in message and "user_id" in message


def test_undecodable_bytes(tmp_path):
    folder = write_ml_latest(tmp_path)
    data = (folder / "movies.csv").read_bytes().replace(b"Get Shorty", b"Get \xff Shorty")
    (folder / "movies.csv").write_bytes(data)
    message = _error(folder, "ml-latest-small")
    assert "movies.csv, line 4" in message and "0xff" in message and "utf-8" in message


def test_empty_file(tmp_path):
    folder = write_ml1m(tmp_path)
    (folder / "movies.dat").write_bytes(b"")
    message = _error(folder)
    assert "movies.dat" in message and "empty" in message


def test_wrong_header(tmp_path):
    folder = write_ml_latest(tmp_path)
    data = (folder / "ratings.csv").read_bytes().replace(b"userId,movieId", b"user,movie", 1)
    (folder / "ratings.csv").write_bytes(data)
    message = _error(folder, "ml-25m")
    assert "ratings.csv, line 1" in message and "expected the header" in message


def test_duplicate_pair(tmp_path):
    ratings = ["1::1::5::100", "1::2::3::101", "1::1::4::102"]
    message = _error(write_ml1m(tmp_path, ratings=ratings))
    assert "ratings.dat, line 3" in message and "duplicate" in message


def test_unknown_occupation_code(tmp_path):
    folder = write_ml1m(tmp_path)
    (folder / "users.dat").write_bytes(b"1::F::1::10::48067\n2::M::56::21::70072\n")
    message = _error(folder)
    assert "users.dat, line 2" in message and "occupation" in message


def test_unknown_corpus_name():
    with pytest.raises(RellaError, match="unknown dataset 'ml-2m'"):
        get_corpus("ml-2m")
    assert get_corpus("bookcrossing").name == "BookCrossing"


# ---- downloads: never over the network in tests ----------------------------------------------

def test_book_crossing_download_says_pass_data_dir(tmp_path):
    with pytest.raises(DownloadError, match="data_dir"):
        get_corpus("BookCrossing").read(cache_dir=tmp_path)


def _zip_of(folder, prefix):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for path in folder.iterdir():
            bundle.write(path, f"{prefix}/{path.name}")
    return buffer.getvalue()


def _serve(monkeypatch, tmp_path, archive: bytes) -> list:
    """Let datasets' DownloadManager fetch ``archive`` for any URL (no network); returns the URLs asked for."""
    import datasets

    asked = []
    path = tmp_path / "served.zip"
    path.write_bytes(archive)

    def download(self, url):
        asked.append(url)
        copy = tmp_path / f"cached-{len(asked)}.zip"
        copy.write_bytes(path.read_bytes())
        return str(copy)

    monkeypatch.setattr(datasets.DownloadManager, "download", download)
    return asked


def test_download_verifies_checksum_and_unpacks(tmp_path, monkeypatch):
    archive = _zip_of(write_ml1m(tmp_path / "src"), "ml-1m")
    corpus = get_corpus("ml-1m")
    asked = _serve(monkeypatch, tmp_path, archive)
    monkeypatch.setattr(type(corpus), "download_md5", hashlib.md5(archive).hexdigest())
    tables = corpus.read(cache_dir=tmp_path / "cache")
    assert tables.interactions.shape[0] == 21
    assert (tmp_path / "cache" / "ml-1m" / "ratings.dat").exists()
    assert asked == [corpus.download_url]


def test_download_rejects_wrong_checksum(tmp_path, monkeypatch):
    archive = _zip_of(write_ml1m(tmp_path / "src"), "ml-1m")
    _serve(monkeypatch, tmp_path, archive)
    with pytest.raises(DownloadError, match="does not match its published MD5 c4d9eecfca2ab87c1945afe126590906"):
        get_corpus("ml-1m").read(cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "ml-1m").exists()  # nothing half-written left


def test_download_offline_says_pass_data_dir(tmp_path):
    # conftest.py sets HF_DATASETS_OFFLINE: the real download manager refuses the URL.
    with pytest.raises(DownloadError, match="pass data_dir"):
        get_corpus("ml-25m").read(cache_dir=tmp_path)


def test_registry_metadata_is_complete():
    for name, corpus in CORPORA.items():
        assert corpus.name == name and corpus.licence
        assert corpus.citation or name == "interactions"  # your own log has no citation to record
        assert corpus.redistributable == (name == "ml-latest-small")


def test_utf8_files_go_to_arrow_without_a_decoded_copy(tmp_path, monkeypatch):
    from rella_hf.corpora import base

    folder = write_ml_latest(tmp_path)
    expected = get_corpus("ml-25m").read(folder)

    def no_bytes(path):
        raise AssertionError(f"{path} was read into memory although Arrow can read it directly")

    monkeypatch.setattr(base, "_read_bytes", no_bytes)
    direct = get_corpus("ml-25m").read(folder)
    for name in ("items", "users", "interactions"):
        assert getattr(direct, name).equals(getattr(expected, name))


def test_direct_read_keeps_the_diagnostic_errors(tmp_path):
    folder = write_ml_latest(tmp_path)
    # an undecodable byte in a number column: Arrow fails, the decoding path names the line
    data = (folder / "ratings.csv").read_bytes().replace(b"1,11,3.5", b"1,11,3\xff5", 1)
    (folder / "ratings.csv").write_bytes(data)
    message = _error(folder, "ml-25m")
    assert "ratings.csv, line 3" in message and "0xff" in message and "utf-8" in message
    # whitespace only: empty
    (folder / "ratings.csv").write_bytes(b"\r\n  \r\n")
    assert "empty" in _error(folder, "ml-25m")


def test_direct_read_of_gzipped_csv(tmp_path):
    folder = write_ml_latest(tmp_path)
    expected = get_corpus("ml-25m").read(folder).interactions
    (folder / "ratings.csv.gz").write_bytes(gzip.compress((folder / "ratings.csv").read_bytes()))
    (folder / "ratings.csv").unlink()
    assert get_corpus("ml-25m").read(folder).interactions.equals(expected)
