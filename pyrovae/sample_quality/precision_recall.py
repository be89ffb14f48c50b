"""Improved precision and recall of a generative model (Kynkäänniemi et al. 2019).

Each set of feature vectors stands for a manifold: the union of balls around its points,
each ball's radius the distance to that point's k-th nearest neighbour within the set.
Precision is the fraction of generated points inside the real manifold (are the samples
realistic?); recall the fraction of real points inside the generated manifold (is the data's
variety covered?). The paper uses k = 3.
"""

from typing import Tuple

import torch

DEFAULT_K = 3
CHUNK = 2048  # rows of a distance matrix computed at a time


def knn_radii(points: torch.Tensor, k: int = DEFAULT_K) -> torch.Tensor:
    """The distance from each point to its k-th nearest other point of the same set."""
    if points.shape[0] <= k:
        raise ValueError(f"k-nearest-neighbour radii need more than k = {k} points, got {points.shape[0]}")
    radii = []
    for start in range(0, points.shape[0], CHUNK):
        d = torch.cdist(points[start:start + CHUNK], points)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the smallest distance is the point itself
    return torch.cat(radii)


def inside_manifold(queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Whether each query lies within some point's ball (distance <= that point's radius)."""
    inside = []
    for start in range(0, queries.shape[0], CHUNK):
        d = torch.cdist(queries[start:start + CHUNK], points)
        inside.append((d <= radii).any(1))
    return torch.cat(inside)


def precision_recall(real: torch.Tensor, generated: torch.Tensor, k: int = DEFAULT_K) -> Tuple[float, float]:
    """``(precision, recall)`` of the ``generated`` features against the ``real`` ones
    (both ``(N, D)``; equal sizes are the paper's protocol)."""
    real, generated = real.detach().to(torch.float64), generated.detach().to(torch.float64)
    precision = inside_manifold(generated, real, knn_radii(real, k)).double().mean()
    recall = inside_manifold(real, generated, knn_radii(generated, k)).double().mean()
    return float(precision), float(recall)
