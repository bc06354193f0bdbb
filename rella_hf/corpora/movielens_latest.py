"""The MovieLens "latest" CSV family: ml-25m, ml-20m, ml-32m, ml-latest and ml-latest-small.

All share ``movies.csv`` (movieId,title,genres) and ``ratings.csv`` (userId,movieId,rating,timestamp)
with half-star ratings and no user profile.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .base import Corpus, CorpusTables, RatingsFile, check_unique_pairs, read_delimited, resolve_file
from .movielens_1m import MovieLens1M, first_genre, read_ratings
from .validation import check_ids, check_line_end


def bundled_ml_latest_small() -> Path:
    """Folder of the ml-latest-small copy shipped inside the package (licence kept beside it)."""
    return Path(str(resources.files("rella_hf").joinpath("data", "ml-latest-small")))


class MovieLensLatest(Corpus):
    """Base of the CSV family; subclasses only name the release."""

    domain = "movie"
    prompt_template = "ml-latest"
    rating_format = "float1"
    required_files = ("movies.csv", "ratings.csv")
    protocol = "chronological"
    label_threshold = 3  # so 3.5 stars is positive
    licence = "The user may not redistribute the data without separate permission."
    citation = MovieLens1M.citation
    homepage = MovieLens1M.homepage

    ratings_file = RatingsFile(
        name="ratings.csv", sep=",", header=("userId", "movieId", "rating", "timestamp"),
        columns=(("user_id", "int"), ("item_id", "int"), ("rating", "float"), ("timestamp", "int")),
        low=0.5, high=5, step=0.5, users_file=None, items_file="movies.csv",
    )

    def read_catalogue(self, data_dir: Path) -> tuple[None, pd.DataFrame]:
        """No user file (users are the ids ratings.csv names); ``movies.csv`` (title, first genre)."""
        movies_path = resolve_file(data_dir, "movies.csv")
        check_line_end(movies_path)
        movies = read_delimited(
            movies_path, sep=",", quoted=True, header=["movieId", "title", "genres"],
            columns={"item_id": "int", "title": "str", "genres": "str"},
        )
        check_ids(movies_path, movies, ["item_id"], header=True, locate={"sep": ","})
        check_unique_pairs(movies_path, movies, ["item_id"], header=True)
        items = pd.DataFrame({"item_id": movies["item_id"], "title": movies["title"], "genre": first_genre(movies["genres"])})
        return None, items

    def read_tables(self, data_dir: Path) -> CorpusTables:
        _, items = self.read_catalogue(data_dir)
        ratings = read_ratings(self, data_dir, None, items)
        users = pd.DataFrame({"user_id": np.unique(ratings["user_id"].to_numpy())})
        return CorpusTables(users=users, items=items, interactions=ratings)


class MovieLens25M(MovieLensLatest):
    """MovieLens-25M (162,541 users, 62,423 movies, 25,000,095 ratings)."""

    name = "ml-25m"
    download_url = "https://files.grouplens.org/datasets/movielens/ml-25m.zip"
    download_md5 = "6b51fb2759a8657d3bfcbfc42b592ada"
    archive_folder = "ml-25m"
    license_name = "movielens-25m"
    license_link = "https://files.grouplens.org/datasets/movielens/ml-25m-README.html"


class MovieLens20M(MovieLensLatest):
    """MovieLens-20M."""

    name = "ml-20m"
    download_url = "https://files.grouplens.org/datasets/movielens/ml-20m.zip"
    download_md5 = "cd245b17a1ae2cc31bb14903e1204af3"
    archive_folder = "ml-20m"
    license_name = "movielens-20m"
    license_link = "https://files.grouplens.org/datasets/movielens/ml-20m-README.html"


class MovieLens32M(MovieLensLatest):
    """MovieLens-32M (no published checksum known to us: the archive's structure is verified instead)."""

    name = "ml-32m"
    download_url = "https://files.grouplens.org/datasets/movielens/ml-32m.zip"
    archive_folder = "ml-32m"
    license_name = "movielens-32m"
    license_link = "https://files.grouplens.org/datasets/movielens/ml-32m-README.html"


class MovieLensLatestFull(MovieLensLatest):
    """The current full "latest" release (changes over time, so no checksum)."""

    name = "ml-latest"
    download_url = "https://files.grouplens.org/datasets/movielens/ml-latest.zip"
    archive_folder = "ml-latest"
    license_name = "movielens-latest"
    license_link = "https://files.grouplens.org/datasets/movielens/ml-latest-README.html"


class MovieLensLatestSmall(MovieLensLatest):
    """ml-latest-small (610 users, 9,742 movies, 100,836 ratings), bundled with the package."""

    name = "ml-latest-small"
    download_url = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
    archive_folder = "ml-latest-small"
    license_name = "movielens-latest-small"
    license_link = "https://files.grouplens.org/datasets/movielens/ml-latest-small-README.html"
    licence = (
        "The user may redistribute the data set, including transformations, so long as it is distributed "
        "under these same license conditions."
    )
    redistributable = True

    def bundled_folder(self) -> Path:
        """The bundled copy serves as the download: ml-latest-small ships inside the package."""
        return bundled_ml_latest_small()
