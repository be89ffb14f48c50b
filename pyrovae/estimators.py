"""Named gradient estimators of the ELBO, each a Pyro loss.

An estimator's name is all a config needs (``train.estimator.name``); the training loop
and the variance laboratory build the same object from it, so what is measured is what
is trained with. Every factory takes ``num_particles``: the number of samples of z per
data point, drawn as one vectorized tensor dimension when greater than one.
"""

from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from .errors import PyrovaeError
from .registry import Registry

ESTIMATORS = Registry("estimator")


def _particles(num_particles) -> dict:
    if not isinstance(num_particles, int) or num_particles < 1:
        raise PyrovaeError(f"train.estimator.num_particles must be a positive integer, got {num_particles!r}")
    # The model's only plate is the data plate; particles become a dimension left of it.
    return {"num_particles": num_particles, "vectorize_particles": num_particles > 1,
            "max_plate_nesting": 1}


@ESTIMATORS.register("pathwise")
def pathwise(*, num_particles=1):
    """Reparameterized Monte Carlo ELBO, Pyro's Trace_ELBO (the paper's SGVB estimator A, eq. 6).

    grad E_q[log p(x, z) - log q(z|x)] ~ (1/L) sum_l grad [log p(x, g(eps_l, x)) - log q(g(eps_l, x)|x)]
    with z = g(eps, x) = mu(x) + sigma(x) * eps, eps ~ N(0, I).
    """
    return Trace_ELBO(**_particles(num_particles))


@ESTIMATORS.register("analytic_kl")
def analytic_kl(*, num_particles=1):
    """Analytic KL, Monte Carlo reconstruction: TraceMeanField_ELBO (estimator B, eq. 7-8).

    ELBO = -KL(q(z|x) || p(z)) + E_q[log p(x|z)]; the KL is exact where
    torch registers it (Normal priors) and falls back to sampling otherwise (mixtures).
    """
    return TraceMeanField_ELBO(**_particles(num_particles))


def build_estimator(spec):
    """The Pyro loss for a :class:`~pyrovae.spec.ComponentSpec` naming an estimator."""
    return ESTIMATORS.build(spec.name, options=spec.options, where="train.estimator")
