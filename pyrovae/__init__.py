"""pyrovae: Auto-Encoding Variational Bayes (Kingma & Welling) as Pyro programs.

The commands as functions: :func:`train`, :func:`evaluate`, :func:`variance`, :func:`report`,
:func:`sweep` and :func:`load` (see :mod:`pyrovae.api`); your own components join through :func:`register`
(see :mod:`pyrovae.registry` and docs/extending.md).
"""

from .api import Evaluation, Run, VarianceResult, evaluate, load, report, sweep, train, variance
from .components import Likelihood
from .errors import PyrovaeError
from .model import VAE
from .registry import register
from .spec import ExperimentSpec, load_config

__version__ = "0.1.0"
__all__ = ["VAE", "ExperimentSpec", "load_config", "__version__", "register", "Likelihood", "PyrovaeError",
           "train", "evaluate", "variance", "report", "sweep", "load", "Run", "Evaluation", "VarianceResult"]
