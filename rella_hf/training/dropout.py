"""LoRA dropout with a cheap mask: the same dropout at a fraction of ``nn.Dropout``'s cost on CPU.

``torch.nn.Dropout`` draws its mask with ``bernoulli_``, which on CPU took 16 % of a ReiT
training step (19 ms per q/v projection of an 8 x 300-token batch, 600 calls a step; profile in
``benchmarks/RESULTS.md``). A uniform draw compared with ``p`` gives the same distribution of
masks; on CPU the uniform numbers come as 16-bit pieces of 64-bit random words (three per word),
a third of ``torch.rand``'s generator calls: 7.6 -> 5.1 ms per mask of that size. The drop
probability is then ``p`` rounded to a multiple of 2**-16 (off by at most 7.7e-6).
"""

from __future__ import annotations

import math
import sys

import torch

# int64.random_() fills [0, 2**63): its three low 16-bit pieces are uniform, the top one lacks a bit.
_LOW_PIECES = slice(0, 3) if sys.byteorder == "little" else slice(1, 4)


def uniform_int16(numel: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``numel`` independent integers uniform over the whole int16 range (-32768..32767).

    Args:
        numel: how many.
        device: where to draw them (the default generator of that device).
    """
    words = torch.empty((numel + 2) // 3, dtype=torch.int64, device=device).random_()
    return words.view(torch.int16).view(-1, 4)[:, _LOW_PIECES].reshape(-1)[:numel]


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """A boolean mask that is False with probability ``p`` (to 2**-16) for each element, independently.

    Args:
        shape: mask shape.
        p: drop probability, in [0, 1).
        device: the mask's device; off the CPU it is ``torch.rand(shape) >= p``.
    """
    if torch.device(device).type != "cpu":
        return torch.rand(shape, device=device) >= p
    threshold = -32768 + round(p * 65536)
    return (uniform_int16(math.prod(shape), device) >= threshold).view(shape)


class UniformDropout(torch.nn.Module):
    """Inverted dropout: zero each element with probability ``p``, scale the rest by ``1 / (1 - p)``.

    Args:
        p: drop probability, in [0, 1).
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return hidden
        keep = keep_mask(hidden.shape, self.p, hidden.device)
        return hidden * (keep.to(hidden.dtype) * (1.0 / (1.0 - self.p)))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_uniform_lora_dropout(model) -> int:
    """Swap the ``nn.Dropout`` of every LoRA layer of ``model`` for :class:`UniformDropout`.

    Args:
        model: a PEFT-wrapped model.

    Returns:
        How many dropout modules were swapped.
    """
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in list(dropouts.items()):
            if type(dropout) is torch.nn.Dropout:
                replacement = UniformDropout(dropout.p)
                replacement.train(dropout.training)
                dropouts[name] = replacement
                swapped += 1
    return swapped
