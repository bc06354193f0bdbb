"""A corpus's ratings on Spark: a ratings file read and validated in pieces, or read on the driver.

Corpora with a :class:`~rella_hf.corpora.base.RatingsFile` spec (the MovieLens family) are
parsed on the executors (:class:`RatingsSource`); Book-Crossing, whose reader detects each file's
encoding and cleans ISBNs, is read by its in-process reader on the driver (:func:`driver_ratings`).

Spark splits the file into blocks and each executor parses its lines with the same Arrow CSV
options as the in-process reader (:func:`rella_hf.corpora.base.read_delimited`) and checks them
with the same rules (:func:`rella_hf.corpora.movielens_1m.rating_checks`). A piece that breaks a
rule yields an error row (rule, block, line within the block, message) instead of data; the
driver reports the first error in the in-process order (file-level checks, undecodable bytes,
header, parse errors, then each value rule in turn, then duplicate pairs), at its line in the
whole file, so the one-line error reads exactly as the in-process one. Line numbers are counted
(a count per block) only on that error path.
"""

from __future__ import annotations

import gzip
import io
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ..corpora.base import RatingsFile, resolve_file
from ..corpora.movielens_1m import rating_checks
from ..corpora.validation import check_line_end
from ..errors import DataFormatError

DECODE, HEADER, SEPARATOR, PARSE = 0, 1, 2, 3
#: Error kinds in the order the in-process reader meets them; value rules follow PARSE.
RULE_KINDS = {name: PARSE + 1 + index for index, name in enumerate(
    ("user id", "item id", "rating", "timestamp", "user reference", "item reference"))}

SCHEMA = ("user_id long, item_id long, item_row int, rating float, timestamp long, "
          "kind int, block long, line long, detail string")
_ARROW_SCHEMA = pa.schema([
    ("user_id", pa.int64()), ("item_id", pa.int64()), ("item_row", pa.int32()), ("rating", pa.float32()),
    ("timestamp", pa.int64()), ("kind", pa.int32()), ("block", pa.int64()), ("line", pa.int64()),
    ("detail", pa.string()),
])


def _errors_batch(errors: list[tuple]) -> pa.RecordBatch:
    """Error rows ``(kind, block, line within block or None, detail)``; the data columns are null."""
    n = len(errors)
    kinds, blocks, lines, details = (list(column) for column in zip(*errors))
    arrays = [pa.nulls(n, field.type) for field in list(_ARROW_SCHEMA)[:5]]
    arrays += [pa.array(kinds, pa.int32()), pa.array(blocks, pa.int64()), pa.array(lines, pa.int64()),
               pa.array(details, pa.string())]
    return pa.RecordBatch.from_arrays(arrays, schema=_ARROW_SCHEMA)


def _parse_run(lines: list[bytes], block: int, first: int, *, path: str, spec: RatingsFile, users, items,
               item_index: pd.Index, numbered: bool) -> pa.RecordBatch | None:
    """Parse and check consecutive lines of one block, ``first`` being the index of ``lines[0]`` in it."""
    import pyarrow.csv as pacsv

    from ..corpora.base import (
        _FIELD_SEPARATOR_STANDIN,
        _first_bad_record,
        _parse_options,
    )

    if spec.header is not None and block == 0 and first == 0:
        lines, first = lines[1:], 1  # the header line: checked by the driver
    if not lines:
        return None
    raw = b"\n".join(lines) + b"\n"
    try:
        text = raw.decode(spec.encoding)
    except UnicodeDecodeError as error:
        detail = f"byte 0x{raw[error.start]:02x} is not valid {spec.encoding}; expected {spec.encoding}-encoded text"
        return _errors_batch([(DECODE, block, first + raw.count(b"\n", 0, error.start), detail)])
    columns = dict(spec.columns)
    parse_text, parse_sep = text, spec.sep
    if len(spec.sep) > 1:
        if _FIELD_SEPARATOR_STANDIN in text:
            return _errors_batch([(SEPARATOR, block, None, "contains the control character 0x1f, which no release file has")])
        parse_text, parse_sep = text.replace(spec.sep, _FIELD_SEPARATOR_STANDIN), _FIELD_SEPARATOR_STANDIN
    try:
        table = pacsv.read_csv(io.BytesIO(parse_text.encode("utf-8")),
                               **_parse_options(columns, None, parse_sep, False, None, ()))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        found = _first_bad_record(text, spec.sep, columns, False, False, None)
        if found is None:
            return _errors_batch([(PARSE, block, None,
                                   f"could not be parsed as {spec.sep!r}-separated {', '.join(columns)} ({error})")])
        line, message = found
        return _errors_batch([(PARSE, block, first + line - 1, message)])
    frame = table.to_pandas()
    rows = np.arange(len(frame))
    errors = []
    for name, check in rating_checks(Path(path), frame, users, items, **spec.rule_kwargs(), locate={"lines": rows}):
        try:
            check()
        except DataFormatError as error:
            errors.append((RULE_KINDS[name], block, first + error.line, error.detail))
    if errors:
        return _errors_batch(errors)
    n = len(frame)
    null = pa.nulls(n, pa.int64())
    return pa.RecordBatch.from_arrays([
        pa.array(frame["user_id"].to_numpy(np.int64)),
        pa.array(frame["item_id"].to_numpy(np.int64)),
        pa.array(item_index.get_indexer(frame["item_id"]).astype(np.int32)),
        pa.array(frame["rating"].to_numpy(np.float32)),
        pa.array(frame["timestamp"].to_numpy(np.int64)),
        pa.nulls(n, pa.int32()),
        pa.array(np.full(n, block, np.int64)) if numbered else null,
        pa.array(first + rows) if numbered else null,
        pa.nulls(n, pa.string()),
    ], schema=_ARROW_SCHEMA)


