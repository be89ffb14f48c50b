"""What a set of log-weights says: the log of their mean with its standard error, the
effective sample size, IWAE bounds from groups of draws and Pareto k-hat; and the active
latent units of a model."""

import math
from typing import NamedTuple, Optional, Tuple

import torch
from pyro.ops.stats import fit_generalized_pareto

from ..inference.log_joint import prepare
from .chunking import rows


class Estimate(NamedTuple):
    """Per-data-point values (float64, shape ``(N,)``) and their Monte Carlo standard
    errors (for quadrature: the error estimate from grid refinement)."""

    value: torch.Tensor
    std_error: torch.Tensor


def log_mean_exp(log_w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Over the last dim of K log-weights: the estimate log (1/K) sum_k w_k, its standard
    error and the normalised effective sample size ESS / K.

    With ESS = (sum w)^2 / sum w^2, the delta method gives the standard error of the log of
    the mean weight as sqrt((K / ESS - 1) / (K - 1)) (the relative standard error of the
    mean weight, from the unbiased sample variance). It is NaN for K = 1.
    """
    k = log_w.shape[-1]
    if k == 1:  # one weight: the estimate is its log, with no error to estimate
        return log_w[..., 0], torch.full_like(log_w[..., 0], math.nan), torch.ones_like(log_w[..., 0])
    total = torch.logsumexp(log_w, -1)
    ess = (2 * total - torch.logsumexp(2 * log_w, -1)).exp()
    std_error = ((k / ess - 1).clamp_min(0) / (k - 1)).sqrt()
    return total - math.log(k), std_error, ess / k


def normalized_ess(log_w: torch.Tensor) -> torch.Tensor:
    """Effective sample size of importance weights over the last dim, divided by their
    number: 1 when all weights are equal, 1/K when one weight dominates."""
    return log_mean_exp(log_w)[2]


def iwae_from_groups(log_w: torch.Tensor, k: int) -> Estimate:
    """IWAE_k per row from K log-weights: the mean of log (1/k) sum w over the K // k
    disjoint groups of k draws (an unbiased estimate of the bound), with its standard
    error over groups, or the delta-method error when there is one group."""
    groups = log_w.shape[-1] // k
    value, std_error, _ = log_mean_exp(log_w[..., :groups * k].unflatten(-1, (groups, k)))
    if groups == 1:
        return Estimate(value[..., 0], std_error[..., 0])
    return Estimate(value.mean(-1), value.std(-1) / math.sqrt(groups))


def pareto_khat(log_w: torch.Tensor) -> torch.Tensor:
    """Pareto k-hat of each row's importance weights (PSIS; Vehtari et al.), computed as
    Pyro's ``psis_diagnostic`` does for one set of weights: a generalized Pareto fit
    (Pyro's ``fit_generalized_pareto``) to the largest min(0.2 K, 3 sqrt K) weights.
    Below 0.5 the weights are well behaved, above 0.7 the estimate is unreliable. NaN
    where fewer than 10 weights fall in the tail (K below about 50)."""
    k = log_w.shape[-1]
    tail = math.ceil(min(0.2 * k, 3 * math.sqrt(k)))
    khat = torch.full(log_w.shape[:-1], math.nan, dtype=torch.float64)
    if tail < 10:
        return khat
    top = log_w.detach().double().cpu().topk(tail + 1, dim=-1).values
    top = top - top[..., :1]
    cutoff = top[..., -1].clamp_min(math.log(1e-15))
    for index in range(top.shape[0]):
        row = top[index]
        above = row[row > cutoff[index]]
        if above.numel() >= 10:
            khat[index] = fit_generalized_pareto(above.exp() - cutoff[index].exp())[0]
    return khat


@torch.inference_mode()
def active_units(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, threshold: float = 0.01,
                 batch_size: int = 1000) -> Tuple[int, torch.Tensor]:
    """Latent dimensions the data use (Burda et al. 2016): the number whose guide mean
    E_q[z_j | x] (the guide's latent code, :meth:`~pyrovae.model.VAE.latent_code`) varies over
    the data with variance above ``threshold``, and the variances."""
    x, y = prepare(vae, x, y)
    means = torch.cat([vae.latent_code(x[i:i + batch_size], rows(y, i, i + batch_size))
                       for i in range(0, x.shape[0], batch_size)])
    variances = means.double().var(0, unbiased=False)
    return int((variances > threshold).sum()), variances

