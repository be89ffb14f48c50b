"""Importance-sampled log p(x) per data point, with the IWAE bounds and the weights'
diagnostics from the same draws.

For a data point x and K draws z_k ~ q(z|x) from the guide,

    log w_k  = log p(x | z_k) + log p(z_k) - log q(z_k | x)
    log p(x) ~ logsumexp_k log w_k - log K

whose expectation is the IWAE bound IWAE_K, and log p(x) >= IWAE_K >= IWAE_1 = ELBO.

The log-weights come from Pyro traces (:mod:`.log_joint`): the guide is traced under a
plate of importance samples at dim -2 and the model is replayed on the guide's z, so each
data point gets its own estimate, for any prior, likelihood, network or conditional
model. Pyro's ``Importance``
and ``vectorized_importance_weights`` instead sum the log-weights over the data plate,
giving one weight per sample for the whole batch: a much looser estimate of
sum_i log p(x_i) for independent data points.

Samples are drawn in chunks whose memory stays under a bound the caller sets; all of it
runs under ``torch.inference_mode()``, and log-weights are accumulated in float64.

Given a ``seed``, every data point draws its K samples from a stream of its own, seeded from
``seed`` and the point's index in its split (:func:`pyrovae.inference.point_random.point_seed`,
as AIS does): a point's estimate is then the same whether the points are sampled at once, in
chunks sized by the memory bound, or split over several workers and merged. Without one,
the draws come from the global random state, one stream for all points.
"""

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from tqdm.auto import tqdm

from ..errors import PyrovaeError, positive_int
from ..inference.log_joint import (
    SAMPLE_PLATE,
    evaluation_mode,
    guide_distribution,
    log_prior_and_likelihood,
    prepare,
    site_log_probs,
)
from ..inference.point_random import point_seed
from .chunking import DEFAULT_MAX_MEMORY, WEIGHT_COPIES, Cost, as_bytes, collect, first_repeated, plan_chunks, rows
from .diagnostics import Estimate, iwae_from_groups, log_mean_exp, pareto_khat


@dataclass(frozen=True)
class Proposal:
    """The importance distribution: the guide q(z|x) itself (the default), or a heavier-tailed
    relative with the guide's centre, its scale times ``scale`` and, with ``df``, Student-t
    tails of ``df`` degrees of freedom.

    The weights' variance is finite only where the proposal's tails are at least as heavy as
    the posterior's; a guide trained on the ELBO is typically narrower than the posterior
    (KL(q || p) penalizes mass where the posterior has none, not the reverse), so a wider or
    heavier-tailed proposal trades a little efficiency for weights with a lighter tail.
    """

    scale: float = 1.0
    df: Optional[float] = None

    def __post_init__(self):
        if not self.scale > 0 or (self.df is not None and not self.df > 0):
            raise PyrovaeError(f"the proposal's scale factor and degrees of freedom must be positive, "
                               f"got {self.scale} and {self.df}")

    @property
    def is_guide(self) -> bool:
        return self.scale == 1.0 and self.df is None

    def describe(self) -> str:
        if self.is_guide:
            return "the guide q(z|x)"
        tails = f"Student-t ({self.df:g} degrees of freedom)" if self.df is not None else "Gaussian"
        return f"{tails} with the guide's mean and {self.scale:g} times its scale"

    def distribution(self, q):
        """This proposal for the guide's distribution ``q``: q itself, or (for a diagonal
        Normal q only) its wider or heavier-tailed relative."""
        if self.is_guide:
            return q
        base = q.base_dist if isinstance(q, dist.Independent) else q
        if not isinstance(base, dist.Normal):
            raise PyrovaeError(f"a {self.describe()} needs a diagonal Gaussian guide; use the guide itself "
                               f"(proposal scale 1, no degrees of freedom) with this one")
        loc, scale = q.mean, q.stddev * self.scale
        if self.df is None:
            return dist.Normal(loc, scale).to_event(1)
        return dist.StudentT(torch.as_tensor(self.df, dtype=loc.dtype, device=loc.device), loc, scale).to_event(1)


GUIDE = Proposal()


