"""An estimator: Pyro's Renyi divergence bound (Li & Turner 2016) with K samples."""

from pyro.infer import RenyiELBO

import pyrovae


@pyrovae.register("estimator", "renyi")
def renyi(*, alpha=0.5, num_particles=5):
    """Renyi alpha-divergence bound; alpha = 0 is the IWAE bound, alpha -> 1 the ELBO."""
    if alpha == 1 or num_particles < 2:
        raise pyrovae.PyrovaeError("renyi needs alpha != 1 (use pathwise for the ELBO) and num_particles >= 2")
    return RenyiELBO(alpha=alpha, num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1)
