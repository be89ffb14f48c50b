"""The SVI object a training run steps: Pyro's ``SVI`` over the VAE's model and guide, or,
with ``train.compile``, the compiled step of :mod:`pyrovae.inference.compiled` (the same
estimator, recorded once per minibatch shape and compiled by inductor).

Pyro's validation (distribution arguments and supports, model and guide matching) runs on
the first step only. It checks the program, which is the same at every step: a user's prior
or likelihood with a wrong support or shape fails there with Pyro's message, and later steps
skip checks that cost 10-20% of a small network's step. The data were checked when loaded
(range, shape, NaN) and the training loop checks every step's loss for NaN, so nothing the
checks would catch later goes unnoticed. (The compiled step runs the interpreted program
once when it records a graph, with validation as this step sets it.)
"""

from typing import Optional

import pyro
import torch
from pyro.infer import SVI

from .compiled import CompiledStep


class TrainingSVI(SVI):
    """Pyro's SVI with the call the training loop makes, ``step(x, y, kl_weight)``; with
    ``compile`` the steps are :class:`~pyrovae.inference.compiled.CompiledStep`'s."""

    def __init__(self, vae, optimizer, loss, compile: bool = False):
        super().__init__(vae.model, vae.guide, optimizer, loss)
        self.elbo = loss
        self.compiled = CompiledStep(vae, optimizer, loss) if compile else None
        self._validated = False  # the first step runs with Pyro's validation, the others without

    def step(self, x: torch.Tensor, y: Optional[torch.Tensor], kl_weight: float) -> float:
        """One gradient step on the minibatch; the loss (the negative ELBO summed over it)."""
        if not self._validated:
            loss = self._step(x, y, kl_weight)
            self._validated = True
            return loss
        with pyro.validation_enabled(False):
            return self._step(x, y, kl_weight)

    def _step(self, x: torch.Tensor, y: Optional[torch.Tensor], kl_weight: float) -> float:
        if self.compiled is not None:
            return self.compiled.step(x, y, kl_weight)
        return super().step(x, y, kl_weight)
