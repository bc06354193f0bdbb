"""MovieLens-100K: ``u.data`` (tab-separated), ``u.user`` and ``u.item`` (``|``-separated, ISO-8859-1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .base import CorpusTables, RatingsFile, check_unique_pairs, read_delimited, resolve_file
from .movielens_1m import GENDERS, MovieLens1M, map_codes, read_ratings
from .validation import check_ids, check_line_end, check_numbers

#: The 19 genre flags of u.item, in file order (u.genre).
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)

# Raw ages -> ML-1M buckets: (upper bound exclusive, bucket).
_AGE_EDGES = np.array([18, 25, 35, 45, 50, 56])
_AGE_NAMES = np.array(["under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "above 56"])


def age_bucket(ages: pd.Series) -> pd.Series:
    """Map raw ages to ML-1M's age buckets ("under 18", ..., "above 56")."""
    return pd.Series(_AGE_NAMES[np.searchsorted(_AGE_EDGES, ages.to_numpy(), side="right")], index=ages.index)


class MovieLens100K(MovieLens1M):
    """MovieLens-100K (943 users, 1,682 movies, 100,000 ratings): ML-1M's protocol, template and licence."""

    name = "ml-100k"
    required_files = ("u.data", "u.user", "u.item")
    download_url = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    download_md5 = "0e33842e24a9c977be4e0107933c0723"
    archive_folder = "ml-100k"
    license_name = "movielens-100k"
    license_link = "https://files.grouplens.org/datasets/movielens/ml-100k-README.txt"

    ratings_file = RatingsFile(
        name="u.data", sep="\t",
        columns=(("user_id", "int"), ("item_id", "int"), ("rating", "int"), ("timestamp", "int")),
        users_file="u.user", items_file="u.item",
    )

    def read_catalogue(self, data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``u.user`` (ages bucketed like ML-1M's) and ``u.item`` (title, first flagged genre)."""
        users_path = resolve_file(data_dir, "u.user")
        check_line_end(users_path)
        users = read_delimited(
            users_path, sep="|", encoding="iso-8859-1",
            columns={"user_id": "int", "age": "int", "gender": "str", "occupation": "str", "zip_code": "str"},
        )
        check_ids(users_path, users, ["user_id"])
        check_numbers(users_path, users, "age", low=1, high=120, what="an age in years")
        check_unique_pairs(users_path, users, ["user_id"], header=False)
        users = pd.DataFrame({
            "user_id": users["user_id"],
            "gender": map_codes(users_path, users["gender"], GENDERS, "gender"),
            "age": age_bucket(users["age"]),
            "job": users["occupation"],
        })

        items_path = resolve_file(data_dir, "u.item")
        item_columns = {"item_id": "int", "title": "str", "release_date": "str", "video_release_date": "str", "imdb_url": "str"}
        item_columns.update({f"genre_{index}": "int" for index in range(len(GENRES))})
        check_line_end(items_path)
        movies = read_delimited(items_path, sep="|", encoding="iso-8859-1", columns=item_columns)
        check_ids(items_path, movies, ["item_id"])
        for index in range(len(GENRES)):
            check_numbers(items_path, movies, f"genre_{index}", low=0, high=1, step=1, what="a genre flag")
        check_unique_pairs(items_path, movies, ["item_id"], header=False)
        flags = movies[[f"genre_{index}" for index in range(len(GENRES))]].to_numpy() != 0
        # argmax finds the first set flag; a movie without any flag is "unknown" like genre 0.
        genre = np.where(flags.any(axis=1), np.asarray(GENRES)[flags.argmax(axis=1)], "unknown")
        items = pd.DataFrame({"item_id": movies["item_id"], "title": movies["title"], "genre": genre})

        return users, items

    def read_tables(self, data_dir: Path) -> CorpusTables:
        users, items = self.read_catalogue(data_dir)
        ratings = read_ratings(self, data_dir, users, items)
        return CorpusTables(users=users, items=items, interactions=ratings)
