"""Posterior inspection: the true posterior p(z|x) beside the guide's q(z|x) for chosen
data points, and the inference gaps of Cremer, Li & Duvenaud (2018).

For each data point, with the trained decoder and prior held fixed:

- samples of p(z|x) from Pyro's NUTS (or HMC) on the VAE's own Pyro model conditioned on
  that one point (any latent dimension);
- for a 2-D latent space, the posterior tabulated on a grid and normalized by quadrature
  (over the box quadrature integrated, with the same log joint), its
  moments and its separated modes (:mod:`.modes`);
- q(z|x), the amortized guide, and q*(z|x), the best member of the guide's own family for
  this one point (a diagonal or full Gaussian, or the flow with free per-point base and
  context: the guide family's ``per_point``), found by non-amortized SVI on the same model
  (the decoder and the family's shared weights fixed);
- the decomposition

      log p(x) - ELBO(q)  =  [log p(x) - ELBO(q*)]  +  [ELBO(q*) - ELBO(q)]
        total gap             approximation gap         amortization gap

  with log p(x) from quadrature in 2-D, from importance sampling (proposal: the
  full-covariance q* with its scales inflated) otherwise, and both ELBOs from the same standard-normal draws (common
  random numbers), so the amortization gap's Monte Carlo error is that of a paired
  difference.
"""

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Union

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.infer import HMC, MCMC, NUTS, SVI, Trace_ELBO
from pyro.infer.autoguide.initialization import init_to_value
from pyro.ops.stats import effective_sample_size
from pyro.optim import ClippedAdam

from ..components.guides import Guide
from ..errors import PyrovaeError, positive_int
from ..inference.log_joint import evaluation_mode, fixed_parameters, log_joint, prepare
from .chunking import DEFAULT_MAX_MEMORY, WEIGHT_COPIES, Cost, as_bytes, first_repeated, plan_chunks, rows
from .diagnostics import Estimate, log_mean_exp, pareto_khat
from .discrete import DISCRETE_INSTEAD
from .modes import DEFAULT_MIN_MASS, DEFAULT_SADDLE_RATIO, Mode, find_modes
from .references import log_joint_on_grid, quadrature_log_marginal, quadrature_with_box

MCMC_KERNELS = ("nuts", "hmc")
FAMILIES = ("diagonal", "full")
GRID_NODES = 161          # nodes per axis of the tabulated 2-D posterior
LOCATE_WIDTH = 8.0        # guide standard deviations searched around the guide's mean (as quadrature does)
PROPOSAL_INFLATION = 1.2  # the proposal's scales are multiplied by this in importance sampling
PROPOSAL_STEPS = 1000     # SVI steps fitting the full-covariance proposal, started from q*
MOMENT_DRAWS = 4000       # draws of a flow member giving its mean and covariance


# ----------------------------------------------------------------------------- Gaussians

class Gaussians(NamedTuple):
    """One Gaussian per data point: means ``(N, L)`` and lower Cholesky factors ``(N, L, L)``
    of the covariances (diagonal for the guide's family)."""

    loc: torch.Tensor
    scale_tril: torch.Tensor

    @classmethod
    def diagonal(cls, loc: torch.Tensor, scale: torch.Tensor) -> "Gaussians":
        return cls(loc, torch.diag_embed(scale))

    @property
    def covariance(self) -> torch.Tensor:
        return self.scale_tril @ self.scale_tril.transpose(-1, -2)

    def scaled(self, factor: float) -> "Gaussians":
        return Gaussians(self.loc, self.scale_tril * factor)

    def rows(self, start: int, stop: int) -> "Gaussians":
        return Gaussians(self.loc[start:stop], self.scale_tril[start:stop])

    def as_double(self) -> "Gaussians":
        return Gaussians(self.loc.double(), self.scale_tril.double())

    def draw(self, eps: torch.Tensor):
        """``loc + L eps`` for standard-normal ``eps`` ``(S, N, L)``, and its log density."""
        z = self.loc + (self.scale_tril @ eps[..., None]).squeeze(-1)
        return z, dist.MultivariateNormal(self.loc, scale_tril=self.scale_tril).log_prob(z)


