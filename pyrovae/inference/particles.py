"""Running the model and guide on a grid of particles: the raw material of every custom estimator.

The built-in estimators (``pathwise``, ``analytic_kl``) are Pyro's own ELBOs. The others
need per-sample quantities that those ELBOs keep to themselves: the log-weight of every
particle of every data point (IWAE, VIMCO), log q with its parameters stopped (STL, DReG),
or log q with the sample held fixed (the score function). :func:`trace_particles` runs
the guide under plates of particles, replays the model against it, and returns these as
tensors shaped ``(draws, particles, batch)``.

Score-function sites use :class:`NonReparameterizedNormal`, a ``Normal`` subclass whose
``has_rsample`` is False. Pyro 1.9 offers ``Normal(...).has_rsample_(False)`` for this, but
``Normal(...).has_rsample_(False).to_event(1)`` inside a plate raises ``AttributeError:
property 'has_rsample' of 'Independent' object has no setter``; a subclass survives
``to_event`` and every plate's ``expand`` (tests/test_estimators.py keeps watch on both).
"""

from dataclasses import dataclass
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.util import detach
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites

from ..errors import PyrovaeError

# The VAE's only plate is its data plate at dim -1; particle plates stack to its left.
DATA_DIM = -1


class NonReparameterizedNormal(dist.Normal):
    """A Normal that Pyro samples without a pathwise gradient (``has_rsample`` is False),
    so Pyro's ELBOs and :func:`trace_particles` treat its site as a score-function site."""

    has_rsample = False


def without_rsample(fn):
    """The same distribution as ``fn`` (a Normal, possibly inside ``Independent``), sampled
    without reparameterization."""
    if isinstance(fn, dist.Independent):
        return without_rsample(fn.base_dist).to_event(fn.reinterpreted_batch_ndims)
    if isinstance(fn, dist.Normal):
        return NonReparameterizedNormal(fn.loc, fn.scale)
    raise PyrovaeError(f"score-function estimators handle Normal guide sites, not {type(fn).__name__}; "
                       f"choose a pathwise estimator (pathwise, stl, iwae, iwae_dreg) for this guide")


class ScoreFunctionSites(Messenger):
    """Effect handler making every latent sample site of the wrapped guide a
    score-function site: z is drawn with ``sample()``, so no gradient flows through it."""

    def _pyro_sample(self, msg):
        if not msg["is_observed"] and getattr(msg["fn"], "has_rsample", False):
            msg["fn"] = without_rsample(msg["fn"])


class _ScaleGradient(torch.autograd.Function):
    """Identity whose backward multiplies the incoming gradient by ``holder[0]``, a tensor
    of the value's batch shape filled in after the forward pass (once the weights it
    depends on are known)."""

    @staticmethod
    def forward(ctx, value, holder):
        ctx.holder = holder
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad):
        scale = ctx.holder[0]
        return grad * scale.reshape(scale.shape + (1,) * (grad.dim() - scale.dim())), None


@dataclass
class Particles:
    """Per-particle, per-data-point terms of one model/guide run, each ``(draws, K, batch)``.

    ``log_p`` and ``log_q`` carry the sites' scales (the KL weight on the latent sites),
    so ``log_w = log_p - log_q`` is the (annealed) log importance weight. ``score`` is the
    unscaled log q: when z was drawn without reparameterization its gradient is the score
    function grad_phi log q(z|x). ``x`` is the minibatch (the model's first argument).
    """

    log_p: torch.Tensor
    log_q: torch.Tensor
    score: torch.Tensor
    x: torch.Tensor
    guide_trace: poutine.Trace
    latent_gradient_scale: Optional[list] = None

    @property
    def log_w(self) -> torch.Tensor:
        return self.log_p - self.log_q

    def log_q_stopped(self) -> torch.Tensor:
        """log q(z|x) with q's parameters stopped: its gradient flows only through z
        (the path derivative of Roeder et al. 2017)."""
        return _sum_sites(self.guide_trace, self.log_p.shape,
                          lambda site: site["scale"] * detach(site["fn"]).log_prob(site["value"]))

    def scale_latent_gradients(self, weights: torch.Tensor) -> None:
        """Multiply the gradient reaching each particle's latent value by ``weights``
        (shaped like ``log_w``); needs ``trace_particles(..., scale_latent_gradients=True)``."""
        self.latent_gradient_scale[0] = weights.detach()


