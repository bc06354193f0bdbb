"""Small interaction logs in every format the ``interactions`` corpus reads, written by the tests themselves."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

#: The config that maps :func:`log_frame`'s columns (the file name is added per format).
MAPPING = dict(user_column="uid", item_column="sku", rating_column="stars", timestamp_column="ts",
               timestamp_unit="seconds", items_file="items.csv", item_text_columns="title,brand,category",
               item_noun="product", interaction_verb="bought")
FORMATS = ("csv", "tsv", "parquet", "jsonl", "csv.gz", "tsv.gz", "jsonl.gz")


def log_frame(users: int = 10, per_user: int = 9, items: int = 14, seed: int = 0) -> pd.DataFrame:
    """A log of ``users`` string-id users rating ``per_user`` distinct items each (1-5 stars), in time order
    per user; different users share timestamps, so the global order needs its (user, item) tie-break."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        chosen = rng.choice(items, size=per_user, replace=False)
        times = 1_600_000_000 + np.sort(rng.choice(40, size=per_user, replace=False)) * 3600
        for item, time in zip(chosen, times):
            rows.append({"uid": f"u{user:02d}", "sku": f"sku-{item:03d}", "stars": int(rng.integers(1, 6)),
                         "ts": int(time)})
    return pd.DataFrame(rows)


def items_frame(items: int = 14) -> pd.DataFrame:
    """One row per item: ``sku``, ``title``, ``brand``, ``category``."""
    return pd.DataFrame({"sku": [f"sku-{item:03d}" for item in range(items)],
                         "title": [f"Gadget {item}" for item in range(items)],
                         "brand": [f"Brand {item % 3}" for item in range(items)],
                         "category": ["Toys" if item % 2 else "Games" for item in range(items)]})


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` in the format its name says (csv, tsv, parquet, jsonl; ``.gz`` compresses)."""
    path = Path(path)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
        return path
    if name.endswith(".jsonl"):
        text = "".join(json.dumps(record) + "\n" for record in frame.to_dict(orient="records"))
    else:
        text = frame.to_csv(index=False, sep="\t" if name.endswith(".tsv") else ",")
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def write_corpus(folder: Path, fmt: str = "csv", log: pd.DataFrame | None = None, items: pd.DataFrame | None = None,
                 users: bool = False) -> dict:
    """Write ``events.<fmt>``, ``items.csv`` (and ``users.csv``) into ``folder``; return the config keywords."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    log = log_frame() if log is None else log
    write_frame(log, folder / f"events.{fmt}")
    write_frame(items_frame() if items is None else items, folder / "items.csv")
    settings = dict(MAPPING, interactions_file=f"events.{fmt}")
    if users:
        write_frame(pd.DataFrame({"uid": sorted(log["uid"].unique()), "age": 30}), folder / "users.csv")
        settings["users_file"] = "users.csv"
    return settings
