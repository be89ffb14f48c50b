"""The guide's discrete latent site and the model evaluated at chosen latent values.

The estimators for discrete latents (ARM, DisARM, REBAR, RELAX, the Gumbel relaxations, exact
enumeration) do not take one sample of q and score it: they draw their own noise u, turn it into
one or more latent values (a sample and its antithetic twin, a relaxed value, every configuration),
and need log p(x, z) - log q(z|x) at each. :func:`discrete_site` runs the guide once under the
particle plates, with the latent site's value made from its distribution by the estimator (so the
guide's own sampler draws nothing), and returns a :class:`DiscreteSite` whose methods evaluate the
model and the guide's density at any value of the site's shape.

The guide must have exactly one latent site, a :class:`~pyrovae.components.discrete.FactorizedBernoulli`
or :class:`~pyrovae.components.discrete.GroupedOneHotCategorical` inside the data plate; its
``logits`` are what the estimators differentiate.
"""

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence, Tuple

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites, site_is_subsample

from ..components.discrete import latent_family
from ..errors import PyrovaeError
from .particles import DATA_DIM, _sum_sites


class _MakeLatent(Messenger):
    """Sets each latent sample site's value to ``make(fn)`` (fn: the site's distribution,
    expanded by every plate) instead of drawing it, and records the sites it saw. Used
    outside the particle plates, so it sees the fully expanded distribution."""

    def __init__(self, make: Callable):
        super().__init__()
        self.make = make
        self.sites = []
        self.noise = None

    def _pyro_sample(self, msg):
        if msg["is_observed"] or site_is_subsample(msg):
            return
        self.sites.append((msg["name"], msg["fn"]))
        if len(self.sites) == 1 and latent_family(msg["fn"]) in ("bernoulli", "categorical"):
            msg["value"], self.noise = self.make(msg["fn"])


@dataclass
class DiscreteSite:
    """One run of the guide on a minibatch under ``draws x K`` particle plates: the latent site's
    expanded distribution ``fn`` (batch shape ``(draws, K, batch)``), its scale (the KL weight),
    the value the estimator made and the noise it made it from, and the model's arguments for
    evaluating log p(x, z) at other values."""

    name: str
    fn: object
    scale: object
    value: torch.Tensor
    noise: object
    model: Callable
    args: Sequence
    kwargs: dict

    @property
    def logits(self) -> torch.Tensor:
        """The guide's logits, ``(draws, K, batch, latent_dim)``, differentiable in phi."""
        return self.fn.logits

    @property
    def x(self) -> torch.Tensor:
        return self.args[0]

    def log_q(self, value: torch.Tensor) -> torch.Tensor:
        """scale * log q(value | x), ``(draws, K, batch)``; on a relaxed value, the continuous
        extension of the discrete density (components/discrete.py)."""
        return self.scale * self.fn.log_prob(value)

    def score(self, value: torch.Tensor) -> torch.Tensor:
        """log q(value | x) without the scale: its phi-gradient is the score function."""
        return self.fn.log_prob(value)

    def log_p(self, value: torch.Tensor, relaxed: bool = False) -> torch.Tensor:
        """log p(x, z = value) with the model's site scales, shaped like ``value`` without its last
        dimension. ``value`` is ``(draws, K, batch, latent_dim)`` for any draws and K. ``relaxed``:
        the value is off the discrete support, so Pyro's validation is off for this run."""
        draws, k, batch = value.shape[:-1]
        validation = pyro.validation_enabled(False) if relaxed else contextlib.nullcontext()
        with validation, pyro.plate("draws", draws, dim=DATA_DIM - 2), \
                pyro.plate("particles", k, dim=DATA_DIM - 1):
            trace = prune_subsample_sites(poutine.trace(poutine.condition(self.model, data={self.name: value}))
                                          .get_trace(*self.args, **self.kwargs))
            trace.compute_log_prob()
        if self.name not in trace.nodes:
            raise PyrovaeError(f"the guide samples '{self.name}', which the model does not; these estimators "
                               f"need the guide's latent site to be the model's")
        return _sum_sites(trace, (draws, k, batch), lambda site: site["log_prob"])

    def log_w(self, value: torch.Tensor, relaxed: bool = False) -> torch.Tensor:
        """log p(x, value) - scale * log q(value | x): the learning signal f at ``value``."""
        return self.log_p(value, relaxed) - self.log_q(value)


def discrete_site(model, guide, args: Sequence, kwargs: dict, draws: int, num_particles: int,
                  make: Callable[[object], Tuple[torch.Tensor, object]], families: Sequence[str],
                  estimator: str) -> DiscreteSite:
    """Run ``guide`` under ``draws x num_particles`` particle plates (left of the data plate) with
    its latent value made by ``make(fn) -> (value, noise)``; refuse, in one line naming
    ``estimator``, a guide whose latent site is not one discrete site of ``families``."""
    maker = _MakeLatent(make)
    with maker, pyro.plate("draws", draws, dim=DATA_DIM - 2), \
            pyro.plate("particles", num_particles, dim=DATA_DIM - 1):
        trace = prune_subsample_sites(poutine.trace(guide).get_trace(*args, **kwargs))
    if len(maker.sites) != 1:
        raise PyrovaeError(f"estimator '{estimator}' handles a guide with one latent site, this guide has "
                           f"{len(maker.sites)} ({', '.join(name for name, _ in maker.sites)})")
    name, fn = maker.sites[0]
    family = latent_family(fn)
    if family not in families:
        alternative = ("a pathwise estimator (pathwise, stl, iwae, iwae_dreg)" if family == "continuous"
                       else "score_loo, nvil, vimco, gumbel_st or enum")
        raise PyrovaeError(f"estimator '{estimator}' handles {' and '.join(families)} latents, but guide site "
                           f"'{name}' is {type(fn).__name__} ({family}); use {alternative} for it")
    site = trace.nodes[name]
    return DiscreteSite(name, site["fn"], site["scale"], site["value"], maker.noise, model, args, kwargs)


def guide_family(model, guide, args: Sequence, kwargs: dict = None):
    """``(family, fn)`` of the guide's first latent site (:func:`~pyrovae.components.discrete.latent_family`),
    from one run of the guide on a forked random-number generator (the caller's draws stay the same)."""
    devices = [args[0].device] if args[0].device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), poutine.block():
        trace = poutine.trace(guide).get_trace(*args, **(kwargs or {}))
    for site in trace.nodes.values():
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site):
            return latent_family(site["fn"]), site["fn"]
    return "none", None
