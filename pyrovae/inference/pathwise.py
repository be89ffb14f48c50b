"""Pyro's pathwise ELBOs as the ``pathwise`` and ``analytic_kl`` estimators, refusing discrete guides.

On a guide site without ``rsample`` (a Bernoulli or categorical latent) Pyro's ``Trace_ELBO``
quietly switches to the score function for that site. A user who chose ``pathwise`` would then
train with the plain score function without knowing it, so these subclasses refuse such a guide
in one line naming the estimators made for discrete latents. Everything else, numbers included,
is Pyro's own.
"""

from pyro.infer import JitTrace_ELBO, Trace_ELBO, TraceMeanField_ELBO

from .particles import require_pathwise


class RefusesDiscreteGuide:
    """Mixin for a Pyro ELBO: every guide trace it draws must be reparameterizable."""

    latent_families = ("continuous",)

    def _get_trace(self, model, guide, args, kwargs):
        model_trace, guide_trace = super()._get_trace(model, guide, args, kwargs)
        require_pathwise(guide_trace)
        return model_trace, guide_trace


class PathwiseELBO(RefusesDiscreteGuide, Trace_ELBO):
    """Pyro's Trace_ELBO for reparameterizable guides only."""


class AnalyticKLELBO(RefusesDiscreteGuide, TraceMeanField_ELBO):
    """Pyro's TraceMeanField_ELBO for reparameterizable guides only."""


class JitPathwiseELBO(RefusesDiscreteGuide, JitTrace_ELBO):
    """Pyro's JitTrace_ELBO (the ``train.jit`` twin of :class:`PathwiseELBO`) for reparameterizable
    guides only."""
