"""Amazon Reviews 2023 (McAuley Lab): ``<Category>.jsonl(.gz)`` reviews and ``meta_<Category>.jsonl(.gz)`` items.

Field names, and how they were checked in this repository's session (no internet but stored copies):

- meta file: ``parent_asin``, ``title``, ``store``, ``categories`` (a list of strings),
  ``main_category``, ``average_rating``, ``rating_number``: **verified** against the
  ``dataset_info`` metadata of the dataset card (huggingface.co/datasets/McAuley-Lab/Amazon-Reviews-2023,
  README.md, the ``raw_meta_*`` configurations).
- reviews file: ``user_id``, ``parent_asin``, ``rating`` (1.0-5.0), ``timestamp``: **unverified**
  against the official card text (three third-party descriptions agree on them); milliseconds:
  the official loading script describes "finer-grained timestamps (from day to milli-second)"
  and the card's sample record has a 13-digit time, so ``timestamp_unit`` is milliseconds.

Leakage: the meta file's ``average_rating`` and ``rating_number`` summarise every review ever
written, test-period ones included; they are never read (the reader asks Arrow for the text
columns only), so no prompt or feature can hold them.

There is no download: the official file links are not verified from here, so pass ``data_dir``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa

from ..errors import ConfigError, DataFormatError
from .interactions import Interactions
from .tables import read_table_file

logger = logging.getLogger(__name__)

#: Meta columns that summarise all reviews (future ones included): never read, never shown.
LEAKY_META_COLUMNS = ("average_rating", "rating_number")
#: Default item text: title first (the title prompts show), then the categories and the store.
DEFAULT_TEXT_COLUMNS = "title,categories,store"
#: Arrow types of the meta columns a text may use (the others are read as text).
_META_TYPES = {"categories": pa.list_(pa.string()), "features": pa.list_(pa.string()),
               "description": pa.list_(pa.string())}


def _resolve(data_dir: Path, stem: str) -> Path:
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (Path(data_dir) / name).is_file():
            return Path(data_dir) / name
    raise DataFormatError(Path(data_dir) / f"{stem}.jsonl", f"file not found; expected {stem}.jsonl or {stem}.jsonl.gz "
                                                            f"(the dataset's release file) in {data_dir}")


class AmazonReviews2023(Interactions):
    """Amazon Reviews 2023 (McAuley Lab), one category: reviews as interactions, ``meta_`` records as items."""

    name = "amazon-2023"
    homepage = "https://huggingface.co/datasets/McAuley-Lab/Amazon-Reviews-2023"
    hub_license = "unknown"
    licence = ("No licence is recorded by rella-hf for Amazon Reviews 2023 (unverified); treat it as not "
               "redistributable without permission.")
    citation = (
        "@article{hou2024bridging, title={Bridging Language and Items for Retrieval and Recommendation}, "
        "author={Hou, Yupeng and Li, Jiacheng and He, Zhankui and Yan, An and Chen, Xiusi and McAuley, Julian}, "
        "journal={arXiv preprint arXiv:2403.03952}, year={2024}}"
    )
    source_fields = ("category", "item_text_columns", "split_protocol", "k_core")
    #: Real categories hold reviews of items without metadata and items without any text: dropped, logged.
    drop_untexted = True
    label_threshold = 3  # label = rating > 3, i.e. rating >= 4 on the 1-5 integer scale

    def __init__(self, settings=None):
        super().__init__(settings)
        options = self.options
        options.user_column, options.item_column, options.rating_column = "user_id", "parent_asin", "rating"
        options.timestamp_column, options.timestamp_unit = "timestamp", "milliseconds"
        options.user_id_type = options.item_id_type = "string"
        options.rating_min, options.rating_max, options.rating_step = 1.0, 5.0, 1.0
        if options.k_core is None:
            options.k_core = 5
        options.item_text_columns = options.item_text_columns or DEFAULT_TEXT_COLUMNS
        options.item_noun, options.interaction_verb = "product", "reviewed"
        options.data_source = self.homepage
        if options.category:
            options.interactions_file = f"{options.category}.jsonl"
            options.items_file = f"meta_{options.category}.jsonl"
        self._apply(options)
        self.homepage, self.hub_license = type(self).homepage, type(self).hub_license
        self.licence = type(self).licence
        leaky = [column for column in self.text_columns if column in LEAKY_META_COLUMNS]
        if leaky:
            raise ConfigError(f"item_text_columns names {', '.join(leaky)}, which the meta file computes over all reviews "
                              "(future ones too): it would leak the label; choose other columns")

    def _files(self, data_dir: Path) -> tuple[Path, Path, None]:
        if not self.options.category:
            raise ConfigError("amazon-2023 needs category= (e.g. Toys_and_Games): it reads <category>.jsonl and "
                              "meta_<category>.jsonl (optionally .gz) from data_dir")
        return _resolve(data_dir, self.options.category), _resolve(data_dir, f"meta_{self.options.category}"), None

    def read_items(self, path: Path | None, log):
        """The meta records' ``parent_asin`` and text columns (lists joined), first record per item kept."""
        columns = {"parent_asin": pa.string(), **{column: _META_TYPES.get(column, pa.string()) for column in self.text_columns}}
        meta = read_table_file(path, columns, {name: "item_text_columns" for name in columns} | {"parent_asin": "item_column"})
        repeated = meta.duplicated("parent_asin").to_numpy()
        if repeated.any():
            logger.info("%s: keeping the first of %d repeated parent_asin records", path, int(repeated.sum()))
            meta = meta[~repeated].reset_index(drop=True)
        return super().read_items_frame(path, meta.rename(columns={"parent_asin": "item_id"}))

    def check_repeats(self, path: Path, kind: str, log):
        """Reviews repeated as (user, parent_asin, timestamp) (one review of several variants) are kept once, logged."""
        repeated = log.duplicated(["user_id", "item_id", "timestamp"], keep="first").to_numpy()
        if repeated.any():
            logger.info("%s: dropping %d repeated (user, parent_asin, timestamp) reviews", path, int(repeated.sum()))
            log = log[~repeated].reset_index(drop=True)
        return log
