import numpy as np
import pytest

from rella_hf.errors import ConfigError
from rella_hf.retrieval import SemanticRetriever, recent_history


def _brute_force(vectors, log, target, offset, length, K):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    positions = np.arange(offset, offset + length)
    scores = unit[log[positions]] @ unit[target]
    ranked = positions[np.lexsort((-positions, -scores))]  # most similar, then most recent
    return ranked[:K]


def test_recent_is_the_last_k_oldest_first():
    selection = recent_history(np.array([0, 10]), np.array([8, 3]), K=5)
    assert selection.positions.tolist() == [[3, 4, 5, 6, 7], [10, 11, 12, -1, -1]]
    assert selection.lengths.tolist() == [5, 3]


def test_semantic_picks_the_most_similar_items_on_hand_made_embeddings():
    # item rows 0..4 on a circle; the target (row 5) points almost exactly at item 3, then 4
    angles = np.array([0.0, 0.5, 1.0, 2.0, 2.3, 2.05])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1) * np.array([[1], [2], [3], [4], [5], [6]])  # norms differ
    log = np.array([0, 1, 2, 3, 4, 5])
    retriever = SemanticRetriever(vectors)
    selection = retriever.select(log, target_rows=np.array([5]), offsets=np.array([0]), lengths=np.array([5]), K=2)
    assert selection.positions.tolist() == [[3, 4]]  # chronological order of the two nearest
    ordered = retriever.select(log, np.array([5]), np.array([0]), np.array([5]), K=3, order="similarity")
    assert ordered.positions.tolist() == [[2, 4, 3]]  # most similar last


def test_ties_prefer_the_more_recent_item():
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # rows 0, 1, 3 identical
    log = np.array([0, 1, 2])
    selection = SemanticRetriever(vectors).select(log, np.array([3]), np.array([0]), np.array([3]), K=1)
    assert selection.positions.tolist() == [[1]]


def test_k_larger_than_history_shows_the_whole_history():
    vectors = np.random.default_rng(0).standard_normal((6, 4))
    log = np.array([5, 4, 3, 2, 1, 0])
    selection = SemanticRetriever(vectors).select(log, np.array([0]), np.array([1]), np.array([3]), K=10)
    assert selection.lengths.tolist() == [3]
    assert selection.positions[0, :3].tolist() == [1, 2, 3] and (selection.positions[0, 3:] == -1).all()
    assert recent_history(np.array([1]), np.array([3]), K=10).positions[0, :3].tolist() == [1, 2, 3]


def test_semantic_matches_brute_force_across_blocks(monkeypatch):
    import rella_hf.retrieval as retrieval

    monkeypatch.setattr(retrieval, "_MAX_BLOCK_PAIRS", 50)  # force many padded blocks
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((40, 6)).astype(np.float32)
    log = rng.integers(0, 40, 300)
    lengths = rng.integers(0, 40, 25)
    offsets = rng.integers(0, 300 - 40, 25)
    targets = rng.integers(0, 40, 25)
    selection = SemanticRetriever(vectors).select(log, targets, offsets, lengths, K=7)
    for i in range(25):
        expected = sorted(_brute_force(vectors, log, targets[i], offsets[i], lengths[i], 7))
        assert selection.positions[i, : selection.lengths[i]].tolist() == expected


def test_item_rows_are_rows_not_ids():
    # rows are positions of the embedding matrix; nearest_items answers in rows too
    vectors = np.eye(3)
    retriever = SemanticRetriever(vectors, item_ids=[101, 205, 333])
    scores, rows = retriever.nearest_items(1, k=1)
    assert rows.tolist() == [1] and scores[0] == pytest.approx(1.0)
    assert retriever.items["item_id"] == [101, 205, 333]


def test_flat_lists():
    flat, offsets = recent_history(np.array([0, 10]), np.array([2, 1]), K=3).flat()
    assert flat.tolist() == [0, 1, 10] and offsets.tolist() == [0, 2, 3]


def test_bad_k_and_order():
    with pytest.raises(ConfigError, match="K=0"):
        recent_history(np.array([0]), np.array([1]), K=0)
    with pytest.raises(ConfigError, match="order='newest'"):
        SemanticRetriever(np.eye(2)).select(np.array([0]), np.array([1]), np.array([0]), np.array([1]), K=1, order="newest")
