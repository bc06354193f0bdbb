"""Shared machinery of the corpus readers: the three tables, strict file parsing, downloads.

Every corpus module defines one :class:`Corpus` subclass that knows its release files, how to
read them into :class:`CorpusTables`, where the official archive lives and under which licence
it may (or may not) be redistributed. Parsing is vectorised (pyarrow's CSV reader); only when a
file fails to parse is it walked line by line, to name the first offending line in the error.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import DataFormatError, DownloadError
from ..utils import cache_root

# Kinds a column can be parsed as; the diagnostic pass checks the same kinds.
_ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}
_FIELD_SEPARATOR_STANDIN = "\x1f"  # replaces multi-character separators such as "::"


@dataclass
class CorpusTables:
    """The three tables every corpus reader returns.

    Attributes:
        users: one row per user: ``user_id`` plus profile columns (may have no profile columns).
        items: one row per item: ``item_id`` plus the text fields prompts and embeddings use.
        interactions: ``user_id``, ``item_id``, ``rating``, ``timestamp`` (``-1`` when the corpus has
            no timestamps), in file order.
    """

    users: pd.DataFrame
    items: pd.DataFrame
    interactions: pd.DataFrame


@dataclass(frozen=True)
class RatingsFile:
    """Layout and value rules of a chronological corpus's ratings file.

    One description serves two readers: the corpus's own ``read_tables`` (the whole file in this
    process) and :mod:`rella_hf.spark` (the file in pieces, on executors), so both parse the same
    fields and apply the same rules with the same messages.

    Args:
        name: release file name (a gzipped ``<name>.gz`` is also accepted).
        sep: field separator.
        columns: ``(name, kind)`` pairs in file order (kinds as :func:`read_delimited` takes them).
        encoding: text encoding.
        header: the expected header fields, or None.
        low, high, step: the rating scale.
        users_file: the file whose user ids ratings must reference (None: no user file).
        items_file: the file whose item ids ratings must reference.
    """

    name: str
    sep: str
    columns: tuple[tuple[str, str], ...]
    encoding: str = "utf-8"
    header: tuple[str, ...] | None = None
    low: float = 1
    high: float = 5
    step: float = 1
    users_file: str | None = None
    items_file: str = ""

    def read_kwargs(self) -> dict:
        """Keyword arguments of :func:`read_delimited` for this file."""
        return {"sep": self.sep, "encoding": self.encoding, "columns": dict(self.columns),
                "header": None if self.header is None else list(self.header)}

    def rule_kwargs(self) -> dict:
        """Keyword arguments of the rating rules (``validate_ratings`` / ``rating_checks``)."""
        return {"users_file": self.users_file, "items_file": self.items_file, "header": self.header is not None,
                "low": self.low, "high": self.high, "step": self.step}


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head == b"\x1f\x8b":
        with gzip.open(path, "rb") as handle:
            return handle.read()
    return path.read_bytes()


def resolve_file(data_dir: Path, name: str) -> Path:
    """Return ``data_dir/name``, or ``data_dir/name.gz`` when only the gzipped file is there.

    Raises:
        DataFormatError: when neither exists.
    """
    path = Path(data_dir) / name
    if path.exists():
        return path
    gz_path = path.with_name(path.name + ".gz")
    if gz_path.exists():
        return gz_path
    raise DataFormatError(path, f"file not found; expected the original release file {name!r} in {data_dir}")


def _convert(value: str, kind: str):
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return value


def _first_bad_record(text: str, sep: str, columns: dict[str, str], header: bool, quoted: bool, escapechar):
    """Walk the decoded file and return ``(line_number, message)`` for its first malformed record."""
    names = list(columns)
    kinds = list(columns.values())
    if quoted:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quotechar='"', escapechar=escapechar,
                            doublequote=escapechar is None, strict=True)
        start_line = 1
        records = []
        try:
            for fields in reader:
                records.append((start_line, fields))
                start_line = reader.line_num + 1
        except csv.Error as error:
            return start_line, f"malformed quoting ({error})"
    else:
        records = [(number, line.rstrip("\r").split(sep)) for number, line in enumerate(text.split("\n"), start=1)]
        if records and records[-1][1] == [""]:
            records.pop()
    for number, fields in records[1:] if header else records:
        if len(fields) != len(names):
            shown = sep.join(fields)[:80]
            return number, (f"expected {len(names)} fields ({', '.join(names)}) separated by {sep!r}, "
                            f"found {len(fields)}: {shown!r}")
        for name, kind, value in zip(names, kinds, fields):
            try:
                _convert(value, kind)
            except ValueError:
                return number, f"expected {'an integer' if kind == 'int' else 'a number'} in column {name!r}, found {value!r}"
    return None


def _parse_options(columns: dict[str, str], header, sep: str, quoted: bool, escapechar, null_values):
    """Arrow's CSV options for a release file whose field separator is ``sep`` (one character)."""
    names = list(columns)
    return dict(
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1 if header is not None else 0),
        parse_options=pacsv.ParseOptions(
            delimiter=sep,
            quote_char='"' if quoted else False,
            escape_char=escapechar or False,
            double_quote=escapechar is None,
            newlines_in_values=quoted,
            ignore_empty_lines=False,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={name: _ARROW_TYPES[kind] for name, kind in columns.items()},
            null_values=list(null_values),
            strings_can_be_null=bool(null_values),
            quoted_strings_can_be_null=False,
        ),
    )


