"""Discrete latent spaces: binary codes (a sigmoid belief net's layer) and grouped categorical codes.

A VAE's latent family is chosen in the config. ``model.latent`` names one of :data:`LATENTS`,
and sets the prior and the guide wherever the config leaves them at the Gaussian defaults:

- ``gaussian`` (the default): ``standard_normal`` prior, ``diagonal_normal`` guide;
- ``bernoulli``: z in {0, 1}^D, a learned factorized Bernoulli prior (``bernoulli``) and the
  amortized guide q(z|x) = prod_d Bernoulli(z_d; sigmoid(a_d(x))) (``bernoulli``), the encoder
  giving the logits a(x): the sigmoid belief net of Neal (1992) with the recognition network of
  Mnih & Gregor (2014);
- ``categorical``: G groups of K classes, z the G one-hot vectors concatenated (latent_dim = G * K),
  a uniform (or learned) categorical prior and a guide with one softmax per group (Jang, Gu &
  Poole 2017 use 20 groups of 10).

The distributions are :class:`~pyrovae.components.discrete.FactorizedBernoulli` and
:class:`~pyrovae.components.discrete.GroupedOneHotCategorical`, the ones the estimators for
discrete latents read. Their samples carry no pathwise gradient, so such a model trains with an
estimator for discrete latents (the score function with a baseline, VIMCO, ...). The KL between
two such distributions is registered with torch, so an analytic-KL ELBO (the evaluation's
``analytic_kl`` value) is exact in the KL term.
"""

from dataclasses import dataclass, field
from typing import Any, Dict

import torch
from torch import nn
from torch.distributions import register_kl
from torch.nn import functional as F

from ..errors import PyrovaeError, positive_int
from ..registry import Contract, Registry
from .discrete import FactorizedBernoulli, GroupedOneHotCategorical
from .guides import GUIDES, Guide, Target
from .priors import PRIORS


@dataclass(frozen=True)
class LatentFamily:
    """The prior and the guide (registry names and options) a latent family stands for."""

    prior: str
    guide: str
    prior_options: Dict[str, Any] = field(default_factory=dict)
    guide_options: Dict[str, Any] = field(default_factory=dict)


LATENTS = Registry("latent", contract=Contract(
    "a pyrovae.components.discrete_latents.LatentFamily naming a prior and a guide",
    lambda part: isinstance(part, LatentFamily)))


def check_groups(latent_dim: int, groups: int, where: str) -> int:
    """The number of classes per group, refusing a ``latent_dim`` that is not groups x classes."""
    positive_int(groups, f"{where}.groups")
    if latent_dim % groups or latent_dim // groups < 2:
        raise PyrovaeError(f"{where}: {groups} categorical groups need model.latent_dim = groups x classes with at "
                           f"least 2 classes, got latent_dim {latent_dim}; e.g. model.latent_dim={groups * 10}")
    return latent_dim // groups


# ----------------------------------------------------------------------------- priors

class DiscretePrior(nn.Module):
    """Factorized prior logits, one per latent entry, trainable or fixed at zero (uniform)."""

    def __init__(self, latent_dim: int, learned: bool):
        super().__init__()
        logits = torch.zeros(latent_dim)
        if learned:
            self.logits = nn.Parameter(logits)
        else:
            self.register_buffer("logits", logits)


class BernoulliPrior(DiscretePrior):
    """p(z) = prod_d Bernoulli(z_d; sigmoid(b_d))."""

    def forward(self):
        return FactorizedBernoulli(self.logits)


class CategoricalPrior(DiscretePrior):
    """p(z) = prod_g Categorical(z_g; softmax(b_g)) over G one-hot groups."""

    def __init__(self, latent_dim: int, learned: bool, groups: int):
        super().__init__(latent_dim, learned)
        self.groups = groups

    def forward(self):
        return GroupedOneHotCategorical(self.logits, self.groups)


@PRIORS.register("bernoulli")
def bernoulli_prior(latent_dim, encode=None, data_shape=None, *, learned=True):
    """Factorized Bernoulli over binary latents, learned logits (a sigmoid belief net's top layer)."""
    return BernoulliPrior(latent_dim, learned)


