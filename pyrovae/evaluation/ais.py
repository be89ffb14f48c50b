"""Annealed importance sampling (Neal 2001) of log p(x) per data point, with HMC transitions
(Wu, Burda, Salakhutdinov & Grosse 2017).

AIS moves every chain through the geometric path of densities

    f_t(z) = p_0(z)^(1 - beta_t) p(x, z)^beta_t,   0 = beta_0 < beta_1 < ... < beta_T = 1,

from a normalized start p_0 (the guide q(z|x), or the prior p(z)) to the unnormalized
posterior p(x, z), whose normalizer is p(x). A chain starts at z ~ p_0, and for t = 1..T
multiplies its weight by f_t(z) / f_{t-1}(z), i.e. adds

    (beta_t - beta_{t-1}) [log p(x, z) - log p_0(z)]

to its log-weight, then (for t < T) moves z by an HMC transition that leaves f_t invariant.
E[W] = p(x), so the log of the mean weight over chains is a stochastic lower bound of
log p(x); with enough steps the chains' weights become nearly equal and the bound tight.

Run backwards from an exact posterior sample (the same code on the reversed schedule,
:func:`anneal`), E[W] = 1 / p(x), and minus the log of the mean weight is a stochastic
upper bound: the reverse half of bidirectional Monte Carlo (:mod:`.bdmc`).

HMC runs in the start density's whitened coordinates, z = m + s * u (m, s the guide's mean
and standard deviation per point and dimension; 0 and 1 for the prior), where the
posterior has roughly unit scale in every direction. This is a fixed change of variables
per point: it changes no density ratio, only how well one step size fits all dimensions.

Log densities come from the Pyro model's trace (:mod:`.log_joint`), as importance
sampling's do: any prior, likelihood or network. Data points are processed in chunks whose
memory stays under the caller's bound, all chains of a point in one chunk, and every point
draws its random numbers from its own generator (:mod:`pyrovae.inference.point_random`),
so a split of the points over processes gives the same numbers as one process.
"""

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import pyro
import torch
from tqdm.auto import tqdm

from ..components.guides import DiagonalNormal
from ..errors import PyrovaeError, positive_int
from ..inference.hmc import StepSizeAdaptation, energy_and_grad, hmc_transition
from ..inference.log_joint import guide_distribution, log_prior_and_likelihood, prepare
from ..inference.point_random import PointRandom, point_seed, stream_seed
from .chunking import DEFAULT_MAX_MEMORY, Cost, as_bytes, collect, first_repeated, plan_chunks, rows
from .diagnostics import Estimate, log_mean_exp
from .discrete import DISCRETE_INSTEAD

STARTS = ("guide", "prior")
SCHEDULE_SHARPNESS = 4.0   # delta of the sigmoidal schedule (Grosse et al. 2015; Wu et al. 2017)
INITIAL_STEP_SIZE = 0.1    # in whitened coordinates; dual averaging adapts it within a few steps
DEFAULT_TARGET_ACCEPT = 0.65
DEFAULT_LEAPFROG = 10
# Chains per point that only adapt the step sizes (see :func:`anneal`): a quarter more work
# at the default 16 chains.
PILOT_CHAINS = 4
# Backpropagating through the model allocates about what the forward pass does; the
# allocation counter sees only the forward pass.
BACKWARD_FACTOR = 2.0
# Prior start states are drawn by the prior's own sampler (torch's generator), seeded per
# point from this stream: not from the point's seed, whose generator draws the momenta.
PRIOR_START_STREAM = 0
GUIDE_START_STREAM = 1    # the stream of the start draws from a guide that is not a plain diagonal Gaussian
WHITENING_DRAWS = 256     # draws of such a guide giving the whitening's loc and scale


def sigmoid_schedule(steps: int, sharpness: float = SCHEDULE_SHARPNESS) -> torch.Tensor:
    """beta_0 = 0 < ... < beta_T = 1 with T = ``steps``: a logistic sigmoid on evenly spaced
    points of [-sharpness, sharpness], rescaled to [0, 1]. Its steps are smallest at both
    ends, where the log-weight increments are largest."""
    grid = torch.sigmoid(sharpness * torch.linspace(-1, 1, steps + 1, dtype=torch.float64))
    return (grid - grid[0]) / (grid[-1] - grid[0])


@dataclass
class AnnealResult:
    """Per data point and chain: the final log-weights ``(points, chains)`` and states
    ``(chains, points, dim)``; per point: the mean acceptance probability and the step size
    of every transition ``(points, transitions)``."""

    log_weights: torch.Tensor
    z: torch.Tensor
    accept_rate: torch.Tensor
    step_sizes: torch.Tensor