def _read_direct(path: Path, sep: str, columns: dict[str, str], header, quoted: bool, escapechar, null_values):
    """Arrow reads a UTF-8 file with a one-character separator straight from disk; None when in doubt.

    No decoded or re-encoded copy of the file is made: Arrow checks that string fields are valid
    UTF-8 and numeric fields parse, and every byte of the file lies in the header or a field. When
    anything is off (empty or whitespace-only start, a byte-order mark, a header that differs or
    does not decode, a parse error) the caller's full path runs and raises its usual error.
    """
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as handle:
        head = handle.read(1 << 16)
    if not head.strip() or head.startswith(codecs.BOM_UTF8):
        return None
    if header is not None:
        first_line, newline, _ = head.partition(b"\n")
        if not newline:
            return None
        try:
            found = [field.strip('"') for field in first_line.decode("utf-8").rstrip("\r").split(sep)]
        except UnicodeDecodeError:
            return None
        if found != list(header):
            return None
    stream = pa.input_stream(str(path), compression="gzip" if gzipped else None)
    try:
        table = pacsv.read_csv(stream, **_parse_options(columns, header, sep, quoted, escapechar, null_values))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    finally:
        stream.close()
    return table


def _to_pandas(holder: list) -> pd.DataFrame:
    """``table.to_pandas()`` for the one table in ``holder``, then Arrow's freed buffers go back to the OS.

    Arrow's allocator keeps freed memory for reuse, which numpy never gets: without the release, the
    checks that follow a read (duplicates, ranges) would stack their arrays on top of it. The list is
    emptied so that no caller frame keeps the table alive.
    """
    table = holder.pop()
    frame = table.to_pandas()
    del table
    pa.default_memory_pool().release_unused()
    return frame


