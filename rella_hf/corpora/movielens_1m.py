"""MovieLens-1M: ``users.dat``, ``movies.dat``, ``ratings.dat`` (``::``-separated)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataFormatError
from .base import Corpus, CorpusTables, RatingsFile, check_unique_pairs, read_delimited, resolve_file
from .validation import check_ids, check_line_end, check_numbers, check_references, check_timestamps

GENDERS = {"M": "male", "F": "female"}

#: ML-1M age codes -> the bucket names used in ReLLa's prompts (also used for ML-100K raw ages).
AGE_BUCKETS = {
    1: "under 18",
    18: "18-24",
    25: "25-34",
    35: "35-44",
    45: "45-49",
    50: "50-55",
    56: "above 56",
}

#: Occupation codes 0-20 of the ML-1M README, lower-cased as ReLLa prints them.
OCCUPATIONS = (
    "other or not specified",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)


def first_genre(genres: pd.Series) -> pd.Series:
    """The first of ``|``-separated genres, as ReLLa's item texts use."""
    return genres.str.split("|", n=1).str[0]


def map_codes(path: Path, codes: pd.Series, mapping: dict, column: str) -> pd.Series:
    """Map codes through ``mapping``, raising at the first line whose code is unknown."""
    mapped = codes.map(mapping)
    unknown = mapped.isna().to_numpy()
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise DataFormatError(
            path, f"unknown {column} code {codes.iat[row]!r}; expected one of {sorted(mapping)}", row + 1
        )
    return mapped


def rating_checks(path: Path, ratings: pd.DataFrame, users: pd.DataFrame | None, items: pd.DataFrame, *,
                  users_file: str | None, items_file: str, header: bool = False, low: float = 1, high: float = 5,
                  step: float = 1, locate: dict | None = None) -> list[tuple[str, object]]:
    """The MovieLens rating rules that look at one record at a time, in the order they are applied.

    Returns ``(rule name, check)`` pairs; each check raises :class:`DataFormatError` at the first
    record breaking its rule. :func:`validate_ratings` runs them on a whole file; the Spark engine
    runs them on each piece of a file (``locate={"lines": ...}`` numbers the piece's records).
    """
    checks = [
        ("user id", lambda: check_ids(path, ratings, ["user_id"], header=header, locate=locate)),
        ("item id", lambda: check_ids(path, ratings, ["item_id"], header=header, locate=locate)),
        ("rating", lambda: check_numbers(path, ratings, "rating", low=low, high=high, step=step, header=header,
                                         what="a rating", locate=locate)),
        ("timestamp", lambda: check_timestamps(path, ratings, header=header, locate=locate)),
    ]
    if users is not None:
        checks.append(("user reference", lambda: check_references(path, ratings, "user_id", users["user_id"], users_file,
                                                                  header=header, locate=locate)))
    checks.append(("item reference", lambda: check_references(path, ratings, "item_id", items["item_id"], items_file,
                                                              header=header, locate=locate)))
    return checks


def validate_ratings(path: Path, ratings: pd.DataFrame, users: pd.DataFrame | None, items: pd.DataFrame, *,
                     users_file: str | None, items_file: str, header: bool = False, low: float = 1, high: float = 5,
                     step: float = 1) -> None:
    """The MovieLens rating rules: positive ids that the user and item files list, ratings from
    ``low`` to ``high`` in steps of ``step`` (NaN refused), Unix-second timestamps, each (user, item) once."""
    for _, check in rating_checks(path, ratings, users, items, users_file=users_file, items_file=items_file,
                                  header=header, low=low, high=high, step=step):
        check()
    check_unique_pairs(path, ratings, ["user_id", "item_id"], header=header)


def read_ratings(corpus: Corpus, data_dir: Path, users: pd.DataFrame | None, items: pd.DataFrame) -> pd.DataFrame:
    """Read and validate ``corpus.ratings_file`` from ``data_dir`` (ratings as float32)."""
    spec = corpus.ratings_file
    path = resolve_file(data_dir, spec.name)
    check_line_end(path)
    ratings = read_delimited(path, **spec.read_kwargs())
    validate_ratings(path, ratings, users, items, **spec.rule_kwargs())
    ratings["rating"] = ratings["rating"].astype(np.float32)
    return ratings


class MovieLens1M(Corpus):
    """MovieLens-1M (6,040 users, 3,883 movies, 1,000,209 ratings)."""

    name = "ml-1m"
    domain = "movie"
    prompt_template = "ml-1m"
    rating_format = "int"
    required_files = ("users.dat", "movies.dat", "ratings.dat")
    protocol = "chronological"
    label_threshold = 3
    profile_columns = ("gender", "age", "job")
    download_url = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    download_md5 = "c4d9eecfca2ab87c1945afe126590906"
    archive_folder = "ml-1m"
    homepage = "https://grouplens.org/datasets/movielens/"
    license_name = "movielens-1m"
    license_link = "https://files.grouplens.org/datasets/movielens/ml-1m-README.txt"
    licence = "The user may not redistribute the data without separate permission."
    citation = (
        "@article{harper2015movielens, title={The MovieLens Datasets: History and Context}, "
        "author={Harper, F. Maxwell and Konstan, Joseph A.}, journal={ACM Transactions on Interactive "
        "Intelligent Systems}, volume={5}, number={4}, year={2015}}"
    )

    ratings_file = RatingsFile(
        name="ratings.dat", sep="::", encoding="latin-1",
        columns=(("user_id", "int"), ("item_id", "int"), ("rating", "int"), ("timestamp", "int")),
        users_file="users.dat", items_file="movies.dat",
    )

    def read_catalogue(self, data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``users.dat`` (profiles mapped to ReLLa's words) and ``movies.dat`` (title, first genre)."""
        users_path = resolve_file(data_dir, "users.dat")
        check_line_end(users_path)
        users = read_delimited(
            users_path, sep="::", encoding="latin-1",
            columns={"user_id": "int", "gender": "str", "age_code": "int", "occupation": "int", "zip_code": "str"},
        )
        check_ids(users_path, users, ["user_id"])
        check_unique_pairs(users_path, users, ["user_id"], header=False)
        users = pd.DataFrame({
            "user_id": users["user_id"],
            "gender": map_codes(users_path, users["gender"], GENDERS, "gender"),
            "age": map_codes(users_path, users["age_code"], AGE_BUCKETS, "age"),
            "job": map_codes(users_path, users["occupation"], dict(enumerate(OCCUPATIONS)), "occupation"),
        })

        movies_path = resolve_file(data_dir, "movies.dat")
        check_line_end(movies_path)
        movies = read_delimited(
            movies_path, sep="::", encoding="iso-8859-1",
            columns={"item_id": "int", "title": "str", "genres": "str"},
        )
        check_ids(movies_path, movies, ["item_id"])
        check_unique_pairs(movies_path, movies, ["item_id"], header=False)
        items = pd.DataFrame({"item_id": movies["item_id"], "title": movies["title"], "genre": first_genre(movies["genres"])})
        return users, items

    def read_tables(self, data_dir: Path) -> CorpusTables:
        users, items = self.read_catalogue(data_dir)
        ratings = read_ratings(self, data_dir, users, items)
        return CorpusTables(users=users, items=items, interactions=ratings)