class FlowMembers(NamedTuple):
    """One member of a flow guide family per data point: the family and the encodings
    ``(N, *encoder_out_shape)`` (base loc, log scale and context) that pick the members."""

    family: Guide
    encoding: torch.Tensor

    def rows(self, start: int, stop: int) -> "FlowMembers":
        return FlowMembers(self.family, self.encoding[start:stop])

    def as_double(self) -> "FlowMembers":
        return FlowMembers(self.family, self.encoding.double())

    def draw(self, eps: torch.Tensor):
        """The flow's draws from base noise ``eps`` ``(S, N, L)`` and their log q (float64)."""
        dtype = next(iter(self.family.parameters()), self.encoding).dtype
        z, log_q = self.family.draw(self.encoding.to(dtype), eps.to(dtype))
        return z.double(), log_q.double()

    @torch.no_grad()
    def moments(self, draws: int = MOMENT_DRAWS) -> Gaussians:
        """The Gaussians with these members' means and covariances (Monte Carlo, ``draws``
        draws): what figures draw and where Gaussian fits start."""
        z, _ = self.draw(torch.randn(draws, *self.encoding.shape[:-1], self.family.latent_dim,
                                     dtype=torch.float64, device=self.encoding.device))
        centred = z - z.mean(0)
        covariance = torch.einsum("spi,spj->pij", centred, centred) / (draws - 1)
        eye = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
        return Gaussians(z.mean(0), torch.linalg.cholesky(covariance + 1e-9 * eye))

    @property
    def loc(self) -> torch.Tensor:
        return self.moments().loc

    @property
    def covariance(self) -> torch.Tensor:
        return self.moments().covariance


Members = Union[Gaussians, FlowMembers]


def as_gaussians(members: Members) -> Gaussians:
    return members if isinstance(members, Gaussians) else members.moments()


@torch.no_grad()
def guide_gaussians(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> Members:
    """q(z|x) of the amortized guide for every row of ``x``, as members of the family q* is
    sought in (:meth:`~pyrovae.components.guides.Guide.per_point`): Gaussians for the
    Gaussian guides (the refined guide's after its refinement), flow members for flows."""
    x, y = prepare(vae, x, y)
    family, encoding = vae.guide_family.per_point(vae.encoding(x, y), vae.log_joint_of(x, y))
    q = family(encoding)
    if family.gaussian_kind == "diagonal":
        return Gaussians.diagonal(q.mean, q.stddev).as_double()
    if family.gaussian_kind == "full":
        return Gaussians(q.loc, q.scale_tril).as_double()
    if not callable(getattr(family, "draw", None)):
        raise PyrovaeError(f"the gap decomposition needs a Gaussian or flow guide (with draw(encoding, eps)); "
                           f"guide '{vae.guide_name}' is neither")
    return FlowMembers(family, encoding.detach())


def optimal_member(vae, x: torch.Tensor, y: Optional[torch.Tensor], start: FlowMembers, steps: int = 2000,
                   lr: float = 0.02, final_lr: float = 5e-4, particles: int = 16) -> FlowMembers:
    """q*(z|x) in a flow family: every row's own encoding (base loc, log scale, context)
    maximizing its ELBO with the decoder, prior and the flows' shared weights fixed, by the
    SVI :func:`optimal_gaussian` runs."""
    x, y = prepare(vae, x, y)
    family = start.family

    def guide(x, y=None, kl_weight=1.0):
        encoding = pyro.param("qstar_encoding", start.encoding.to(x.dtype).clone())
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", family(encoding))

    _run_svi(vae, x, y, guide, steps, lr, final_lr, particles)
    return FlowMembers(family, pyro.get_param_store()["qstar_encoding"].detach().clone())


def _run_svi(vae, x, y, guide, steps: int, lr: float, final_lr: float, particles: int) -> None:
    """``steps`` steps of non-amortized SVI of ``guide`` against the fixed model, Adam with the
    learning rate decaying geometrically from ``lr`` to ``final_lr``; the fitted parameters
    are left in Pyro's store for the caller (inside :func:`fixed_parameters`)."""
    optimizer = ClippedAdam({"lr": lr, "lrd": (final_lr / lr) ** (1 / steps)})
    svi = SVI(vae.model, guide, optimizer,
              Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1))
    for _ in range(steps):
        svi.step(x, y)


