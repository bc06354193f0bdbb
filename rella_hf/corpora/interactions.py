"""``interactions``: a corpus built from the user's own files, named and mapped by configuration.

An interaction log (one row per user x item x time, with a rating or a binary label), an optional
items file (the text prompts and embeddings show) and an optional users file (checked ids) become
the same :class:`~rella_hf.corpora.CorpusTables` the registered corpora give, so SUBR, recent-K,
token budgets, sampling, the cache, Spark and training work unchanged. Every choice a reader of
someone else's log would otherwise guess is a field of :class:`SourceOptions`: columns, id types,
the timestamp unit, the rating scale, the split protocol and the filters, the prompt's nouns.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import ConfigError, DataFormatError, shorten
from .base import Corpus, CorpusTables
from .tables import read_table_file, record_line, table_format
from .validation import MAX_TIMESTAMP

logger = logging.getLogger(__name__)

TIMESTAMP_UNITS = ("seconds", "milliseconds", "iso")
ID_TYPES = ("string", "int")
#: Split protocols, each named after where it comes from.
SPLIT_PROTOCOLS = {
    "global_time": "chronological",  # ReLLa on ML-1M: all samples in time order, cut 80/10/10 at time quantiles
    "user_last_out": "user_last_out",  # SASRec / ML-25M style: each user's last sample tests, the one before validates
}


@dataclass
class SourceOptions:
    """Where a corpus built from the user's files comes from, and how to read it.

    Used by the ``interactions`` corpus (every field) and ``amazon-2023`` (``category``, the text
    columns, the split protocol and the filters). A registered MovieLens / Book-Crossing build
    leaves them at their defaults (it refuses any other value).

    Parameters that name the files (inside ``data_dir``):
        interactions_file (`str`): the log: CSV, TSV, parquet or JSON lines (``.csv``, ``.tsv``,
            ``.parquet``, ``.jsonl``; all but parquet may end in ``.gz``).
        items_file (`str` or `None`): one row per item with the text columns; None takes the text
            columns from the log itself (first row of each item).
        users_file (`str` or `None`): one row per user; every user of the log must be listed.

    Parameters that map the columns:
        user_column, item_column (`str`): id columns (the items / users files use the same names).
        user_id_type, item_id_type (`str`, defaults to `"string"`): ``"string"`` or ``"int"``.
        rating_column (`str`): the rating; label = rating > ``label_threshold``.
        label_column (`str` or `None`): a 0/1 column that replaces the rating (clicks with explicit negatives).
        timestamp_column (`str`): the time of the interaction.
        timestamp_unit (`str`): ``"seconds"``, ``"milliseconds"`` or ``"iso"`` (ISO 8601 text); required, never guessed.
        rating_min, rating_max (`float`, defaults to `1` and `5`): the rating scale; ratings outside are refused.
        rating_step (`float` or `None`): ratings must be multiples of it (None: any value); integral
            steps print ratings as integers in prompts, others with one decimal.
        item_text_columns (`str`): comma-separated text columns of the items; the first is the title
            prompts show, all of them describe the item for SUBR (default ``title``).

    Parameters of the protocol:
        split_protocol (`str`, defaults to `"global_time"`): ``"global_time"`` (ReLLa ML-1M: samples
            in global time order, cut at the train/validation fractions) or ``"user_last_out"``
            (SASRec / ML-25M style: each user's last sample is test, the one before validation).
        k_core (`int` or `None`): keep only users and items with at least this many interactions,
            repeated until both hold (None: no filter).

    Parameters of the prompt and the card:
        item_noun (`str`, defaults to `"item"`), item_noun_plural (`str` or `None`: noun + "s"),
        interaction_verb (`str`, defaults to `"interacted with"`): the prompt reads "The user
            {verb} the following {nouns} in the past ... deduce if the user will like the {noun} ...".
        data_source (`str` or `None`): where the data comes from, for the dataset card.
        data_license (`str` or `None`): its licence, for the card ("unknown" when None; then export
            needs ``permission_to_redistribute``).
        category (`str` or `None`): ``amazon-2023`` only: the category whose two files to read.
    """

    interactions_file: Optional[str] = field(default=None, metadata={
        "help": "interactions corpus: the log file in data_dir (.csv, .tsv, .parquet, .jsonl; .gz allowed but for parquet)."})
    items_file: Optional[str] = field(default=None, metadata={
        "help": "interactions corpus: the items file with the text columns (None: text columns from the log)."})
    users_file: Optional[str] = field(default=None, metadata={
        "help": "interactions corpus: the users file; every user of the log must be listed (None: no check)."})
    user_column: str = field(default="user_id", metadata={"help": "interactions corpus: the user id column."})
    item_column: str = field(default="item_id", metadata={"help": "interactions corpus: the item id column."})
    user_id_type: str = field(default="string", metadata={"help": "interactions corpus: user ids are string or int."})
    item_id_type: str = field(default="string", metadata={"help": "interactions corpus: item ids are string or int."})
    rating_column: str = field(default="rating", metadata={"help": "interactions corpus: the rating column."})
    label_column: Optional[str] = field(default=None, metadata={
        "help": "interactions corpus: a 0/1 label column replacing rating_column and label_threshold."})
    timestamp_column: str = field(default="timestamp", metadata={"help": "interactions corpus: the time column."})
    timestamp_unit: Optional[str] = field(default=None, metadata={
        "help": "interactions corpus: seconds, milliseconds or iso (ISO 8601 text); required, never guessed."})
    rating_min: float = field(default=1.0, metadata={"help": "interactions corpus: lowest rating of the scale."})
    rating_max: float = field(default=5.0, metadata={"help": "interactions corpus: highest rating of the scale."})
    rating_step: Optional[float] = field(default=None, metadata={
        "help": "interactions corpus: ratings are multiples of this (None: any value); integral steps print as integers."})
    item_text_columns: Optional[str] = field(default=None, metadata={
        "help": "Comma-separated item text columns; the first is the title in prompts (default: title)."})
    split_protocol: str = field(default="global_time", metadata={
        "help": "interactions / amazon-2023: global_time (ReLLa ML-1M) or user_last_out (SASRec / ML-25M style)."})
    k_core: Optional[int] = field(default=None, metadata={
        "help": "interactions / amazon-2023: keep users and items with at least k interactions, repeatedly."})
    item_noun: Optional[str] = field(default=None, metadata={
        "help": "interactions corpus: what an item is called in prompts (default: item)."})
    item_noun_plural: Optional[str] = field(default=None, metadata={
        "help": "interactions corpus: plural of item_noun (default: item_noun + 's')."})
    interaction_verb: Optional[str] = field(default=None, metadata={
        "help": "interactions corpus: past tense of what users did (default: interacted with)."})
    data_source: Optional[str] = field(default=None, metadata={
        "help": "interactions corpus: where the data comes from, named in the dataset card."})
    data_license: Optional[str] = field(default=None, metadata={
        "help": "interactions corpus: the data's licence, named in the dataset card (default: unknown)."})
    category: Optional[str] = field(default=None, metadata={
        "help": "amazon-2023: the category, e.g. Toys_and_Games (reads <category>.jsonl and meta_<category>.jsonl)."})


SOURCE_FIELDS = tuple(item.name for item in fields(SourceOptions))
_DEFAULTS = SourceOptions()


def source_settings(settings) -> dict:
    """The :class:`SourceOptions` values of ``settings`` (a config object or a mapping; absent keys take the default).

    ``item_text_columns`` given as a list is joined with commas (config fields stay scalar).
    """
    values = {}
    for name in SOURCE_FIELDS:
        value = settings.get(name, getattr(_DEFAULTS, name)) if isinstance(settings, Mapping) else getattr(
            settings, name, getattr(_DEFAULTS, name))
        values[name] = value
    values["item_text_columns"] = text_columns_setting(values["item_text_columns"])
    return values


def text_columns_setting(value):
    """``item_text_columns`` as one comma-separated string (a list or tuple is joined; None stays None)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(part).strip() for part in value)
    return value


