"""Guides q(z|x): the variational family, chosen in the config like the prior and the likelihood.

A guide family turns what the encoder network outputs for a data point into the distribution
q(z|x) the guide samples z from. It is an ``nn.Module`` (trainable parts of the family that
are not per-point, such as a flow's shared weights, live in it) with:

- ``encoder_out_shape``: the shape the encoder must output per data point (the diagonal
  Gaussian's ``(2, latent_dim)``: loc and log scale);
- a call ``guide(encoding, target=None)`` returning q(z|x): a Pyro distribution with batch
  shape ``encoding.shape[:-len(encoder_out_shape)]`` and event shape ``(latent_dim,)``. A
  semi-amortized family also uses ``target``, a function of z ``(..., points, latent_dim)``
  giving log p(x, z) per point ``(..., points)``; the others ignore it;
- ``support``: the torch constraint q(z|x) lives on (``real_vector`` for Gaussians and flows,
  ``independent(boolean, 1)`` for Bernoulli latents), so a prior on another space is refused
  when the model is built (:func:`check_support`);
- ``reparameterized``: whether q's samples carry a pathwise gradient (``has_rsample``); the
  pathwise estimators refuse a guide without it;
- ``gaussian_kind``: ``"diagonal"`` or ``"full"`` when q(z|x) is a Gaussian of that kind
  (what an analytic KL, ``VAE.encode`` and the Gaussian evaluation methods need), else None;
- ``code(encoding, target=None)``: one point summarising q(z|x) per data point, for plots
  and reconstructions (q's mean by default).

Factories take the family's inputs ``latent_dim`` and their options as keywords; a plugin
registers its own family into :data:`GUIDES` with ``pyrovae.register("guide", name)``.
"""

from typing import Callable, List, Optional, Sequence, Tuple

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import ConditionalAffineAutoregressive
from pyro.distributions.transforms.planar import ConditionedPlanar
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn
from torch.distributions import Distribution, constraints

from ..errors import PyrovaeError, positive_int
from ..registry import Contract, Registry

Target = Optional[Callable[[torch.Tensor], torch.Tensor]]

GUIDE_ATTRIBUTES = ("encoder_out_shape", "support", "reparameterized", "gaussian_kind", "code")

GUIDES = Registry("guide", inputs=("latent_dim",), contract=Contract(
    "a guide family: an nn.Module with encoder_out_shape, support, reparameterized, gaussian_kind and code "
    "(subclass pyrovae.components.guides.Guide), whose call maps the encoder's output to q(z|x)",
    lambda part: isinstance(part, nn.Module) and all(hasattr(part, a) for a in GUIDE_ATTRIBUTES)))


class Guide(nn.Module):
    """Base class of every guide family (see the module's docstring for the contract)."""

    encoder_out_shape: Tuple[int, ...] = ()
    support = constraints.real_vector
    reparameterized = True
    gaussian_kind: Optional[str] = None

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self, encoding: torch.Tensor, target: Target = None) -> Distribution:
        raise NotImplementedError

    def code(self, encoding: torch.Tensor, target: Target = None) -> torch.Tensor:
        """One latent point per data point standing for q(z|x): its mean."""
        return self(encoding, target).mean

    def per_point(self, encoding: torch.Tensor, target: Target = None) -> Tuple["Guide", torch.Tensor]:
        """The family q*(z|x) is sought in when the encoder is replaced by free per-point
        parameters (the amortization gap), and q(z|x) as an encoding of that family: by
        default this family and the encoder's own output."""
        return self, encoding


class DiagonalNormal(Guide):
    """q(z|x) = N(mu(x), diag sigma(x)^2), ``(mu, log sigma)`` = the encoder's two rows
    (Kingma & Welling 2014). Holds no parameters of its own."""

    gaussian_kind = "diagonal"

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        self.encoder_out_shape = (2, latent_dim)

    def forward(self, encoding: torch.Tensor, target: Target = None) -> Distribution:
        loc, log_scale = encoding.unbind(-2)
        return dist.Normal(loc, log_scale.exp()).to_event(1)

    def code(self, encoding: torch.Tensor, target: Target = None) -> torch.Tensor:
        return encoding.select(-2, 0)


