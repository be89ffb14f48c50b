"""The Fréchet (2-Wasserstein) distance between two Gaussians, and Gaussian moments of features.

For N(m1, S1) and N(m2, S2):

    d^2 = |m1 - m2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)

The cross term is computed through symmetric matrices only: S1^1/2 from an eigendecomposition
of S1, then the eigenvalues of the symmetric S1^1/2 S2 S1^1/2, whose square roots sum to the
trace. This avoids the general (non-symmetric) matrix square root of S1 S2, whose routine can
return complex values and lose accuracy when the covariances are near singular (fewer samples
than feature dimensions). Everything runs in float64; eigenvalues that rounding pushed below
zero are set to zero.
"""

from typing import Tuple

import torch


def gaussian_moments(features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The mean and unbiased covariance (float64) of ``features`` shaped ``(N, D)``, N >= 2."""
    f = features.detach().to(torch.float64)
    mean = f.mean(0)
    centred = f - mean
    return mean, centred.T @ centred / (f.shape[0] - 1)


def symmetric_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The positive semi-definite square root of the symmetric matrix ``matrix``."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor) -> float:
    """The squared Fréchet distance between N(mean1, cov1) and N(mean2, cov2) (the quantity
    reported as FID), as a float."""
    mean1, cov1, mean2, cov2 = (t.to(torch.float64) for t in (mean1, cov1, mean2, cov2))
    root1 = symmetric_sqrt(cov1)
    cross = root1 @ cov2 @ root1
    cross_trace = torch.linalg.eigvalsh((cross + cross.T) / 2).clamp_min(0).sqrt().sum()
    value = (mean1 - mean2).square().sum() + cov1.trace() + cov2.trace() - 2 * cross_trace
    return max(float(value), 0.0)  # zero up to rounding for equal Gaussians
