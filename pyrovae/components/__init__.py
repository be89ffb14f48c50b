"""Swappable parts of a VAE, one registry per family.

Importing this package registers every built-in prior, likelihood, network, guide and latent
family, the ``array`` dataset (your own data) and ``celeba`` (CelebA or any folder of faces).
"""

from . import array_data, celeba  # noqa: F401  (register the array and celeba datasets)
from .discrete_latents import LATENTS
from .guides import GUIDES, Guide
from .likelihoods import LIKELIHOODS, Likelihood
from .networks import NETWORKS
from .priors import PRIORS

__all__ = ["GUIDES", "Guide", "LATENTS", "LIKELIHOODS", "Likelihood", "NETWORKS", "PRIORS"]
