"""Length-grouped training order that a resumed run reproduces exactly.

Grouping rows of similar length into the same batch keeps left padding small (K=5..30 prompts
run from ~190 to ~570 tokens). transformers' ``LengthGroupedSampler`` draws its order from the
global torch RNG when each epoch starts; a run resumed mid-epoch restores that RNG *after* the
draw, so it would continue in a different order than the run it resumes. This sampler draws
each epoch's order from ``(seed, epoch)`` alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


class SeededLengthGroupedSampler:
    """Shuffle rows, then sort them by length inside mega-batches, from ``(seed, epoch)`` only.

    Args:
        lengths: token count of every row.
        batch_size: rows per optimizer step (per-device batch x accumulation); a mega-batch is up
            to 50 of these, so order stays random at the scale of an epoch.
        seed: the run's seed.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = max(1, int(batch_size))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order :meth:`__iter__` yields (the Trainer calls this)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())

    def order(self) -> np.ndarray:
        """Row positions of this epoch: random mega-batches, longest rows first inside each."""
        rng = np.random.default_rng([self.seed, self.epoch])
        shuffled = rng.permutation(len(self.lengths))
        multiple = max(1, min(len(self.lengths) // (self.batch_size * 4), 50))
        mega = self.batch_size * multiple
        pieces = []
        for start in range(0, len(shuffled), mega):
            block = shuffled[start : start + mega]
            pieces.append(block[np.argsort(-self.lengths[block], kind="stable")])
        return np.concatenate(pieces) if pieces else shuffled