def optimal_in_family(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, steps: int = 2000,
                      init: Optional[Members] = None) -> Members:
    """q*(z|x) in the guide's own family (see :func:`guide_gaussians`), from ``init`` (default
    the guide's q(z|x))."""
    start = guide_gaussians(vae, x, y) if init is None else init
    if isinstance(start, FlowMembers):
        with fixed_parameters(vae):
            return optimal_member(vae, x, y, start, steps)
    family = "full" if vae.guide_family.gaussian_kind == "full" else "diagonal"
    return optimal_gaussian(vae, x, y, family=family, steps=steps, init=start)


def optimal_gaussian(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, family: str = "diagonal",
                     steps: int = 2000, lr: float = 0.02, final_lr: float = 5e-4, particles: int = 16,
                     init: Optional[Gaussians] = None) -> Gaussians:
    """q*(z|x): for every row of ``x`` its own Gaussian maximizing the ELBO, with the decoder
    and prior fixed (non-amortized SVI on the VAE's Pyro model).

    ``family`` is ``"diagonal"`` (the guide's family, as the amortization gap needs) or
    ``"full"`` (a full covariance). The optimization starts at ``init`` (default the
    guide's q(z|x)) and runs ``steps`` steps of Adam with the learning rate decaying
    geometrically from ``lr`` to ``final_lr``, ``particles`` reparameterized draws per step.
    The ELBO of a batch is the sum of the points' ELBOs and Adam scales every coordinate on
    its own, so optimizing all points together is exactly optimizing each alone.
    """
    vae.require_continuous_latents("q*, the best Gaussian per point,", DISCRETE_INSTEAD)
    if family not in FAMILIES:
        raise PyrovaeError(f"unknown Gaussian family '{family}'; choose one of: {', '.join(FAMILIES)}")
    steps, particles = positive_int(steps, "the number of SVI steps"), positive_int(particles, "particles")
    x, y = prepare(vae, x, y)
    start = (guide_gaussians(vae, x, y) if init is None else init)
    dtype = x.dtype

    def guide(x, y=None, kl_weight=1.0):
        loc = pyro.param("qstar_loc", start.loc.to(dtype).clone())
        if family == "diagonal":
            scale = pyro.param("qstar_scale", start.scale_tril.diagonal(dim1=-2, dim2=-1).to(dtype).clone(),
                               constraint=constraints.positive)
            q = dist.Normal(loc, scale).to_event(1)
        else:
            tril = pyro.param("qstar_scale_tril", start.scale_tril.to(dtype).clone(),
                              constraint=constraints.lower_cholesky)
            q = dist.MultivariateNormal(loc, scale_tril=tril)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", q)

    with fixed_parameters(vae):
        _run_svi(vae, x, y, guide, steps, lr, final_lr, particles)
        store = pyro.get_param_store()
        loc = store["qstar_loc"].detach().double()
        if family == "diagonal":
            return Gaussians.diagonal(loc, store["qstar_scale"].detach().double())
        return Gaussians(loc, store["qstar_scale_tril"].detach().double())


# ----------------------------------------------------------------------------- ELBOs and log p(x)

