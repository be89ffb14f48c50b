"""pyrovae: Auto-Encoding Variational Bayes (Kingma & Welling) as Pyro programs."""

from .model import VAE
from .spec import ExperimentSpec, load_config

__version__ = "0.1.0"
__all__ = ["VAE", "ExperimentSpec", "load_config", "__version__"]