@PRIORS.register("categorical")
def categorical_prior(latent_dim, encode=None, data_shape=None, *, groups=20, learned=False):
    """G groups of K one-hot classes (latent_dim = G x K), uniform unless learned."""
    check_groups(latent_dim, groups, "model.prior")
    return CategoricalPrior(latent_dim, learned, groups)


# ----------------------------------------------------------------------------- guides

class BernoulliGuide(Guide):
    """q(z|x) = prod_d Bernoulli(z_d; sigmoid(a_d(x))), the logits a(x) the encoder's output."""

    support = FactorizedBernoulli.support
    reparameterized = False

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        self.encoder_out_shape = (latent_dim,)

    def forward(self, encoding: torch.Tensor, target: Target = None):
        return FactorizedBernoulli(encoding)

    def code(self, encoding: torch.Tensor, target: Target = None) -> torch.Tensor:
        return torch.sigmoid(encoding)


class CategoricalGuide(Guide):
    """q(z|x) = prod_g Categorical(z_g; softmax(a_g(x))), the encoder's output read as G groups of K logits."""

    reparameterized = False

    def __init__(self, latent_dim: int, groups: int):
        super().__init__(latent_dim)
        self.groups = groups
        self.encoder_out_shape = (latent_dim,)
        self.support = GroupedOneHotCategorical(torch.zeros(latent_dim), groups).support

    def forward(self, encoding: torch.Tensor, target: Target = None):
        return GroupedOneHotCategorical(encoding, self.groups)

    def code(self, encoding: torch.Tensor, target: Target = None) -> torch.Tensor:
        return self(encoding).probs


@GUIDES.register("bernoulli")
def bernoulli_guide(latent_dim):
    """Amortized factorized Bernoulli over binary latents (the encoder gives the logits)."""
    return BernoulliGuide(latent_dim)


@GUIDES.register("categorical")
def categorical_guide(latent_dim, *, groups=20):
    """Amortized categorical, one softmax per group of K classes (latent_dim = G x K)."""
    check_groups(latent_dim, groups, "model.guide")
    return CategoricalGuide(latent_dim, groups)


# ----------------------------------------------------------------------------- analytic KL

@register_kl(FactorizedBernoulli, FactorizedBernoulli)
def _kl_bernoulli(q, p):
    """KL(q || p) = sum_d q_d log(q_d / p_d) + (1 - q_d) log((1 - q_d) / (1 - p_d)), from the logits."""
    return (q.probs * (F.logsigmoid(q.logits) - F.logsigmoid(p.logits))
            + (1 - q.probs) * (F.logsigmoid(-q.logits) - F.logsigmoid(-p.logits))).sum(-1)


@register_kl(GroupedOneHotCategorical, GroupedOneHotCategorical)
def _kl_categorical(q, p):
    """KL(q || p) = sum_g sum_k q_gk log(q_gk / p_gk) over groups of the same shape."""
    if (q.groups, q.classes) != (p.groups, p.classes):
        raise PyrovaeError(f"no KL between {q.groups} groups of {q.classes} classes and {p.groups} groups of "
                           f"{p.classes}; give model.prior and model.guide the same groups (set model.latent.groups)")
    log_q = q.log_class_probs
    return (log_q.exp() * (log_q - p.log_class_probs)).sum((-2, -1))


# ----------------------------------------------------------------------------- families

@LATENTS.register("gaussian")
def gaussian():
    """Continuous z: standard_normal prior, diagonal_normal guide (Kingma & Welling 2014)."""
    return LatentFamily("standard_normal", "diagonal_normal")


@LATENTS.register("bernoulli")
def bernoulli(*, learned_prior=True):
    """Binary z: bernoulli prior (learned logits) and bernoulli guide, a sigmoid belief net."""
    return LatentFamily("bernoulli", "bernoulli", {"learned": learned_prior})


@LATENTS.register("categorical")
def categorical(*, groups=20, learned_prior=False):
    """G one-hot groups of K classes (latent_dim = G x K): categorical prior (uniform) and guide."""
    return LatentFamily("categorical", "categorical", {"groups": groups, "learned": learned_prior},
                        {"groups": groups})