class FullCovariance(Guide):
    """q(z|x) = N(mu(x), L(x) L(x)^T), L lower triangular with diagonal exp(l(x)) and the
    strict lower triangle read from the encoder: a flat output of ``2 D + D (D - 1) / 2``
    numbers (loc, log diagonal, off-diagonal entries row by row)."""

    gaussian_kind = "full"

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        self.encoder_out_shape = (2 * latent_dim + latent_dim * (latent_dim - 1) // 2,)
        rows, cols = torch.tril_indices(latent_dim, latent_dim, offset=-1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def forward(self, encoding: torch.Tensor, target: Target = None) -> Distribution:
        d = self.latent_dim
        loc, log_diagonal, below = encoding[..., :d], encoding[..., d:2 * d], encoding[..., 2 * d:]
        scale_tril = torch.diag_embed(log_diagonal.exp())
        scale_tril[..., self.rows, self.cols] = below
        return dist.MultivariateNormal(loc, scale_tril=scale_tril)

    def code(self, encoding: torch.Tensor, target: Target = None) -> torch.Tensor:
        return encoding[..., :self.latent_dim]


class FlowDistribution(dist.TransformedDistribution):
    """A flow's q(z|x); ``log_prob`` away from the flow's own draws needs the inverse, and a
    flow without one (planar) says so in one line instead of Pyro's KeyError."""

    def __init__(self, base, transforms, label: str, validate_args=None):
        super().__init__(base, transforms, validate_args=validate_args)
        self.label = label

    def expand(self, batch_shape, _instance=None):
        new = super().expand(batch_shape, _instance=_instance or FlowDistribution.__new__(FlowDistribution))
        new.label = self.label
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        try:
            return super().log_prob(value)
        except KeyError:
            raise PyrovaeError(f"{self.label} has log q(z|x) only at its own draws (the flow has no inverse); "
                               f"use a method that scores the guide's own draws, or an invertible guide (iaf)") from None


class Flow(Guide):
    """q(z|x) = the law of z_K = f_K(... f_1(z_0)), z_0 ~ N(mu(x), diag sigma(x)^2), the flows
    f_k conditioned on a context h(x) the encoder also outputs: a flat encoder output of
    ``2 D + context_dim`` numbers (loc, log scale, context). By the change of variables
    log q(z_K|x) = log N(z_0) - sum_k log |det d f_k / d z_{k-1}|."""

    def __init__(self, latent_dim: int, context_dim: int, label: str):
        super().__init__(latent_dim)
        self.encoder_out_shape = (2 * latent_dim + context_dim,)
        self.label = label

    def transforms(self, context: torch.Tensor) -> List:
        raise NotImplementedError

    def parts(self, encoding: torch.Tensor):
        d = self.latent_dim
        base = dist.Normal(encoding[..., :d], encoding[..., d:2 * d].exp()).to_event(1)
        return base, self.transforms(encoding[..., 2 * d:])

    def forward(self, encoding: torch.Tensor, target: Target = None) -> Distribution:
        base, transforms = self.parts(encoding)
        return FlowDistribution(base, transforms, self.label)

    def code(self, encoding: torch.Tensor, target: Target = None) -> torch.Tensor:
        """The flow's image of the base mean (a flow's mean has no closed form)."""
        return self.draw(encoding, torch.zeros_like(encoding[..., :self.latent_dim]))[0]

    def draw(self, encoding: torch.Tensor, eps: torch.Tensor):
        """z pushed through the flow from the base's standard-normal noise ``eps``
        ``(..., points, D)``, and log q(z|x) (through the transforms' caches: no inverse)."""
        base, transforms = self.parts(encoding)
        z = base.base_dist.loc + base.base_dist.scale * eps
        for transform in transforms:
            z = transform(z)
        return z, FlowDistribution(base, transforms, self.label).log_prob(z)


class InverseAutoregressive(Flow):
    """Inverse autoregressive flow (Kingma et al. 2016): each step z <- sigma * z + (1 - sigma) * m,
    (m, log-odds of sigma) from a MADE of z and the context (Pyro's conditional affine
    autoregressive transform, ``stable`` form), consecutive steps in reversed orders."""

    def __init__(self, latent_dim: int, flows: int, hidden: Sequence[int], context_dim: int):
        super().__init__(latent_dim, context_dim, "guide 'iaf'")
        order = torch.arange(latent_dim)
        self.steps = nn.ModuleList(
            ConditionalAffineAutoregressive(ConditionalAutoRegressiveNN(
                latent_dim, context_dim, list(hidden), permutation=order if k % 2 == 0 else order.flip(0)),
                stable=True)
            for k in range(flows))

    def transforms(self, context: torch.Tensor) -> List:
        return [step.condition(context) for step in self.steps]


class Planar(Flow):
    """Planar flows (Rezende & Mohamed 2015), amortized: each step z <- z + u tanh(w^T z + b),
    with (b, u, w) read from the encoder (u made to keep the step invertible); the context is
    ``flows * (2 D + 1)`` numbers. No inverse: log q is known at the flow's own draws only."""

    def __init__(self, latent_dim: int, flows: int):
        super().__init__(latent_dim, flows * (2 * latent_dim + 1), "guide 'planar'")
        self.flows = flows

    def transforms(self, context: torch.Tensor) -> List:
        d = self.latent_dim
        steps = context.reshape(*context.shape[:-1], self.flows, 2 * d + 1).unbind(-2)
        return [ConditionedPlanar((p[..., :1], p[..., 1:d + 1], p[..., d + 1:])) for p in steps]


class Refined(Guide):
    """Semi-amortized diagonal Gaussian (Kim et al. 2018): the encoder's (mu, log sigma) are
    the start of ``steps`` gradient-ascent steps on the point's own ELBO, at training and at
    evaluation alike:

        mu <- mu + sigma * clip(lr * sigma * dELBO/dmu),   log sigma <- log sigma + clip(lr * dELBO/dlog sigma),

    clip(.) to [-1, 1], the ELBO estimated with ``particles`` reparameterized draws per step.
    mu's step is preconditioned by sigma^2, so one lr fits every scale (at lr = 1 it would be
    a Newton step for an uncorrelated Gaussian posterior of variance sigma^2; a correlated
    posterior is curved more steeply along its correlations than sigma says, hence the small
    default: on the quickstart VAE lr = 0.2 already overshot, 0.05 gained about 1 nat in 5
    steps), and the clipping is a trust region: a step moves mu by at most one sigma and sigma
    by at most a factor e. Gradients: the refinement's updates enter q as constants (no
    backpropagation through the steps, unlike Kim et al.'s second-order scheme), so the
    encoder's gradient is the ELBO's gradient at the refined parameters, passed unchanged to
    its output, and the decoder's and prior's are those of the ELBO at the refined q; the
    steps themselves change no parameter."""

    gaussian_kind = "diagonal"

    def __init__(self, latent_dim: int, steps: int, lr: float, particles: int):
        super().__init__(latent_dim)
        self.encoder_out_shape = (2, latent_dim)
        self.steps, self.lr, self.particles = steps, lr, particles
        self.family = DiagonalNormal(latent_dim)

    def refine(self, encoding: torch.Tensor, target: Target) -> torch.Tensor:
        """The refined (mu, log sigma), ``encoding``'s shape; the updates carry no gradient."""
        if target is None:
            raise PyrovaeError("guide 'refined' needs the point's log p(x, z) to refine q(z|x); call it through "
                               "VAE.posterior")
        with torch.inference_mode(False), torch.enable_grad():
            start = encoding.detach().clone()
            params = start.clone().requires_grad_(True)
            for _ in range(self.steps):
                loc, log_scale = params.unbind(-2)
                z = loc + log_scale.exp() * torch.randn((self.particles, *loc.shape), dtype=loc.dtype,
                                                        device=loc.device)
                entropy = log_scale.sum(-1)  # the Gaussian's entropy up to a constant
                elbo = target(z).mean(0) + entropy
                (grad,) = torch.autograd.grad(elbo.sum(), params)
                scale = log_scale.exp()
                step = torch.stack([scale * (self.lr * scale * grad[..., 0, :]).clamp(-1, 1),
                                    (self.lr * grad[..., 1, :]).clamp(-1, 1)], -2)
                params = (params + step).detach().requires_grad_(True)
            update = (params - start).detach()
        return encoding + update

    def forward(self, encoding: torch.Tensor, target: Target = None) -> Distribution:
        return self.family(self.refine(encoding, target))

    def code(self, encoding: torch.Tensor, target: Target = None) -> torch.Tensor:
        return self.refine(encoding, target).select(-2, 0)

    def per_point(self, encoding: torch.Tensor, target: Target = None):
        """Refined q is a diagonal Gaussian: q* is sought among diagonal Gaussians."""
        return self.family, self.refine(encoding, target)


@GUIDES.register("diagonal_normal")
def diagonal_normal(latent_dim):
    """N(mu(x), diag sigma(x)^2) from one encoder pass: the paper's guide."""
    return DiagonalNormal(latent_dim)


@GUIDES.register("full_covariance")
def full_covariance(latent_dim):
    """N(mu(x), L(x) L(x)^T), the Cholesky factor L from the encoder."""
    return FullCovariance(latent_dim)


def _flow_dims(latent_dim, flows, what: str) -> int:
    if latent_dim < 2:
        raise PyrovaeError(f"guide '{what}' needs model.latent_dim >= 2 (a flow on one coordinate is a "
                           f"monotone map); use full_covariance or diagonal_normal")
    return positive_int(flows, "model.guide.flows")


@GUIDES.register("iaf")
def iaf(latent_dim, *, flows=2, hidden=(64,), context_dim=16):
    """Inverse autoregressive flow on the amortized Gaussian, conditioned on the encoder's context."""
    _flow_dims(latent_dim, flows, "iaf")
    positive_int(context_dim, "model.guide.context_dim")
    return InverseAutoregressive(latent_dim, flows, hidden, context_dim)


@GUIDES.register("planar")
def planar(latent_dim, *, flows=4):
    """Planar flows on the amortized Gaussian, their parameters from the encoder."""
    return Planar(latent_dim, _flow_dims(latent_dim, flows, "planar"))


@GUIDES.register("refined")
def refined(latent_dim, *, steps=10, lr=0.05, particles=4):
    """Semi-amortized: the diagonal Gaussian refined by gradient steps on each point's ELBO."""
    positive_int(steps, "model.guide.steps")
    positive_int(particles, "model.guide.particles")
    if not 0 < lr <= 1:
        raise PyrovaeError(f"model.guide.lr must be in (0, 1] (e.g. 0.05), got {lr}")
    return Refined(latent_dim, steps, lr, particles)


# ----------------------------------------------------------------------------- supports

def support_name(support) -> str:
    """The space a support constraint describes, coordinates pooled: ``real``, ``boolean``,
    ``integer_interval(0, 9)``, ``groupedonehot(20, 10)`` ... (independent wrappers dropped, so ``real_vector`` and
    ``independent(real, 1)`` are the same space)."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    name = type(support).__name__.lstrip("_").lower()
    bounds = [getattr(support, a) for a in ("lower_bound", "upper_bound", "groups", "classes") if hasattr(support, a)]
    return f"{name}({', '.join(str(float(b) if isinstance(b, torch.Tensor) else b) for b in bounds)})" \
        if bounds else name


def check_support(prior_support, guide, prior_label: str, guide_label: str) -> None:
    """Refuse a prior and a guide on different latent spaces (a Bernoulli prior with a
    Gaussian guide has no density ratio, so no ELBO)."""
    p, q = support_name(prior_support), support_name(guide.support)
    if p != q:
        raise PyrovaeError(f"{prior_label} lives on {p} latents but {guide_label} on {q}; choose a guide on the "
                           f"prior's space (model.guide.name)")
