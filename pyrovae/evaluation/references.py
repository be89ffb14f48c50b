"""Exact references to check estimates against: :class:`LinearGaussian` (probabilistic
PCA: closed-form marginal, posterior and ELBO) and :func:`quadrature_log_marginal` (a grid
over a 1-D or 2-D latent space)."""

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import pyro.distributions as dist
import torch

from ..components.likelihoods import MEAN_ACTIVATIONS, LocScale
from ..components.networks import MLP
from ..components.priors import StandardNormal
from ..errors import PyrovaeError
from ..inference.log_joint import evaluation_mode, log_joint, prepare
from .chunking import DEFAULT_MAX_MEMORY, WEIGHT_COPIES, Cost, as_bytes, collect, first_repeated, plan_chunks, rows
from .diagnostics import Estimate
from .discrete import DISCRETE_INSTEAD


@dataclass
class LinearGaussian:
    """z ~ N(0, I_L), x = W z + b + eps, eps ~ N(0, s^2 I_D): probabilistic PCA, whose
    marginal, posterior and ELBO have closed forms (all in float64).

    A VAE with a linear decoder (``mlp`` with ``hidden: []``), the ``gaussian_fixed``
    likelihood with ``mean_activation: identity`` and the standard normal prior is exactly
    this model, with W and b its decoder's weight and bias and s its likelihood's sigma.
    """

    weight: torch.Tensor  # W, (D, L)
    bias: torch.Tensor    # b, (D,)
    noise: float          # s, the noise standard deviation

    @staticmethod
    def describes(vae) -> bool:
        """Whether ``vae`` is this model: a linear decoder, a fixed-variance Gaussian
        likelihood with identity mean, the standard normal prior, no conditioning."""
        lik = vae.likelihood
        linear = isinstance(vae.decoder, MLP) and len(vae.decoder.body) == 0 and not vae.num_classes
        gaussian = (isinstance(lik, LocScale) and lik.family is dist.Normal and lik.fixed_scale is not None
                    and lik.loc_fn is MEAN_ACTIVATIONS["identity"])
        return linear and gaussian and isinstance(vae.prior, StandardNormal)

    @classmethod
    def from_vae(cls, vae, differentiable: bool = False) -> "LinearGaussian":
        """The model ``vae`` is (see :meth:`describes`), in float64; with ``differentiable``
        its quantities stay in the autograd graph of the decoder's parameters."""
        if not cls.describes(vae):
            raise PyrovaeError("the closed form needs the linear-Gaussian VAE of the linear_gaussian config "
                               "(decoder mlp with hidden: [], likelihood gaussian_fixed with mean_activation: "
                               "identity, prior standard_normal); for a 1-D or 2-D latent space use quadrature")
        weight, bias = vae.decoder.head.weight, vae.decoder.head.bias
        if not differentiable:
            weight, bias = weight.detach(), bias.detach()
        return cls(weight.double(), bias.double(), float(vae.likelihood.fixed_scale))

    @classmethod
    def from_extras(cls, extras: Dict[str, torch.Tensor]) -> "LinearGaussian":
        """The true model behind the ``linear_gaussian`` dataset (its ``Dataset.extras``)."""
        return cls(extras["weight"].double(), extras["bias"].double(), float(extras["noise"]))

    @property
    def latent_dim(self) -> int:
        return self.weight.shape[1]

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1).to(self.weight)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log N(x; b, W W^T + s^2 I) per row of ``x``."""
        d = self.weight.shape[0]
        cov = self.weight @ self.weight.T + self.noise ** 2 * torch.eye(d, dtype=torch.float64)
        return dist.MultivariateNormal(self.bias, covariance_matrix=cov).log_prob(self._flat(x))

    def posterior_map(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(A, c, Sigma)`` with p(z|x) = N(A x + c, Sigma): Sigma = (I + W^T W / s^2)^-1,
        A = Sigma W^T / s^2, c = -A b."""
        precision = torch.eye(self.latent_dim, dtype=torch.float64) + self.weight.T @ self.weight / self.noise ** 2
        cov = torch.linalg.inv(precision)
        matrix = cov @ self.weight.T / self.noise ** 2
        return matrix, -matrix @ self.bias, cov

    def posterior(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(N, L)`` and covariance ``(L, L)`` of p(z|x) for every row of ``x``."""
        matrix, offset, cov = self.posterior_map()
        return self._flat(x) @ matrix.T + offset, cov

    def elbo(self, x: torch.Tensor, loc: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        """The ELBO for q(z|x) = N(loc, cov) per row (``cov`` is ``(L, L)`` or ``(N, L, L)``):

        log N(x; W m + b, s^2 I) - tr(W^T W S) / (2 s^2) - (m^T m + tr S) / 2 + log|S| / 2 + L / 2,

        which equals log p(x) - KL(q || p(z|x)).
        """
        x, loc, cov = self._flat(x), loc.to(self.weight), cov.to(self.weight)
        fit = dist.Normal(loc @ self.weight.T + self.bias, self.noise).log_prob(x).sum(-1)
        spread = (self.weight.T @ self.weight * cov).sum((-2, -1)) / (2 * self.noise ** 2)
        trace = cov.diagonal(dim1=-2, dim2=-1).sum(-1)
        return fit - spread - ((loc ** 2).sum(-1) + trace) / 2 + torch.logdet(cov) / 2 + self.latent_dim / 2


def exact_log_marginal(vae, x: torch.Tensor) -> torch.Tensor:
    """The closed-form log p(x) of a linear-Gaussian VAE per row of ``x`` (float64)."""
    return LinearGaussian.from_vae(vae).log_marginal(x)


def exact_elbo(vae, x: torch.Tensor, differentiable: bool = False) -> torch.Tensor:
    """The closed-form ELBO of a linear-Gaussian VAE's own guide per row of ``x``; with
    ``differentiable`` a function of every parameter (decoder and encoder) for autograd."""
    with torch.set_grad_enabled(differentiable):
        model = LinearGaussian.from_vae(vae, differentiable)
        loc, scale = vae.encode(x.to(next(vae.parameters())))
        return model.elbo(x, loc, torch.diag_embed(scale.double() ** 2))


# ----------------------------------------------------------------------------- quadrature

LOCATE_NODES = 201     # nodes per axis of the grid that looks for the posterior
LOCATE_DEPTH = 30.0    # nats below the highest node that still count as posterior mass
PRIOR_SAMPLES = 10000  # prior draws whose range spans the search box
EDGE_TOLERANCE = 1e-9  # largest share of the integral allowed on the box's boundary
MAX_ROUNDS = 3         # grid refinements and widenings after the first grid
SPREAD_DRAWS = 1000    # draws of a guide that is not a diagonal Gaussian, locating its mass


def _on_grid(vae, x, y, center, half, nodes: int, max_memory: int, reduce) -> Tuple[torch.Tensor, ...]:
    """Evaluate log p(x, z) on ``nodes`` evenly spaced nodes per axis spanning each point's
    box center +- half (in chunks under the memory bound), and ``reduce(log_f, unit, c, h)``
    each batch's ``(grid, points)`` values to per-point tensors. ``unit`` holds the nodes in
    [-1, 1]^dim."""
    dim = center.shape[-1]
    axis = torch.linspace(-1, 1, nodes, dtype=torch.float64, device=center.device)
    unit = torch.cartesian_prod(*[axis] * dim).reshape(-1, dim)
    grid_size, dtype = unit.shape[0], x.dtype
    cost = Cost.measure(lambda p, s: log_joint(vae, first_repeated(x, p), first_repeated(y, p),
                                                center.new_zeros(s, p, dim, dtype=dtype)))
    plan = plan_chunks(cost, x.shape[0], grid_size, max_memory, WEIGHT_COPIES * 8 * grid_size)

    def batches():
        for start in range(0, x.shape[0], plan.points):
            stop = start + plan.points
            c, h = center[start:stop], half[start:stop]
            log_f = torch.cat([log_joint(vae, x[start:stop], rows(y, start, stop),
                                          (c + h * unit[g:g + plan.samples, None]).to(dtype))
                               for g in range(0, grid_size, plan.samples)])
            yield reduce(log_f, unit, c, h)

    return collect(x.shape[0], batches())


def _posterior_box(log_f, unit, center, half):
    """The box around every node within LOCATE_DEPTH nats of the highest one, grown by
    one node spacing on each side: where the posterior's mass is."""
    keep = (log_f > log_f.amax(0) - LOCATE_DEPTH)[..., None]
    z = center + half * unit[:, None]
    spacing = 2 * half / (LOCATE_NODES - 1)
    lower = torch.where(keep, z, math.inf).amin(0) - spacing
    upper = torch.where(keep, z, -math.inf).amax(0) + spacing
    return (lower + upper) / 2, (upper - lower) / 2


def _trapezoid(n: int):
    """Trapezoidal rule on 2n + 1 nodes per axis, with a second, coarser value from every
    other node (n + 1 nodes) at no extra cost. For an integrand that vanishes at the box's
    boundary the rule converges faster than any power of the node spacing. Returns a reducer
    giving per point the fine and coarse log integrals and the share of the integral on the
    boundary (large when the box cuts off posterior mass)."""

    def reduce(log_f, unit, center, half):
        dim = unit.shape[-1]
        log_half_weight = (unit.abs() == 1).sum(-1) * math.log(0.5)  # weight 1/2 at an axis' ends
        coarse = ((unit + 1) * n).round().remainder(2).eq(0).all(-1)  # every other node, per axis
        weighted = log_f + log_half_weight[:, None]
        total = torch.logsumexp(weighted, 0)
        log_cell = (half / n).log().sum(-1)  # the fine grid's cell volume
        edge = torch.logsumexp(weighted[(unit.abs() == 1).any(-1)], 0) - total
        return (total + log_cell, torch.logsumexp(weighted[coarse], 0) + log_cell + dim * math.log(2), edge.exp())

    return reduce


def guide_centre_and_spread(vae, x: torch.Tensor, y: Optional[torch.Tensor]):
    """Where q(z|x) sits and how wide, per point and dimension: the diagonal Gaussian guide's
    loc and scale, another guide's mean and standard deviation over ``SPREAD_DRAWS`` draws."""
    if vae.guide_family.gaussian_kind == "diagonal":
        return vae.encode(x, y)
    draws = vae.posterior(x, y).sample((SPREAD_DRAWS,))
    return draws.mean(0), draws.std(0)


def locate_posterior(vae, x: torch.Tensor, y: Optional[torch.Tensor], width: float, max_memory: int):
    """Center and half-widths ``(N, dim)`` of a box around each point's posterior mass:
    log p(x, z) is evaluated on a grid spanning the range of many prior draws and +-
    ``width`` guide standard deviations around the guide's mean, and the box holds every
    node within 30 nats of the highest (so a posterior mode the guide misses is still
    found). ``x`` and ``y`` are already prepared; runs in evaluation mode."""
    loc, scale = (t.double() for t in guide_centre_and_spread(vae, x, y))
    prior_draws = vae.prior().sample((PRIOR_SAMPLES,)).double()
    lower = torch.minimum(loc - width * scale, prior_draws.amin(0))
    upper = torch.maximum(loc + width * scale, prior_draws.amax(0))
    return _on_grid(vae, x, y, (lower + upper) / 2, (upper - lower) / 2, LOCATE_NODES, max_memory, _posterior_box)


def log_joint_on_grid(vae, x: torch.Tensor, y: Optional[torch.Tensor], center: torch.Tensor, half: torch.Tensor,
                      nodes: int, max_memory: int) -> torch.Tensor:
    """log p(x, z) per point on ``nodes`` evenly spaced nodes per axis over its box
    ``center +- half``: shape ``(N, nodes ** dim)``, the first latent coordinate varying
    slowest. ``x`` and ``y`` are already prepared; runs in evaluation mode."""
    return _on_grid(vae, x, y, center, half, nodes, max_memory, lambda log_f, unit, c, h: log_f.T)


def quadrature_log_marginal(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, points_per_axis: int = 32,
                            width: float = 8.0, tolerance: float = 1e-3,
                            max_memory=DEFAULT_MAX_MEMORY) -> Estimate:
    """log p(x) per row of ``x`` by numerical integration over a 1-D or 2-D latent space.

    First the posterior is located: log p(x, z) is evaluated on a grid spanning the range
    of many prior draws and +- ``width`` guide standard deviations around the guide's mean,
    and the integration box is placed around every node within 30 nats of the highest
    (so a posterior mode the guide misses is still found). Then the box is integrated with
    the trapezoidal rule on 2n + 1 nodes per axis (n = ``points_per_axis``). The error
    estimate is the difference from the rule on every other node (the error of the coarser
    grid: a generous bound for the finer one) plus the share of the integral on the box's
    boundary. Where that share exceeds a tiny tolerance the box is doubled, where the two
    grids differ by more than ``tolerance`` nats the grid is refined; at most three times.
    """
    return quadrature_with_box(vae, x, y, points_per_axis, width, tolerance, max_memory)[0]


@evaluation_mode
def quadrature_with_box(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, points_per_axis: int = 32,
                        width: float = 8.0, tolerance: float = 1e-3, max_memory=DEFAULT_MAX_MEMORY):
    """:func:`quadrature_log_marginal`, with the box it integrated each point over: the
    estimate, the boxes' centers and half-widths ``(N, dim)`` (a grid over that box holds the
    posterior's mass: its share on the box's boundary is below ``EDGE_TOLERANCE``)."""
    vae.require_continuous_latents("quadrature", DISCRETE_INSTEAD)
    if vae.latent_dim not in (1, 2):
        raise PyrovaeError(f"quadrature integrates 1-D or 2-D latent spaces; this VAE has {vae.latent_dim} "
                           f"latent dimensions, use importance sampling (log_marginal)")
    x, y = prepare(vae, x, y)
    max_memory = as_bytes(max_memory)
    center, half = locate_posterior(vae, x, y, width, max_memory)
    value = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    error = torch.empty_like(value)
    todo = torch.arange(x.shape[0], device=x.device)
    for round_ in range(MAX_ROUNDS + 1):
        n = points_per_axis * 2 ** round_
        fine, coarse, edge = _on_grid(vae, x[todo], None if y is None else y[todo], center[todo], half[todo],
                                      2 * n + 1, max_memory, _trapezoid(n))
        value[todo], error[todo] = fine, (fine - coarse).abs() + edge
        widen = edge > EDGE_TOLERANCE
        half[todo[widen]] *= 2
        todo = todo[widen | ((fine - coarse).abs() > tolerance)]
        if todo.numel() == 0:
            break
    return Estimate(value, error), center, half
