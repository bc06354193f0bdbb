"""Book-Crossing (BX-CSV-Dump): ``BX-Users.csv``, ``BX-Books.csv``, ``BX-Book-Ratings.csv``.

``;``-separated, every value double-quoted except ``NULL``, cp1252, quotes inside values escaped
as ``\\"``; one user's Location holds a line break. The official site is offline, so there is
no download: users pass ``data_dir``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .base import Corpus, CorpusTables, check_unique_pairs, read_delimited, resolve_file
from .validation import (
    check_ids,
    check_line_end,
    check_numbers,
    check_references,
    detect_encoding,
    logger,
    require_rows,
)

_USA = {"usa", "us", "u.s.a.", "u.s.a", "u.s.", "united states", "united states of america", "america"}
_UK = {"uk", "u.k.", "united kingdom", "great britain", "england", "scotland", "wales", "northern ireland"}

_AGE_EDGES = np.array([18, 25, 30, 35, 40, 45, 50, 55, 60])
_AGE_NAMES = np.array(["under 18", "18-24", "25-29", "30-34", "35-39", "40-44", "45-49", "50-54", "55-59", "60+"])


def location_country(locations: pd.Series) -> pd.Series:
    """Country of a "city, state, country" Location: its last comma-separated part, title-cased.

    "usa"/"united states"/... become "USA", "united kingdom"/"england"/... become "UK"; an empty
    part, "n/a", or one holding anything but letters, spaces and ``.'&-`` becomes "unknown".
    """
    country = locations.fillna("").str.rsplit(",", n=1).str[-1].str.strip().str.strip(".").str.lower()
    valid = country.str.fullmatch(r"[a-z][a-z .'&-]*") & ~country.isin({"n/a", "na", "none", "unknown"})
    titled = country.str.title()
    titled = titled.mask(country.isin(_USA), "USA").mask(country.isin(_UK), "UK")
    return titled.where(valid, "unknown")


def age_bucket(ages: pd.Series) -> pd.Series:
    """Bucket raw ages ("under 18", "18-24", "25-29", ..., "55-59", "60+"); missing or outside 5-100 -> "unknown"."""
    numeric = pd.to_numeric(ages, errors="coerce").to_numpy(dtype=float)
    valid = (numeric >= 5) & (numeric <= 100)
    names = _AGE_NAMES[np.searchsorted(_AGE_EDGES, np.where(valid, numeric, 0), side="right")]
    return pd.Series(np.where(valid, names, "unknown"), index=ages.index)


def _unknown_if(values: pd.Series, missing: pd.Series) -> pd.Series:
    return values.fillna("unknown").where(~missing, "unknown")


class BookCrossing(Corpus):
    """Book-Crossing (278,858 users, 271,379 books, 1,149,780 ratings incl. implicit 0s)."""

    name = "BookCrossing"
    domain = "book"
    item_id_type = "string"  # ISBNs
    prompt_template = "book-crossing"
    rating_format = "int"
    required_files = ("BX-Users.csv", "BX-Books.csv", "BX-Book-Ratings.csv")
    protocol = "shuffled_user"
    label_threshold = 4  # label = rating >= 5 on the 0-10 integer scale; 0 (implicit) is negative
    rating_high = 10
    profile_columns = ("location", "age")
    hub_license = "unknown"
    homepage = "http://www2.informatik.uni-freiburg.de/~cziegler/BX/ (offline)"
    licence = (
        "No licence is known to rella-hf for Book-Crossing (the original site is offline); treat it as not "
        "redistributable without permission."
    )
    citation = (
        "@inproceedings{ziegler2005improving, title={Improving Recommendation Lists Through Topic Diversification}, "
        "author={Ziegler, Cai-Nicolas and McNee, Sean M. and Konstan, Joseph A. and Lausen, Georg}, "
        "booktitle={Proceedings of the 14th International Conference on World Wide Web}, year={2005}}"
    )

    def read_tables(self, data_dir: Path) -> CorpusTables:
        quoted = dict(sep=";", quoted=True, escapechar="\\", null_values=("NULL",))

        def read(name: str, **options):
            # The dump is cp1252, but copies re-saved as UTF-8 circulate: each file is decoded
            # strictly in the one encoding that fits it whole (UTF-8 first), never mixed.
            path = resolve_file(data_dir, name)
            check_line_end(path)
            encoding = detect_encoding(path, ("utf-8", "cp1252"))
            locate = {"sep": ";", "escapechar": "\\", "encoding": encoding}
            return path, read_delimited(path, encoding=encoding, **quoted, **options), locate

        users_path, users, users_locate = read(
            "BX-Users.csv", header=["User-ID", "Location", "Age"],
            columns={"user_id": "int", "location": "str", "age": "str"},
        )
        check_ids(users_path, users, ["user_id"], header=True, locate=users_locate)
        check_unique_pairs(users_path, users, ["user_id"], header=True)
        users = pd.DataFrame({
            "user_id": users["user_id"],
            "location": location_country(users["location"]),
            "age": age_bucket(users["age"]),
        })

        books_path, books, _ = read(
            "BX-Books.csv",
            header=["ISBN", "Book-Title", "Book-Author", "Year-Of-Publication", "Publisher",
                    "Image-URL-S", "Image-URL-M", "Image-URL-L"],
            columns={"item_id": "str", "title": "str", "author": "str", "year": "str", "publisher": "str",
                     "image_s": "str", "image_m": "str", "image_l": "str"},
        )
        # The dump lists malformed ISBNs and repeats some books: those rows are dropped, not refused.
        books = books[books["item_id"].str.fullmatch(r"[0-9A-Za-z]+")].drop_duplicates("item_id")
        require_rows(books_path, books, "book", "dropping books whose ISBN is not made of letters and digits")
        year = books["year"].fillna("0").str.strip()
        author = books["author"].fillna("n/a").str.strip()
        publisher = books["publisher"].fillna("n/a").str.strip()
        items = pd.DataFrame({
            "item_id": books["item_id"],
            "title": books["title"].fillna("unknown"),
            "isbn": books["item_id"],
            "author": _unknown_if(author, author.str.lower().eq("n/a") | author.eq("")),
            "year": _unknown_if(year, year.eq("0") | year.str.len().ne(4)),
            "publisher": _unknown_if(publisher, publisher.str.lower().eq("n/a") | publisher.eq("")),
        }).reset_index(drop=True)

        ratings_path, ratings, ratings_locate = read(
            "BX-Book-Ratings.csv", header=["User-ID", "ISBN", "Book-Rating"],
            columns={"user_id": "int", "item_id": "str", "rating": "int"},
        )
        check_ids(ratings_path, ratings, ["user_id"], header=True, locate=ratings_locate)
        check_numbers(ratings_path, ratings, "rating", low=0, high=10, step=1, header=True,
                      what="a rating (0 implicit, 1-10 explicit)", locate=ratings_locate)
        check_references(ratings_path, ratings, "user_id", users["user_id"], "BX-Users.csv", header=True,
                         locate=ratings_locate)
        check_unique_pairs(ratings_path, ratings, ["user_id", "item_id"], header=True)
        # Ratings of books without a usable catalogue entry cannot be shown in a prompt.
        listed = ratings["item_id"].isin(items["item_id"]).to_numpy()
        logger.info("%s: %d of %d ratings rate a book listed in BX-Books.csv", ratings_path, int(listed.sum()), len(listed))
        ratings = ratings[listed].reset_index(drop=True)
        require_rows(ratings_path, ratings, "rating", "dropping ratings of books that BX-Books.csv does not list "
                                                      "with a valid ISBN")
        ratings["rating"] = ratings["rating"].astype(np.float32)
        ratings["timestamp"] = np.int64(-1)
        return CorpusTables(users=users, items=items, interactions=ratings)