@evaluation_mode
def gaussian_log_weights(vae, x: torch.Tensor, y: Optional[torch.Tensor], proposals: Sequence[Members],
                         num_samples: int, max_memory=DEFAULT_MAX_MEMORY) -> List[torch.Tensor]:
    """``log p(x, z_s) - log g(z_s)`` for ``num_samples`` draws from each g in ``proposals``
    (Gaussians, or flow members), every point: a list of float64 ``(N, num_samples)`` tensors.

    All proposals transform the same standard-normal draws (common random numbers), so
    differences between them are estimated with the noise of a paired comparison. Draws
    come in chunks under ``max_memory``, as importance sampling's do."""
    num_samples = positive_int(num_samples, "the number of samples")
    x, y = prepare(vae, x, y)
    n, dim = x.shape[0], vae.latent_dim
    proposals = [g.as_double() for g in proposals]
    cost = Cost.measure(lambda p, s: log_joint(vae, first_repeated(x, p), first_repeated(y, p),
                                                x.new_zeros(s, p, dim)))
    plan = plan_chunks(cost, n, num_samples, as_bytes(max_memory), len(proposals) * WEIGHT_COPIES * 8 * num_samples)
    out = [torch.empty(n, num_samples, dtype=torch.float64, device=x.device) for _ in proposals]
    for start in range(0, n, plan.points):
        stop = min(n, start + plan.points)
        xb, yb = x[start:stop], rows(y, start, stop)
        for s in range(0, num_samples, plan.samples):
            m = min(plan.samples, num_samples - s)
            eps = torch.randn(m, stop - start, dim, dtype=torch.float64, device=x.device)
            for g, buffer in zip(proposals, out):
                z, log_g = g.rows(start, stop).draw(eps)
                buffer[start:stop, s:s + m] = (log_joint(vae, xb, yb, z.to(x.dtype)) - log_g).T
    return out


def _mean_estimate(log_w: torch.Tensor) -> Estimate:
    """The mean over the last dim and its standard error: an ELBO from its log-weights."""
    return Estimate(log_w.mean(-1), log_w.std(-1) / math.sqrt(log_w.shape[-1]))


class LogMarginal(NamedTuple):
    """log p(x) per point with its error, how it was computed, and (for importance
    sampling) Pareto k-hat of the weights: above 0.7 the error is not to be trusted."""

    estimate: Estimate
    method: str
    khat: Optional[torch.Tensor]


def reference_log_marginal(vae, x: torch.Tensor, y: Optional[torch.Tensor], qstar: Members,
                           num_samples: int = 5000, inflation: float = PROPOSAL_INFLATION,
                           proposal_steps: int = PROPOSAL_STEPS, max_memory=DEFAULT_MAX_MEMORY) -> LogMarginal:
    """log p(x) per point: quadrature for 1-D and 2-D latent spaces (error from grid
    refinement), otherwise importance sampling (delta-method error and k-hat) from the
    full-covariance q*, fitted from ``qstar`` in ``proposal_steps`` more SVI steps, with
    its scales times ``inflation``. A diagonal q* is a poor proposal: its reverse-KL fit is
    too narrow along the posterior's correlations, and its weights' k-hat shows it."""
    if vae.latent_dim <= 2:
        return LogMarginal(quadrature_log_marginal(vae, x, y, max_memory=max_memory), "quadrature", None)
    proposal = optimal_gaussian(vae, x, y, family="full", steps=proposal_steps, init=as_gaussians(qstar))
    (log_w,) = gaussian_log_weights(vae, x, y, [proposal.scaled(inflation)], num_samples, max_memory)
    value, std_error, _ = log_mean_exp(log_w)
    return LogMarginal(Estimate(value, std_error),
                       f"importance sampling from the full-covariance q* x {inflation:g}, K = {num_samples}",
                       pareto_khat(log_w))


@dataclass
class Decomposition:
    """The inference gaps per data point (Cremer, Li & Duvenaud 2018), each an Estimate
    (values and Monte Carlo standard errors, float64 ``(N,)``)."""

    log_marginal: LogMarginal
    elbo_q: Estimate
    elbo_qstar: Estimate
    approximation_gap: Estimate   # log p(x) - ELBO(q*)
    amortization_gap: Estimate    # ELBO(q*) - ELBO(q)
    total_gap: Estimate           # log p(x) - ELBO(q)
    elbo_samples: int