def read_delimited(
    path: Path,
    *,
    sep: str,
    columns: dict[str, str],
    encoding: str = "utf-8",
    header: list[str] | None = None,
    quoted: bool = False,
    escapechar: str | None = None,
    null_values: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Parse a delimited release file strictly into a DataFrame.

    A UTF-8 file with a one-character separator goes to Arrow's CSV reader straight from disk
    (no decoded copy); other files, and any file that fails to parse, are decoded first, so every
    error below names its line.

    Args:
        path: the file (gzip is detected from its magic bytes).
        sep: field separator; may be several characters (ML-1M's ``"::"``).
        columns: column name -> ``"int"``, ``"float"`` or ``"str"``, in file order.
        encoding: the release's text encoding; undecodable bytes are an error.
        header: the expected header line fields, or None for files without a header.
        quoted: whether fields may be enclosed in double quotes.
        escapechar: escape character inside quoted fields (BookCrossing uses backslash).
        null_values: strings that mean "missing" (only allowed in ``"str"`` columns, kept as None).

    Raises:
        DataFormatError: naming the file, the line and what was expected, for a missing or empty
            file, undecodable bytes, a wrong header, a wrong field count or a non-numeric value.
    """
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "file not found")
    if len(sep) == 1 and codecs.lookup(encoding).name == "utf-8":
        parsed = [_read_direct(path, sep, columns, header, quoted, escapechar, null_values)]
        if parsed[0] is not None:
            return _to_pandas(parsed)
    raw = _read_bytes(path)
    if not raw or raw.isspace():
        raise DataFormatError(path, f"file is empty; expected records of {len(columns)} fields ({', '.join(columns)})")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise DataFormatError(
            path, f"byte 0x{raw[error.start]:02x} is not valid {encoding}; expected {encoding}-encoded text", line
        ) from None
    if header is not None:
        first_line = text.split("\n", 1)[0].rstrip("\r")
        found = [field.strip('"') for field in first_line.split(sep)]
        if found != list(header):
            raise DataFormatError(path, f"expected the header {sep.join(header)!r}, found {first_line[:80]!r}", 1)
    parse_sep = sep
    if len(sep) > 1:
        if _FIELD_SEPARATOR_STANDIN in text:
            raise DataFormatError(path, "contains the control character 0x1f, which no release file has")
        text = text.replace(sep, _FIELD_SEPARATOR_STANDIN)
        parse_sep = _FIELD_SEPARATOR_STANDIN
    names = list(columns)
    try:
        parsed = [pacsv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            **_parse_options(columns, header, parse_sep, quoted, escapechar, null_values),
        )]
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        original = text.replace(parse_sep, sep) if parse_sep != sep else text
        found = _first_bad_record(original, sep, columns, header is not None, quoted, escapechar)
        if found is None:
            raise DataFormatError(path, f"could not be parsed as {sep!r}-separated {', '.join(names)} ({error})") from None
        line, message = found
        raise DataFormatError(path, message, line) from None
    del raw, text
    return _to_pandas(parsed)


def check_unique_pairs(path: Path, frame: pd.DataFrame, keys: list[str], header: bool, lines=None) -> None:
    """Raise :class:`DataFormatError` at the first row that repeats an earlier ``keys`` combination.

    The line number assumes one record per line, which holds for every rating file we read;
    ``lines`` gives each row's line instead (rows then in file order) when the reader numbered them.
    """
    duplicated = frame.duplicated(subset=keys, keep="first").to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        values = ", ".join(f"{key}={frame[key].iat[row]}" for key in keys)
        line = row + 1 + int(header) if lines is None else int(lines[row])
        raise DataFormatError(path, f"duplicate ({', '.join(keys)}) pair ({values}); expected each pair once", line)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Corpus:
    """A raw recommendation corpus: its release files, reader, download source and licence.

    Subclasses set the class attributes and implement :meth:`read_tables`.
    """

    name: ClassVar[str]
    domain: ClassVar[str]  # "movie" or "book": picks the item-text template
    prompt_template: ClassVar[str]  # "ml-1m", "ml-latest" or "book-crossing"
    rating_format: ClassVar[str]  # "int" or "float1": how ratings are printed in prompts
    required_files: ClassVar[tuple[str, ...]]
    protocol: ClassVar[str]  # "chronological" or "shuffled_user"
    label_threshold: ClassVar[float]  # label = rating > label_threshold
    rating_high: ClassVar[float] = 5  # top of the rating scale, as prompts state it ("4.1 out of 5")
    profile_columns: ClassVar[tuple[str, ...]] = ()
    download_url: ClassVar[str | None] = None
    download_md5: ClassVar[str | None] = None  # GroupLens publishes MD5 (no SHA-256) beside each archive
    archive_folder: ClassVar[str | None] = None
    licence: ClassVar[str]  # the licence's own sentence on redistribution, quoted in refusals and cards
    redistributable: ClassVar[bool] = False
    citation: ClassVar[str] = ""
    # Hub metadata of the licence: ``license`` ("other" or "unknown"), ``license_name``, ``license_link``.
    hub_license: ClassVar[str] = "other"
    license_name: ClassVar[str | None] = None
    license_link: ClassVar[str | None] = None
    homepage: ClassVar[str] = "not recorded"

    #: The ratings file of a chronological corpus (None where the reader is not split this way).
    ratings_file: ClassVar[RatingsFile | None] = None
    #: Types of the ids in the built dataset: ``"int64"`` or ``"string"``.
    user_id_type: ClassVar[str] = "int64"
    item_id_type: ClassVar[str] = "int64"
    #: Whether a user may rate the same item more than once (at different times).
    allows_repeats: ClassVar[bool] = False
    #: The :class:`~rella_hf.corpora.interactions.SourceOptions` fields this corpus reads (the rest stay at defaults).
    source_fields: ClassVar[tuple[str, ...]] = ()

    def item_text_fields(self) -> tuple[str, ...] | None:
        """Item table columns that describe an item for SUBR when the corpus has no ReLLa sentence (None: it has one)."""
        return None

    def check_label_threshold(self, label_threshold) -> None:
        """Raise :class:`~rella_hf.errors.ConfigError` when ``label_threshold`` cannot apply (every value can here)."""

    def read_tables(self, data_dir: Path) -> CorpusTables:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_catalogue(self, data_dir: Path) -> tuple[pd.DataFrame | None, pd.DataFrame]:
        """The users (None when the corpus has no user file) and items tables, read and validated.

        Corpora with a :attr:`ratings_file` implement it; their ``read_tables`` is this plus the
        ratings, so an engine that reads the ratings elsewhere reads the catalogue the same way.
        """
        raise NotImplementedError(f"{self.name} does not read its catalogue apart from its ratings")

    def read(self, data_dir: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None) -> CorpusTables:
        """Read the release files into :class:`CorpusTables`.

        Args:
            data_dir: folder with the original release files (original names, optionally
                gzipped). When None, the corpus is downloaded into the cache first.
            cache_dir: where downloads go (default ``cache_root()/corpora``).
        """
        folder = Path(data_dir) if data_dir is not None else self.download(cache_dir)
        if not folder.is_dir():
            raise DataFormatError(folder, f"data_dir is not a folder; expected one holding {', '.join(self.required_files)}")
        return self.read_tables(folder)

    def bundled_folder(self) -> Path | None:
        """The release files shipped inside the package, or None when they must be supplied or downloaded."""
        return None

    def download_with(self, dl_manager) -> Path:
        """Fetch the official archive through ``dl_manager``, verify its published MD5, unpack it, and return
        the folder holding the release files (the bundled folder where the package ships them).

        ``dl_manager`` is a :class:`datasets.DownloadManager` (the one ``datasets`` hands a builder's
        ``_split_generators``): it caches the archive and its extraction, retries, and shows progress
        bars (``datasets.disable_progress_bars()`` turns them off).

        Raises:
            DownloadError: when there is no official source, the download fails (e.g. offline), the
                archive does not match its published MD5 (the archive is then removed from the cache) or
                lacks a release file; the message says to pass ``data_dir`` instead.
        """
        bundled = self.bundled_folder()
        if bundled is not None:
            return bundled
        if self.download_url is None:
            raise DownloadError(
                f"{self.name} has no reachable official download; pass data_dir= pointing at a folder "
                f"with {', '.join(self.required_files)}"
            )
        try:
            archive = Path(dl_manager.download(self.download_url))
        except OSError as error:  # offline, unreachable, HTTP errors (ConnectionError is an OSError)
            raise DownloadError(
                f"could not download {self.name} from {self.download_url} ({error}); "
                f"download it yourself and pass data_dir= pointing at the unpacked folder"
            ) from None
        if self.download_md5 is not None and _md5(archive) != self.download_md5:
            archive.unlink(missing_ok=True)  # a corrupt download must not be served from the cache again
            raise DownloadError(
                f"{archive.name} from {self.download_url} does not match its published MD5 {self.download_md5}; "
                "the download is corrupt or the release changed"
            )
        source = Path(dl_manager.extract(str(archive))) / (self.archive_folder or "")
        missing = [name for name in self.required_files if not (source / name).exists()]
        if missing:
            raise DownloadError(f"{archive.name} lacks {', '.join(missing)}; expected the official {self.name} release")
        return source

    def download(self, cache_dir: str | os.PathLike | None = None) -> Path:
        """Download, verify and unpack the official archive once (:meth:`download_with`) into
        ``<cache_dir>/<name>`` and return that folder (the bundled folder where the package ships one).

        Raises:
            DownloadError: as :meth:`download_with`; nothing is left at ``<cache_dir>/<name>`` then.
        """
        from datasets import DownloadConfig, DownloadManager

        bundled = self.bundled_folder()
        if bundled is not None:
            return bundled
        target = Path(cache_dir or cache_root() / "corpora") / self.name
        if all((target / name).exists() for name in self.required_files):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        manager = DownloadManager(dataset_name=self.name,
                                  download_config=DownloadConfig(cache_dir=str(target.parent / "downloads")))
        source = self.download_with(manager)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            staged = Path(scratch) / "staged"
            shutil.copytree(source, staged)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staged, target)
        return target
