"""Random numbers with one generator per data point.

A sampler that draws for a batch of data points from one generator gives each point
numbers that depend on which other points share its batch. With one generator per point,
seeded from the run's seed and the point's global index, a point's draws are the same
whether the data are evaluated in one batch, in chunks sized by a memory bound, or split
over several processes and merged.

Two samplers must never share a point's stream: draws from a generator seeded the same way
are the same numbers, not independent ones. A sampler that needs a second set of draws
for the same points takes them from :func:`stream_seed`.
"""

from typing import Sequence

import torch

# Mixes a point's index into the seed (an odd 64-bit constant, as in splitmix64), so that
# neighbouring points and neighbouring seeds get unrelated streams.
_MIX = 0x9E3779B97F4A7C15


def point_seed(seed: int, index: int) -> int:
    """The seed of data point ``index`` (its position in the whole split) under ``seed``."""
    return (seed * _MIX + (index + 1) * (_MIX >> 1)) % 2**63


def stream_seed(seed: int, stream: int) -> int:
    """The seed of independent random stream number ``stream`` (0, 1, ...) under ``seed``: a
    sampler that needs draws unrelated to those of ``seed`` itself (start states drawn by
    another generator, a pilot run, a second pass over the same points) seeds them here.

    :func:`point_seed` is affine, so it alone can map a seed back onto itself (seed 0,
    index -1 gives seed 0); splitmix64's step scrambles the result so that a stream's
    seed, and its points' seeds, are unrelated to the run's."""
    mixed = (point_seed(seed, -1 - stream) + _MIX) % 2**64
    mixed = ((mixed ^ (mixed >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    mixed = ((mixed ^ (mixed >> 27)) * 0x94D049BB133111EB) % 2**64
    return (mixed ^ (mixed >> 31)) % 2**63


class PointRandom:
    """Draws of shape ``(chains, points, ...)``: column ``i`` comes from the generator of the
    point with global index ``indices[i]``."""

    def __init__(self, seed: int, indices: Sequence[int], device="cpu", dtype=torch.float32):
        self.device, self.dtype = torch.device(device), dtype
        self.generators = []
        for index in indices:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(point_seed(seed, int(index)))
            self.generators.append(generator)

    def __len__(self) -> int:
        return len(self.generators)

    def normal(self, shape) -> torch.Tensor:
        """Standard normal draws of ``shape = (chains, points, ...)``."""
        return self._stack(torch.randn, shape)

    def uniform(self, shape) -> torch.Tensor:
        """Uniform draws on [0, 1) of ``shape = (chains, points, ...)``."""
        return self._stack(torch.rand, shape)

    def _stack(self, draw, shape) -> torch.Tensor:
        chains, points, *rest = shape
        if points != len(self.generators):
            raise ValueError(f"{points} points asked for, {len(self.generators)} generators")
        return torch.stack([draw((chains, *rest), generator=g, device=self.device, dtype=self.dtype)
                            for g in self.generators], dim=1)