def anneal(log_start: Callable, log_target: Callable, u: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
           betas: torch.Tensor, random: PointRandom, leapfrog: int = DEFAULT_LEAPFROG,
           target_accept: float = DEFAULT_TARGET_ACCEPT, step_sizes: Optional[torch.Tensor] = None,
           pilot: int = 0) -> AnnealResult:
    """Run AIS chains from whitened states ``u`` ``(chains, points, dim)`` along ``betas``.

    The chain's density at inverse temperature b is log_start(z) + b [log_target(z) -
    log_start(z)], z = loc + scale * u; ``log_start`` and ``log_target`` map z to
    ``(chains, points)`` log densities. The weight is accumulated before each transition
    and no transition follows the last one. ``betas`` running from 1 to 0 give reverse AIS.

    The step sizes (one per point and transition) are given, ``step_sizes`` ``(points,
    len(betas) - 2)`` (to replay a forward run's in reverse), or adapted toward
    ``target_accept`` by dual averaging from the acceptance of the first ``pilot`` chains of
    ``u`` alone. The pilot chains move with the others but their weights are discarded: a
    step size chosen from the acceptance of the chains it then moves would make every
    transition depend on those chains' past, so it would no longer leave f_t invariant and
    E[W] = p(x) would fail (the estimate lands above log p(x)). Given the pilot, whose random
    numbers are not theirs, the weighted chains' transitions are fixed in advance.
    """
    if (step_sizes is None) == (pilot == 0):
        raise ValueError("give either step sizes to replay or pilot chains to adapt them, not both")
    points = u.shape[1]
    transitions = len(betas) - 2
    log_w = torch.zeros(u.shape[0] - pilot, points, dtype=torch.float64, device=u.device)
    used = torch.empty(points, max(transitions, 0), dtype=torch.float64, device=u.device)
    adaptation = StepSizeAdaptation(torch.full((points,), INITIAL_STEP_SIZE), target_accept)
    accept_sum = torch.zeros(points, dtype=torch.float64, device=u.device)
    cache = {}

    def terms(v):
        z = loc + scale * v
        start = log_start(z)
        return start, log_target(z) - start

    for k in range(1, len(betas)):
        beta = float(betas[k])

        def potential(v, beta=beta):
            start, difference = terms(v)
            cache["difference"] = difference
            return -(start + beta * difference)

        if k == len(betas) - 1:  # the last weight needs no transition and no gradient
            with torch.no_grad():
                log_w += (betas[k] - betas[k - 1]) * terms(u[pilot:])[1]
            break
        energy, grad = energy_and_grad(potential, u)
        log_w += (betas[k] - betas[k - 1]) * cache["difference"][pilot:].detach()
        step = adaptation.step_size if step_sizes is None else step_sizes[:, k - 1]
        u, _, _, accept_prob = hmc_transition(potential, u, step.to(u), leapfrog, random, (energy, grad))
        used[:, k - 1] = step
        accept_sum += accept_prob[pilot:].double().mean(0)
        if step_sizes is None:
            adaptation.update(accept_prob[:pilot])
    return AnnealResult(log_w.T, (loc + scale * u[pilot:]).detach(), accept_sum / max(transitions, 1), used)


@dataclass
class AISResult:
    """AIS log p(x) per data point (float64, ``(N,)``).

    ``log_marginal`` is the log of the mean chain weight with its delta-method standard
    error over chains; ``spread`` the standard deviation of the chains' log-weights (near 0
    when the annealing is slow enough for the chains to agree)."""

    steps: int
    chains: int
    leapfrog: int
    start: str
    log_marginal: Estimate
    spread: torch.Tensor
    ess: torch.Tensor          # normalized effective sample size of the chain weights
    accept_rate: torch.Tensor  # mean HMC acceptance probability
    step_sizes: torch.Tensor   # (N, steps - 1): every transition's step size, to replay in reverse
    log_weights: torch.Tensor  # (N, chains)


def pilot_chains(chains: int) -> int:
    """The number of pilot chains that adapt the step sizes of ``chains`` weighted chains."""
    return min(chains, PILOT_CHAINS)


