"""The synthetic ML-25M generator (benchmarks/synth_corpus.py) writes files our ML-25M reader parses."""

import csv
import importlib.util
import io
import sys
from pathlib import Path

import numpy as np
import pytest

from rella_hf.corpora import get_corpus
from rella_hf.samples import SampleProtocol, build_samples

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "synth_corpus.py"
_SPEC = importlib.util.spec_from_file_location("synth_corpus", _PATH)
synth = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("synth_corpus", synth)
_SPEC.loader.exec_module(synth)

TINY = 0.0005  # 81 users, 12,500 ratings, 1,396 movies


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    return synth.generate(TINY, tmp_path_factory.mktemp("synth"), seed=3, progress=False)


def test_shape_matches_ml25m_at_full_scale_and_scales_down():
    full = synth.shape_for(1.0)
    assert (full.users, full.ratings, full.movies, full.rated_movies) == (162_541, 25_000_095, 62_423, 59_047)
    one = synth.shape_for(0.01)
    assert (one.users, one.ratings) == (1_625, 250_001)
    assert one.movies == round(62_423 * 0.1) and one.rated_movies == round(59_047 * 0.1)
    assert sum(synth.RATING_COUNTS) == 25_000_095
    with pytest.raises(ValueError, match="fraction"):
        synth.shape_for(0)


def test_reader_parses_the_corpus_with_the_right_counts(tiny_corpus):
    shape = synth.shape_for(TINY)
    tables = get_corpus("ml-25m").read(tiny_corpus)
    ratings = tables.interactions
    assert len(tables.users) == shape.users and len(ratings) == shape.ratings
    assert len(tables.items) == shape.movies
    assert ratings["item_id"].nunique() == shape.rated_movies
    assert set(ratings["item_id"]) <= set(tables.items["item_id"])
    assert sorted(tables.users["user_id"]) == list(range(1, shape.users + 1))
    assert ratings.groupby("user_id").size().min() >= 20
    assert not ratings.duplicated(["user_id", "item_id"]).any()  # the reader also checks this
    # Half stars with the release's histogram, apportioned to this size.
    histogram = ratings["rating"].value_counts().sort_index()
    assert histogram.index.tolist() == [0.5 * k for k in range(1, 11)]
    expected = np.asarray(synth.RATING_COUNTS) / sum(synth.RATING_COUNTS) * shape.ratings
    assert np.abs(histogram.to_numpy() - expected).max() < 1
    assert ratings["timestamp"].between(synth.FIRST_TIMESTAMP, synth.LAST_TIMESTAMP).all()
    # Release order: by user, then movie.
    keys = ratings["user_id"].to_numpy() * 10**7 + ratings["item_id"].to_numpy()
    assert (np.diff(keys) > 0).all()
    # Genres: the reader keeps the first listed one.
    assert set(tables.items["genre"]) <= set(synth.GENRES)


def test_bytes_follow_the_release_format(tiny_corpus):
    ratings = (tiny_corpus / "ratings.csv").read_bytes()
    movies = (tiny_corpus / "movies.csv").read_bytes()
    for raw, header in ((ratings, b"userId,movieId,rating,timestamp\r\n"), (movies, b"movieId,title,genres\r\n")):
        assert raw.startswith(header)
        assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n")  # CRLF only
    first = ratings.split(b"\r\n")[1].split(b",")
    assert len(first) == 4 and first[2] in {value.encode() for value in synth.RATING_VALUES}
    # Titles are quoted exactly when they hold a comma or a double quote, inner quotes doubled.
    text = movies.decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline="")))[1:]
    titles = {int(movie_id): title for movie_id, title, _ in rows}
    for line in text.split("\r\n")[1:-1]:
        movie_id, rest = line.split(",", 1)
        title = titles[int(movie_id)]
        needs_quotes = "," in title or '"' in title
        assert rest.startswith('"') == needs_quotes
        if needs_quotes:
            assert rest.startswith('"' + title.replace('"', '""') + '",')
    assert any(", The (" in title for title in titles.values())
    items = get_corpus("ml-25m").read(tiny_corpus).items.set_index("item_id")
    assert items["title"].to_dict() == titles  # the reader gets the same titles back


def test_same_seed_same_bytes(tmp_path, tiny_corpus):
    again = synth.generate(TINY, tmp_path / "again", seed=3, progress=False)
    other = synth.generate(TINY, tmp_path / "other", seed=4, progress=False)
    for name in ("movies.csv", "ratings.csv"):
        assert (again / name).read_bytes() == (tiny_corpus / name).read_bytes()
        assert (other / name).read_bytes() != (tiny_corpus / name).read_bytes()


def test_samples_and_semantic_structure(tiny_corpus):
    corpus = get_corpus("ml-25m")
    samples = build_samples(corpus, corpus.read(tiny_corpus), SampleProtocol())
    assert sum(len(frame) for frame in samples.splits.values()) == synth.shape_for(TINY).ratings - 5 * synth.shape_for(TINY).users
    # Users favour topics: a user's ratings concentrate on fewer genres than the catalogue's mix.
    tables = corpus.read(tiny_corpus)
    genre_of = tables.items.set_index("item_id")["genre"]
    rated = tables.interactions.assign(genre=genre_of.reindex(tables.interactions["item_id"]).to_numpy())
    top_share_per_user = rated.groupby("user_id")["genre"].agg(lambda genres: genres.value_counts(normalize=True).iloc[0])
    overall_top_share = rated["genre"].value_counts(normalize=True).iloc[0]
    assert top_share_per_user.median() > overall_top_share