def gap_decomposition(vae, x: torch.Tensor, y: Optional[torch.Tensor], q: Members, qstar: Members,
                      elbo_samples: int = 1000, is_samples: int = 5000, proposal_steps: int = PROPOSAL_STEPS,
                      max_memory=DEFAULT_MAX_MEMORY, log_marginal: Optional[LogMarginal] = None) -> Decomposition:
    """log p(x) - ELBO(q) = [log p(x) - ELBO(q*)] + [ELBO(q*) - ELBO(q)] per row of ``x``.

    The ELBOs are means of ``elbo_samples`` log-weights from common draws; the gaps' errors
    combine log p(x)'s error with the ELBOs' (independent), and the amortization gap's is
    the standard error of the paired differences. log p(x) is :func:`reference_log_marginal`
    unless given (an AIS estimate, say)."""
    log_w_q, log_w_star = gaussian_log_weights(vae, x, y, [q, qstar], elbo_samples, max_memory)
    lp = log_marginal or reference_log_marginal(vae, x, y, qstar, is_samples, proposal_steps=proposal_steps,
                                                max_memory=max_memory)
    elbo_q, elbo_star = _mean_estimate(log_w_q), _mean_estimate(log_w_star)
    value = lp.estimate.value.to(elbo_q.value)
    error = lp.estimate.std_error.to(elbo_q.value)
    return Decomposition(
        log_marginal=lp, elbo_q=elbo_q, elbo_qstar=elbo_star,
        approximation_gap=Estimate(value - elbo_star.value, error.hypot(elbo_star.std_error)),
        amortization_gap=_mean_estimate(log_w_star - log_w_q),
        total_gap=Estimate(value - elbo_q.value, error.hypot(elbo_q.std_error)),
        elbo_samples=elbo_samples)


# ----------------------------------------------------------------------------- MCMC

@dataclass
class ChainResult:
    """Posterior samples of one data point from one MCMC chain, with its diagnostics."""

    samples: torch.Tensor          # (S, L), float64
    ess: torch.Tensor              # effective sample size per latent dimension
    r_hat: torch.Tensor            # split R-hat per latent dimension (one chain split in halves)
    divergences: int
    acceptance_rate: float
    step_size: float
    seconds: float


def mcmc_posterior(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, kernel: str = "nuts",
                   num_samples: int = 1000, warmup_steps: int = 500, init: Optional[Members] = None,
                   seed: int = 0) -> List[ChainResult]:
    """Samples of p(z|x) for every row of ``x`` by Pyro's NUTS (or HMC), one chain per point.

    The target is the VAE's own Pyro model conditioned on that point, with every network
    and prior parameter held fixed; the chain starts at ``init``'s mean (default the
    guide's) and adapts its step size and a diagonal mass matrix during warm-up.
    """
    vae.require_continuous_latents(f"{kernel.upper()} sampling of p(z|x)", DISCRETE_INSTEAD)
    if kernel not in MCMC_KERNELS:
        raise PyrovaeError(f"unknown MCMC kernel '{kernel}'; choose one of: {', '.join(MCMC_KERNELS)}")
    num_samples = positive_int(num_samples, "the number of MCMC samples")
    if num_samples < 4:
        raise PyrovaeError("MCMC needs at least 4 samples to estimate its effective sample size; ask for more")
    x, y = prepare(vae, x, y)
    init = as_gaussians(guide_gaussians(vae, x, y) if init is None else init)
    results = []
    with fixed_parameters(vae):
        for i in range(x.shape[0]):
            pyro.set_rng_seed(seed + i)
            model = functools.partial(vae.model, x[i:i + 1], rows(y, i, i + 1))
            start = init_to_value(values={"z": init.loc[i:i + 1].to(x.dtype)})
            sampler = (NUTS(model, init_strategy=start, max_plate_nesting=1) if kernel == "nuts"
                       else HMC(model, init_strategy=start, max_plate_nesting=1))
            mcmc = MCMC(sampler, num_samples=num_samples, warmup_steps=warmup_steps, disable_progbar=True)
            began = time.perf_counter()
            mcmc.run()
            seconds = time.perf_counter() - began
            z = mcmc.get_samples()["z"].reshape(num_samples, -1).detach().double()
            diagnostics = mcmc.diagnostics()
            results.append(ChainResult(
                samples=z, ess=effective_sample_size(z[None], 0, 1),
                r_hat=diagnostics["z"]["r_hat"].reshape(-1).double(),
                divergences=len(diagnostics["divergences"]["chain 0"]),
                acceptance_rate=float(diagnostics["acceptance rate"]["chain 0"]),
                step_size=float(sampler.step_size), seconds=seconds))
    return results


