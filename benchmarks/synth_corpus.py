"""A synthetic corpus in the exact MovieLens-25M CSV format, with ML-25M's shape, at any scale.

The real ML-25M may not be redistributed and is large; this writes ``movies.csv`` and
``ratings.csv`` byte-compatible with the release (UTF-8, CRLF line ends, headers
``movieId,title,genres`` and ``userId,movieId,rating,timestamp``, titles quoted only when they
hold a comma or a double quote, ratings sorted by user then movie, half stars printed ``3.5``)
and with its shape at 100 %: 162,541 users, 62,423 movies of which 59,047 are rated, 25,000,095
ratings, every user with at least 20 ratings and a heavy tail (the busiest with tens of
thousands), the release's exact histogram of the ten rating values, and timestamps between
1995-01-09 and 2019-11-21, mostly in short sessions.

Scaling: users and ratings scale with the fraction; the catalogue with its square root (a user
sample of a long-tailed catalogue still meets most of it), so 1 % is 1,625 users, 250,001
ratings and 6,242 movies (5,905 rated).

Semantic structure, so that retrieval has something to find: every movie has a topic genre whose
words make up most of its title ("Haunted Crypt (1987)" is Horror, "Galaxy Protocol, The (2011)"
Sci-Fi), some movies are sequels of another's title; every user has a taste over topics
(a peaked Dirichlet) that drives both which movies they rate and how well (ratings rise with the
user's affinity to the movie's topic, the movie's quality and the user's bias). Timestamps are not
tied to release years and tastes do not drift.

Everything is vectorised numpy; the 100 % corpus takes about a minute on two shared cores (2 GB peak RSS).

Usage: python benchmarks/synth_corpus.py --percent 1 [--out /tmp/rella-synth/1pct] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

# --- The release's shape (ML-25M README and files) ------------------------------------------
ML25M_USERS = 162_541
ML25M_RATINGS = 25_000_095
ML25M_MOVIES = 62_423
ML25M_RATED_MOVIES = 59_047
ML25M_MAX_MOVIE_ID = 209_171
MIN_RATINGS_PER_USER = 20
FIRST_TIMESTAMP = 789_652_009  # 1995-01-09 11:46:49 UTC, the release's first rating
LAST_TIMESTAMP = 1_574_327_703  # 2019-11-21 09:15:03 UTC, its last
RATING_VALUES = ("0.5", "1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0", "4.5", "5.0")
# How many ratings of each value the release has (they sum to 25,000,095).
RATING_COUNTS = (393_068, 776_815, 399_490, 1_640_868, 1_262_797, 4_896_928, 3_177_318, 6_639_798, 2_200_539, 3_612_474)

# Genre name -> (movies listing it in ML-25M's movies.csv, approximate share of ratings of movies
# with it as their main genre, in percent). The ratings share steers users' tastes.
GENRES: dict[str, tuple[int, float]] = {
    "Action": (7348, 15.0), "Adventure": (4145, 8.0), "Animation": (2929, 3.0), "Children": (2935, 2.5),
    "Comedy": (16870, 16.0), "Crime": (5319, 6.0), "Documentary": (5605, 0.8), "Drama": (25606, 20.0),
    "Fantasy": (2731, 3.0), "Film-Noir": (353, 0.5), "Horror": (5989, 3.5), "IMAX": (195, 0.3),
    "Musical": (1054, 1.2), "Mystery": (2925, 2.5), "Romance": (7719, 5.0), "Sci-Fi": (3595, 6.0),
    "Thriller": (8654, 6.0), "War": (1874, 1.5), "Western": (1399, 1.0), "(no genres listed)": (5062, 0.05),
}
NO_GENRE = "(no genres listed)"
# How many genres a movie lists (1..5), ML-25M's proportions.
GENRES_PER_MOVIE = (30631, 18326, 9852, 2784, 830)
# Ratings per year the release holds (1995..2019), approximately; new users start in proportion.
YEAR_WEIGHTS = (0.01, 14.3, 6.3, 2.6, 10.6, 17.4, 10.3, 7.8, 9.1, 10.2, 13.7, 9.9, 9.2, 10.7, 8.1, 7.8, 6.6,
                6.1, 4.4, 4.5, 15.7, 16.9, 15.8, 13.1, 12.0)
# Release years of the catalogue (ML-25M titles), as (first year, last year, movies).
RELEASE_YEARS = ((1874, 1919, 511), (1920, 1949, 4971), (1950, 1969, 6566), (1970, 1979, 4958), (1980, 1989, 5181),
                 (1990, 1999, 6656), (2000, 2004, 5124), (2005, 2009, 7555), (2010, 2014, 10086), (2015, 2019, 10403))

# Title words per main genre (adjective-like, noun-like); titles draw mostly from their genre's words.
_TOPIC_WORDS: dict[str, tuple[str, str]] = {
    "Action": ("Lethal Rogue Deadly Iron Steel Rapid Savage Maximum Hard Fatal Brutal Armed Explosive Bulletproof "
               "Renegade Relentless", "Strike Force Mission Vengeance Fury Assault Target Bullet Showdown Commando "
               "Blast Impact Pursuit Mercenary Siege Payback"),
    "Adventure": ("Lost Hidden Golden Ancient Wild Forgotten Distant Secret Sunken Uncharted Great Legendary "
                  "Perilous Emerald Jade Far", "Treasure Island Expedition Quest Voyage Temple Jungle Kingdom Map "
                  "Journey Explorer Compass Odyssey Frontier Passage Pirates"),
    "Animation": ("Little Magic Tiny Brave Happy Silly Funny Bouncy Sparkly Cartoon Fluffy Merry Curious Rainbow "
                  "Bubbly Toon", "Bunny Dragon Robot Penguin Kitten Puppy Toys Fox Bear Critters Owl Balloon "
                  "Friends Island Forest Cloud"),
    "Children": ("Little Lucky Magic Super Happy Best Big Brave Silly Young Kind Friendly Clever Playful Sunny "
                 "Jolly", "Puppy Pony Kids School Summer Camp Pet Family Holiday Birthday Club Treehouse Elf "
                 "Wish Adventure Sleepover"),
    "Comedy": ("Crazy Funny Wild Lucky Awkward Dumb Naked Silly Bad Hot Weird Goofy Accidental Wacky Zany "
               "Clumsy", "Wedding Party Vacation Roommates Neighbors Bachelor Dad Boss Weekend Prank Road "
               "Trip Honeymoon Reunion Date Office"),
    "Crime": ("Dirty Dead Cold Blind Crooked Corrupt Silent Stolen Marked Shady Loaded Hot Bent Twisted Rotten "
              "Undercover", "Heist Mob Gangster Cop Deal Score Job Racket Alibi Cartel Witness Detective Killer "
              "Getaway Hustle Syndicate"),
    "Documentary": ("True Inside Real Untold Hidden Modern Secret American Global Living Endangered Unseen "
                    "Behind Forgotten Human Natural", "Story Lives World Planet History Oceans Voices "
                    "Revolution Nation Science Music Industry Frontline Archive Portrait Climate"),
    "Drama": ("Quiet Broken Silent Distant Last Bitter Long Lonely Tender Fragile Open Lasting Hollow Restless "
              "Gentle Heavy", "Letters Winter River Promise Mother Daughter Father Son Marriage Memory "
              "Silence Harvest Grief Shadows Season Farewell"),
    "Fantasy": ("Enchanted Dark Cursed Mystic Eternal Crystal Shadow Elven Fabled Sorcerous Sacred Moonlit "
                "Forbidden Mythic Magical Arcane", "Sword Sorcerer Wizard Realm Throne Spell Prophecy Dragon "
                "Unicorn Amulet Witch Crown Oracle Kingdom Giant Fairy"),
    "Film-Noir": ("Dark Deadly Naked Crooked Midnight Shadowed Fallen Rainy Smoky Double Cornered Desperate "
                  "Sinister Lost Murderous Nocturnal", "City Alley Dame Street Detour Homicide Gun Blonde "
                  "Lady Rain Underworld Hotel Pickup Kiss Mask Window"),
    "Horror": ("Haunted Bloody Evil Cursed Undead Zombie Demonic Creepy Wicked Possessed Rotting Unholy Grim "
               "Sinister Ghastly Silent", "House Crypt Night Massacre Terror Ghost Curse Slasher Cabin Asylum "
               "Nightmare Witch Demon Graveyard Exorcism Scream"),
    "IMAX": ("Giant Deep Extreme Vast Grand Soaring Cosmic Epic Majestic Polar Arctic Wild Blue Mighty "
             "Immense Towering", "Everest Reef Space Station Canyon Oceans Volcano Glacier Dolphins Whales "
             "Flight Sky Earth Galaxies Storm Mountain"),
    "Musical": ("Singing Dancing Golden Merry Swinging Jazzy Broadway Starlit Rhythmic Lovely Bright Melodic "
                "Sweet Happy Royal Grand", "Melody Song Dance Stage Showboat Chorus Ballad Serenade Tune "
                "Rhythm Revue Opera Waltz Harmony Jubilee Cabaret"),
    "Mystery": ("Missing Hidden Strange Vanishing Secret Silent Locked Unknown Unsolved Curious Puzzling "
                "Masked Nameless Eerie Cryptic Final", "Clue Riddle Manor Inspector Puzzle Key Stranger "
                "Disappearance Case Suspect Letter Portrait Mirror Cipher Enigma Inquest"),
    "Romance": ("Sweet Summer Endless Tender Secret Forever Lovely Bittersweet Perfect Sudden Paris Autumn "
                "First Lasting Gentle Roman", "Love Kiss Heart Romance Affair Valentine Bride Lovers Letters "
                "Sweetheart Passion Serenade Moonlight Proposal Honeymoon Embrace"),
    "Sci-Fi": ("Quantum Cyber Alien Stellar Galactic Robotic Atomic Orbital Synthetic Mutant Cosmic Neural "
               "Interstellar Digital Hyper Lunar", "Galaxy Robot Android Planet Protocol Starship Clone Nebula "
               "Colony Singularity Invasion Matrix Cyborg Portal Wormhole Outpost"),
    "Thriller": ("Deadly Dangerous Fatal Hidden Silent Final Dark Twisted Paranoid Frantic Lethal Breaking "
                 "Sudden Vicious Ruthless Desperate", "Conspiracy Hostage Trap Stranger Obsession Deception "
                 "Pursuit Countdown Ransom Witness Betrayal Panic Agenda Sniper Suspect Threat"),
    "War": ("Bloody Last Burning Iron Fallen Forgotten Brave Red Lost Final Eternal Glorious Broken Valiant "
            "Distant Frozen", "Battalion Front Battle Trenches Regiment Soldiers Platoon Bridge Beach Hill "
            "Siege Victory Squadron Sniper Campaign Convoy"),
    "Western": ("Lonesome Dusty Wild Gold Silver Rawhide Outlaw Desperate Savage Painted Red Lone Ragged "
                "Restless Forgotten Thunder", "Rider Gunfighter Sheriff Canyon Ranch Stagecoach Frontier "
                "Saloon Posse Bounty Trail Mesa Rustlers Marshal Pistol Sunset"),
    NO_GENRE: ("Other Certain Small Simple Common Plain Ordinary Various Minor Modest Routine Casual Local "
               "Usual Sundry Mixed", "Things Pieces Notes Sketches Moments Fragments Scenes Episodes Studies "
               "Reels Clips Takes Frames Shorts Bits Items"),
}
# Words any title may use (a few non-ASCII: the release is UTF-8 and has such titles).
_COMMON_ADJECTIVES = ("Big Little Old New Last First Long Dark Bright Golden Blue Red White Black Second Lost "
                      "Great Small Strange Young Café Señor Noël").split()
_COMMON_NOUNS = ("Man Woman Day Night City Story Life World Time House Road Heart Dream Game Girl Boy Sun Moon "
                 "Summer Winter Town River Light Way Fête Mañana").split()
_NAMES = "Jack Marie Tom Anna Charlie Rosa Harry Lucy Max Emma Frank Nina Oscar Ruby Victor Zoe".split()


@dataclass(frozen=True)
class SyntheticShape:
    """How big a synthetic corpus is.

    Attributes:
        users: users (ids 1..users), each with at least 20 ratings.
        ratings: ratings in total.
        movies: movies in ``movies.csv``.
        rated_movies: movies with at least one rating (the others only appear in ``movies.csv``).
    """

    users: int
    ratings: int
    movies: int
    rated_movies: int


def shape_for(fraction: float) -> SyntheticShape:
    """ML-25M's shape scaled by ``fraction`` (1.0 = the release's exact counts).

    Users and ratings scale linearly, the catalogue with ``sqrt(fraction)``.

    Args:
        fraction: in (0, 1]; e.g. 0.01 for 1 %.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction} is out of range; expected 0 < fraction <= 1 (e.g. 0.01 for 1 %)")
    users = max(1, round(ML25M_USERS * fraction))
    ratings = max(users * MIN_RATINGS_PER_USER, round(ML25M_RATINGS * fraction))
    movies = max(50, round(ML25M_MOVIES * fraction ** 0.5))
    rated = min(movies, max(40, round(ML25M_RATED_MOVIES * fraction ** 0.5)))
    return SyntheticShape(users=users, ratings=ratings, movies=movies, rated_movies=rated)