def changed_source_fields(settings) -> list[str]:
    """Names of the :class:`SourceOptions` fields ``settings`` sets to a value other than the default."""
    values = source_settings(settings)
    return [name for name in SOURCE_FIELDS if values[name] != getattr(_DEFAULTS, name)]


def check_source_options(options: SourceOptions) -> None:
    """Raise :class:`ConfigError` naming the first source field whose value cannot be used."""
    options.item_text_columns = text_columns_setting(options.item_text_columns)
    for name, allowed in (("user_id_type", ID_TYPES), ("item_id_type", ID_TYPES), ("split_protocol", SPLIT_PROTOCOLS)):
        if getattr(options, name) not in allowed:
            raise ConfigError(f"{name}={getattr(options, name)!r} is not one of {', '.join(allowed)}")
    if options.timestamp_unit is not None and options.timestamp_unit not in TIMESTAMP_UNITS:
        raise ConfigError(f"timestamp_unit={options.timestamp_unit!r} is not one of {', '.join(TIMESTAMP_UNITS)}")
    if not options.rating_min < options.rating_max:
        raise ConfigError(f"rating_min={options.rating_min} must be below rating_max={options.rating_max}")
    if options.rating_step is not None and options.rating_step <= 0:
        raise ConfigError(f"rating_step={options.rating_step} must be positive or None")
    if options.k_core is not None and (isinstance(options.k_core, bool) or options.k_core < 1):
        raise ConfigError(f"k_core={options.k_core!r} must be a positive number of interactions or None")
    if options.item_text_columns is not None and not [part for part in options.item_text_columns.split(",") if part.strip()]:
        raise ConfigError("item_text_columns is empty; expected comma-separated column names such as 'title,brand'")