# ----------------------------------------------------------------------------- the grid

@dataclass
class GridPosterior:
    """p(z|x) of one point on a 2-D grid: ``log_density[i, j]`` at ``(z1[i], z2[j])``,
    normalized by the quadrature estimate of log p(x)."""

    z1: torch.Tensor
    z2: torch.Tensor
    log_density: torch.Tensor
    log_marginal: float
    log_marginal_error: float
    mass_on_grid: float           # the grid's own trapezoidal integral of the density (about 1)
    mean: torch.Tensor            # (2,)
    covariance: torch.Tensor      # (2, 2)
    modes: List[Mode] = field(default_factory=list)
    log_weight: Optional[torch.Tensor] = None  # trapezoidal log weights of the nodes (cell volume included)

    def mode_points(self) -> List[dict]:
        """The separated modes as latent coordinates, mass shares and log densities."""
        return [{"z": [float(self.z1[m.row]), float(self.z2[m.col])], "mass": m.mass,
                 "log_density": m.log_peak - self.log_marginal} for m in self.modes]

    @property
    def multimodal(self) -> bool:
        return len(self.modes) >= 2


def _trapezoid_log_weights(nodes: int) -> torch.Tensor:
    """log of the 2-D trapezoidal weights (1, or 1/2 per axis at the ends) on a square grid."""
    w = torch.zeros(nodes, dtype=torch.float64)
    w[[0, -1]] = math.log(0.5)
    return w[:, None] + w[None, :]


@evaluation_mode
def grid_posterior(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, nodes: int = GRID_NODES,
                   max_memory=DEFAULT_MAX_MEMORY, min_mass: float = DEFAULT_MIN_MASS,
                   saddle_ratio: float = DEFAULT_SADDLE_RATIO) -> List[GridPosterior]:
    """The posterior of every row of ``x`` on a ``nodes`` x ``nodes`` grid over the box that
    quadrature integrated (widened until the mass on its boundary is negligible), normalized by quadrature's log p(x), with its
    moments (trapezoidal rule) and its separated modes (:func:`.modes.find_modes`)."""
    vae.require_continuous_latents("the grid posterior", DISCRETE_INSTEAD)
    if vae.latent_dim != 2:
        raise PyrovaeError(f"the grid posterior needs a 2-D latent space; this VAE has {vae.latent_dim} "
                           f"latent dimensions (use MCMC samples and the pairwise plots instead)")
    nodes = positive_int(nodes, "the number of grid nodes")
    x, y = prepare(vae, x, y)
    max_memory = as_bytes(max_memory)
    log_px, center, half = quadrature_with_box(vae, x, y, width=LOCATE_WIDTH, max_memory=max_memory)
    log_f = log_joint_on_grid(vae, x, y, center, half, nodes, max_memory)
    axis = torch.linspace(-1, 1, nodes, dtype=torch.float64)
    log_trapezoid = _trapezoid_log_weights(nodes)
    grids = []
    for i in range(x.shape[0]):
        z1, z2 = (center[i, d].cpu() + half[i, d].cpu() * axis for d in range(2))
        log_weight = log_trapezoid + float((2 * half[i] / (nodes - 1)).log().sum())
        log_density = log_f[i].cpu().reshape(nodes, nodes) - float(log_px.value[i])
        p = (log_density + log_weight - torch.logsumexp((log_density + log_weight).flatten(), 0)).exp()
        mean = torch.stack([(p.sum(1) * z1).sum(), (p.sum(0) * z2).sum()])
        d1, d2 = z1 - mean[0], z2 - mean[1]
        c11, c22, c12 = (p.sum(1) * d1 ** 2).sum(), (p.sum(0) * d2 ** 2).sum(), (p * d1[:, None] * d2[None]).sum()
        grids.append(GridPosterior(
            z1=z1, z2=z2, log_density=log_density, log_marginal=float(log_px.value[i]),
            log_marginal_error=float(log_px.std_error[i]),
            mass_on_grid=float(torch.logsumexp((log_density + log_weight).flatten(), 0).exp()),
            mean=mean, covariance=torch.stack([torch.stack([c11, c12]), torch.stack([c12, c22])]),
            modes=find_modes(log_density, log_weight, min_mass, saddle_ratio), log_weight=log_weight))
    return grids