def _start(vae, x, y, start: str, chains: int, random: PointRandom, seed: int, indices):
    """The start density p_0 as a function of z, its whitening (loc, scale) and whitened
    initial states: exact draws from p_0 for every point's chains."""
    if start == "guide" and isinstance(vae.guide_family, DiagonalNormal):
        q = guide_distribution(vae, x, y)
        loc, scale = q.mean.detach(), q.stddev.detach()
        return (lambda z: q.log_prob(z).double()), loc, scale, loc + scale * random.normal((chains, *loc.shape))
    if start == "guide":
        return _guide_start(vae, x, y, chains, seed, indices)
    prior = vae.prior()
    draws, starts = [], stream_seed(seed, PRIOR_START_STREAM)
    for index in indices:  # the prior is the same for every point; each point's draws come from its own seed
        with torch.random.fork_rng(devices=[] if x.device.type == "cpu" else [x.device]):
            torch.manual_seed(point_seed(starts, int(index)))
            draws.append(prior.sample((chains,)))
    zero = torch.zeros(x.shape[0], vae.latent_dim, dtype=x.dtype, device=x.device)
    return (lambda z: log_prior_and_likelihood(vae, x, y, z)[0]), zero, zero + 1, torch.stack(draws, 1).detach()


def _guide_start(vae, x, y, chains: int, seed: int, indices):
    """The start p_0 = q(z|x) of any guide but the plain diagonal Gaussian: each point's
    member of the guide's per-point family (the refined guide refined once, with the point's
    own stream, and then fixed), exact draws from it, and a whitening from ``WHITENING_DRAWS``
    further draws (their mean and standard deviation, independent of the chains' starts).
    HMC needs log q at the chains' moving states: a flow without an inverse is refused."""
    encoding, streams = vae.encoding(x, y), stream_seed(seed, GUIDE_START_STREAM)
    families, encodings, draws = [], [], []
    for row, index in enumerate(indices):
        with torch.random.fork_rng(devices=[] if x.device.type == "cpu" else [x.device]):
            torch.manual_seed(point_seed(streams, int(index)))
            family, member = vae.guide_family.per_point(encoding[row:row + 1],
                                                        vae.log_joint_of(x[row:row + 1], rows(y, row, row + 1)))
            families.append(family)
            encodings.append(member.detach())
            draws.append(family(member).sample((chains + WHITENING_DRAWS,))[:, 0])
    q = families[0](torch.cat(encodings))
    z = torch.stack(draws, 1).detach()
    starts, spread = z[:chains], z[chains:]
    q.log_prob(starts[:1].clone())  # a flow without an inverse refuses here, in one line
    return (lambda zz: q.log_prob(zz).double()), spread.mean(0), spread.std(0), starts


def _plan(vae, x, y, chains: int, pilot: int, steps: int, max_memory: int):
    """Points per chunk: all chains of a point (``chains`` weighted and ``pilot`` pilot chains),
    forward and backward pass under the bound."""
    def forward(p, s):
        with torch.enable_grad():
            z = torch.zeros(s, p, vae.latent_dim, dtype=x.dtype, device=x.device, requires_grad=True)
            return log_prior_and_likelihood(vae, first_repeated(x, p), first_repeated(y, p), z)

    measured = Cost.measure(forward)
    cost = Cost(*(BACKWARD_FACTOR * c for c in (measured.fixed, measured.per_point, measured.per_pair)))
    total = chains + pilot
    stored = 8 * (steps + 4 * total) + 4 * 4 * total * vae.latent_dim  # step sizes, weights, states
    plan = plan_chunks(cost, x.shape[0], total, max_memory, stored,
                       f"{steps} annealing steps and {chains} chains (--steps, --chains)")
    if plan.samples < total:
        raise PyrovaeError(f"{chains} AIS chains of one data point (and {pilot} pilot chains adapting the step size) "
                           f"do not fit in the memory bound; use fewer chains or raise the memory bound")
    return plan.points


def check_settings(steps: int, chains: int, leapfrog: int, start: str, target_accept: float) -> None:
    """One-line errors for AIS settings a user can get wrong."""
    if positive_int(steps, "the number of AIS steps") < 2:
        raise PyrovaeError(f"AIS needs at least 2 steps, got {steps}; use --steps 100 or more")
    positive_int(chains, "the number of AIS chains")
    positive_int(leapfrog, "the number of leapfrog steps")
    if start not in STARTS:
        raise PyrovaeError(f"unknown AIS start '{start}'; choose one of: {', '.join(STARTS)}")
    if not 0 < target_accept < 1:
        raise PyrovaeError(f"the target acceptance rate must lie strictly between 0 and 1, got {target_accept}")