def particle_traces(model, guide, args: Sequence, kwargs: dict, draws: int, num_particles: int,
                    reparameterized: bool = True, latent_gradient_scale: Optional[list] = None):
    """The guide's trace under plates of ``draws x num_particles`` particles (left of the data
    plate) and the model's trace replayed against it, subsample sites pruned, log densities
    computed.

    With ``reparameterized=False`` every latent site is sampled without a pathwise gradient.
    ``latent_gradient_scale``, a one-element list, routes the gradient reaching each latent
    value through a multiplication by its content, set after the forward pass.
    """
    if not reparameterized:
        guide = ScoreFunctionSites()(guide)
    with pyro.plate("draws", draws, dim=DATA_DIM - 2), pyro.plate("particles", num_particles, dim=DATA_DIM - 1):
        guide_trace = prune_subsample_sites(poutine.trace(guide).get_trace(*args, **kwargs))
        if reparameterized:
            require_pathwise(guide_trace)
        if latent_gradient_scale is not None:
            for site in _sample_sites(guide_trace):
                site["value"] = _ScaleGradient.apply(site["value"], latent_gradient_scale)
        model_trace = prune_subsample_sites(
            poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs))
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    return model_trace, guide_trace


def trace_particles(model, guide, args: Sequence, kwargs: dict, draws: int, num_particles: int,
                    reparameterized: bool = True, scale_latent_gradients: bool = False) -> Particles:
    """Per-particle log densities of :func:`particle_traces`, summed over sites. With
    ``scale_latent_gradients`` the gradient reaching the latent values is multiplied by
    weights the caller sets with :meth:`Particles.scale_latent_gradients` before backward."""
    holder = [None] if scale_latent_gradients else None
    model_trace, guide_trace = particle_traces(model, guide, args, kwargs, draws, num_particles,
                                               reparameterized, holder)
    shape = (draws, num_particles, args[0].shape[0])
    return Particles(log_p=_sum_sites(model_trace, shape, lambda site: site["log_prob"]),
                     log_q=_sum_sites(guide_trace, shape, lambda site: site["log_prob"]),
                     score=_sum_sites(guide_trace, shape, lambda site: site["unscaled_log_prob"]),
                     x=args[0], guide_trace=guide_trace, latent_gradient_scale=holder)


DISCRETE_ESTIMATORS = ("score, score_avg_baseline, score_nn_baseline, score_loo, nvil, vimco, "
                       "reweighted_wake_sleep, arm, disarm, rebar, relax, gumbel_softmax, gumbel_st, enum")


def require_pathwise(guide_trace) -> None:
    """Refuse a guide with a latent site that has no pathwise sample (a discrete latent): the
    pathwise estimators would silently get no gradient through it."""
    for site in _sample_sites(guide_trace):
        if not site["is_observed"] and not getattr(site["fn"], "has_rsample", False):
            raise PyrovaeError(f"this estimator needs a reparameterizable guide, but guide site '{site['name']}' "
                               f"is {type(site['fn']).__name__}, which has no pathwise gradient; choose one of "
                               f"the estimators for discrete latents: {DISCRETE_ESTIMATORS}")


def _sample_sites(trace):
    return [site for site in trace.nodes.values() if site["type"] == "sample"]


def _sum_sites(trace, shape, term) -> torch.Tensor:
    """The sum of ``term(site)`` over the trace's sample sites, each broadcast to ``shape``."""
    total = 0.0
    for site in _sample_sites(trace):
        value = term(site)
        if torch.broadcast_shapes(value.shape, shape) != torch.Size(shape):
            raise PyrovaeError(f"site '{site['name']}' has log-density shape {tuple(value.shape)}, not "
                               f"{tuple(shape)}; these estimators need every site inside the data plate")
        total = total + value
    return total.expand(shape)
