"""Pyro's pathwise ELBOs as the ``pathwise`` and ``analytic_kl`` estimators, refusing discrete guides.

On a guide site without ``rsample`` (a Bernoulli or categorical latent) Pyro's ``Trace_ELBO``
quietly switches to the score function for that site. A user who chose ``pathwise`` would then
train with the plain score function without knowing it, so the estimator refuses such a guide in
one line naming the estimators made for discrete latents. The objects stay Pyro's own classes
(the training loop's compiled and JIT steps recognise them by type); only their per-particle
trace step is wrapped, per instance. Everything else, numbers included, is Pyro's.
"""

from .particles import require_pathwise


def refusing_discrete_guides(elbo):
    """``elbo``, a Pyro ELBO, with each guide trace it draws checked by
    :func:`~pyrovae.inference.particles.require_pathwise`."""
    get_trace = elbo._get_trace

    def _get_trace(model, guide, args, kwargs):
        model_trace, guide_trace = get_trace(model, guide, args, kwargs)
        require_pathwise(guide_trace)
        return model_trace, guide_trace

    elbo._get_trace = _get_trace
    elbo.latent_families = ("continuous",)
    return elbo
