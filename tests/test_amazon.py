"""The ``amazon-2023`` corpus on a fixture in the release's layout: string user ids, millisecond timestamps,
``parent_asin`` items, 5-core and rating >= 4 defaults, and no leak of the meta file's all-time statistics."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

import rella_hf
from rella_hf.corpora import get_corpus
from rella_hf.errors import ConfigError, DataFormatError
from rella_hf.samples import build_samples

CATEGORY = "Toys_and_Games"
#: Values of the leaky meta fields, distinctive enough to find anywhere they might surface.
AVERAGE_RATING, RATING_NUMBER = 4.37, 987654321


def write_amazon(folder, gz: bool = True) -> None:
    """``Toys_and_Games.jsonl(.gz)`` and ``meta_Toys_and_Games.jsonl`` in the release's field names.

    Eight users review products P0-P5 (so the 5-core keeps them); P6 and P7 have one review each and
    user U8 four (the 5-core removes them); one review is repeated for a second variant ``asin``
    of the same ``parent_asin`` and time; one review rates a product without a meta record.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    reviews = []
    for user in range(8):
        times = np.sort(rng.choice(200, size=7, replace=False))
        products = [*rng.permutation(6).tolist(), 6 + user % 2 if user < 2 else None]
        for product, day in zip(products, times):
            if product is None:
                continue
            reviews.append({"rating": float(rng.integers(1, 6)), "title": "review title", "text": "review text",
                            "images": [], "asin": f"B0{product}X", "parent_asin": f"P{product}",
                            "user_id": f"AG{user}XKQ7ZR2", "timestamp": 1_600_000_000_000 + int(day) * 86_400_000 + user,
                            "helpful_vote": 0, "verified_purchase": True})
    reviews += [{"rating": 5.0, "asin": f"B0{p}Y", "parent_asin": f"P{p}", "user_id": "AG8LONE",
                 "timestamp": 1_600_000_000_000 + p, "helpful_vote": 1, "verified_purchase": False} for p in range(4)]
    reviews.append({**reviews[3], "asin": "B0VARIANT"})
    reviews.append({**reviews[4], "parent_asin": "P-NO-META", "timestamp": reviews[4]["timestamp"] + 1})
    meta = [{"main_category": "Toys & Games", "title": f"Puzzle number {p}", "average_rating": AVERAGE_RATING,
             "rating_number": RATING_NUMBER, "features": ["wooden"], "description": ["fun"],
             "price": "None" if p % 2 else 12.5, "images": [], "videos": [], "store": f"Store {p % 3}",
             "categories": ["Toys & Games", "Puzzles"] if p % 2 else [], "details": {"Brand": "X", f"k{p}": p},
             "parent_asin": f"P{p}", "bought_together": None} for p in range(8)]
    meta.append({**meta[0], "title": "a repeated record"})
    text = "".join(json.dumps(record) + "\n" for record in reviews).encode()
    name = f"{CATEGORY}.jsonl"
    (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(text, mtime=0) if gz else text)
    (folder / f"meta_{CATEGORY}.jsonl").write_text("".join(json.dumps(record) + "\n" for record in meta))


@pytest.fixture
def amazon_dir(tmp_path):
    write_amazon(tmp_path / "amazon")
    return tmp_path / "amazon"


def test_reads_the_release_layout_with_its_defaults(amazon_dir):
    corpus = get_corpus("amazon-2023", {"category": CATEGORY})
    tables = corpus.read(amazon_dir)
    inter = tables.interactions
    assert inter["user_id"].map(type).eq(str).all() and inter["user_id"].iat[0].startswith("AG")
    assert inter["timestamp"].min() > 1_600_000_000_000  # milliseconds, as written
    assert set(inter["item_id"]) == {f"P{p}" for p in range(6)}  # 5-core: P6, P7 and U8's reviews gone
    assert "AG8LONE" not in set(inter["user_id"]) and len(inter) == 48  # the variant repeat kept once
    assert list(tables.items.columns) == ["item_id", "title", "categories", "store"]
    puzzle1 = tables.items.set_index("item_id").loc["P1"]
    assert (puzzle1["title"], puzzle1["categories"], puzzle1["store"]) == ("Puzzle number 1", "Toys & Games, Puzzles",
                                                                         "Store 1")
    assert tables.items.set_index("item_id").loc["P0", "categories"] == "unknown"
    samples = build_samples(corpus, tables)
    test = samples.splits["test"]
    assert ((test["rating"] >= 4) == (test["label"] == 1)).all()
    assert get_corpus("amazon-2023", {"category": CATEGORY, "k_core": 1}).read(amazon_dir).interactions.shape[0] == 54


def test_the_leaky_meta_statistics_never_reach_prompts_or_features(amazon_dir, tmp_path):
    dataset = rella_hf.load_dataset("amazon-2023", K=2, category=CATEGORY, data_dir=amazon_dir, chat_model=None,
                                    min_history=2, cache_dir=tmp_path / "cache")
    text = json.dumps({split: dataset[split].to_list() for split in dataset})
    assert str(AVERAGE_RATING) not in text and str(RATING_NUMBER) not in text
    assert not {"average_rating", "rating_number"} & set(dataset["test"].column_names)
    prompt = dataset["test"][0]["raw_prompt"]
    assert prompt.startswith("The user reviewed the following products in the past, and rated them:")
    assert dataset["test"].features["user_id"].dtype == "string"
    from rella_hf.embeddings import item_texts

    corpus = get_corpus("amazon-2023", {"category": CATEGORY})
    tables = corpus.read(amazon_dir)
    texts = item_texts(tables.items, corpus.domain, corpus.item_text_fields())
    assert texts[0].startswith("Here is a product. Its title is Puzzle number") and "4.37" not in " ".join(texts)
    with pytest.raises(ConfigError, match="average_rating, which the meta file computes over all reviews"):
        get_corpus("amazon-2023", {"category": CATEGORY, "item_text_columns": "title,average_rating"})


def test_bad_amazon_inputs(tmp_path):
    with pytest.raises(ConfigError, match="amazon-2023 needs category="):
        get_corpus("amazon-2023").read(tmp_path)
    with pytest.raises(DataFormatError, match="Toys_and_Games.jsonl or Toys_and_Games.jsonl.gz"):
        get_corpus("amazon-2023", {"category": CATEGORY}).read(tmp_path)
    with pytest.raises(ConfigError, match="interactions_file do\\(es\\) not apply to the amazon-2023 corpus"):
        get_corpus("amazon-2023", {"category": CATEGORY, "interactions_file": "x.csv"})
    write_amazon(tmp_path / "plain", gz=False)
    (tmp_path / "plain" / f"meta_{CATEGORY}.jsonl").write_text('{"parent_asin": "P0"}\n')
    with pytest.raises(DataFormatError, match="has no column 'title' \\(item_text_columns\\), 'categories'.*its columns are 'parent_asin'"):
        get_corpus("amazon-2023", {"category": CATEGORY}).read(tmp_path / "plain")
