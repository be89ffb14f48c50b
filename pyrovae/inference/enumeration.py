"""Exact ELBO, its gradient and log p(x) by summing over every configuration of a small discrete latent.

For a guide site of D binary units there are J = 2^D configurations z_1 .. z_J (K^G for G
groups of K classes); for each data point x

    ELBO(x)  = sum_j q(z_j|x) [log p(x, z_j) - log q(z_j|x)]
    log p(x) = logsumexp_j log p(x, z_j)

are finite sums, so their gradients are exact (autograd through q(z_j|x) and log p(x, z_j)).
They are the reference every unbiased estimator of discrete latents must average to, the
``enum`` training estimator, and the exact log-likelihood of a small discrete model. All J
configurations are evaluated in one vectorized pass, so memory grows like J x batch x the
decoder's output: above ``max_configurations`` the sum is refused.
"""

import math
from dataclasses import dataclass

import torch

from ..errors import PyrovaeError
from .discrete_particles import DiscreteSite, discrete_site

MAX_CONFIGURATIONS = 4096  # 12 binary units, or e.g. 3 groups of 16 classes
MAX_TUPLES = 2 ** 20  # K-tuples of configurations summed for an exact K-sample bound


@dataclass
class Enumerated:
    """Per-configuration terms, each ``(J, batch)``: log q(z_j|x) (unscaled, the weights of the
    sum) and log w_j = log p(x, z_j) - scale log q(z_j|x) with the KL weight's scale; log p(x, z_j)
    as the model scores it (its latent site scaled by the KL weight too)."""

    log_q: torch.Tensor
    log_p: torch.Tensor
    log_w: torch.Tensor

    @property
    def elbo(self) -> torch.Tensor:
        """The exact (KL-weighted) ELBO per data point, ``(batch,)``."""
        return (self.log_q.exp() * self.log_w).sum(0)

    @property
    def log_likelihood(self) -> torch.Tensor:
        """log p(x) per data point, ``(batch,)`` (with the KL weight 1)."""
        return torch.logsumexp(self.log_p, 0)

    def iwae_bound(self, k: int) -> torch.Tensor:
        """The exact K-sample bound E[log (1/K) sum_i w(z_i)], z_i iid q, per data point: a sum over
        all J^K tuples of configurations (J^K up to ``MAX_TUPLES``)."""
        count = self.log_w.shape[0]
        if count ** k > MAX_TUPLES:
            raise PyrovaeError(f"the exact {k}-sample bound sums over {count}^{k} tuples of configurations, more "
                               f"than {MAX_TUPLES}; use fewer particles or a smaller latent space")
        log_q, log_w = 0.0, []
        for i in range(k):  # axis i of the (J,) * k grid holds the i-th sample
            shape = (1,) * i + (count,) + (1,) * (k - 1 - i) + (-1,)
            log_q = log_q + self.log_q.reshape(shape)
            log_w.append(self.log_w.reshape(shape))
        bound = torch.logsumexp(torch.stack(torch.broadcast_tensors(*log_w)), 0) - math.log(k)
        return (log_q.exp() * bound).reshape(-1, bound.shape[-1]).sum(0)

    @property
    def log_posterior(self) -> torch.Tensor:
        """log p(z_j|x), ``(J, batch)``."""
        return self.log_p - self.log_likelihood


def configurations(fn) -> int:
    """The number of configurations of a discrete latent distribution's event."""
    if fn.family == "bernoulli":
        return 2 ** fn.event_shape[0]
    return fn.classes ** fn.groups


def _first_configuration(fn):
    return fn.enumerate_support(expand=True)[0], None


def enumerate_latents(model, guide, args, kwargs=None, max_configurations: int = MAX_CONFIGURATIONS,
                      estimator: str = "enum") -> Enumerated:
    """Every configuration's terms for the minibatch ``args[0]`` (see :class:`Enumerated`)."""
    kwargs = kwargs or {}
    site: DiscreteSite = discrete_site(model, guide, args, kwargs, 1, 1, _first_configuration,
                                       ("bernoulli", "categorical"), estimator)
    count = configurations(site.fn)
    if count > max_configurations:
        raise PyrovaeError(f"exact enumeration of guide site '{site.name}' sums over {count} configurations, more "
                           f"than max_configurations={max_configurations}; use it for small latent spaces "
                           f"(12 binary units are 4096) or a sampling estimator such as vimco or rebar")
    values = site.fn.enumerate_support(expand=False)  # (J, 1, 1, 1, D): J configurations, broadcast
    values = values.reshape(count, 1, 1, -1).expand(count, 1, args[0].shape[0], values.shape[-1])
    log_q = site.score(values.unsqueeze(1)).reshape(count, -1)  # the fn's batch shape is (1, 1, batch)
    log_p = site.log_p(values).reshape(count, -1)
    scale = site.scale
    return Enumerated(log_q=log_q, log_p=log_p, log_w=log_p - scale * log_q)