# ----------------------------------------------------------------------------- checking MCMC

@dataclass
class MomentComparison:
    """MCMC moments against reference values, each with its Monte Carlo standard error
    from the effective sample size of that very function of the chain."""

    names: List[str]
    mcmc: torch.Tensor
    reference: torch.Tensor
    std_error: torch.Tensor

    @property
    def z_scores(self) -> torch.Tensor:
        return (self.mcmc - self.reference) / self.std_error

    def as_dict(self) -> dict:
        return {name: {"mcmc": float(m), "reference": float(r), "std_error": float(s), "z": float(z)}
                for name, m, r, s, z in zip(self.names, self.mcmc, self.reference, self.std_error, self.z_scores)}


def compare_moments(samples: torch.Tensor, mean: torch.Tensor, covariance: torch.Tensor) -> MomentComparison:
    """Compare a chain's means and covariances with reference ones (the grid's, or a
    closed form's): for each function f (z_j, and (z_j - m_j)(z_k - m_k) centred at the
    reference mean m), the chain average of f, the reference E[f] and the Monte Carlo
    standard error sd(f) / sqrt(ESS(f)). The z-scores are about standard normal when the
    chain targets the reference distribution."""
    samples, mean, covariance = samples.double(), mean.double(), covariance.double()
    dim = samples.shape[-1]
    centred = samples - mean
    names, columns, reference = [], [], []
    for j in range(dim):
        names.append(f"mean z{j + 1}")
        columns.append(samples[:, j])
        reference.append(mean[j])
    for j in range(dim):
        for k in range(j, dim):
            names.append(f"var z{j + 1}" if j == k else f"cov z{j + 1},z{k + 1}")
            columns.append(centred[:, j] * centred[:, k])
            reference.append(covariance[j, k])
    f = torch.stack(columns, -1)
    ess = effective_sample_size(f[None], 0, 1).clamp_min(1.0)
    return MomentComparison(names, f.mean(0), torch.stack(reference), f.std(0) / ess.sqrt())


# ----------------------------------------------------------------------------- everything for chosen points

@dataclass
class PosteriorInspection:
    """Everything :func:`inspect_posterior` measures for the chosen points."""

    q: Members
    qstar: Members
    decomposition: Decomposition
    chains: Optional[List[ChainResult]]
    grids: Optional[List[GridPosterior]]
    comparisons: Optional[List[MomentComparison]]
    seconds: Dict[str, float]
    settings: Dict[str, object]


