"""The model's log densities per data point, from Pyro traces.

Every evaluation method (importance sampling, AIS, quadrature, HMC) needs log p(x, z) at
latent points z, one value per data point and per sample. These come from Pyro traces,
never from formulas written per prior or likelihood: the model is traced under a plate of
samples at dim -2, left of the model's data plate, with ``z`` given, and every site's
``log_prob`` (already summed by Pyro over the site's event dims) keeps the data plate's
dim -1. So each data point gets its own value, for any prior, likelihood, network or
conditional model.
"""

import contextlib
import functools
from typing import Tuple

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from ..errors import PyrovaeError

SAMPLE_PLATE = "importance_samples"  # the particle plate, left of the model's data plate
LATENT_SITE = "z"                    # the latent sample site of VAE.model and VAE.guide


def evaluation_mode(fn):
    """Run ``fn`` under ``torch.inference_mode()``, without Pyro's argument validation (the
    data are checked once up front) and in a private parameter store, so evaluating one VAE
    leaves Pyro's global store as it was."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.inference_mode())
            stack.enter_context(pyro.validation_enabled(False))
            stack.enter_context(pyro.get_param_store().scope())
            return fn(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def fixed_parameters(vae):
    """Hold every parameter of ``vae`` fixed (no gradients, nothing registered with Pyro's
    parameter store by ``pyro.module``) inside a private parameter store, restoring the
    module's state afterwards: SVI and MCMC then see only the latent z."""
    grads = [p.requires_grad for p in vae.parameters()]
    training = vae.training
    vae.train(False)
    for p in vae.parameters():
        p.requires_grad_(False)
    try:
        with pyro.get_param_store().scope():
            yield
    finally:
        for p, g in zip(vae.parameters(), grads):
            p.requires_grad_(g)
        vae.train(training)


def site_log_probs(trace) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sums of ``log_prob`` over the observed and over the latent sites of a trace, each in
    float64 with the trace's batch shape ``(samples, points)``. Every sample site of the
    VAE lies in the data plate, so nothing here mixes data points."""
    keep = lambda name, site: not site_is_subsample(site)  # noqa: E731
    trace.compute_log_prob(keep)
    observed = latent = 0.0
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and keep(name, site):
            if site["is_observed"]:
                observed = observed + site["log_prob"].double()
            else:
                latent = latent + site["log_prob"].double()
    return observed, latent


def log_prior_and_likelihood(vae, x, y, z) -> Tuple[torch.Tensor, torch.Tensor]:
    """``log p(z)`` and ``log p(x|z)`` at given latent points ``z`` of shape
    ``(S, points, latent_dim)``, from the model's trace conditioned on z: two
    ``(S, points)`` float64 tensors. Differentiable in ``z`` when gradients are enabled."""
    with pyro.plate(SAMPLE_PLATE, z.shape[0], dim=-2):
        model = poutine.trace(poutine.condition(vae.model, data={LATENT_SITE: z})).get_trace(x, y)
    model.compute_log_prob(lambda name, site: not site_is_subsample(site))
    log_prior = log_likelihood = 0.0
    for name, site in model.nodes.items():
        if site["type"] == "sample" and not site_is_subsample(site):
            if name == LATENT_SITE:
                log_prior = log_prior + site["log_prob"].double()
            else:
                log_likelihood = log_likelihood + site["log_prob"].double()
    return log_prior, log_likelihood


def log_joint(vae, x, y, z) -> torch.Tensor:
    """``log p(x, z)`` at given latent points ``z`` of shape ``(S, points, latent_dim)``:
    shape ``(S, points)``, float64."""
    log_prior, log_likelihood = log_prior_and_likelihood(vae, x, y, z)
    return log_prior + log_likelihood


def guide_distribution(vae, x, y):
    """q(z|x) of every row of ``x`` as the distribution the guide samples its latent site
    from (batch shape ``(points,)``), read from the guide's trace."""
    return poutine.trace(vae.guide).get_trace(x, y).nodes[LATENT_SITE]["fn"]


def prepare(vae, x, y):
    """``x`` (and ``y``) on the VAE's device and in its dtype, checked against the model."""
    param = next(vae.parameters())
    x = x.to(device=param.device, dtype=param.dtype)
    if x.shape[0] == 0:
        raise PyrovaeError("there are no data points to evaluate; pass at least one")
    vae.check_data(x)
    if vae.num_classes and y is None:
        raise PyrovaeError("this is a conditional VAE: pass the labels y as well")
    y = y.to(param.device) if y is not None and vae.num_classes else None
    return x, y


