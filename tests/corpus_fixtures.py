"""Writers of tiny corpus folders in each release's exact format (separators, quoting, encodings)."""

from __future__ import annotations

from pathlib import Path

ML1M_USERS = [
    # user::gender::age code::occupation::zip
    "1::F::1::10::48067",
    "2::M::56::16::70072",
    "3::M::25::15::55117",
]
ML1M_MOVIES = [
    "1::Toy Story (1995)::Animation|Children's|Comedy",
    "2::Jumanji (1995)::Adventure|Children's|Fantasy",
    "3::Grumpier Old Men (1995)::Comedy|Romance",
    "4::Waiting to Exhale (1995)::Comedy|Drama",
    "5::Father of the Bride Part II (1995)::Comedy",
    "6::Heat (1995)::Action|Crime|Thriller",
    "7::Sabrina (1995)::Comedy|Romance",
    "8::Cité des enfants perdus, La (1995)::Adventure|Sci-Fi",
]


def ml1m_ratings() -> list[str]:
    """Three users, 7 + 6 + 8 ratings, with timestamp ties across and within users."""
    rows = []
    # user 1: 7 ratings, two of them at the same second (item order breaks the tie)
    for item, rating, ts in [(1, 5, 100), (2, 3, 101), (3, 4, 102), (4, 1, 103), (6, 2, 104), (5, 4, 104), (7, 5, 200)]:
        rows.append(f"1::{item}::{rating}::{ts}")
    # user 2: 6 ratings; its 6th shares timestamp 200 with user 1's 7th (user order breaks the tie)
    for item, rating, ts in [(8, 4, 90), (7, 2, 91), (6, 3, 92), (5, 5, 93), (4, 4, 94), (3, 4, 200)]:
        rows.append(f"2::{item}::{rating}::{ts}")
    # user 3: 8 ratings, late
    for item, rating, ts in [(1, 3, 300), (2, 4, 301), (3, 5, 302), (4, 2, 303), (5, 1, 304), (6, 4, 305), (7, 3, 306), (8, 5, 307)]:
        rows.append(f"3::{item}::{rating}::{ts}")
    return rows


def write_ml1m(folder: Path, ratings: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "users.dat").write_bytes(("\n".join(ML1M_USERS) + "\n").encode("latin-1"))
    (folder / "movies.dat").write_bytes(("\n".join(ML1M_MOVIES) + "\n").encode("iso-8859-1"))
    (folder / "ratings.dat").write_bytes(("\n".join(ratings or ml1m_ratings()) + "\n").encode("latin-1"))
    return folder


def write_ml_latest(folder: Path) -> Path:
    """ml-25m-format CSVs (CRLF, quoted titles with commas, half stars)."""
    folder.mkdir(parents=True, exist_ok=True)
    movies = [
        "movieId,title,genres",
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy",
        '11,"American President, The (1995)",Comedy|Drama|Romance',
        "21,Get Shorty (1995),Comedy|Crime|Thriller",
        '31,"Dangerous Minds (1995)",Drama',
        "41,Richard III (1995),Drama|War",
        "51,Some Film (2001),(no genres listed)",
    ]
    ratings = ["userId,movieId,rating,timestamp"]
    for user, base in [(1, 1000), (2, 2000)]:
        for offset, (item, rating) in enumerate([(1, 4.0), (11, 3.5), (21, 3.0), (31, 0.5), (41, 5.0), (51, 2.5)]):
            ratings.append(f"{user},{item},{rating},{base + offset}")
    (folder / "movies.csv").write_bytes(("\r\n".join(movies) + "\r\n").encode("utf-8"))
    (folder / "ratings.csv").write_bytes(("\r\n".join(ratings) + "\r\n").encode("utf-8"))
    return folder