def inspect_posterior(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, mcmc: Optional[str] = "nuts",
                      num_samples: int = 1000, warmup_steps: int = 500, svi_steps: int = 2000,
                      elbo_samples: int = 1000, is_samples: int = 5000, grid_nodes: int = GRID_NODES,
                      seed: int = 0, max_memory=DEFAULT_MAX_MEMORY) -> PosteriorInspection:
    """p(z|x) beside q(z|x) and q*(z|x) for every row of ``x`` (a few chosen points):
    MCMC samples (``mcmc`` "nuts", "hmc" or None to skip), the grid posterior and the
    comparison of the chain's moments with it (2-D latent spaces), q*, and the gap
    decomposition. ``seconds`` holds the wall time of each part."""
    vae.require_continuous_latents("the posterior inspection (MCMC, grid, q* and the gap decomposition)",
                                   DISCRETE_INSTEAD)
    if mcmc is not None and mcmc not in MCMC_KERNELS:
        raise PyrovaeError(f"unknown MCMC kernel '{mcmc}'; choose one of: {', '.join(MCMC_KERNELS)} (or none)")
    seconds = {}

    def timed(name, fn, *args, **kwargs):
        began = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds[name] = time.perf_counter() - began
        return out

    pyro.set_rng_seed(seed)
    q = guide_gaussians(vae, x, y)
    qstar = timed("optimal_gaussian", optimal_in_family, vae, x, y, steps=svi_steps, init=q)
    decomposition = timed("decomposition", gap_decomposition, vae, x, y, q, qstar, elbo_samples, is_samples,
                          max_memory=max_memory)
    grids = timed("grid", grid_posterior, vae, x, y, grid_nodes, max_memory) if vae.latent_dim == 2 else None
    chains = comparisons = None
    if mcmc is not None:
        chains = timed("mcmc", mcmc_posterior, vae, x, y, mcmc, num_samples, warmup_steps, seed=seed)
        if grids is not None:
            comparisons = [compare_moments(c.samples, g.mean, g.covariance) for c, g in zip(chains, grids)]
    settings = {"mcmc": mcmc, "num_samples": num_samples, "warmup_steps": warmup_steps, "svi_steps": svi_steps,
                "elbo_samples": elbo_samples, "is_samples": is_samples, "grid_nodes": grid_nodes, "seed": seed}
    return PosteriorInspection(q, qstar, decomposition, chains, grids, comparisons, seconds, settings)


# ----------------------------------------------------------------------------- a run's gap summary

def gap_summary(vae, x: torch.Tensor, y: Optional[torch.Tensor], log_marginal: LogMarginal, svi_steps: int = 500,
                elbo_samples: int = 500, khat_samples: int = 1000, seed: int = 0,
                max_memory=DEFAULT_MAX_MEMORY) -> dict:
    """The gap decomposition of the rows of ``x`` against a given log p(x) (an evaluation's,
    AIS or importance sampling), averaged over the points: each quantity's mean over points
    with the standard error of that mean (spread over points and Monte Carlo error), and the
    guide's importance weights' Pareto k-hat (median over points) and normalised ESS (mean),
    from ``khat_samples`` draws of the guide per point. What a sweep's gap table shows."""
    from .importance import importance_sample

    pyro.set_rng_seed(seed)
    q = guide_gaussians(vae, x, y)
    qstar = optimal_in_family(vae, x, y, steps=svi_steps, init=q)
    d = gap_decomposition(vae, x, y, q, qstar, elbo_samples, max_memory=max_memory, log_marginal=log_marginal)
    weights = importance_sample(vae, x, y, khat_samples, khat=True, max_memory=max_memory, seed=seed)

    def mean(e: Estimate) -> dict:
        n = e.value.numel()
        spread = e.value.std() / math.sqrt(n) if n > 1 else torch.tensor(0.0)
        return {"mean": float(e.value.mean()), "std_error": float(spread.hypot(e.std_error.norm() / n))}

    return {"points": x.shape[0], "svi_steps": svi_steps, "elbo_samples": elbo_samples,
            "log_marginal_method": log_marginal.method,
            **{name: mean(getattr(d, name)) for name in
               ("elbo_q", "elbo_qstar", "approximation_gap", "amortization_gap", "total_gap")},
            "log_marginal": mean(d.log_marginal.estimate),
            "khat_median": float(weights.khat.nanmedian()), "ess_mean": float(weights.ess.mean()),
            "khat_samples": khat_samples}
