"""Reading a user's own table files (CSV, TSV, parquet, JSON lines; each but parquet optionally gzipped) with pyarrow.

The corpora built from files the user names (:mod:`rella_hf.corpora.interactions`,
:mod:`rella_hf.corpora.amazon_2023`) read them here: the format comes from the file name, the
columns asked for are checked against the ones the file has before anything is parsed, and the
whole file is read by Arrow (never row by row). Every error names the file and says what was expected.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ..errors import DataFormatError

#: File name endings of each format (a further ``.gz`` is allowed, except for parquet).
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def table_format(path: Path) -> str:
    """``"csv"``, ``"tsv"``, ``"parquet"`` or ``"jsonl"`` from the file name (``.gz`` stripped).

    Raises:
        DataFormatError: for any other ending, listing the known ones.
    """
    name = path.name.lower()
    stem = name[:-3] if name.endswith(".gz") else name
    for ending, kind in FORMATS.items():
        if stem.endswith(ending):
            if kind == "parquet" and stem != name:
                raise DataFormatError(path, "parquet files compress themselves; expected the .parquet file, not .parquet.gz")
            return kind
    raise DataFormatError(path, f"unknown file type; expected a name ending in {', '.join(FORMATS)} (optionally + .gz)")


def _open_text(path: Path):
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="utf-8-sig", newline="") if gzipped else open(
        path, encoding="utf-8-sig", newline="")


def file_columns(path: Path, kind: str) -> list[str]:
    """The column names a table file holds: its header (CSV/TSV), schema (parquet) or first record's keys (JSON lines).

    Raises:
        DataFormatError: for an empty file, or a first JSON line that is not an object.
    """
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except (pa.ArrowInvalid, OSError) as error:
            raise DataFormatError(path, f"is not a readable parquet file ({error})") from None
    try:
        with _open_text(path) as handle:
            first = next((line for line in handle if line.strip()), None)
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataFormatError(path, f"could not be read as UTF-8 text ({error})") from None
    if first is None:
        raise DataFormatError(path, "file is empty; expected a header line (CSV/TSV) or JSON records")
    if kind == "jsonl":
        try:
            record = json.loads(first)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise DataFormatError(path, "the first line is not a JSON object; expected one JSON object per line", 1)
        return list(record)
    return next(csv.reader([first.rstrip("\r\n")], delimiter="," if kind == "csv" else "\t"))


def read_table_file(path: Path, columns: dict[str, pa.DataType | None], what: dict[str, str]) -> pd.DataFrame:
    """Read ``columns`` of a table file into a DataFrame (other columns are not parsed).

    Args:
        path: the file; its format comes from its name (:func:`table_format`).
        columns: column name -> Arrow type to read it as, or None to take the file's own type
            (CSV/TSV: Arrow's inference; JSON lines: a string).
        what: column name -> the config field that named it, for the missing-column error.

    Raises:
        DataFormatError: for a missing file or column (naming the columns the file has) or a value
            Arrow cannot convert (Arrow's message names the row).
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found" if not path.exists() else "is a folder; expected a file")
    kind = table_format(path)
    present = file_columns(path, kind)
    missing = [name for name in columns if name not in present]
    if missing:
        named = ", ".join(f"{name!r} ({what.get(name, 'column')})" for name in missing)
        raise DataFormatError(path, f"has no column {named}; its columns are {', '.join(map(repr, present))}")
    try:
        table = _read(path, kind, columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
        message = str(error).strip().splitlines()[0]
        raise DataFormatError(path, f"could not be read as {kind} with the columns {', '.join(columns)} ({message})") from None
    frame = table.to_pandas()
    del table
    pa.default_memory_pool().release_unused()
    return frame


def _read(path: Path, kind: str, columns: dict[str, pa.DataType | None]) -> pa.Table:
    names = list(columns)
    typed = {name: dtype for name, dtype in columns.items() if dtype is not None}
    if kind in ("csv", "tsv"):
        import pyarrow.csv as pacsv

        return pacsv.read_csv(
            str(path),
            parse_options=pacsv.ParseOptions(delimiter="," if kind == "csv" else "\t", newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(include_columns=names, column_types=typed,
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    if kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=names)
        return table.cast(pa.schema([pa.field(name, typed.get(name, table.schema.field(name).type)) for name in names]))
    import pyarrow.json as pajson

    schema = pa.schema([pa.field(name, columns[name] or pa.string()) for name in names])
    table = pajson.read_json(str(path), parse_options=pajson.ParseOptions(explicit_schema=schema,
                                                                         unexpected_field_behavior="ignore"))
    return table.select(names)


def record_line(kind: str, row: int) -> int | None:
    """1-based line of parsed record ``row`` (0-based): after the header in CSV/TSV, one per line in JSON
    lines; None for parquet (which has rows, not lines: messages then name the row)."""
    if kind == "parquet":
        return None
    return row + (2 if kind in ("csv", "tsv") else 1)