def _parse_pieces(batches, *, path: str, spec: RatingsFile, user_ids, item_ids, numbered: bool):
    """``mapInArrow`` body: (block, line bytes) batches in file order -> parsed ratings or error rows."""
    users = None if user_ids is None else pd.DataFrame({"user_id": user_ids})
    items = pd.DataFrame({"item_id": item_ids})
    item_index = pd.Index(item_ids)
    seen: dict[int, int] = {}  # lines met so far per block: a task reads its block in order
    for batch in batches:
        if batch.num_rows == 0:
            continue
        blocks = batch.column(0).to_numpy(zero_copy_only=False)
        values = batch.column(1).to_pylist()
        cuts = np.flatnonzero(blocks[1:] != blocks[:-1]) + 1
        for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(blocks)]):
            block = int(blocks[start])
            first = seen.get(block, 0)
            seen[block] = first + int(stop - start)
            out = _parse_run(values[start:stop], block, first, path=path, spec=spec, users=users, items=items,
                             item_index=item_index, numbered=numbered)
            if out is not None:
                yield out


def _head(path: Path, size: int) -> bytes:
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as handle:
        return handle.read(size)


def _check_not_empty(path: Path, spec: RatingsFile) -> None:
    """The in-process reader's empty-file rule (the whole file is read only when its start is blank)."""
    head = _head(path, 1 << 16)
    if head.strip():
        return
    raw = _head(path, -1)
    if not raw or raw.isspace():
        columns = [name for name, _ in spec.columns]
        raise DataFormatError(path, f"file is empty; expected records of {len(columns)} fields ({', '.join(columns)})")


def _header_problem(path: Path, spec: RatingsFile) -> DataFormatError | None:
    """The in-process reader's header rule, as an error to raise once no byte is undecodable."""
    if spec.header is None:
        return None
    head = _head(path, 1 << 20)
    first_line = head.split(b"\n", 1)[0].decode(spec.encoding, errors="replace").rstrip("\r")
    found = [field.strip('"') for field in first_line.split(spec.sep)]
    if found == list(spec.header):
        return None
    return DataFormatError(path, f"expected the header {spec.sep.join(spec.header)!r}, found {first_line[:80]!r}", 1)


