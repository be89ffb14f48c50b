"""Wake-sleep (Hinton, Dayan, Frey & Neal 1995) and reweighted wake-sleep (Bornschein &
Bengio 2015) as a Pyro loss, the baseline of Kingma & Welling's Fig. 2 and 3.

Two phases, each a surrogate whose gradient reaches one set of parameters:

    wake  (theta):  z_k ~ q(z|x) held fixed,   ascend  sum_k w~_k log p_theta(x, z_k)
    sleep (phi):    z ~ p(z), x' ~ p_theta(x|z) dreamt and held fixed,   ascend  log q_phi(z|x')

with normalized importance weights w~_k = w_k / sum_j w_j, w_k = p(x, z_k) / q(z_k|x)
(w~ = 1 for K = 1: the classic algorithm). The wake gradient is the theta-gradient of the
K-sample bound IWAE_K without bias; the sleep gradient is not the gradient of any bound:
it fits q to the model's own dreams, a KL(p || q) direction, so no single objective is
ascended and the encoder's gradient is biased with respect to the bound's.
``insomnia`` in [0, 1] mixes in the *wake-phi* update sum_k w~_k grad log q(z_k|x) on real
data, the variant Bornschein & Bengio found to work best: phi ascends
``insomnia * wake-phi + (1 - insomnia) * sleep-phi``.

Why not Pyro's ``ReweightedWakeSleep``: in Pyro 1.9.2 it (a) refuses K = 1, the classic
algorithm (it asserts more than one particle), (b) sums each particle's log weight over the
whole minibatch before normalizing, so for K > 1 all points of a minibatch share one set of
weights (the whole-trace weighting of ``Importance``), (c) runs the sleep phase's guide on
the guide's own arguments plus an ``observations=`` keyword, so a guide that reads the data
from its first argument (as ``VAE.guide`` does) must be rewritten for it, and (d) returns a
pair of losses, which ``SVI.step`` hands back as a tuple. Its docstring says mini-batches are
not supported. Here the weights are normalized per data point and the guide is called on the
dreams: the dreamt data enter the guide as its first argument, like real data.
"""

from typing import Sequence, Tuple

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

from ..errors import PyrovaeError
from .particles import DATA_DIM, Particles
from .surrogates import ParticleELBO, log_mean_exp


def dream(model, args: Sequence, kwargs: dict, draws: int, num_particles: int) -> Tuple[dict, torch.Tensor]:
    """Run ``model`` with its observed site sampled instead of observed, ``draws x num_particles``
    times per data point (plates left of the data plate), and return the dreamt latents
    ``{site name: value}`` and the dreamt data, all detached (the sleep phase must not move
    the model that dreamt them)."""
    with pyro.plate("draws", draws, dim=DATA_DIM - 2), pyro.plate("particles", num_particles, dim=DATA_DIM - 1):
        trace = prune_subsample_sites(poutine.trace(poutine.uncondition(model)).get_trace(*args, **kwargs))
    latents, observed = {}, []
    for name, site in trace.nodes.items():
        if site["type"] != "sample":
            continue
        if site["infer"].get("was_observed"):
            observed.append(site["value"].detach())
        else:
            latents[name] = site["value"].detach()
    if len(observed) != 1:
        raise PyrovaeError(f"wake-sleep dreams one observed site per model, this model has {len(observed)}; "
                           f"use another estimator for it")
    return latents, observed[0]


def sleep_log_q(model, guide, args: Sequence, kwargs: dict, draws: int, num_particles: int) -> torch.Tensor:
    """log q_phi(z|x') of dreams (z, x') ~ p_theta, unscaled (a KL weight on the latent site
    anneals the bound, not this fit), shaped ``(draws, K, batch)``; its gradient reaches phi only.

    The guide sees the dreams as a flat minibatch of ``draws * K * batch`` points in place of
    its first argument; other per-data-point arguments (labels) are tiled to match.
    """
    x = args[0]
    batch = x.shape[0]
    latents, dreamt = dream(model, args, kwargs, draws, num_particles)
    copies = draws * num_particles
    flat_args = [dreamt.reshape(copies * batch, *x.shape[1:])]
    for a in args[1:]:
        tiled = torch.is_tensor(a) and a.dim() >= 1 and a.shape[0] == batch
        flat_args.append(a.repeat(copies, *([1] * (a.dim() - 1))) if tiled else a)
    flat_latents = {name: value.reshape(copies * batch, *value.shape[3:]) for name, value in latents.items()}
    trace = prune_subsample_sites(
        poutine.trace(poutine.condition(guide, data=flat_latents)).get_trace(*flat_args, **kwargs))
    trace.compute_log_prob()
    total = 0.0
    for name, site in trace.nodes.items():
        if site["type"] == "sample":
            if name not in flat_latents:
                raise PyrovaeError(f"the guide samples '{name}', which the model does not; wake-sleep "
                                   f"needs the guide's sites to be the model's latent sites")
            total = total + site["unscaled_log_prob"]
    return total.reshape(draws, num_particles, batch)


class WakeSleep(ParticleELBO):
    """(Reweighted) wake-sleep as one Pyro loss: its value is the negative K-sample bound
    IWAE_K (the ELBO for K = 1) at the wake particles, its gradient the wake update for theta
    and ``insomnia * wake-phi + (1 - insomnia) * sleep-phi`` for phi. The sleep phase dreams
    K points per data point of the minibatch."""

    reparameterized = False  # z ~ q is held fixed: no gradient flows through it
    latent_families = ("continuous", "bernoulli", "categorical")
    unbiased = False  # the encoder's gradient is not the gradient of any bound

    def __init__(self, num_particles: int = 1, insomnia: float = 0.0):
        super().__init__(num_particles)
        self.insomnia = insomnia
        self.bound_particles = num_particles

    def objective(self, particles: Particles):
        bound = log_mean_exp(particles.log_w)
        weights = torch.softmax(particles.log_w.detach(), -2)
        wake = (weights * particles.log_p).sum(-2)  # log_q's gradient is left out: phi learns elsewhere
        if self.insomnia > 0:
            wake = wake + self.insomnia * (weights * particles.score).sum(-2)
        return bound, wake

    def _evaluate(self, model, guide, args, kwargs, draws):
        loss, particles = super()._evaluate(model, guide, args, kwargs, draws)
        if self.insomnia < 1:
            sleep = sleep_log_q(model, guide, args, kwargs, draws, self.num_particles).mean(-2).sum(-1).mean()
            sleep = (1 - self.insomnia) * sleep
            loss = loss - (sleep - sleep.detach())
        return loss, particles
