import numpy as np
import pandas as pd
import pytest
from corpus_fixtures import (
    bx_many_rating_lines,
    bx_rating_lines,
    write_book_crossing,
    write_ml1m,
    write_ml100k,
    write_ml_latest,
)

from rella_hf.corpora import get_corpus
from rella_hf.errors import ConfigError
from rella_hf.samples import SampleProtocol, load_samples


def _all_samples(samples):
    return pd.concat(list(samples.splits.values()), ignore_index=True)


def test_ml1m_count_order_and_split(tmp_path):
    samples = load_samples("ml-1m", data_dir=write_ml1m(tmp_path))
    frame = _all_samples(samples)
    # every user has >= 5 ratings: n = ratings - 5 * users
    assert len(frame) == 21 - 5 * 3
    n = len(frame)
    assert [len(samples.splits[s]) for s in ("train", "validation", "test")] == [int(0.8 * n), int(0.1 * n), n - int(0.8 * n) - int(0.1 * n)]
    # global order (timestamp, user, item): user 1's (6 @104) comes after (5 @104); user 1 @200 before user 2 @200
    assert list(zip(frame["user_id"], frame["item_id"], frame["timestamp"])) == [
        (1, 6, 104), (1, 7, 200), (2, 3, 200), (3, 6, 305), (3, 7, 306), (3, 8, 307)
    ]
    assert frame["sample_id"].tolist() == list(range(n))
    assert frame["label"].tolist() == [0, 1, 1, 1, 0, 1]  # rating > 3


def test_history_strictly_precedes_its_sample(tmp_path):
    samples = load_samples("ml-1m", data_dir=write_ml1m(tmp_path))
    log = samples.log
    for frame in samples.splits.values():
        for offset, length, ts, row in frame[["history_offset", "history_length", "timestamp", "item_row"]].itertuples(index=False):
            history = log.iloc[offset: offset + length]
            assert (history["timestamp"] <= ts).all()
            assert row not in set(history["item_row"])
            # the sample's own interaction sits right after its history
            assert log["item_row"].iat[offset + length] == row and log["timestamp"].iat[offset + length] == ts
    # user 1's 6th sample (item 6 @104) has history items 1,2,3,4 then 5 (the tie at 104 broken by item id)
    offset, length = samples.splits["train"].loc[0, ["history_offset", "history_length"]].astype(int)
    history_items = samples.items["item_id"].to_numpy()[log["item_row"].to_numpy()[offset: offset + length]]
    assert history_items.tolist() == [1, 2, 3, 4, 5]


def test_min_history_filter_is_a_field(tmp_path):
    folder = write_ml1m(tmp_path)
    assert len(_all_samples(load_samples("ml-1m", data_dir=folder, protocol=SampleProtocol(min_history=2)))) == 21 - 2 * 3
    short = load_samples("ml-1m", data_dir=folder, protocol=SampleProtocol(min_history=6))
    assert set(_all_samples(short)["user_id"]) == {1, 3}  # user 2 has only 6 ratings, so at most 5 earlier


def test_ml_latest_half_star_labels(tmp_path):
    samples = load_samples("ml-25m", data_dir=write_ml_latest(tmp_path), protocol=SampleProtocol(min_history=1))
    frame = _all_samples(samples).set_index(["user_id", "item_id"])
    assert frame.loc[(1, 11), "label"] == 1  # 3.5 stars is positive
    assert frame.loc[(1, 21), "label"] == 0  # 3.0 is not
    assert frame.loc[(1, 31), "label"] == 0


def test_sample_sizes_are_seeded_subsets(tmp_path):
    folder = write_ml100k(tmp_path)
    protocol = SampleProtocol(min_history=0, train_sample_size=5, test_sample_size=2)
    first = load_samples("ml-100k", data_dir=folder, protocol=protocol)
    second = load_samples("ml-100k", data_dir=folder, protocol=protocol)
    assert len(first.splits["train"]) == 5 and len(first.splits["test"]) == 2
    pd.testing.assert_frame_equal(first.splits["train"], second.splits["train"])
    full = load_samples("ml-100k", data_dir=folder, protocol=SampleProtocol(min_history=0))
    assert set(first.splits["train"]["sample_id"]) <= set(full.splits["train"]["sample_id"])


def test_ml100k_uses_ml1m_protocol(tmp_path):
    samples = load_samples("ml-100k", data_dir=write_ml100k(tmp_path))
    assert len(_all_samples(samples)) == 18 - 5 * 3


