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

from typing import Callable, Optional, Tuple

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import Distribution, constraints

from ..errors import PyrovaeError
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


class DiagonalNormal(Guide):
    """q(z|x) = N(mu(x), diag sigma(x)^2), ``(mu, log sigma)`` = the encoder's two rows
    (Kingma & Welling 2014). Holds no parameters of its own."""

    gaussian_kind = "diagonal"

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        self.encoder_out_shape = (2, latent_dim)

    def forward(self, encoding: torch.Tensor, target: Target = None) -> Distribution:
        loc, scale = self.loc_scale(encoding)
        return dist.Normal(loc, scale).to_event(1)

    def loc_scale(self, encoding: torch.Tensor):
        loc, log_scale = encoding.unbind(-2)
        return loc, log_scale.exp()

    def code(self, encoding: torch.Tensor, target: Target = None) -> torch.Tensor:
        return encoding.select(-2, 0)


@GUIDES.register("diagonal_normal")
def diagonal_normal(latent_dim):
    """N(mu(x), diag sigma(x)^2) from one encoder pass: the paper's guide."""
    return DiagonalNormal(latent_dim)


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
