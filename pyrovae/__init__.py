"""pyrovae: Auto-Encoding Variational Bayes (Kingma & Welling) as Pyro programs.

The commands as functions: :func:`train`, :func:`evaluate`, :func:`variance`, :func:`report`,
:func:`sweep`, :func:`load`, and for a trained model :func:`sample`, :func:`reconstruct`, :func:`encode`,
:func:`interpolate` and :func:`export` (see :mod:`pyrovae.api`); your own components join through :func:`register`
(see :mod:`pyrovae.registry` and docs/extending.md).
"""

from .api import (
    Evaluation,
    Run,
    VarianceResult,
    encode,
    evaluate,
    export,
    interpolate,
    load,
    reconstruct,
    report,
    sample,
    sweep,
    train,
    variance,
)
from .components import Likelihood
from .errors import PyrovaeError
from .model import VAE
from .registry import register
from .spec import ExperimentSpec, load_config

__version__ = "0.1.0"
__all__ = ["VAE", "ExperimentSpec", "load_config", "__version__", "register", "Likelihood", "PyrovaeError",
           "train", "evaluate", "variance", "report", "sweep", "load", "sample", "reconstruct", "encode",
           "interpolate", "export", "Run", "Evaluation", "VarianceResult"]