def test_book_crossing_protocol(tmp_path):
    folder = write_book_crossing(tmp_path)
    samples = load_samples("BookCrossing", data_dir=folder)
    assert set(samples.splits) == {"train", "test"}
    frame = _all_samples(samples)
    # users with more than 5 ratings: 1 (7), 2 (6), 4 (8); user 3 (5) and user 5 (bad ISBN only) are gone
    assert sorted(frame["user_id"]) == [1, 2, 4]
    counts = {1: 7, 2: 6, 4: 8}
    for row in frame.itertuples():
        assert row.history_length == counts[row.user_id] - 1
        assert row.label == int(row.rating >= 5)
    assert len(samples.splits["train"]) == int(0.9 * 3)
    # deterministic with the seed, different with another seed
    again = load_samples("BookCrossing", data_dir=folder)
    pd.testing.assert_frame_equal(frame, _all_samples(again))
    # history + target = all the user's ratings
    tables = get_corpus("BookCrossing").read(folder)
    for row in frame.itertuples():
        rows = samples.log["item_row"].to_numpy()[row.history_offset: row.history_offset + row.history_length + 1]
        mine = tables.interactions[tables.interactions.user_id == row.user_id]["item_id"]
        assert sorted(samples.items["item_id"].to_numpy()[rows]) == sorted(mine)


def test_book_crossing_shuffle_depends_on_seed(tmp_path):
    folder = write_book_crossing(tmp_path)
    targets = {seed: _all_samples(load_samples("BookCrossing", data_dir=folder, protocol=SampleProtocol(seed=seed)))
               .sort_values("user_id")["item_id"].tolist() for seed in range(6)}
    assert len({tuple(value) for value in targets.values()}) > 1



def test_book_crossing_samples_do_not_depend_on_the_order_of_rating_lines(tmp_path):
    # The old sampler drew one random number per kept row in file order, so reordering the lines
    # changed every user's shuffle; keyed hashes of (seed, user, item) do not see the line order.
    lines = bx_rating_lines()
    reordered = [lines[index] for index in np.random.default_rng(3).permutation(len(lines))]
    assert reordered != lines
    first = load_samples("BookCrossing", data_dir=write_book_crossing(tmp_path / "a", lines))
    second = load_samples("BookCrossing", data_dir=write_book_crossing(tmp_path / "b", reordered))
    pd.testing.assert_frame_equal(first.log, second.log)
    for name in first.splits:
        pd.testing.assert_frame_equal(first.splits[name], second.splits[name])


def test_book_crossing_seed_changes_both_orders(tmp_path):
    folder = write_book_crossing(tmp_path, bx_many_rating_lines())
    runs = {seed: _all_samples(load_samples("BookCrossing", data_dir=folder, protocol=SampleProtocol(seed=seed)))
            for seed in range(4)}
    user_orders = {tuple(frame["user_id"]) for frame in runs.values()}
    targets = {tuple(frame.sort_values("user_id")["item_id"]) for frame in runs.values()}
    assert len(user_orders) > 1 and len(targets) > 1
    assert all(sorted(frame["user_id"]) == list(range(1, 9)) for frame in runs.values())


def test_shuffle_keys_are_row_wise_and_stable():
    import pyarrow as pa

    from rella_hf.samples import id_hash, shuffle_keys

    users = np.array([1, 1, 2, 7, 7, 7])
    isbns = np.array(["034545104X", "0155061224", "034545104X", "", "3257224281", "B0000AB12C"], dtype=object)
    keys = shuffle_keys(42, users, isbns)
    assert keys.dtype == np.int64 and (keys >= 0).all()
    # A rating's key is a function of its own (seed, user, item): any batch of rows gives it (Spark's pieces).
    np.testing.assert_array_equal(shuffle_keys(42, users[3:], pa.array(list(isbns)).slice(3)), keys[3:])
    np.testing.assert_array_equal(shuffle_keys(42, users[::-1], isbns[::-1]), keys[::-1])
    assert len(set(keys)) == len(keys)
    assert (shuffle_keys(43, users, isbns) != keys).all()
    # User keys are a second stream: not the rating keys, the same for every rating of a user.
    user_keys = shuffle_keys(42, users)
    assert user_keys[0] == user_keys[1] and user_keys[3] == user_keys[5] and not np.isin(user_keys, keys).any()
    # String ids hash their bytes (a trailing zero byte, a longer id, an integer id are other ids).
    hashes = id_hash(np.array(["AB", "AB\x00", "ABCDEFGHI", "ABCDEFGH"], dtype=object))
    assert len(set(hashes)) == 4 and id_hash(np.array([5]))[0] != id_hash(np.array(["5"], dtype=object))[0]
    # nor on the ids hashed beside it (a longer neighbour widens the byte matrix)
    alone = id_hash(np.array(["", "AB"], dtype=object))
    np.testing.assert_array_equal(id_hash(np.array(["", "AB", "0123456789ABCDEFGHIJ"], dtype=object))[:2], alone)
    # The vectorized hash is the scalar definition, and pinned: a change here changes Book-Crossing's
    # rows and needs a new SAMPLER_VERSIONS entry.
    assert keys.tolist() == [_reference_key(42, int(user), item) for user, item in zip(users, isbns)]
    assert keys.tolist() == [9122403445499914347, 1138899297274599519, 8388563699605159297, 3453741741142970747,
                             8170635119841149592, 5181108150603136970]