def _importance_terms(vae, x, y, num_samples: int, proposal: Proposal = GUIDE,
                      drawn: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``log p(x|z_k)`` and ``log p(z_k) - log r(z_k|x)`` for ``num_samples`` draws from the
    proposal r (the guide q by default) per data point, or at the given draws and their log r,
    ``drawn`` (``(num_samples, points, latent_dim)`` and ``(num_samples, points)``): two
    ``(num_samples, points)`` float64 tensors whose sum is log w."""
    if drawn is not None:
        z, log_r = drawn
        log_prior, log_likelihood = log_prior_and_likelihood(vae, x, y, z)
        return log_likelihood, log_prior - log_r.double()
    if proposal.is_guide:
        with pyro.plate(SAMPLE_PLATE, num_samples, dim=-2):
            guide = poutine.trace(vae.guide).get_trace(x, y)
            model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x, y)
        log_likelihood, log_prior = site_log_probs(model)
        _, log_q = site_log_probs(guide)
        return log_likelihood, log_prior - log_q
    r = proposal.distribution(guide_distribution(vae, x, y))
    z = r.sample((num_samples,))
    log_prior, log_likelihood = log_prior_and_likelihood(vae, x, y, z)
    return log_likelihood, log_prior - r.log_prob(z).double()


def _point_draws(vae, x, y, num_samples: int, proposal: Proposal, seed: int,
                 indices: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """All ``num_samples`` draws from the proposal for each row of ``x``, each row's from the
    stream of its index under ``seed`` (a stochastic guide, the refined one, also refines
    with that stream): ``(num_samples, points, latent_dim)``, and their log r
    ``(num_samples, points)``, scored as drawn (a flow without an inverse can score only
    its own draws). The global random state is left as it was."""
    encoding = vae.encoding(x, y)
    devices = [] if x.device.type == "cpu" else [x.device]
    draws, log_r = [], []
    for row, index in enumerate(indices):
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(point_seed(seed, int(index)))
            q = vae.guide_family(encoding[row:row + 1], vae.log_joint_of(x[row:row + 1], rows(y, row, row + 1)))
            r = proposal.distribution(q)
            z = r.sample((num_samples,))
            draws.append(z[:, 0])
            log_r.append(r.log_prob(z)[:, 0])
    return torch.stack(draws, 1), torch.stack(log_r, 1)


@dataclass
class ImportanceResult:
    """What K importance samples per data point say, per data point (float64, ``(N,)``).

    ``iwae[k]`` holds IWAE_k estimated from K // k disjoint groups of the same draws, so
    ``iwae[1]`` is the K-sample ELBO estimate and ``iwae[K]`` equals ``log_marginal``.
    """

    num_samples: int
    log_marginal: Estimate           # logsumexp_k log w_k - log K
    elbo: Estimate                   # mean_k log w_k
    iwae: Dict[int, Estimate]
    log_likelihood: torch.Tensor     # mean_k log p(x | z_k): minus the distortion
    kl: torch.Tensor                 # mean_k log q(z_k|x) - log p(z_k): the rate
    ess: torch.Tensor                # normalised effective sample size, in (0, 1]
    khat: Optional[torch.Tensor]     # Pareto k-hat of the weights (NaN where too few)
    proposal: Proposal = GUIDE       # where the draws came from


def _summarize_batch(log_w, log_likelihood, kl, bounds, khat) -> dict:
    estimate, std_error, ess = log_mean_exp(log_w)
    return {"log_marginal": Estimate(estimate, std_error),
            "elbo": iwae_from_groups(log_w, 1),
            "iwae": {k: iwae_from_groups(log_w, k) for k in bounds},
            "log_likelihood": log_likelihood, "kl": kl, "ess": ess,
            "khat": pareto_khat(log_w).to(log_w.device) if khat else None}


@evaluation_mode
def importance_sample(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, num_samples: int = 5000,
                      bounds: Sequence[int] = (), max_memory=DEFAULT_MAX_MEMORY, khat: bool = False,
                      progress: bool = False, proposal: Proposal = GUIDE, seed: Optional[int] = None,
                      indices: Optional[Sequence[int]] = None) -> ImportanceResult:
    """Importance-sample log p(x) (log p(x|y) for a conditional VAE) for every row of ``x``
    with ``num_samples`` draws from the guide, plus IWAE_k for each k in ``bounds``, the
    ELBO, rate, distortion, ESS and (with ``khat``) Pareto k-hat, all per data point.
    With another ``proposal`` the draws come from it, and the ELBO, IWAE bounds, rate and
    distortion are those of the proposal, not of the guide.

    Chunks of samples and batches of points are sized so that the working memory stays
    under ``max_memory`` (bytes, or a string such as ``"2GB"``).

    With ``seed``, each point's draws come from its own stream, seeded from ``seed`` and its
    index in ``indices`` (the rows' positions in their split; default 0..N-1), so any
    chunking, and any split of the rows over processes, gives the same per-point results.
    """
    num_samples = positive_int(num_samples, "the number of samples")
    for k in bounds:
        if positive_int(k, "an IWAE bound's K") > num_samples:
            raise PyrovaeError(f"IWAE_{k} needs at least {k} samples, got {num_samples}; "
                               f"raise the number of samples")
    if not proposal.is_guide and vae.guide_family.gaussian_kind != "diagonal":
        raise PyrovaeError(f"a widened or Student-t proposal is built from a diagonal Gaussian guide, and guide "
                           f"'{vae.guide_name}' is not one; importance-sample with the guide itself (leave out "
                           f"the proposal's scale and degrees of freedom)")
    x, y = prepare(vae, x, y)
    n = x.shape[0]
    indices = list(range(n)) if indices is None else [int(i) for i in indices]
    if len(indices) != n:
        raise PyrovaeError(f"{len(indices)} indices for {n} data points; give one index per point")
    stored = WEIGHT_COPIES * 8 * num_samples
    if seed is not None:  # every point's draws, made before its chunks of samples
        stored += num_samples * vae.latent_dim * x.element_size()
    cost = Cost.measure(lambda p, s: _importance_terms(vae, first_repeated(x, p), first_repeated(y, p), s, proposal))
    plan = plan_chunks(cost, n, num_samples, as_bytes(max_memory), stored)

    def batches():
        for start in range(0, n, plan.points):
            xb, yb = x[start:start + plan.points], rows(y, start, start + plan.points)
            log_w = torch.empty(xb.shape[0], num_samples, dtype=torch.float64, device=x.device)
            log_likelihood = torch.zeros(xb.shape[0], dtype=torch.float64, device=x.device)
            kl = torch.zeros_like(log_likelihood)
            drawn = None if seed is None else _point_draws(vae, xb, yb, num_samples, proposal, seed,
                                                             indices[start:start + plan.points])
            for s in range(0, num_samples, plan.samples):
                m = min(plan.samples, num_samples - s)
                lik, ratio = _importance_terms(vae, xb, yb, m, proposal,
                                               None if drawn is None else (drawn[0][s:s + m], drawn[1][s:s + m]))
                log_w[:, s:s + lik.shape[0]] = (lik + ratio).T
                log_likelihood += lik.sum(0)
                kl -= ratio.sum(0)
            yield _summarize_batch(log_w, log_likelihood / num_samples, kl / num_samples, bounds, khat)

    with tqdm(total=n, desc="importance sampling", unit="point", disable=not progress, leave=False) as bar:
        merged = collect(n, batches(), bar)
    return ImportanceResult(num_samples=num_samples, proposal=proposal, **merged)


def log_marginal(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, num_samples: int = 5000,
                 max_memory=DEFAULT_MAX_MEMORY) -> Estimate:
    """Importance-sampled log p(x) for every row of ``x``, with its Monte Carlo standard
    error (delta method; the estimate is biased low by about half its squared error)."""
    return importance_sample(vae, x, y, num_samples, max_memory=max_memory).log_marginal


def iwae_bound(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, k: int = 50,
               num_samples: Optional[int] = None, max_memory=DEFAULT_MAX_MEMORY) -> Estimate:
    """IWAE_k per row of ``x``, estimated from ``num_samples`` (default ``k``) draws split
    into groups of ``k``, with its standard error."""
    num_samples = k if num_samples is None else num_samples
    return importance_sample(vae, x, y, num_samples, bounds=[k], max_memory=max_memory).iwae[k]

