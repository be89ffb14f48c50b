"""The marginal-likelihood estimator of Kingma & Welling's appendix D: HMC posterior samples,
a density fitted to them, and a harmonic-mean-style estimate.

For a data point x:

1. draw L samples z_l ~ p(z|x) by HMC (the shared sampler of :mod:`pyrovae.inference.hmc`,
   step sizes adapted per point toward 90% acceptance during a warm-up);
2. fit a density q(z) to them: here a Gaussian with the samples' mean and covariance;
3. draw L new posterior samples and estimate

   $$ p(x) \\approx \\Big( \\frac{1}{L} \\sum_l \\frac{q(z_l)}{p(z_l)\\, p(x|z_l)} \\Big)^{-1}, $$

since E_{p(z|x)}[q(z) / p(x, z)] = 1 / p(x) for any normalized q. The estimate does not
use the encoder, so it serves models trained without one (Monte Carlo EM). It is reliable
only where q covers the posterior with lighter tails and HMC mixes: the paper uses it for
latent dimension below 5, and so does this function. Its error is not a bound in either
direction; the standard error reported is the spread of the per-chain estimates.
"""

import math
from typing import Optional

import torch

from ..errors import PyrovaeError
from ..inference.hmc import HMC
from ..inference.log_joint import fixed_parameters, log_joint, prepare
from .diagnostics import Estimate
from .discrete import DISCRETE_INSTEAD

MAX_LATENT_DIM = 4  # the paper's limit: "valid for latent dimension below 5"


def appendix_d_log_marginal(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, num_samples: int = 500,
                            chains: int = 10, warmup: int = 200, num_leapfrog: int = 10, seed: int = 0) -> Estimate:
    """log p(x) per row of ``x`` by appendix D's estimator, from ``num_samples`` HMC samples
    per point for the fit and as many for the estimate (``chains`` chains per point, started
    at draws from the encoder's q(z|x) after ``warmup`` adapting transitions)."""
    vae.require_continuous_latents("the appendix-D estimator (its samples are HMC's)", DISCRETE_INSTEAD)
    if vae.latent_dim > MAX_LATENT_DIM:
        raise PyrovaeError(f"the appendix-D estimator is valid for latent dimension below 5 and this model has "
                           f"{vae.latent_dim}; use importance sampling (pyrovae evaluate) instead")
    if num_samples < chains or num_samples % chains:
        raise PyrovaeError(f"num_samples ({num_samples}) must be a positive multiple of chains ({chains})")
    x, y = prepare(vae, x, y)
    with fixed_parameters(vae):  # gradients with respect to z only
        return _estimate(vae, x, y, num_samples // chains, chains, warmup, num_leapfrog, seed)


def _estimate(vae, x, y, per_chain: int, chains: int, warmup: int, num_leapfrog: int, seed: int) -> Estimate:
    torch.manual_seed(seed)
    potential = lambda z: -log_joint(vae, x, y, z)  # noqa: E731  (chains, points)
    with torch.no_grad():
        z = vae.posterior(x, y).sample((chains,))  # chains start at draws of the guide
    hmc = HMC(step_size=torch.full((x.shape[0],), 0.1), num_leapfrog=num_leapfrog)
    z = hmc.sample(potential, z, warmup, adapt=True)
    hmc.adaptation.step_size = hmc.adaptation.averaged()

    def draws(count):
        nonlocal z
        kept = []
        for _ in range(count):
            z = hmc.sample(potential, z, 1, adapt=False)
            kept.append(z)
        return torch.stack(kept)  # (count, chains, points, dim)

    fit = draws(per_chain).flatten(0, 1).double()  # (L, points, dim)
    mean = fit.mean(0)
    centred = fit - mean
    cov = torch.einsum("lpi,lpj->pij", centred, centred) / (fit.shape[0] - 1)
    cov = cov + 1e-6 * torch.eye(cov.shape[-1], dtype=cov.dtype)
    q = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    fresh = draws(per_chain)  # (T, chains, points, dim)
    with torch.no_grad():
        log_ratio = torch.stack([q.log_prob(s.double()) - log_joint(vae, x, y, s) for s in fresh])  # (T, chains, points)
    per_chain_estimate = -(torch.logsumexp(log_ratio, 0) - math.log(log_ratio.shape[0]))  # (chains, points)
    value = -(torch.logsumexp(log_ratio.flatten(0, 1), 0) - math.log(log_ratio.shape[0] * log_ratio.shape[1]))
    return Estimate(value, per_chain_estimate.std(0) / math.sqrt(chains))