def _splitmix64(value: int) -> int:
    mask = 2**64 - 1
    z = (value + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def _reference_key(seed: int, user: int, item: str) -> int:
    """shuffle_keys written out for one rating, in plain Python integers."""
    start = _splitmix64(seed ^ 0x5241544E47000001)
    key = _splitmix64(_splitmix64(user) ^ start)
    data = item.encode()
    folded = 0
    for offset in range(0, len(data), 8):
        folded = _splitmix64(folded ^ int.from_bytes(data[offset:offset + 8].ljust(8, b"\0"), "little"))
    key = _splitmix64(key ^ _splitmix64(folded ^ len(data)))
    return key >> 1


def test_shuffle_keys_shuffle_uniformly():
    from rella_hf.samples import shuffle_keys

    # 20,000 users rating the same 6 books: each book should be the target (the last) about 1/6 of the time.
    users = np.repeat(np.arange(20_000), 6)
    books = np.tile(np.array([f"03{index:07d}X" for index in range(6)], dtype=object), 20_000)
    keys = shuffle_keys(42, users, books).reshape(20_000, 6)
    shares = np.bincount(keys.argmax(axis=1), minlength=6) / 20_000
    assert np.abs(shares - 1 / 6).max() < 0.015
    # and the users' order is a fair shuffle: about half the consecutive pairs swap
    user_keys = shuffle_keys(42, np.arange(20_000))
    assert abs((np.diff(user_keys) < 0).mean() - 0.5) < 0.02


def test_bundled_counts():
    samples = load_samples("ml-latest-small")
    n = 100_836 - 5 * 610
    assert n == 97_786
    sizes = {name: len(frame) for name, frame in samples.splits.items()}
    assert sizes == {"train": int(0.8 * n), "validation": int(0.1 * n), "test": n - int(0.8 * n) - int(0.1 * n)}
    # memory: the log holds each interaction once
    assert len(samples.log) == 100_836
    test = samples.splits["test"]
    assert test["timestamp"].min() >= samples.splits["validation"]["timestamp"].max()


def test_bad_protocol_values():
    with pytest.raises(ConfigError, match="train_sample_size=0"):
        SampleProtocol(train_sample_size=0)
    with pytest.raises(ConfigError, match="min_history"):
        SampleProtocol(min_history=-1)


def test_packed_sort_matches_lexsort_and_keeps_ties_stable():
    from rella_hf.samples import _lexicographic_order, _pack_keys

    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 3000))
        # small ranges force many equal keys (ties must keep row order, as lexsort does); negative values too
        columns = [rng.integers(-3, 4, n), rng.integers(-10**12, 10**12, n) if rng.random() < 0.3 else rng.integers(0, 50, n),
                   rng.integers(0, 7, n)]
        assert _pack_keys(columns) is not None
        np.testing.assert_array_equal(_lexicographic_order(columns), np.lexsort(columns[::-1]))


def test_packed_sort_falls_back_to_lexsort_beyond_64_bits():
    from rella_hf.samples import _lexicographic_order, _pack_keys

    rng = np.random.default_rng(1)
    columns = [rng.integers(-2**62, 2**62, 1000), rng.integers(0, 2**40, 1000), rng.integers(0, 3, 1000)]
    assert _pack_keys(columns) is None
    np.testing.assert_array_equal(_lexicographic_order(columns), np.lexsort(columns[::-1]))
    floats = [rng.random(100), rng.integers(0, 3, 100)]
    assert _pack_keys(floats) is None
    np.testing.assert_array_equal(_lexicographic_order(floats), np.lexsort(floats[::-1]))
    assert len(_lexicographic_order([np.zeros(0, np.int64), np.zeros(0, np.int64)])) == 0


