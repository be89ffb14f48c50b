"""Exact log p(x) of a model with a small discrete latent space, by summing over every configuration.

For binary latents z in {0, 1}^D there are J = 2^D configurations (K^G for G groups of K
classes), and

    log p(x) = logsumexp_j [log p(z_j) + log p(x | z_j)]

is a finite sum: the reference importance sampling with q is checked against when the latent
space is small. Methods that move or integrate z continuously (AIS and BDMC with HMC, NUTS, the
grid posterior, quadrature, q*) have no meaning there; they refuse such a model in one line
naming :data:`DISCRETE_INSTEAD` (:meth:`pyrovae.model.VAE.require_continuous_latents`).
"""

from typing import Optional

import torch

from ..errors import PyrovaeError
from ..inference.log_joint import evaluation_mode, log_joint, prepare
from .chunking import DEFAULT_MAX_MEMORY, WEIGHT_COPIES, Cost, as_bytes, collect, first_repeated, plan_chunks, rows

MAX_CONFIGURATIONS = 4096  # 12 binary units, or 3 groups of 16 classes
DISCRETE_INSTEAD = ("importance sampling with q (pyrovae evaluate --method is), exact by enumeration where the "
                    "latent space is small")


def configuration_count(vae) -> Optional[int]:
    """The number of latent configurations of a discrete prior (None for continuous latents)."""
    prior = vae.prior()
    if not vae.discrete_latents or not getattr(prior, "has_enumerate_support", False):
        return None
    if hasattr(prior, "groups"):
        return prior.classes ** prior.groups
    return 2 ** vae.latent_dim


def enumerable(vae, max_configurations: int = MAX_CONFIGURATIONS) -> bool:
    """Whether the latent space is discrete and small enough to sum over."""
    count = configuration_count(vae)
    return count is not None and count <= max_configurations


@evaluation_mode
def exact_log_marginal(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None,
                       max_configurations: int = MAX_CONFIGURATIONS, max_memory=DEFAULT_MAX_MEMORY) -> torch.Tensor:
    """log p(x) (log p(x|y) for a conditional VAE) of every row of ``x`` by enumeration of the
    prior's support, float64 ``(N,)``, in chunks of points and configurations under ``max_memory``."""
    count = configuration_count(vae)
    if count is None:
        raise PyrovaeError("exact enumeration needs discrete latents (model.latent.name=bernoulli or categorical); "
                           "for continuous ones use importance sampling, or quadrature in 1-D and 2-D")
    if count > max_configurations:
        raise PyrovaeError(f"the latent space has {count} configurations, more than {max_configurations} to sum "
                           f"over; use importance sampling with q (pyrovae evaluate --method is)")
    x, y = prepare(vae, x, y)
    support = vae.prior().enumerate_support(expand=False).reshape(count, vae.latent_dim).to(x.dtype)
    cost = Cost.measure(lambda p, s: log_joint(vae, first_repeated(x, p), first_repeated(y, p),
                                               support[:1].expand(s, p, -1)))
    plan = plan_chunks(cost, x.shape[0], count, as_bytes(max_memory), WEIGHT_COPIES * 8 * count)

    def batches():
        for start in range(0, x.shape[0], plan.points):
            xb, yb = x[start:start + plan.points], rows(y, start, start + plan.points)
            log_f = torch.cat([log_joint(vae, xb, yb, support[j:j + plan.samples, None].expand(-1, xb.shape[0], -1))
                               for j in range(0, count, plan.samples)])
            yield torch.logsumexp(log_f, 0)

    return collect(x.shape[0], batches())