def annealed_importance_sample(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, steps: int = 1000,
                               chains: int = 16, leapfrog: int = DEFAULT_LEAPFROG, start: str = "guide",
                               target_accept: float = DEFAULT_TARGET_ACCEPT, seed: int = 0,
                               indices: Optional[Sequence[int]] = None, max_memory=DEFAULT_MAX_MEMORY,
                               progress: bool = False) -> AISResult:
    """AIS log p(x) (log p(x|y) for a conditional VAE) for every row of ``x``: a stochastic
    lower bound, tight when the chains' log-weights agree (``spread`` near 0).

    ``indices`` are the rows' positions in the whole data set (default 0..N-1): a point's
    random numbers depend only on ``seed`` and its index, so evaluating a subset of the
    indices gives exactly the subset of the results.
    """
    return _run(vae, x, y, steps, chains, leapfrog, start, target_accept, seed, indices, max_memory, progress)


def reverse_annealed_importance_sample(vae, x: torch.Tensor, z_exact: torch.Tensor, forward: AISResult,
                                       y: Optional[torch.Tensor] = None, seed: int = 0,
                                       indices: Optional[Sequence[int]] = None, max_memory=DEFAULT_MAX_MEMORY,
                                       progress: bool = False) -> AISResult:
    """Reverse AIS from exact posterior samples ``z_exact`` ``(N, latent_dim)`` (one per row
    of ``x``, every chain of a point starting there) down the schedule of the ``forward``
    run, replaying its step sizes in reverse order: the chains' weights estimate 1 / p(x),
    so minus ``log_marginal`` of the result is a stochastic upper bound of log p(x)."""
    return _run(vae, x, y, forward.steps, forward.chains, forward.leapfrog, forward.start, DEFAULT_TARGET_ACCEPT,
                seed, indices, max_memory, progress, reverse=(z_exact, forward.step_sizes.flip(-1)))


def _run(vae, x, y, steps, chains, leapfrog, start, target_accept, seed, indices, max_memory, progress,
         reverse=None) -> AISResult:
    """Forward AIS, or with ``reverse = (z_exact, step_sizes)`` reverse AIS, chunk by chunk."""
    vae.require_continuous_latents("AIS (its transitions are Hamiltonian Monte Carlo)", DISCRETE_INSTEAD)
    check_settings(steps, chains, leapfrog, start, target_accept)
    with pyro.validation_enabled(False), pyro.get_param_store().scope():
        x, y = prepare(vae, x, y)
        indices = list(range(x.shape[0])) if indices is None else [int(i) for i in indices]
        if len(indices) != x.shape[0]:
            raise PyrovaeError(f"{len(indices)} indices for {x.shape[0]} data points; give one index per point")
        pilot = 0 if reverse is not None else pilot_chains(chains)
        points = _plan(vae, x, y, chains, pilot, steps, as_bytes(max_memory))
        betas = sigmoid_schedule(steps) if reverse is None else sigmoid_schedule(steps).flip(0)

        def batches():
            for lo in range(0, x.shape[0], points):
                hi = lo + points
                xb, yb, ib = x[lo:hi], rows(y, lo, hi), indices[lo:hi]
                random = PointRandom(seed, ib, x.device, x.dtype)
                log_start, loc, scale, z0 = _start(vae, xb, yb, start, pilot + chains, random, seed, ib)
                step_sizes = None
                if reverse is not None:
                    z0 = reverse[0][lo:hi].to(z0).expand_as(z0)
                    step_sizes = reverse[1][lo:hi]
                target = lambda z, xb=xb, yb=yb: sum(log_prior_and_likelihood(vae, xb, yb, z))  # noqa: E731
                run = anneal(log_start, target, (z0 - loc) / scale, loc, scale, betas, random, leapfrog,
                             target_accept, step_sizes, pilot)
                value, std_error, ess = log_mean_exp(run.log_weights)
                yield {"log_marginal": Estimate(value, std_error), "spread": run.log_weights.std(-1),
                       "ess": ess, "accept_rate": run.accept_rate, "step_sizes": run.step_sizes,
                       "log_weights": run.log_weights}

        what = "reverse AIS" if reverse is not None else "AIS"
        with tqdm(total=x.shape[0], desc=f"{what} ({steps} steps)", unit="point", disable=not progress,
                  leave=False) as bar:
            merged = collect(x.shape[0], batches(), bar)
    return AISResult(steps=steps, chains=chains, leapfrog=leapfrog, start=start, **merged)
