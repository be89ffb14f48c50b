"""Swappable parts of a VAE, one registry per family.

Importing this package registers every built-in prior, likelihood, network, guide and latent
family, and the ``array`` dataset (your own data).
"""

from . import array_data  # noqa: F401  (registers the array dataset)
from .discrete_latents import LATENTS
from .guides import GUIDES, Guide
from .likelihoods import LIKELIHOODS, Likelihood
from .networks import NETWORKS
from .priors import PRIORS

__all__ = ["GUIDES", "Guide", "LATENTS", "LIKELIHOODS", "Likelihood", "NETWORKS", "PRIORS"]
