"""Seeded subsets: the one random draw of rows in rella-hf (split sample sizes, evaluation rows, fixed test subsets)."""

from __future__ import annotations

import numpy as np

from .errors import ConfigError


def seeded_positions(count: int, size: int | None, seed: int) -> np.ndarray | None:
    """Sorted positions of a seeded random subset of ``size`` out of ``count`` rows, or None to keep all.

    The one subset draw of rella-hf: the split sample sizes (:func:`split_plan`), the evaluation rows of
    ReiT, the demo's and the CLI's fixed test subsets all call it, so the same ``(count, size, seed)``
    always picks the same rows.

    Args:
        count: rows to draw from.
        size: rows to keep; None, or a size of at least ``count``, keeps every row (returns None).
        seed: seed of the draw (``numpy.random.default_rng``).
    """
    if size is None or size >= count:
        return None
    if size < 0:
        raise ConfigError(f"a subset size must be at least 0, got {size}; pass a size from 0 to {count} or None.")
    return np.sort(np.random.default_rng(seed).choice(count, size=size, replace=False))


def seeded_subset(dataset, size: int | None, seed: int):
    """A seeded subset of ``size`` rows of a ``datasets.Dataset``, in dataset order (see :func:`seeded_positions`).

    The same rows for every prompt kind built from the same samples; the dataset itself when ``size``
    is None or at least its length.

    Args:
        dataset: the rows to draw from (anything with ``len`` and ``select``).
        size: rows to keep.
        seed: seed of the draw.
    """
    positions = seeded_positions(len(dataset), size, seed)
    return dataset if positions is None else dataset.select(positions.tolist())
