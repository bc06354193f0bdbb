"""The per-user last-out split protocol (SASRec / ML-25M style): each user's last eligible sample is test,
the one before it validation, the rest train; seeded subsets drawn as :func:`rella_hf.samples.split_plan` draws them.

Both engines call these functions (:mod:`rella_hf.samples` in process, :mod:`rella_hf.spark.samples`), so they
keep the same samples.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError
from .subsets import seeded_positions


def last_out_codes(positions_from_end: np.ndarray) -> np.ndarray:
    """Split code of each sample under the per-user last-out protocol, from its place counted from its
    user's last rating: 0 (the last) -> test (2), 1 -> validation (1), the others -> train (0)."""
    return np.where(positions_from_end == 0, 2, np.where(positions_from_end == 1, 1, 0)).astype(np.int8)


def last_out_subsets(counts: dict[str, int], sizes: dict, seed: int) -> dict[str, tuple[int, int, np.ndarray | None]]:
    """Split name -> ``(0, count, chosen)`` of the last-out protocol, in :func:`split_plan`'s form: ``chosen``
    (sorted offsets into the split's samples in global order) is the seeded subset ``sizes`` asks for, drawn
    as :func:`split_plan` draws it, or None to keep all. Only the counts enter, so Spark draws the same."""
    return {name: (0, counts[name], seeded_positions(counts[name], sizes[name], seed))
            for name in ("train", "validation", "test")}


def last_out_plan(codes: np.ndarray, sizes: dict, seed: int) -> dict[str, np.ndarray]:
    """Split name -> ranks (into the global sample order) kept by the last-out protocol: each split's samples
    in global order, a seeded subset of them where ``sizes`` asks (:func:`last_out_subsets`)."""
    names = ("train", "validation", "test")
    members = {name: np.flatnonzero(codes == code).astype(np.int64) for code, name in enumerate(names)}
    subsets = last_out_subsets({name: len(rows) for name, rows in members.items()}, sizes, seed)
    return {name: members[name] if subsets[name][2] is None else members[name][subsets[name][2]] for name in names}


def last_out_ranks(sample_positions: np.ndarray, group_starts: np.ndarray, n: int,
                   protocol) -> dict[str, np.ndarray]:
    """The per-user last-out protocol (SASRec / ML-25M style) on the global sample order: each user's last
    eligible sample is test, the one before it validation, the rest train (``train_fraction`` and
    ``validation_fraction`` do not apply and are refused)."""
    if protocol.train_fraction is not None or protocol.validation_fraction is not None:
        raise ConfigError("train_fraction / validation_fraction cut the global time order; split_protocol="
                          "'user_last_out' puts each user's last sample in test and the one before in validation; "
                          "drop the fractions")
    ends = np.append(group_starts[1:], n)
    group_end = ends[np.searchsorted(group_starts, sample_positions, side="right") - 1]
    codes = last_out_codes(group_end - 1 - sample_positions)
    return last_out_plan(codes, protocol.sample_sizes(), protocol.sample_seed)
