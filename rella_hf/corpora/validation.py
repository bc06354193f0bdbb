"""Validation of parsed corpus files: value ranges, ids, timestamps, references, truncation, encodings.

The raw reader (:func:`rella_hf.corpora.base.read_delimited`) only checks that a file parses:
field counts, numbers where numbers belong, decodable bytes. The rules here check what the values
mean, on the parsed DataFrame, vectorised, and name the first offending record: file, line,
column, the value (shortened) and what was expected. Each corpus module calls the rules its
release needs; ``dataset_scripts/<corpus>/README.md`` lists them per corpus.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataFormatError, shorten

logger = logging.getLogger(__name__)

#: Latest plausible Unix time (2100-01-01); a larger value is milliseconds or garbage, not seconds.
MAX_TIMESTAMP = 4_102_444_800


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _content(path: Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip; a gzip stream that ends early is an error."""
    if not _is_gzip(path):
        return Path(path).read_bytes()
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (EOFError, OSError, zlib.error) as error:
        raise DataFormatError(path, f"the gzip stream is cut or corrupt ({error}); expected a complete .gz file, "
                                    "so download or compress it again") from None


def record_line(path: Path, row: int, header: bool, *, sep: str | None = None, encoding: str = "utf-8",
                escapechar: str | None = None, lines=None) -> int:
    """1-based line where parsed record ``row`` (0-based, header excluded) starts.

    Files with one record per line need arithmetic only; for quoted files (``sep`` given), whose
    values may hold line breaks, the file is walked with :mod:`csv` (only on the error path).
    ``lines`` gives each record's line directly when the reader numbered them itself (the Spark
    engine validates a file in pieces, each knowing where it starts).
    """
    if lines is not None:
        return int(lines[row])
    first = row + 1 + int(header)
    if sep is None:
        return first
    text = _content(Path(path)).decode(encoding, errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quotechar='"', escapechar=escapechar,
                        doublequote=escapechar is None)
    start = 1
    try:
        for index, _ in enumerate(reader):
            if index == row + int(header):
                return start
            start = reader.line_num + 1
    except csv.Error:
        pass
    return first


def check_line_end(path: Path) -> None:
    """Refuse a file whose last record has no line end: it was cut while being written or copied.

    A record cut in the middle of its last field usually still parses (a timestamp ``9783``
    instead of ``978300760``), so the missing line break is the only sign. Gzip files are
    decompressed (a cut gzip stream is reported as such).

    Raises:
        DataFormatError: naming the file, the last line and its shortened content.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "is a folder, not a file; expected the release file itself here")
    if _is_gzip(path):
        data = _content(path)
        last = data[-1:]
    else:
        size = path.stat().st_size
        if size == 0:
            return  # the reader reports empty files
        with open(path, "rb") as handle:
            handle.seek(size - 1)
            last = handle.read(1)
        data = None
    if not last or last == b"\n":
        return
    data = data if data is not None else path.read_bytes()
    if not data.strip():
        return
    line = data.count(b"\n") + 1
    tail = data[data.rfind(b"\n") + 1:].decode("utf-8", errors="replace")
    raise DataFormatError(
        path, f"the last record {shorten(tail)} has no line end, so the file looks cut off; expected every "
              "record to end with a line break (download or extract the file again)", line)


def detect_encoding(path: Path, candidates: tuple[str, ...] = ("utf-8", "cp1252")) -> str:
    """The first of ``candidates`` that decodes the whole file strictly (a UTF-8 BOM gives ``utf-8-sig``).

    UTF-8 comes first because cp1252 text with accented letters is practically never valid UTF-8,
    while UTF-8 text always decodes as (wrong) cp1252. The choice is logged, never silent.

    Raises:
        DataFormatError: when no candidate decodes the file, naming the first bad byte and line.
    """
    raw = _content(Path(path))
    if raw.startswith(b"\xef\xbb\xbf") and "utf-8" in candidates:
        logger.info("%s: UTF-8 with a byte-order mark", path)
        return "utf-8-sig"
    failures = []
    for encoding in candidates:
        try:
            raw.decode(encoding)
        except UnicodeDecodeError as error:
            line = raw.count(b"\n", 0, error.start) + 1
            failures.append(f"{encoding} (byte 0x{raw[error.start]:02x} on line {line})")
            continue
        if encoding != candidates[0] or not raw.isascii():
            logger.info("%s: decoded as %s", path, encoding)
        return encoding
    raise DataFormatError(path, f"is not valid {' nor '.join(failures)}; expected the whole file in one of "
                                f"{', '.join(candidates)} (re-save it as UTF-8)")


def _first_bad(path: Path, frame: pd.DataFrame, bad: np.ndarray, column: str, expected: str, header: bool,
               locate: dict | None) -> None:
    if not bad.any():
        return
    row = int(np.flatnonzero(bad)[0])
    value = frame[column].iat[row]
    missing = value is None or (isinstance(value, (float, np.floating)) and np.isnan(value))
    shown = "nan (NaN or an empty field)" if missing else shorten(value.item() if hasattr(value, "item") else value)
    line = record_line(path, row, header, **(locate or {}))
    raise DataFormatError(path, f"column {column!r} holds {shown}; expected {expected}", line)


def check_numbers(path: Path, frame: pd.DataFrame, column: str, *, low: float, high: float, step: float | None = None,
                  header: bool = False, what: str = "a number", locate: dict | None = None) -> None:
    """Every value of ``column`` is finite, in ``[low, high]`` and (with ``step``) a multiple of ``step``.

    Raises:
        DataFormatError: at the first value that is NaN, infinite, out of range or off the step.
    """
    values = frame[column].to_numpy(dtype=np.float64)
    expected = f"{what} from {low:g} to {high:g}" + (f" in steps of {step:g}" if step else "")
    bad = ~np.isfinite(values) | (values < low) | (values > high)
    if step:
        with np.errstate(invalid="ignore"):
            bad |= np.abs(values / step - np.round(values / step)) > 1e-9
    _first_bad(path, frame, bad, column, expected, header, locate)


def check_ids(path: Path, frame: pd.DataFrame, columns: list[str], header: bool = False,
              locate: dict | None = None) -> None:
    """Integer id columns hold positive ids (every release numbers them from 1)."""
    for column in columns:
        values = frame[column].to_numpy()
        _first_bad(path, frame, values < 1, column, "a positive integer id", header, locate)


def check_timestamps(path: Path, frame: pd.DataFrame, column: str = "timestamp", header: bool = False,
                     locate: dict | None = None) -> None:
    """Timestamps are Unix seconds between 1970 and 2100."""
    values = frame[column].to_numpy()
    bad = (values < 0) | (values > MAX_TIMESTAMP)
    _first_bad(path, frame, bad, column, f"Unix seconds from 0 to {MAX_TIMESTAMP} (1970-2100)", header, locate)


def check_references(path: Path, frame: pd.DataFrame, column: str, known: pd.Series, known_file: str,
                     header: bool = False, locate: dict | None = None) -> None:
    """Every value of ``column`` is listed in ``known`` (the ids of ``known_file``)."""
    bad = ~frame[column].isin(known).to_numpy()
    _first_bad(path, frame, bad, column, f"an id listed in {known_file}", header, locate)


def require_rows(path: Path, frame: pd.DataFrame, what: str, rule: str) -> None:
    """An empty table after a filter is an error that names the filter."""
    if len(frame) == 0:
        raise DataFormatError(path, f"no {what} is left after {rule}; expected at least one")
