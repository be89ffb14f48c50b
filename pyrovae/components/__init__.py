"""Swappable parts of a VAE, one registry per family.

Importing this package registers every built-in prior, likelihood and network, and the
``array`` dataset (your own data).
"""

from . import array_data  # noqa: F401  (registers the array dataset)
from .likelihoods import LIKELIHOODS, Likelihood
from .networks import NETWORKS
from .priors import PRIORS

__all__ = ["LIKELIHOODS", "Likelihood", "NETWORKS", "PRIORS"]
