"""Retrieval and prompt rendering on the executors, user by user, with the in-process code.

Each partition holds whole users, their ratings in the user's order (chronological, or shuffled
by keyed hashes for Book-Crossing) and the kept samples marked. A batch of whole users is laid
out exactly like :class:`rella_hf.samples.LifelongSamples` (a log user after user, samples
pointing into it), so :func:`rella_hf.builders.base.select_history`
(recent-K or SUBR through :class:`rella_hf.retrieval.SemanticRetriever`) and
:func:`rella_hf.builders.base.render_table` run unchanged: one implementation of the math, two
drivers. The item embeddings, items and users tables (and, for collaborative prompts, the sorted
reference ratings, :class:`rella_hf.collaborative.ReferenceRatings`) travel as one broadcast; each
Python worker builds its FAISS index and loads the chat tokenizer once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

_MIN_ROWS = 100_000  # log rows gathered before a batch of whole users is rendered
_BROADCAST_SAMPLES = 2_000_000  # kept samples up to which the marks are broadcast, not shuffled

_WORKER_CACHE: dict = {}


_SPARK_TYPES = {"int64": "long", "int32": "int", "float32": "float"}


def render_schema(corpus, collaborative: str = "none") -> str:
    """Spark schema of the rendered rows of ``corpus``: the dataset's features
    (:func:`rella_hf.builders.base.features_for`: ids typed as the corpus declares them; the collaborative
    statistic columns unless ``collaborative`` is "none") plus the split code."""
    from ..builders.base import _STATISTIC_DTYPES

    item = "string" if corpus.item_id_type == "string" else "long"
    user = "string" if corpus.user_id_type == "string" else "long"
    statistics = "" if collaborative == "none" else "".join(
        f"{name} {_SPARK_TYPES[dtype]}, " for name, dtype in _STATISTIC_DTYPES.items())
    return (f"sample_id long, user_id {user}, item_id {item}, rating float, label long, timestamp long, "
            f"history_length int, history_item_ids array<{item}>, history_ratings array<float>, "
            f"raw_prompt string, prompt string, completion string, {statistics}split int")


def render_input(log, selected, kept: int):
    """The log rows of users with kept samples (up to their last one), each kept sample marked
    with ``sample_id`` and ``split``; partitioned by user, sorted by (user, position)."""
    from pyspark.sql import functions as F

    rows = log.filter(F.col("kind").isNull()).select("user_id", "item_id", "item_row", "rating", "timestamp", "pos")
    if kept <= _BROADCAST_SAMPLES:
        # The log is already partitioned by user: broadcast joins keep it so, no shuffle of the ratings.
        last = selected.groupBy("user_id").agg(F.max("pos").alias("last_pos"))
        joined = (rows.join(F.broadcast(last), "user_id").filter(F.col("pos") <= F.col("last_pos")).drop("last_pos")
                  .join(F.broadcast(selected), ["user_id", "pos"], "left"))
    else:
        joined = rows.join(selected, ["user_id", "pos"], "left").repartition("user_id")
    return joined.sortWithinPartitions("user_id", "pos")


def _context(broadcast) -> dict:
    """This worker's copy of the build context: tables, config, FAISS retriever, tokenizer (made once)."""
    value = broadcast.value
    key = value["build_id"]
    if key not in _WORKER_CACHE:
        from ..corpora import get_corpus
        from ..retrieval import SemanticRetriever

        _WORKER_CACHE.clear()  # a reused worker keeps one build's context, not every earlier one
        value = dict(value)
        config = value["config"]
        value["corpus"] = get_corpus(value["corpus"], config)
        value["retriever"] = None
        if value["vectors"] is not None:
            value["retriever"] = SemanticRetriever(value["vectors"], value["items"]["item_id"].tolist())
        value["tokenizer"] = None
        if config.chat_model is not None:
            from ..models import load_tokenizer

            value["tokenizer"] = load_tokenizer(config.chat_model)
        _WORKER_CACHE[key] = value
    return _WORKER_CACHE[key]


def _whole_users(batches, min_rows: int):
    """Tables of consecutive rows that never split one user's rows between two tables."""
    pending, rows = [], 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        rows += batch.num_rows
        if rows < min_rows:
            continue
        table = pa.Table.from_batches(pending)
        users = table.column("user_id").to_numpy()
        differs = users != users[-1]
        if not differs.any():
            continue  # one user so far: keep gathering
        cut = len(users) - int(np.argmax(differs[::-1]))
        yield table.slice(0, cut)
        rest = table.slice(cut)
        pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending)


def _render_users(table: pa.Table, context: dict):
    """Rendered record batches (with their split code) of the kept samples of whole users in ``table``."""
    from ..builders.base import render_table, select_history
    from ..samples import LifelongSamples

    column = {name: table.column(name).to_numpy(zero_copy_only=False)
              for name in ("user_id", "item_id", "item_row", "rating", "timestamp", "pos")}
    sample_ids = table.column("sample_id")
    kept = sample_ids.is_valid().to_numpy(zero_copy_only=False)
    if not kept.any():
        return
    users = column["user_id"]
    is_first = np.ones(len(users), dtype=bool)
    is_first[1:] = users[1:] != users[:-1]
    if (column["pos"][is_first] != 0).any():
        raise RuntimeError("a user's ratings reached the renderer without their start; the partitioning is broken")
    group_start = np.maximum.accumulate(np.where(is_first, np.arange(len(users)), 0))
    corpus, config = context["corpus"], context["config"]
    protocol = config.protocol()
    threshold = protocol.threshold_for(corpus)
    ratings = column["rating"].astype(np.float32)
    log = pd.DataFrame({"item_row": column["item_row"].astype(np.int32), "rating": ratings,
                        "timestamp": column["timestamp"].astype(np.int64)})
    samples = LifelongSamples(corpus=corpus, users=context["users"], items=context["items"], log=log, splits={},
                              protocol=protocol)
    collaborative = None
    if context["reference"] is not None:
        from ..collaborative import CollaborativeIndex

        # Item statistics from the driver's reference of the whole log; user statistics from this batch's own users.
        collaborative = CollaborativeIndex(samples, config.prior_strength, reference=context["reference"])
    ids = sample_ids.fill_null(-1).to_numpy(zero_copy_only=False)
    codes = table.column("split").fill_null(-1).to_numpy(zero_copy_only=False)
    for code in np.unique(codes[kept]):
        rows = np.flatnonzero(kept & (codes == code))
        rows = rows[np.argsort(ids[rows], kind="stable")]
        frame = pd.DataFrame({
            "sample_id": ids[rows].astype(np.int64),
            "user_id": users[rows],
            "item_id": column["item_id"][rows],
            "item_row": column["item_row"][rows].astype(np.int32),
            "rating": ratings[rows],
            "label": (ratings[rows] > threshold).astype(np.int8),
            "timestamp": column["timestamp"][rows],
            "history_offset": group_start[rows].astype(np.int64),
            "history_length": column["pos"][rows].astype(np.int32),
        })
        selection = select_history(samples, frame, config, context["retriever"])
        out = render_table(samples, frame, selection, config, context["tokenizer"], context["retriever"], collaborative)
        out = out.append_column("split", pa.array(np.full(len(frame), code, dtype=np.int32)))
        yield from out.to_batches()


def render_partition(batches, *, context, min_rows: int = _MIN_ROWS):
    """``mapInArrow`` body: marked log rows of whole users -> rendered prompt rows (:func:`render_schema`)."""
    values = _context(context)
    for table in _whole_users(batches, min_rows):
        yield from _render_users(table, values)