def write_ml100k(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    users = ["1|24|M|technician|85711", "2|53|F|other|94043", "3|17|M|student|32067"]
    flags = {
        1: [0, 0, 0, 1, 1, 1] + [0] * 13,  # Animation first
        2: [0, 1, 1] + [0] * 16,  # Action first
        3: [0] * 19,  # no flag
        4: [0] * 8 + [1] + [0] * 10,  # Drama
        5: [0] * 5 + [1] + [0] * 13,  # Comedy
        6: [0] * 17 + [1, 0],  # War
    }
    items = [
        f"{item}|Movie {item} (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Movie|" + "|".join(map(str, flag))
        for item, flag in flags.items()
    ]
    data = []
    for user in (1, 2, 3):
        for offset, item in enumerate(range(1, 7)):
            data.append(f"{user}\t{item}\t{(item + user) % 5 + 1}\t{880000000 + user * 100 + offset}")
    (folder / "u.user").write_bytes(("\n".join(users) + "\n").encode("iso-8859-1"))
    (folder / "u.item").write_bytes(("\n".join(items) + "\n").encode("iso-8859-1"))
    (folder / "u.data").write_bytes(("\n".join(data) + "\n").encode("latin-1"))
    return folder


BX_USERS = (
    '"User-ID";"Location";"Age"\r\n'
    '"1";"nyc, new york, usa";NULL\r\n'
    '"2";"stockton, california, united states";"18"\r\n'
    '"3";"moscow, yukon territory, russia";"44"\r\n'
    '"4";"farnborough, hants, united kingdom";"4"\r\n'
    '"5";"porto, v.n.gaia, portugal";"61"\r\n'
    '"6";"cernusco s/n, milano,\n italy";"101"\r\n'
    '"7";"somewhere, n/a";"29"\r\n'
    '"8";"lost, 85021";"30"\r\n'
)
BX_BOOKS_HEADER = '"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher";"Image-URL-S";"Image-URL-M";"Image-URL-L"\r\n'


def bx_books() -> str:
    rows = []
    for index in range(12):
        isbn = f"03{index:07d}X"
        title = f"Book {index}"
        author = "n/a" if index == 3 else f"Author {index}"
        year = {4: "0", 5: "199"}.get(index, "1999")
        publisher = "N/A" if index == 6 else f"Publisher {index}"
        rows.append(f'"{isbn}";"{title}";"{author}";"{year}";"{publisher}";"s";"m";"l"\r\n')
    rows.append('"0-bad-isbn";"Bad";"A";"2000";"P";"s";"m";"l"\r\n')
    rows.append('"0312000001";"Says \\"Hi\\" \u201cquoted\u201d";"Author Q";"2001";"Pub";"s";"m";"l"\r\n')
    return BX_BOOKS_HEADER + "".join(rows)


def bx_ratings(lines: list[str] | None = None) -> str:
    """BX-Book-Ratings.csv: the header, then ``lines`` (default :func:`bx_rating_lines`), CRLF."""
    return '"User-ID";"ISBN";"Book-Rating"\r\n' + "".join(line + "\r\n" for line in (lines or bx_rating_lines()))


def bx_rating_lines() -> list[str]:
    """Users 1, 2, 4 with 7, 6, 8 ratings; user 3 has only 5 (dropped); user 5 rates an unlisted ISBN."""
    rows = []
    plan = {1: 7, 2: 6, 3: 5, 4: 8}  # user 3 has only 5 ratings: dropped
    for user, count in plan.items():
        for index in range(count):
            rows.append(f'"{user}";"03{index:07d}X";"{(index * 3 + user) % 11}"')
    rows.append('"5";"0-bad-isbn";"9"')
    return rows


def bx_many_rating_lines(seed: int = 0) -> list[str]:
    """Users 1-8 (all in BX-Users.csv) rating 6-12 of the 12 books each, user 5 also the book with a quoted
    title: 8 samples with histories of 5-12 books, lines in a seeded order."""
    import random

    generator = random.Random(seed)
    rows = []
    for user in range(1, 9):
        books = generator.sample(range(12), generator.randint(6, 12))
        rows += [f'"{user}";"03{index:07d}X";"{generator.randint(0, 10)}"' for index in books]
    rows.append('"5";"0312000001";"7"')
    generator.shuffle(rows)
    return rows


def write_book_crossing(folder: Path, rating_lines: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "BX-Users.csv").write_bytes(BX_USERS.encode("cp1252"))
    (folder / "BX-Books.csv").write_bytes(bx_books().encode("cp1252"))
    (folder / "BX-Book-Ratings.csv").write_bytes(bx_ratings(rating_lines).encode("cp1252"))
    return folder


def release_zip(folder: Path, archive_folder: str) -> bytes:
    """The bytes of a release archive laid out as GroupLens ships it: every file of ``folder`` under
    ``<archive_folder>/`` (``ml-1m.zip`` unpacks into ``./ml-1m/``)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(f"{archive_folder}/", b"")
        for path in sorted(folder.iterdir()):
            bundle.write(path, f"{archive_folder}/{path.name}")
    return buffer.getvalue()


def char_embedder(identity: str, dimensions: int, multiplier: int, seen: list | None = None):
    """An :class:`~rella_hf.embeddings.ItemEmbedder` whose vectors count the characters of the item text
    (deterministic, no model download); the texts it encodes are appended to ``seen`` when given."""
    import numpy as np

    from rella_hf.embeddings import ItemEmbedder

    class CharEmbedder(ItemEmbedder):
        pooling = "model"

        def encode(self, texts, batch_size=32, progress=True):
            if seen is not None:
                seen.extend(texts)
            vectors = np.zeros((len(texts), dimensions), dtype=np.float32)
            for row, text in enumerate(texts):
                for position, char in enumerate(text.encode()):
                    vectors[row, (char * multiplier + position) % dimensions] += 1.0
            return vectors

    CharEmbedder.identity = identity
    return CharEmbedder()


def write_ml_latest_small_subset(folder: Path, users: int = 40) -> Path:
    """The bundled ml-latest-small cut to the ``users`` users with the fewest ratings and the movies they rated.

    Same CSV format and real titles, for end-to-end runs that do not need the whole corpus: 40 users
    give 837 ratings of 537 movies, which MiniLM embeds in a few seconds (all 9,742 titles: ~40 s on
    one core).
    """
    import pandas as pd

    from rella_hf.corpora.movielens_latest import bundled_ml_latest_small

    source = bundled_ml_latest_small()
    ratings = pd.read_csv(source / "ratings.csv")
    lightest = ratings["userId"].value_counts().sort_values(kind="stable").index[:users]
    ratings = ratings[ratings["userId"].isin(lightest)]
    movies = pd.read_csv(source / "movies.csv")
    movies = movies[movies["movieId"].isin(ratings["movieId"])]
    folder.mkdir(parents=True, exist_ok=True)
    ratings.to_csv(folder / "ratings.csv", index=False)
    movies.to_csv(folder / "movies.csv", index=False)
    return folder
