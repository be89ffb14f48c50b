"""When is a posterior multimodal? Separated modes of a density tabulated on a 2-D grid.

A grid density has many local maxima in name only: flat shoulders, ripples in the far
tail where the density is 1e-30, two nodes of equal height side by side. A mode worth the
name is high, separated from its neighbours by a real valley, and holds a real share of
the mass. The rule used throughout pyrovae (and in the teaching text) is:

1. Every node climbs by steepest ascent over its eight neighbours to a local maximum; the
   nodes reaching the same maximum form its basin, and the basin's mass is the sum of
   their (quadrature-weighted) densities.
2. Two adjacent basins are one mode unless the valley between them is deep: their saddle
   (the highest point on the best path from one peak to the other, the largest
   ``min(density)`` over grid edges joining the basins) must fall below ``saddle_ratio``
   (default 1/2) times the lower peak. Basins are merged in order of decreasing saddle
   height, so a chain of shallow ripples joins one mode.
3. A merged mode counts when it holds at least ``min_mass`` (default 5%) of the mass.

The posterior is *multimodal* when at least two modes count. Both thresholds are
arguments: 1/2 means a dip of log 2 = 0.69 nats below the lower peak, and 5% is the
smallest share a Gaussian approximation would visibly miss.
"""

from dataclasses import dataclass
from typing import List

import torch

DEFAULT_MIN_MASS = 0.05
DEFAULT_SADDLE_RATIO = 0.5


@dataclass(frozen=True)
class Mode:
    """One separated mode: the grid index of its peak, its log density and its mass share."""

    row: int
    col: int
    log_peak: float
    mass: float


def _neighbour_shifts():
    return [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]


def _shifted(t: torch.Tensor, dr: int, dc: int, fill: float) -> torch.Tensor:
    """``out[i, j] = t[i + dr, j + dc]`` where that index exists, ``fill`` elsewhere."""
    out = torch.full_like(t, fill)
    rows, cols = t.shape
    out[max(0, -dr):rows - max(0, dr), max(0, -dc):cols - max(0, dc)] = \
        t[max(0, dr):rows - max(0, -dr), max(0, dc):cols - max(0, -dc)]
    return out


def _basins(log_density: torch.Tensor) -> torch.Tensor:
    """The flat index of the local maximum every node reaches by steepest ascent."""
    rows, cols = log_density.shape
    index = torch.arange(rows * cols).reshape(rows, cols)
    best, target = log_density.clone(), index.clone()
    for dr, dc in _neighbour_shifts():
        value = _shifted(log_density, dr, dc, -float("inf"))
        higher = value > best
        best = torch.where(higher, value, best)
        target = torch.where(higher, _shifted(index, dr, dc, 0), target)
    target = target.flatten()
    while True:  # pointer jumping: follow the ascent until every node points at a maximum
        jumped = target[target]
        if torch.equal(jumped, target):
            return target.reshape(rows, cols)
        target = jumped


def find_modes(log_density: torch.Tensor, log_weight=None, min_mass: float = DEFAULT_MIN_MASS,
               saddle_ratio: float = DEFAULT_SADDLE_RATIO) -> List[Mode]:
    """The separated modes of a density tabulated on a 2-D grid (see the module's rule),
    largest mass first.

    ``log_density`` is ``(rows, cols)``, unnormalized is fine; ``log_weight`` (broadcastable,
    e.g. trapezoidal weights) turns node values into node masses.
    """
    if log_density.dim() != 2:
        raise ValueError("find_modes needs a density tabulated on a 2-D grid")
    log_density = log_density.double()
    log_mass = log_density if log_weight is None else log_density + torch.as_tensor(log_weight).double()
    mass = (log_mass - torch.logsumexp(log_mass.flatten(), 0)).exp()
    basin = _basins(log_density).flatten()
    flat = log_density.flatten()
    peaks = basin.unique()
    owner = {int(p): int(p) for p in peaks}  # union-find over peaks

    def root(p: int) -> int:
        while owner[p] != p:
            owner[p] = owner[owner[p]]
            p = owner[p]
        return p

    # saddles: for every pair of adjacent basins the highest min(density) over joining edges
    labels = basin.reshape(log_density.shape)
    saddles = {}
    for dr, dc in [(0, 1), (1, 0), (1, 1), (1, -1)]:
        other = _shifted(labels, dr, dc, -1)
        height = torch.minimum(log_density, _shifted(log_density, dr, dc, -float("inf")))
        joins = (other >= 0) & (other != labels)
        for a, b, h in zip(labels[joins].tolist(), other[joins].tolist(), height[joins].tolist()):
            key = (min(a, b), max(a, b))
            saddles[key] = max(saddles.get(key, -float("inf")), h)
    peak_height = {int(p): float(flat[p]) for p in peaks}
    for (a, b), h in sorted(saddles.items(), key=lambda item: -item[1]):
        ra, rb = root(a), root(b)
        if ra == rb:
            continue
        high, low = (ra, rb) if peak_height[ra] >= peak_height[rb] else (rb, ra)
        if h >= peak_height[low] + torch.log(torch.tensor(saddle_ratio, dtype=torch.float64)).item():
            owner[low] = high  # a shallow valley: one mode
    share = {}
    for p, m in zip(basin.tolist(), mass.flatten().tolist()):
        r = root(p)
        share[r] = share.get(r, 0.0) + m
    cols = log_density.shape[1]
    modes = [Mode(r // cols, r % cols, peak_height[r], m) for r, m in share.items() if m >= min_mass]
    return sorted(modes, key=lambda mode: -mode.mass)


def is_multimodal(log_density: torch.Tensor, log_weight=None, min_mass: float = DEFAULT_MIN_MASS,
                  saddle_ratio: float = DEFAULT_SADDLE_RATIO) -> bool:
    """Whether a grid density has at least two separated modes each holding ``min_mass``."""
    return len(find_modes(log_density, log_weight, min_mass, saddle_ratio)) >= 2