class RatingsSource:
    """The ratings file of ``corpus`` in ``data_dir`` as Spark DataFrames (nothing runs until used).

    Attributes:
        path: the file read (``name`` or ``name.gz``).
        parsed: ``user_id``, ``item_id``, ``item_row`` (row of ``items``), ``rating`` (float32),
            ``timestamp``, and for error rows ``kind`` / ``block`` / ``line`` / ``detail``.
    """

    def __init__(self, spark, corpus, data_dir, users: pd.DataFrame | None, items: pd.DataFrame):
        from pyspark.sql import functions as F

        self.spark, self.corpus, self.spec = spark, corpus, corpus.ratings_file
        self.users, self.items = users, items
        self.path = resolve_file(Path(data_dir), self.spec.name)
        check_line_end(self.path)
        _check_not_empty(self.path, self.spec)
        self.header_problem = _header_problem(self.path, self.spec)
        # lineSep "\n" keeps a CRLF file's "\r" in the line, as the in-process reader sees it.
        self.lines = (spark.read.option("lineSep", "\n").text(str(self.path))
                      .select(F.input_file_block_start().alias("block"), F.col("value").cast("binary").alias("value")))
        self.parsed = self._parse(numbered=False)

    def _parse(self, numbered: bool):
        user_ids = None if self.users is None else self.users["user_id"].to_numpy()
        body = partial(_parse_pieces, path=str(self.path), spec=self.spec, user_ids=user_ids,
                       item_ids=self.items["item_id"].to_numpy(), numbered=numbered)
        return self.lines.mapInArrow(body, SCHEMA)

    def _file_line(self, block: int, line: int) -> int:
        """1-based line in the file of line ``line`` (0-based) of the block starting at byte ``block``."""
        counts = self.lines.groupBy("block").count().collect()
        before = sum(row["count"] for row in counts if row["block"] < block)
        return before + line + 1

    def raise_first_error(self, frame) -> None:
        """Raise the error the in-process reader would raise first, given ``parsed`` (or a frame holding
        its rows); return when there is none (duplicate pairs are :meth:`raise_duplicate`'s)."""
        from pyspark.sql import functions as F

        found = (frame.filter(F.col("kind").isNotNull()).select("kind", "block", "line", "detail")
                 .orderBy("kind", "block", "line").limit(1).collect())
        first = found[0] if found else None
        if self.header_problem is not None and (first is None or first["kind"] != DECODE):
            raise self.header_problem
        if first is None:
            return
        _, block, line, detail = first
        raise DataFormatError(self.path, detail, None if line is None else self._file_line(block, line))

    def raise_duplicate(self) -> None:
        """Raise the in-process error for the first record that repeats an earlier (user, item) pair."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        from ..corpora.base import check_unique_pairs

        numbered = self._parse(numbered=True).filter(F.col("kind").isNull())
        by_pair = Window.partitionBy("user_id", "item_id").orderBy("block", "line")
        ranked = numbered.withColumn("occurrence", F.row_number().over(by_pair))
        repeat = ranked.filter(F.col("occurrence") == 2).orderBy("block", "line").limit(1).collect()
        if not repeat:
            return
        user, item, block = repeat[0]["user_id"], repeat[0]["item_id"], repeat[0]["block"]
        earlier = ranked.filter((F.col("user_id") == user) & (F.col("item_id") == item) & (F.col("occurrence") == 1)).collect()[0]
        lines = [self._file_line(earlier["block"], earlier["line"]), self._file_line(block, repeat[0]["line"])]
        pair = pd.DataFrame({"user_id": [user, user], "item_id": [item, item]})
        check_unique_pairs(self.path, pair, ["user_id", "item_id"], header=self.spec.header is not None, lines=lines)


def driver_ratings(spark, corpus, data_dir) -> tuple[pd.DataFrame, pd.DataFrame, object]:
    """A corpus without a :class:`~rella_hf.corpora.base.RatingsFile` spec (Book-Crossing), read on the driver.

    Its files are read and validated by the corpus's in-process reader (encoding detection, ISBN
    cleaning, every rule), so errors are the in-process ones by construction, and the checked
    ratings are handed to Spark as one Arrow table. Meant for corpora of a few million ratings
    (Book-Crossing: 1.1 M, about 40 MB here); parsing them on executors would repeat that reader's
    rules in a second implementation.

    Returns:
        ``(users, items, ratings)``: the users and items tables, and a DataFrame of ``user_id``,
        ``item_id`` (the corpus's id type), ``item_row``, ``rating`` (float), ``timestamp`` and a
        null ``kind`` (no error rows: the reader raised them).

    Raises:
        DataFormatError: the in-process reader's error for a bad file.
    """
    from pyspark.sql import functions as F

    from ..samples import item_rows

    tables = corpus.read(data_dir)
    inter = tables.interactions
    item_ids = inter["item_id"].to_numpy()
    table = pa.table({
        "user_id": pa.array(inter["user_id"].to_numpy(), pa.string() if corpus.user_id_type == "string" else pa.int64()),
        "item_id": pa.array(item_ids, pa.string() if corpus.item_id_type == "string" else pa.int64()),
        "item_row": pa.array(item_rows(corpus, tables.items, inter["item_id"])),
        "rating": pa.array(inter["rating"].to_numpy(np.float32)),
        "timestamp": pa.array(inter["timestamp"].to_numpy(np.int64)),
    })
    ratings = spark.createDataFrame(table).withColumn("kind", F.lit(None).cast("int"))
    return tables.users, tables.items, ratings
