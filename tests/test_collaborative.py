"""Leak-free collaborative statistics (rella_hf.collaborative) and the ``collaborative`` prompt option."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from corpus_fixtures import ML1M_MOVIES, bx_many_rating_lines, write_book_crossing, write_ml1m

from rella_hf.collaborative import CollaborativeIndex, collaborative_notes, collaborative_statistics
from rella_hf.errors import ConfigError
from rella_hf.samples import load_samples

STRENGTH = 3.0


def random_ml1m_ratings(seed: int, users: int = 6, per_user: tuple[int, int] = (6, 8), span: int = 12) -> list[str]:
    """Ratings of the 8 fixture movies with timestamps in a narrow range, so many fall in the same second."""
    generator = np.random.default_rng(seed)
    lines = []
    for user in range(1, users + 1):
        items = generator.choice(np.arange(1, len(ML1M_MOVIES) + 1), size=generator.integers(*per_user, endpoint=True),
                                 replace=False)
        for item in items:
            lines.append(f"{user}::{item}::{generator.integers(1, 6)}::{generator.integers(100, 100 + span)}")
    return lines


def write_users(folder, users: int) -> None:
    lines = [f"{user}::{'F' if user % 2 else 'M'}::25::{user % 20}::0000{user}" for user in range(1, users + 1)]
    (folder / "users.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")


def ml1m_samples(tmp_path, lines, users: int = 6, name: str = "ml1m"):
    folder = write_ml1m(tmp_path / name, lines)
    write_users(folder, users)
    return load_samples("ml-1m", folder), folder


def parse_ratings(lines) -> pd.DataFrame:
    rows = [tuple(int(value) for value in line.split("::")) for line in lines]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def oracle_row(item: pd.DataFrame, history: pd.DataFrame, prior_mean: float, prior_rate: float, strength: float,
               threshold: float) -> dict:
    """The statistics from the item's reference ratings and the user's history, smoothed by hand."""
    return {
        "item_prior_ratings": len(item),
        "item_mean_rating": (item.rating.sum() + strength * prior_mean) / (len(item) + strength),
        "item_positive_rate": ((item.rating > threshold).sum() + strength * prior_rate) / (len(item) + strength),
        "user_history_length": len(history),
        "user_mean_rating": history.rating.mean(),
    }


def oracle_chronological(ratings: pd.DataFrame, sample, strength: float, threshold: float = 3) -> dict:
    """The statistics of one sample by brute force over the raw ratings (the module docstring's rules)."""
    earlier = ratings[ratings.timestamp < sample.timestamp]
    prior_mean = earlier.rating.mean() if len(earlier) else 3.0
    prior_rate = (earlier.rating > threshold).mean() if len(earlier) else 0.5
    item = earlier[earlier.item_id == sample.item_id]
    mine = ratings[ratings.user_id == sample.user_id]
    # The user's history: earlier in (timestamp, item) order.
    history = mine[(mine.timestamp < sample.timestamp) | ((mine.timestamp == sample.timestamp) & (mine.item_id < sample.item_id))]
    return oracle_row(item, history, prior_mean, prior_rate, strength, threshold)


def assert_matches(statistics, expected: list[dict]) -> None:
    frame = statistics.frame()
    for column in frame.columns:
        np.testing.assert_allclose(frame[column].to_numpy(np.float64), [row[column] for row in expected], rtol=1e-5,
                                   err_msg=column)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_statistics_equal_a_brute_force_oracle(tmp_path, seed):
    lines = random_ml1m_ratings(seed)
    samples, _ = ml1m_samples(tmp_path, lines)
    ratings = parse_ratings(lines)
    index = CollaborativeIndex(samples, STRENGTH)
    checked = 0
    for frame in samples.splits.values():
        expected = [oracle_chronological(ratings, row, STRENGTH) for row in frame.itertuples()]
        assert_matches(index.statistics(frame), expected)
        checked += len(frame)
    assert checked > 5


def test_same_second_ratings_never_count(tmp_path):
    # User 1's target (item 7 at t=200) shares its second with user 2's rating of item 7: that rating is not "earlier".
    lines = [f"1::{item}::4::{100 + item}" for item in range(1, 7)] + ["1::7::5::200"]
    lines += [f"2::{item}::2::{50 + item}" for item in range(1, 6)] + ["2::7::1::200", "3::7::5::199"]
    samples, _ = ml1m_samples(tmp_path, lines, users=3)
    frames = pd.concat(samples.splits.values())
    target = frames[(frames.user_id == 1) & (frames.item_id == 7)]
    statistics = collaborative_statistics(samples, target, prior_strength=0)
    assert statistics.item_prior_ratings.tolist() == [1]  # only user 3's rating at t=199
    assert statistics.item_mean_rating.tolist() == [5.0]


def test_later_ratings_never_change_earlier_statistics(tmp_path):
    lines = random_ml1m_ratings(7, users=12, per_user=(7, 8), span=60)
    samples, _ = ml1m_samples(tmp_path, lines, users=12, name="base")
    base = pd.concat(samples.splits.values())
    base_statistics = CollaborativeIndex(samples, STRENGTH).statistics(base).frame()
    base_statistics.index = pd.MultiIndex.from_frame(base[["user_id", "item_id"]])
    ratings = parse_ratings(lines)
    # Samples need min_history earlier ratings, so they are late: cut among their times.
    cut = int(np.percentile(base.timestamp, 30))
    generator = np.random.default_rng(0)
    later = np.flatnonzero(ratings.timestamp.to_numpy() > cut)
    for variant, change in enumerate(["rating", "delete"]):
        edited = ratings.copy()
        picked = generator.choice(later, size=max(1, len(later) // 2), replace=False)
        if change == "rating":
            edited.loc[picked, "rating"] = 6 - edited.loc[picked, "rating"]
        else:
            edited = edited.drop(index=picked)
        edited_lines = [f"{u}::{i}::{r}::{t}" for u, i, r, t in edited.itertuples(index=False)]
        samples_edited, _ = ml1m_samples(tmp_path, edited_lines, users=12, name=f"edited{variant}")
        frame = pd.concat(samples_edited.splits.values())
        statistics = CollaborativeIndex(samples_edited, STRENGTH).statistics(frame).frame()
        statistics.index = pd.MultiIndex.from_frame(frame[["user_id", "item_id"]])
        early = frame.timestamp.to_numpy() <= cut
        assert early.any()
        pd.testing.assert_frame_equal(statistics[early], base_statistics.loc[statistics.index[early]])


def test_a_samples_own_rating_never_counts(tmp_path):
    lines = random_ml1m_ratings(3)
    samples, _ = ml1m_samples(tmp_path, lines, name="a")
    frame = samples.splits["test"]
    row = next(frame.iloc[-1:].itertuples())
    flipped = [line if not line.startswith(f"{row.user_id}::{row.item_id}::") else
               f"{row.user_id}::{row.item_id}::{5 if row.rating < 3 else 1}::{row.timestamp}" for line in lines]
    assert flipped != lines
    samples_flipped, _ = ml1m_samples(tmp_path, flipped, name="b")
    for built in (samples, samples_flipped):
        test = built.splits["test"]
        own = test[(test.user_id == row.user_id) & (test.item_id == row.item_id)]
        statistics = collaborative_statistics(built, own, STRENGTH).frame()
        if built is samples:
            first = statistics
    pd.testing.assert_frame_equal(first, statistics)


def oracle_book_crossing(samples, frame_row, strength: float, threshold: float = 4) -> dict:
    """Book-Crossing by brute force: the train users' ratings (histories and targets) minus the sample's own."""
    log = samples.log
    train = samples.splits["train"]
    parts = []
    for offset, length in zip(train.history_offset, train.history_length):
        parts.append(log.iloc[offset: offset + length + 1])
    reference = pd.concat(parts)
    own_position = frame_row.history_offset + frame_row.history_length
    reference = reference.drop(index=own_position, errors="ignore")
    prior_mean = reference.rating.mean() if len(reference) else 5.0
    prior_rate = (reference.rating > threshold).mean() if len(reference) else 0.5
    item = reference[reference.item_row == frame_row.item_row]
    history = log.iloc[frame_row.history_offset: frame_row.history_offset + frame_row.history_length]
    return oracle_row(item, history, prior_mean, prior_rate, strength, threshold)


def test_book_crossing_statistics_come_from_the_train_split_only(tmp_path):
    folder = write_book_crossing(tmp_path / "bx", bx_many_rating_lines(seed=4))
    samples = load_samples("BookCrossing", folder)
    assert len(samples.splits["test"]) >= 1
    index = CollaborativeIndex(samples, STRENGTH)
    for frame in samples.splits.values():
        expected = [oracle_book_crossing(samples, row, STRENGTH) for row in frame.itertuples()]
        assert_matches(index.statistics(frame), expected)


def test_shown_item_means_are_as_of_the_samples_time(tmp_path):
    lines = random_ml1m_ratings(5)
    samples, _ = ml1m_samples(tmp_path, lines)
    ratings = parse_ratings(lines)
    frame = samples.splits["train"]
    positions = np.concatenate([np.arange(o, o + n) for o, n in zip(frame.history_offset, frame.history_length)])
    offsets = np.concatenate([[0], np.cumsum(frame.history_length.to_numpy())])
    means = CollaborativeIndex(samples, STRENGTH).shown_item_means(frame, positions, offsets)
    item_ids = samples.items.item_id.to_numpy()[samples.log.item_row.to_numpy()[positions]]
    times = np.repeat(frame.timestamp.to_numpy(), frame.history_length.to_numpy())
    for mean, item, time in zip(means, item_ids, times):
        earlier = ratings[ratings.timestamp < time]
        prior = earlier.rating.mean() if len(earlier) else 3.0
        item_ratings = earlier[earlier.item_id == item].rating
        assert mean == pytest.approx((item_ratings.sum() + STRENGTH * prior) / (len(item_ratings) + STRENGTH), rel=1e-5)


def test_notes_word_the_statistics_per_corpus_noun(tmp_path):
    samples, _ = ml1m_samples(tmp_path, random_ml1m_ratings(1))
    statistics = collaborative_statistics(samples, samples.splits["train"], STRENGTH)
    assert collaborative_notes(statistics, "none", "movie", 5) is None
    item = collaborative_notes(statistics, "item", "book", 10)
    assert all(note.startswith("Other users rated this book ") and " out of 10 " in note
               or note == "No other user has rated this book yet." for note in item)
    both = collaborative_notes(statistics, "item+user", "movie", 5)
    assert all(note.startswith("The user has rated ") for note in both)
    with pytest.raises(ConfigError, match="collaborative='items' is not one of"):
        collaborative_notes(statistics, "items", "movie", 5)


def test_collaborative_option_adds_columns_and_a_line_and_none_is_unchanged(tmp_path):
    import rella_hf

    folder = write_ml1m(tmp_path / "ml1m", random_ml1m_ratings(2))
    write_users(folder, 6)
    plain = rella_hf.load_dataset("ml-1m", K=3, data_dir=folder, chat_model=None, split="train")
    rich = rella_hf.load_dataset("ml-1m", K=3, data_dir=folder, chat_model=None, split="train", collaborative="item+user")
    assert "item_mean_rating" not in plain.column_names
    assert set(rich.column_names) - set(plain.column_names) == {
        "item_prior_ratings", "item_mean_rating", "item_positive_rate", "user_history_length", "user_mean_rating"}
    for before, after in zip(plain, rich):
        lines = after["raw_prompt"].split("\n")
        assert lines[3].startswith("The user has rated ")
        assert "\n".join(lines[:3] + lines[4:]) == before["raw_prompt"]
        assert after["completion"] == before["completion"]
    every = rella_hf.load_dataset("ml-1m", K=3, data_dir=folder, chat_model=None, split="train", collaborative="all")
    assert all("(others: " in prompt for prompt in every["raw_prompt"])
    assert every["history_item_ids"] == plain["history_item_ids"]


@pytest.mark.parametrize("value, strength, message", [
    ("yes", 10.0, "collaborative='yes' is not one of none, item, item\\+user, all"),
    ("item", -1.0, "prior_strength=-1.0 must be a finite number"),
])
def test_bad_collaborative_options(value, strength, message):
    import rella_hf

    with pytest.raises(ConfigError, match=message):
        rella_hf.load_dataset("ml-latest-small", K=5, collaborative=value, prior_strength=strength)
