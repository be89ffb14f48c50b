"""A one-layer sigmoid belief net with an amortized discrete guide: the small discrete model on
which the estimators for discrete latents are tested and measured.

    model:  z ~ p(z) = FactorizedBernoulli(prior logits)   (or G groups of K classes)
            x | z ~ prod_pixels Bernoulli(sigmoid(decoder(z)))
    guide:  z ~ q(z|x) = FactorizedBernoulli(encoder(x))   (or GroupedOneHotCategorical)

with learned prior logits, linear (``hidden=()``) or MLP encoder and decoder (Neal 1992; Mnih &
Gregor 2014). Model and guide take the VAE's arguments ``(x, y=None, kl_weight=1.0)`` and use its
site names (``z`` in the plate ``data``, observed ``x``), so every estimator, the exact
enumeration and the variance laboratory treat it as they treat a VAE; its parameters are grouped
as ``encoder``, ``decoder`` and ``prior``.
"""

import math
from typing import Optional, Sequence, Tuple

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from ..components.discrete import FactorizedBernoulli, GroupedOneHotCategorical
from ..components.networks import NETWORKS


class PriorLogits(nn.Module):
    """Learned logits of a factorized discrete prior, starting at zero (uniform)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(latent_dim))


class SigmoidBeliefNet(nn.Module):
    """Binary (``groups=None``) or grouped-categorical latents of ``latent_dim`` entries, data of
    ``data_shape`` with Bernoulli pixels."""

    num_classes = 0

    def __init__(self, data_shape: Tuple[int, ...], latent_dim: int, hidden: Sequence[int] = (),
                 groups: Optional[int] = None):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.latent_dim = latent_dim
        self.groups = groups
        options = {"hidden": list(hidden), "activation": "tanh"}
        self.encoder = NETWORKS.build("mlp", {"in_shape": self.data_shape, "out_shape": (latent_dim,), "cond_dim": 0},
                                      options=options)
        self.decoder = NETWORKS.build("mlp", {"in_shape": (latent_dim,), "out_shape": (math.prod(self.data_shape),),
                                              "cond_dim": 0}, options=options)
        self.prior = PriorLogits(latent_dim)

    def latent(self, logits: torch.Tensor):
        """The latent distribution with these logits."""
        if self.groups is None:
            return FactorizedBernoulli(logits)
        return GroupedOneHotCategorical(logits, self.groups)

    def model(self, x: torch.Tensor, y=None, kl_weight: float = 1.0):
        pyro.module("decoder", self.decoder)
        pyro.module("prior", self.prior)
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=kl_weight):
                z = pyro.sample("z", self.latent(self.prior.logits))
            logits = self.decoder(z)
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x.reshape(x.shape[0], -1))

    def guide(self, x: torch.Tensor, y=None, kl_weight: float = 1.0):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            logits = self.encoder(x)
            with poutine.scale(scale=kl_weight):
                pyro.sample("z", self.latent(logits))