def k_core_filter(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Mask of the interactions left when users and items with fewer than ``k`` are removed, until none is.

    Counts are of interactions (a repeated user-item pair counts each time), as the 5-core
    releases count reviews; the loop ends when a pass removes nothing.
    """
    user_codes = pd.factorize(users)[0]
    item_codes = pd.factorize(items)[0]
    keep = np.ones(len(user_codes), dtype=bool)
    while True:
        user_counts = np.bincount(user_codes[keep], minlength=user_codes.max(initial=-1) + 1)
        item_counts = np.bincount(item_codes[keep], minlength=item_codes.max(initial=-1) + 1)
        kept = keep & (user_counts[user_codes] >= k) & (item_counts[item_codes] >= k)
        if (kept == keep).all():
            return keep
        keep = kept


def _first_bad(path: Path, kind: str, bad: np.ndarray, column: str, values, expected: str, field_name: str):
    """Raise at the first ``bad`` record: file, line (or row), column, value and what was expected."""
    if not bad.any():
        return
    row = int(np.flatnonzero(bad)[0])
    value = values[row]
    shown = "an empty field" if value is None or (isinstance(value, float) and np.isnan(value)) else shorten(
        value.item() if hasattr(value, "item") else value)
    where = "" if kind != "parquet" else f"row {row + 1}: "
    raise DataFormatError(path, f"{where}column {column!r} ({field_name}) holds {shown}; expected {expected}",
                          record_line(kind, row))


def parse_timestamps(path: Path, kind: str, column: str, values: pd.Series, unit: str) -> np.ndarray:
    """Timestamps as int64 in ``unit`` (ISO 8601 text becomes Unix seconds); the first unparsable one is an error."""
    if unit == "iso":
        parsed = pd.to_datetime(values.astype("string"), format="ISO8601", utc=True, errors="coerce")
        _first_bad(path, kind, parsed.isna().to_numpy(), column, values.to_numpy(), "an ISO 8601 date-time such as "
                   "2024-05-01T12:30:00Z (timestamp_unit='iso')", "timestamp_column")
        return (parsed.to_numpy(dtype="datetime64[s]").astype(np.int64))
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    high = MAX_TIMESTAMP if unit == "seconds" else MAX_TIMESTAMP * 1000
    bad = ~np.isfinite(numeric) | (numeric < 0) | (numeric > high) | (numeric != np.round(numeric))
    _first_bad(path, kind, bad, column, values.to_numpy(), f"an integer Unix time in {unit} from 0 to {high} "
               f"(1970-2100; timestamp_unit={unit!r}: another unit is another setting)", "timestamp_column")
    return numeric.astype(np.int64)


def check_ratings(path: Path, kind: str, column: str, values: pd.Series, low: float, high: float,
                  step: float | None, field_name: str) -> np.ndarray:
    """Ratings as float32 after checking they are numbers on the scale (and multiples of ``step``)."""
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numeric) | (numeric < low) | (numeric > high)
    if step:
        with np.errstate(invalid="ignore"):
            bad |= np.abs(numeric / step - np.round(numeric / step)) > 1e-9
    expected = f"a number from {low:g} to {high:g}" + (f" in steps of {step:g}" if step else "") + \
        " (rating_min / rating_max / rating_step)"
    if field_name == "label_column":
        expected = "0 or 1"
    _first_bad(path, kind, bad, column, values.to_numpy(), expected, field_name)
    return numeric.astype(np.float32)


def text_frame(path: Path, kind: str, frame: pd.DataFrame, columns: list[str], item_column: str,
               refuse_empty: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """The item text columns as strings (lists joined with ", ", missing -> "unknown") and a mask of items with text.

    Raises:
        DataFormatError: with ``refuse_empty``, at the first item none of whose text columns holds text.
    """
    texts = {}
    has_text = np.zeros(len(frame), dtype=bool)
    for column in columns:
        values = frame[column]
        if len(values) and values.map(lambda value: isinstance(value, (list, np.ndarray)), na_action="ignore").any():
            values = values.map(lambda value: ", ".join(map(str, value)) if isinstance(value, (list, np.ndarray))
                                else value, na_action="ignore")
        text = values.astype("string")  # kept as written (a title's own spaces included)
        present = text.notna() & text.str.strip().ne("")
        has_text |= present.to_numpy()
        texts[column] = text.where(present, "unknown").astype(object)
    if refuse_empty:
        _first_bad(path, kind, ~has_text, item_column, frame[item_column].to_numpy(),
                   f"an item with text in at least one of {', '.join(columns)} (item_text_columns); this item has none",
                   "item_column")
    return pd.DataFrame(texts, index=frame.index), has_text


class Interactions(Corpus):
    """Your own interaction log (a corpus built from files named in the config)."""

    name = "interactions"
    domain = "item"
    prompt_template = "generic"
    rating_format = "float1"
    required_files = ()
    protocol = "chronological"
    label_threshold = 3
    homepage = "not recorded"
    hub_license = "unknown"
    licence = "No licence was given for this data (data_license); treat it as not redistributable without permission."
    allows_repeats = True
    #: The source fields this corpus reads (the others must stay at their defaults).
    source_fields = tuple(name for name in SOURCE_FIELDS if name != "category")
    #: Items of the log the items file lacks, and items without any text: refused (False: dropped, logged).
    drop_untexted = False

    def __init__(self, settings=None):
        options = SourceOptions(**source_settings(settings or {}))
        check_source_options(options)
        unused = [name for name in changed_source_fields(options) if name not in self.source_fields]
        if unused:
            raise ConfigError(f"{', '.join(unused)} do(es) not apply to the {self.name} corpus; drop it")
        self.options = options
        self._apply(options)

    def _apply(self, options: SourceOptions) -> None:
        """Instance attributes (protocol, prompt nouns, ratings, licence) from the source options."""
        self.protocol = SPLIT_PROTOCOLS[options.split_protocol]
        self.user_id_type = "string" if options.user_id_type == "string" else "int64"
        self.item_id_type = "string" if options.item_id_type == "string" else "int64"
        self.text_columns = tuple(part.strip() for part in (options.item_text_columns or "title").split(",") if part.strip())
        noun = options.item_noun or "item"
        self.domain = noun
        labelled = options.label_column is not None
        self.prompt_nouns = {"noun": noun, "nouns": options.item_noun_plural or f"{noun}s",
                             "verb": options.interaction_verb or "interacted with",
                             "kind": "liked" if labelled else "rated"}
        step = options.rating_step
        if labelled:
            self.rating_format, self.label_threshold, self.rating_high = "liked", 0, 1
        else:
            self.rating_format = "int" if step is not None and float(step).is_integer() else "float1"
            self.rating_high = options.rating_max
        files = [options.interactions_file, options.items_file, options.users_file]
        self.required_files = tuple(name for name in files if name)
        if options.data_source:
            self.homepage = options.data_source
        if options.data_license:
            self.licence = f"Licence given by the uploader (data_license): {options.data_license}"
            self.hub_license, self.license_name = "other", options.data_license

    def item_text_fields(self) -> tuple[str, ...]:
        """The item table columns that describe an item for SUBR, in order (the first is the title)."""
        return self.text_columns

    def check_label_threshold(self, label_threshold) -> None:
        """A binary ``label_column`` sets the label itself, so a ``label_threshold`` beside it is refused."""
        if self.options.label_column is not None and label_threshold is not None:
            raise ConfigError(f"label_threshold={label_threshold} applies to ratings, but label_column="
                              f"{self.options.label_column!r} gives the label; drop one of them")

    def _files(self, data_dir: Path) -> tuple[Path, Path | None, Path | None]:
        options = self.options
        if not options.interactions_file:
            raise ConfigError("the interactions corpus needs interactions_file (the log in data_dir), user_column, "
                              "item_column, rating_column or label_column, timestamp_column and timestamp_unit")
        if options.timestamp_unit is None:
            raise ConfigError(f"timestamp_unit is not set; say how {options.timestamp_column!r} counts time: "
                              f"{', '.join(TIMESTAMP_UNITS)} (it is never guessed)")
        path = lambda name: None if name is None else Path(data_dir) / name  # noqa: E731
        return path(options.interactions_file), path(options.items_file), path(options.users_file)

    def _id_type(self, kind: str) -> pa.DataType:
        return pa.string() if kind == "string" else pa.int64()

    def read_log(self, path: Path) -> tuple[pd.DataFrame, str]:
        """The log's mapped columns, checked: ``user_id``, ``item_id``, ``rating``, ``timestamp`` (+ text columns
        when there is no items file), in file order; and the file's format."""
        options = self.options
        kind = table_format(path)
        value_column = options.label_column or options.rating_column
        # JSON lines carry no header to infer from: values are read as numbers, ISO times as text.
        number = pa.float64() if kind == "jsonl" else None
        time_type = pa.string() if options.timestamp_unit == "iso" else (pa.int64() if kind == "jsonl" else None)
        columns = {options.user_column: self._id_type(options.user_id_type),
                   options.item_column: self._id_type(options.item_id_type),
                   value_column: number, options.timestamp_column: time_type}
        what = {options.user_column: "user_column", options.item_column: "item_column",
                value_column: "label_column" if options.label_column else "rating_column",
                options.timestamp_column: "timestamp_column"}
        if options.items_file is None:
            for column in self.text_columns:
                columns.setdefault(column, None)
                what.setdefault(column, "item_text_columns")
        frame = read_table_file(path, columns, what)
        if not len(frame):
            raise DataFormatError(path, "holds no interactions; expected at least one row")
        for column, name in ((options.user_column, "user_column"), (options.item_column, "item_column")):
            missing = frame[column].isna().to_numpy()
            if not pd.api.types.is_numeric_dtype(frame[column]):
                missing = missing | (frame[column] == "").to_numpy(dtype=bool, na_value=False)
            _first_bad(path, kind, missing, column, frame[column].to_numpy(), "a non-empty id", name)
        if options.label_column:
            ratings = check_ratings(path, kind, value_column, frame[value_column], 0, 1, 1, "label_column")
        else:
            ratings = check_ratings(path, kind, value_column, frame[value_column], options.rating_min,
                                    options.rating_max, options.rating_step, "rating_column")
        log = pd.DataFrame({
            "user_id": frame[options.user_column].to_numpy(),
            "item_id": frame[options.item_column].to_numpy(),
            "rating": ratings,
            "timestamp": parse_timestamps(path, kind, options.timestamp_column, frame[options.timestamp_column],
                                          options.timestamp_unit),
        })
        for column in self.text_columns if options.items_file is None else ():
            log[f"text:{column}"] = frame[column].to_numpy()
        return log, kind

    def check_repeats(self, path: Path, kind: str, log: pd.DataFrame) -> pd.DataFrame:
        """Refuse a repeated (user, item, timestamp) row, naming both lines (a repeat at another time is kept)."""
        repeated = log.duplicated(["user_id", "item_id", "timestamp"], keep="first").to_numpy()
        if repeated.any():
            row = int(np.flatnonzero(repeated)[0])
            user, item, time = (log[column].iat[row] for column in ("user_id", "item_id", "timestamp"))
            first = int(np.flatnonzero(((log["user_id"] == user) & (log["item_id"] == item)
                                        & (log["timestamp"] == time)).to_numpy())[0])
            where = (f"line {record_line(kind, first)}" if kind != "parquet" else f"row {first + 1}")
            raise DataFormatError(path, f"repeats the (user, item, timestamp) row ({user!r}, {item!r}, {time}) of {where}; "
                                        "expected each interaction once", record_line(kind, row))
        return log

    def read_items(self, path: Path | None, log: pd.DataFrame) -> pd.DataFrame:
        """``item_id`` plus the text columns (``title`` = the first), from the items file or the log."""
        options = self.options
        columns = list(self.text_columns)
        if path is None:
            source = log.drop_duplicates("item_id")[["item_id", *[f"text:{column}" for column in columns]]]
            source.columns = ["item_id", *columns]
            where = Path(options.interactions_file)
            texts, has_text = text_frame(where, table_format(where), source, columns, "item_id", refuse_empty=False)
            if not has_text.all() and not self.drop_untexted:
                missing = source["item_id"].to_numpy()[~has_text][0]
                raise DataFormatError(where, f"item {missing!r} has no text in {', '.join(columns)} (item_text_columns) "
                                             "on its first row; expected text for every item")
            return self.items_table(where, source, texts, has_text)
        kind = table_format(path)
        source = read_table_file(path, {options.item_column: self._id_type(options.item_id_type),
                                        **{column: None for column in columns}},
                                 {options.item_column: "item_column", **{column: "item_text_columns" for column in columns}})
        source = source.rename(columns={options.item_column: "item_id"})
        _first_bad(path, kind, source["item_id"].isna().to_numpy(), options.item_column, source["item_id"].to_numpy(),
                   "an id", "item_column")
        _first_bad(path, kind, source.duplicated("item_id").to_numpy(), options.item_column, source["item_id"].to_numpy(),
                   "each item once (this id is listed earlier)", "item_column")
        return self.read_items_frame(path, source)

    def read_items_frame(self, path: Path, source: pd.DataFrame) -> pd.DataFrame:
        """The items table of an items file's ``source`` rows (``item_id`` + text columns), text checked."""
        texts, has_text = text_frame(path, table_format(path), source, list(self.text_columns), "item_id",
                                     refuse_empty=not self.drop_untexted)
        return self.items_table(path, source, texts, has_text)

    def items_table(self, path: Path, source: pd.DataFrame, texts: pd.DataFrame, has_text: np.ndarray) -> pd.DataFrame:
        """``item_id``, the text columns and ``title`` (the first text column); items without text dropped, logged."""
        items = pd.DataFrame({"item_id": source["item_id"].to_numpy()})
        for column in self.text_columns:
            items[column] = texts[column].to_numpy()
        if "title" not in items.columns:
            items["title"] = items[self.text_columns[0]]
        if not has_text.all():
            logger.info("%s: dropping %d items without text", path, int((~has_text).sum()))
            items = items[has_text].reset_index(drop=True)
        return items

    def check_users(self, path: Path | None, log_path: Path, kind: str, log: pd.DataFrame) -> pd.DataFrame:
        """The users table (``user_id``): the users file's ids (each log user must be one), else the log's users."""
        options = self.options
        if path is None:
            return pd.DataFrame({"user_id": np.unique(log["user_id"].to_numpy())})
        listed = read_table_file(path, {options.user_column: self._id_type(options.user_id_type)},
                                 {options.user_column: "user_column"})[options.user_column]
        unknown = ~log["user_id"].isin(listed).to_numpy()
        _first_bad(log_path, kind, unknown, options.user_column, log["user_id"].to_numpy(),
                   f"a user listed in {path.name} (users_file)", "user_column")
        return pd.DataFrame({"user_id": listed.drop_duplicates().to_numpy()})

    def check_items(self, log_path: Path, kind: str, log: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
        """Each logged item must be in the items table (refused, or dropped with a log line when ``drop_untexted``)."""
        known = log["item_id"].isin(items["item_id"]).to_numpy()
        if known.all():
            return log
        if not self.drop_untexted:
            _first_bad(log_path, kind, ~known, self.options.item_column, log["item_id"].to_numpy(),
                       f"an item listed with text in {self.options.items_file} (items_file)", "item_column")
        logger.info("%s: dropping %d interactions with items that have no text", log_path, int((~known).sum()))
        return log[known].reset_index(drop=True)

    def filter_log(self, log: pd.DataFrame) -> pd.DataFrame:
        """The ``k_core`` filter (when set), logged."""
        k = self.options.k_core
        if k is None:
            return log
        keep = k_core_filter(log["user_id"].to_numpy(), log["item_id"].to_numpy(), k)
        logger.info("%s: %d-core keeps %d of %d interactions", self.name, k, int(keep.sum()), len(keep))
        if not keep.any():
            raise ConfigError(f"no interaction is left after the k_core={k} filter; lower k_core")
        return log[keep].reset_index(drop=True)

    def read_tables(self, data_dir: Path) -> CorpusTables:
        log_path, items_path, users_path = self._files(data_dir)
        log, kind = self.read_log(log_path)
        log = self.check_repeats(log_path, kind, log)
        users = self.check_users(users_path, log_path, kind, log)
        items = self.read_items(items_path, log)
        log = self.check_items(log_path, kind, log, items)
        log = self.filter_log(log)[["user_id", "item_id", "rating", "timestamp"]]
        items = items[items["item_id"].isin(log["item_id"])].reset_index(drop=True)
        users = users[users["user_id"].isin(log["user_id"])].reset_index(drop=True)
        return CorpusTables(users=users, items=items, interactions=log)

    def _no_download(self) -> ConfigError:
        return ConfigError(f"the {self.name} corpus reads your files: pass data_dir= (the folder holding "
                           f"{', '.join(self.required_files) or 'interactions_file'})")

    def read(self, data_dir=None, *, cache_dir=None) -> CorpusTables:
        """Read the files named in the config from ``data_dir`` (there is nothing to download)."""
        if data_dir is None:
            raise self._no_download()
        return super().read(data_dir, cache_dir=cache_dir)

    def download_with(self, dl_manager) -> Path:
        """Refuse: the files are the user's own, there is nothing to download."""
        raise self._no_download()