# --------------------------------------------------------------------------------------------
# Movies
# --------------------------------------------------------------------------------------------


def _apportion(total: int, weights) -> np.ndarray:
    """Split ``total`` into integer parts proportional to ``weights`` (largest remainders)."""
    weights = np.asarray(weights, dtype=np.float64)
    exact = total * weights / weights.sum()
    parts = np.floor(exact).astype(np.int64)
    remainder = total - int(parts.sum())
    parts[np.argsort(-(exact - parts), kind="stable")[:remainder]] += 1
    return parts


def _pick(rng: np.random.Generator, words: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One random word per entry from row ``rows[i]`` of the ``[topics, words]`` table."""
    return words[rows, rng.integers(0, words.shape[1], size=len(rows))]


def _make_movies(rng: np.random.Generator, shape: SyntheticShape) -> pd.DataFrame:
    """The catalogue: id, title, genres, topic index, popularity weight (0 when unrated), quality."""
    names = list(GENRES)
    n = shape.movies
    max_id = max(n, round(ML25M_MAX_MOVIE_ID * n / ML25M_MOVIES))
    ids = np.sort(np.concatenate([rng.choice(max_id - 1, size=n - 1, replace=False) + 1, [max_id]]))

    topic = rng.choice(len(names), size=n, p=_normalised([GENRES[g][0] for g in names]))
    # Extra genres, listed alphabetically with the topic as the release does ("Adventure|Comedy").
    genre_count = rng.choice(np.arange(1, 6), size=n, p=_normalised(GENRES_PER_MOVIE))
    has_genre = np.zeros((n, len(names)), dtype=bool)
    has_genre[np.arange(n), topic] = True
    real = np.array([g != NO_GENRE for g in names])
    extra_p = _normalised([GENRES[g][0] * (g != NO_GENRE) for g in names])
    for slot in range(1, 5):
        extra = rng.choice(len(names), size=n, p=extra_p)
        adds = (genre_count > slot) & (topic != names.index(NO_GENRE))
        has_genre[np.flatnonzero(adds), extra[adds]] = True
    genres = pd.Series("", index=range(n), dtype=object)
    for column in np.argsort(names):  # alphabetical, as in the release
        genres = genres + np.where(has_genre[:, column] & real[column], names[column] + "|", "")
    genres = genres.str.rstrip("|").where(topic != names.index(NO_GENRE), NO_GENRE)

    # Titles: mostly the topic's words, sometimes common words, names and sequels.
    adjectives = np.array([_TOPIC_WORDS[g][0].split() for g in names], dtype=object)
    nouns = np.array([_TOPIC_WORDS[g][1].split() for g in names], dtype=object)
    common_adj = np.array(_COMMON_ADJECTIVES, dtype=object)
    common_noun = np.array(_COMMON_NOUNS, dtype=object)
    adjective, noun, noun2 = _pick(rng, adjectives, topic), _pick(rng, nouns, topic), _pick(rng, nouns, topic)
    c_adj = common_adj[rng.integers(0, len(common_adj), n)]
    c_noun = common_noun[rng.integers(0, len(common_noun), n)]
    name = np.array(_NAMES, dtype=object)[rng.integers(0, len(_NAMES), n)]
    patterns = [
        (0.26, adjective + " " + noun),
        (0.14, noun + ", The"),  # the release's "Title, The (Year)" convention (quoted: it has a comma)
        (0.08, "The " + adjective + " " + noun),
        (0.14, noun + " of the " + c_noun),
        (0.12, c_adj + " " + noun),
        (0.08, noun),
        (0.08, name + "'s " + noun),
        (0.06, adjective + " " + noun + ": " + c_adj + " " + noun2),
        (0.035, noun + " and " + noun2),
        (0.001, adjective + ' "' + c_noun + '" ' + noun),  # double quotes are doubled inside quoted titles
    ]
    which = rng.choice(len(patterns), size=n, p=_normalised([p for p, _ in patterns]))
    base = np.select([which == k for k in range(len(patterns))], [text for _, text in patterns]).astype(object)
    # Sequels reuse an earlier movie's title of the same topic.
    sequel = np.flatnonzero(rng.random(n) < 0.04)
    parent = _same_topic_partner(rng, topic, sequel)
    base[sequel] = base[parent] + np.array([" 2", " 3", " II", ": Part II", " Returns"], dtype=object)[
        rng.integers(0, 5, len(sequel))]
    years = _release_years(rng, n)
    with_year = rng.random(n) >= 0.0066  # a few release titles carry no year
    titles = np.where(with_year, base + " (" + years.astype(str).astype(object) + ")", base)

    # Popularity: Zipf-like, mostly the older additions (low ids, as in the release), damped for
    # genre-less movies; unrated ones (mostly the newest additions) get weight 0.
    rank = np.empty(n)
    rank[np.argsort(np.arange(n) / n + rng.normal(0, 0.25, n), kind="stable")] = np.arange(1, n + 1)
    popularity = (rank + 10) ** -1.0 * np.where(topic == names.index(NO_GENRE), 0.05, 1.0)
    unrated_count = shape.movies - shape.rated_movies
    newest_bias = _normalised((np.arange(1, n + 1) / n) ** 6)
    unrated = rng.choice(n, size=unrated_count, replace=False, p=newest_bias) if unrated_count else np.array([], int)
    popularity[unrated] = 0.0
    # Popular movies are rated somewhat higher, as in the release.
    log_rank = np.log(rank)
    quality = -0.25 * (log_rank - log_rank.mean()) / max(log_rank.std(), 1e-9) + rng.normal(0, 0.45, n)
    return pd.DataFrame({"movie_id": ids, "title": titles, "genres": genres.to_numpy(), "topic": topic,
                         "popularity": popularity, "quality": quality})


def _normalised(weights) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64)
    return weights / weights.sum()


def _same_topic_partner(rng: np.random.Generator, topic: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each of ``rows``, a random movie of the same topic (possibly itself)."""
    by_topic = np.argsort(topic, kind="stable")
    starts = np.searchsorted(topic[by_topic], topic[rows], side="left")
    stops = np.searchsorted(topic[by_topic], topic[rows], side="right")
    return by_topic[starts + (rng.random(len(rows)) * (stops - starts)).astype(np.int64)]


def _release_years(rng: np.random.Generator, n: int) -> np.ndarray:
    """Release years with the release's distribution, later ids mostly newer (as movies were added)."""
    spans = np.array([(first, last) for first, last, _ in RELEASE_YEARS])
    bucket = rng.choice(len(spans), size=n, p=_normalised([count for *_, count in RELEASE_YEARS]))
    years = rng.integers(spans[bucket, 0], spans[bucket, 1] + 1)
    order = np.argsort(np.arange(n) / n + rng.normal(0, 0.35, n), kind="stable")
    out = np.empty(n, dtype=np.int64)
    out[order] = np.sort(years)
    return out


# --------------------------------------------------------------------------------------------
# Users and ratings
# --------------------------------------------------------------------------------------------


def _ratings_per_user(rng: np.random.Generator, shape: SyntheticShape) -> np.ndarray:
    """At least 20 each, log-normal excess (median 71, mean 154 at ML-25M's scale), summing exactly."""
    cap = max(MIN_RATINGS_PER_USER, int(0.55 * shape.rated_movies))
    if shape.ratings > cap * shape.users:
        raise ValueError(f"{shape.ratings:,} ratings cannot fit {shape.users:,} users of at most {cap:,} ratings each")
    excess = rng.lognormal(mean=3.93, sigma=1.39, size=shape.users)
    budget = shape.ratings - MIN_RATINGS_PER_USER * shape.users
    counts = np.zeros(shape.users, dtype=np.int64)
    free = np.ones(shape.users, dtype=bool)
    # Scale the excess to the budget; users over the cap are pinned at it and the rest rescaled.
    for _ in range(100):
        scaled = np.floor(excess * (budget - counts[~free].sum()) / excess[free].sum())
        counts[free] = scaled[free]
        over = free & (counts > cap - MIN_RATINGS_PER_USER)
        if not over.any():
            break
        counts[over] = cap - MIN_RATINGS_PER_USER
        free &= ~over
    counts += MIN_RATINGS_PER_USER
    short = shape.ratings - int(counts.sum())
    room = np.flatnonzero(counts < cap)
    counts[rng.choice(room, size=short, replace=False)] += 1
    return counts


def _draw_items(rng, slot_users, cum_taste, topic_offsets, cum_popularity, sorted_items):
    """An item per slot: a topic from the slot's user's taste, then a movie of it by popularity."""
    topics = cum_taste.shape[1]
    users = slot_users.astype(np.int64)
    topic = np.searchsorted(cum_taste.ravel(), users + rng.random(len(users)), side="right") - users * topics
    topic = np.minimum(topic, topics - 1)
    within = np.searchsorted(cum_popularity, topic + rng.random(len(users)), side="right")
    # Guard the float edge: stay inside the topic's block of sorted items.
    within = np.clip(within, topic_offsets[topic], topic_offsets[topic + 1] - 1)
    return sorted_items[within]


def _make_ratings(rng: np.random.Generator, shape: SyntheticShape, movies: pd.DataFrame, progress: bool) -> pd.DataFrame:
    names = list(GENRES)
    topics = len(names)
    counts = _ratings_per_user(rng, shape)
    slot_users = np.repeat(np.arange(shape.users, dtype=np.int32), counts)
    user_start = np.zeros(shape.users + 1, dtype=np.int64)
    np.cumsum(counts, out=user_start[1:])

    topic_of = movies["topic"].to_numpy()
    popularity = movies["popularity"].to_numpy()
    ratable = np.flatnonzero(popularity > 0)
    has_items = np.bincount(topic_of[ratable], minlength=topics) > 0
    share = _normalised([GENRES[g][1] for g in names]) * has_items
    share /= share.sum()
    # Tastes: a peaked Dirichlet around the ratings share, mixed with the share itself.
    taste = 0.2 * share + 0.8 * rng.dirichlet(np.maximum(share * 3.0, 1e-3), size=shape.users) * has_items
    taste /= taste.sum(axis=1, keepdims=True)
    cum_taste = np.cumsum(taste, axis=1) + np.arange(shape.users)[:, None]
    cum_taste[:, -1] = np.arange(1, shape.users + 1)

    sorted_items = ratable[np.argsort(topic_of[ratable], kind="stable")]
    sorted_topics = topic_of[sorted_items]
    topic_offsets = np.searchsorted(sorted_topics, np.arange(topics + 1))
    weights = popularity[sorted_items]
    cum_popularity = np.empty(len(sorted_items))
    for t in np.flatnonzero(has_items):  # per topic (20), vectorised within
        block = slice(topic_offsets[t], topic_offsets[t + 1])
        cum_popularity[block] = t + np.cumsum(weights[block]) / weights[block].sum()
        cum_popularity[topic_offsets[t + 1] - 1] = t + 1

    items = np.empty(shape.ratings, dtype=np.int32)
    # Every rated movie is rated at least once: seed each into a distinct random slot, and move
    # seeds to the front of their user's block so deduplication (keep first) always keeps them.
    seed_slots = rng.choice(shape.ratings, size=len(ratable), replace=False)
    seeds_per_user = np.bincount(slot_users[seed_slots], minlength=shape.users)
    seed_rank = np.arange(len(ratable)) - np.repeat(np.cumsum(seeds_per_user) - seeds_per_user, seeds_per_user)
    seed_positions = np.repeat(user_start[:-1], seeds_per_user) + seed_rank
    is_seed = np.zeros(shape.ratings, dtype=bool)
    is_seed[seed_positions] = True
    items[seed_positions] = rng.permutation(ratable)
    todo = np.flatnonzero(~is_seed)
    n_movies = len(movies)
    for round_ in range(200):
        if round_ < 3:
            items[todo] = _draw_items(rng, slot_users[todo], cum_taste, topic_offsets, cum_popularity, sorted_items)
        else:  # heavy users exhaust their favourite topics: fill the rest uniformly
            items[todo] = ratable[rng.integers(0, len(ratable), len(todo))]
        touched = np.zeros(shape.users, dtype=bool)
        touched[slot_users[todo]] = True
        check = np.flatnonzero(touched[slot_users])
        keys = slot_users[check].astype(np.int64) * n_movies + items[check]
        todo = check[pd.Series(keys).duplicated(keep="first").to_numpy()]
        if progress:
            print(f"  dedup round {round_}: {len(todo):,} repeated (user, movie) pairs redrawn", file=sys.stderr)
        if len(todo) == 0:
            break
    else:  # pragma: no cover - the uniform rounds shrink the repeats geometrically
        raise RuntimeError("could not draw distinct movies per user")

    ratings = _rating_values(rng, shape, slot_users, items, taste, movies)
    timestamps = _timestamps(rng, shape, slot_users, counts)
    movie_ids = movies["movie_id"].to_numpy()[items]
    order = np.argsort(slot_users.astype(np.int64) * (int(movie_ids.max()) + 1) + movie_ids, kind="stable")
    return pd.DataFrame({"user": slot_users[order], "movie_id": movie_ids[order], "rating": ratings[order],
                         "timestamp": timestamps[order]})


def _rating_values(rng, shape, slot_users, items, taste, movies) -> np.ndarray:
    """Rating value index (0..9) per slot: latent liking mapped onto the release's histogram."""
    topic = movies["topic"].to_numpy()[items]
    affinity = np.log(taste[slot_users, topic] + 1e-3)
    affinity = (affinity - affinity.mean()) / max(affinity.std(), 1e-9)
    user_bias = rng.normal(0, 0.45, shape.users).astype(np.float32)
    latent = (0.55 * affinity + movies["quality"].to_numpy()[items] + user_bias[slot_users]
              + rng.normal(0, 0.8, len(items))).astype(np.float32)
    order = np.argsort(latent, kind="stable")
    value = np.empty(len(items), dtype=np.int8)
    value[order] = np.repeat(np.arange(len(RATING_VALUES), dtype=np.int8), _apportion(len(items), RATING_COUNTS))
    return value


def _timestamps(rng, shape, slot_users, counts) -> np.ndarray:
    """Each user starts in a year weighted like the release; most rate in one session, others return for months."""
    year = rng.choice(len(YEAR_WEIGHTS), size=shape.users, p=_normalised(YEAR_WEIGHTS)) + 1995
    year_start = (year - 1970).astype("datetime64[Y]").astype("datetime64[s]").astype(np.int64)
    start = np.clip(year_start + rng.random(shape.users) * 365.25 * 86400, FIRST_TIMESTAMP, LAST_TIMESTAMP)
    returning = rng.random(shape.users) < 0.45
    span = np.where(returning, rng.lognormal(np.log(150 * 86400), 1.4, shape.users),
                    rng.lognormal(np.log(3600), 1.3, shape.users) * np.sqrt(counts / 50))
    span = np.minimum(span, LAST_TIMESTAMP - start)
    relative = rng.random(len(slot_users)) ** 1.5
    # Old bulk imports stamped many ratings with the same second: a few distinct times per such user.
    bulk = rng.random(shape.users) < 0.15
    relative = np.where(bulk[slot_users], np.floor(relative * 4) / 4, relative)
    return (start[slot_users] + relative * span[slot_users]).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _quote_csv(values: pd.Series) -> pd.Series:
    """Quote the fields that need it (comma or double quote), doubling inner quotes, as the release does."""
    needs = values.str.contains('[,"]', regex=True)
    quoted = '"' + values.str.replace('"', '""', regex=False) + '"'
    return quoted.where(needs, values)


def _atomic_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_movies(movies: pd.DataFrame, path: Path) -> None:
    """Write ``movies.csv`` (CRLF, UTF-8, header ``movieId,title,genres``) atomically."""
    lines = movies["movie_id"].astype(str) + "," + _quote_csv(movies["title"]) + "," + movies["genres"]
    temporary = _atomic_path(path)
    temporary.write_bytes(("movieId,title,genres\r\n" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    os.replace(temporary, path)


def write_ratings(ratings: pd.DataFrame, path: Path) -> None:
    """Write ``ratings.csv`` (CRLF, header ``userId,movieId,rating,timestamp``) atomically with Arrow's CSV writer."""
    values = pa.DictionaryArray.from_arrays(pa.array(ratings["rating"].to_numpy()), pa.array(RATING_VALUES))
    table = pa.table({
        "userId": pa.array(ratings["user"].to_numpy().astype(np.int64) + 1),
        "movieId": pa.array(ratings["movie_id"].to_numpy()),
        "rating": values.cast(pa.string()),
        "timestamp": pa.array(ratings["timestamp"].to_numpy()),
    })
    temporary = _atomic_path(path)
    options = pacsv.WriteOptions(eol="\r\n", quoting_style="none", quoting_header="none", batch_size=1 << 16)
    pacsv.write_csv(table, temporary, write_options=options)
    os.replace(temporary, path)


def corpus_statistics(movies: pd.DataFrame, ratings: pd.DataFrame) -> dict:
    """Counts and tails to compare with the release (users, movies, per-user and per-movie ratings)."""
    per_user = np.bincount(ratings["user"].to_numpy())
    per_movie = ratings["movie_id"].value_counts().to_numpy()
    return {
        "users": int(len(per_user)),
        "movies": int(len(movies)),
        "rated_movies": int(len(per_movie)),
        "ratings": int(len(ratings)),
        "ratings_per_user": {"min": int(per_user.min()), "median": float(np.median(per_user)),
                             "mean": round(float(per_user.mean()), 1), "p99": float(np.percentile(per_user, 99)),
                             "max": int(per_user.max())},
        "ratings_per_movie": {"median": float(np.median(per_movie)), "max": int(per_movie.max())},
        "titles_quoted": int(movies["title"].str.contains('[,"]', regex=True).sum()),
    }


def generate(fraction: float, out_dir: str | os.PathLike, seed: int = 0, progress: bool = True) -> Path:
    """Write a synthetic ML-25M-format corpus (``movies.csv``, ``ratings.csv``, ``SYNTHETIC.json``).

    A folder already holding the same (fraction, seed) corpus is reused as it is.

    Args:
        fraction: ML-25M scale in (0, 1] (0.01 = 1 %).
        out_dir: folder to write (created); keep it outside the repository.
        seed: random seed; the same seed writes the same bytes.
        progress: print progress lines to stderr.

    Returns:
        The folder, ready for ``get_corpus("ml-25m").read(folder)``.
    """
    folder = Path(out_dir)
    shape = shape_for(fraction)
    meta_path = folder / "SYNTHETIC.json"
    # The generator's own source is part of the key, so an edited generator never reuses old files.
    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    wanted = {"generator": f"rella-hf benchmarks/synth_corpus.py@{source}", "fraction": fraction, "seed": seed,
              "shape": asdict(shape)}
    if meta_path.exists() and all((folder / name).exists() for name in ("movies.csv", "ratings.csv")):
        meta = json.loads(meta_path.read_text())
        if {key: meta.get(key) for key in wanted} == wanted:
            return folder
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    movies = _make_movies(rng, shape)
    ratings = _make_ratings(rng, shape, movies, progress)
    generated = time.perf_counter() - started
    write_movies(movies, folder / "movies.csv")
    write_ratings(ratings, folder / "ratings.csv")
    stats = corpus_statistics(movies, ratings)
    meta = {**wanted, "statistics": stats, "seconds": {"generate": round(generated, 1),
                                                       "total": round(time.perf_counter() - started, 1)},
            "note": "synthetic data in the MovieLens-25M file format; not MovieLens data"}
    temporary = _atomic_path(meta_path)
    temporary.write_text(json.dumps(meta, indent=2))
    os.replace(temporary, meta_path)
    if progress:
        print(f"wrote {folder} in {meta['seconds']['total']} s: {json.dumps(stats)}", file=sys.stderr)
    return folder


def default_folder(fraction: float) -> Path:
    """``/tmp/rella-synth/<percent>pct`` (outside the repository; never commit generated data)."""
    percent = fraction * 100
    label = f"{percent:g}".replace(".", "_")
    return Path(os.environ.get("RELLA_SYNTH_DIR", "/tmp/rella-synth")) / f"{label}pct"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--percent", type=float, default=1.0, help="scale of ML-25M in percent (1, 10, 100)")
    parser.add_argument("--out", default=None, help="output folder (default /tmp/rella-synth/<percent>pct)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    fraction = args.percent / 100
    print(generate(fraction, args.out or default_folder(fraction), seed=args.seed))


if __name__ == "__main__":
    main()