@pytest.mark.parametrize("name", ["ml-latest-small", "ml-1m"])
def test_fallback_sort_gives_the_same_samples(tmp_path, monkeypatch, name):
    import rella_hf.samples as module

    folder = None if name == "ml-latest-small" else write_ml1m(tmp_path)
    protocol = SampleProtocol(train_sample_size=500, test_sample_size=300)
    packed = load_samples(name, data_dir=folder, protocol=protocol)
    monkeypatch.setattr(module, "_pack_keys", lambda columns: None)
    monkeypatch.setattr(module, "_by_time_then_position", lambda timestamps, positions: None)
    fallback = load_samples(name, data_dir=folder, protocol=protocol)
    pd.testing.assert_frame_equal(packed.log, fallback.log)
    for split in packed.splits:
        pd.testing.assert_frame_equal(packed.splits[split], fallback.splits[split])


def test_validation_is_sampled_when_train_and_test_are():
    full = load_samples("ml-latest-small")
    sampled = load_samples("ml-latest-small", protocol=SampleProtocol(train_sample_size=1000, test_sample_size=400))
    assert {name: len(frame) for name, frame in sampled.splits.items()} == {"train": 1000, "validation": 400, "test": 400}
    # a seeded subset of the full validation split, in order
    validation = sampled.splits["validation"]
    assert validation["sample_id"].is_monotonic_increasing
    assert set(validation["sample_id"]) <= set(full.splits["validation"]["sample_id"])
    # an explicit size wins; only one of train/test sampled keeps all of validation
    explicit = load_samples("ml-latest-small", protocol=SampleProtocol(train_sample_size=1000, test_sample_size=400,
                                                                       validation_sample_size=50))
    assert len(explicit.splits["validation"]) == 50
    train_only = load_samples("ml-latest-small", protocol=SampleProtocol(train_sample_size=1000))
    assert len(train_only.splits["validation"]) == len(full.splits["validation"])
    assert SampleProtocol(train_sample_size=9, test_sample_size=7).sample_sizes() == {"train": 9, "validation": 7, "test": 7}


def test_sampled_splits_equal_the_subsampled_full_splits():
    full = load_samples("ml-latest-small")
    sampled = load_samples("ml-latest-small", protocol=SampleProtocol(train_sample_size=700, validation_sample_size=80,
                                                                      test_sample_size=90, sample_seed=3))
    for name, size in (("train", 700), ("validation", 80), ("test", 90)):
        frame = full.splits[name]
        chosen = np.sort(np.random.default_rng(3).choice(len(frame), size=size, replace=False))
        pd.testing.assert_frame_equal(sampled.splits[name], frame.iloc[chosen].reset_index(drop=True))


def test_time_then_position_order_is_the_global_order():
    from rella_hf.samples import _by_time_then_position

    rng = np.random.default_rng(2)
    users, timestamps, items = rng.integers(0, 30, 4000), rng.integers(0, 40, 4000), rng.integers(0, 500, 4000)
    log_order = np.lexsort((items, timestamps, users))
    eligible = np.flatnonzero(rng.random(4000) < 0.7)
    expected = eligible[np.lexsort((items[log_order][eligible], users[log_order][eligible],
                                    timestamps[log_order][eligible]))]
    np.testing.assert_array_equal(_by_time_then_position(timestamps[log_order][eligible], eligible), expected)
    assert _by_time_then_position(np.array([0, 2**62]), np.array([0, 5])) is None  # needs more than 63 bits


def test_one_seeded_subset_draw_serves_split_sizes_eval_rows_and_fixed_subsets():
    import datasets

    from rella_hf.samples import seeded_positions, seeded_subset, split_plan
    from rella_hf.training.data import build_eval_rows

    positions = seeded_positions(100, 10, 7)
    assert len(positions) == 10 and len(set(positions.tolist())) == 10
    assert (np.diff(positions) > 0).all() and positions.min() >= 0 and positions.max() < 100
    assert np.array_equal(positions, seeded_positions(100, 10, 7))
    assert not np.array_equal(positions, seeded_positions(100, 10, 8))
    assert seeded_positions(100, None, 7) is None and seeded_positions(100, 100, 7) is None
    with pytest.raises(ConfigError, match="at least 0"):
        seeded_positions(100, -1, 7)
    # The split sizes, ReiT's evaluation rows and the CLI / demo subsets all take the same rows.
    plan = split_plan(1000, 0.8, 0.1, {"train": None, "validation": 10, "test": None}, seed=7, keep_validation=True)
    assert np.array_equal(plan["validation"][2], seeded_positions(100, 10, 7))
    split = datasets.Dataset.from_dict({"sample_id": list(range(100)), "prompt": [f"p{i}" for i in range(100)],
                                        "completion": [" Yes."] * 100, "label": [1] * 100})
    assert seeded_subset(split, 10, 7)["sample_id"] == positions.tolist()
    assert build_eval_rows(split, 10, "simple", seed=7)["sample_id"] == positions.tolist()
    assert seeded_subset(split, 500, 7) is split
