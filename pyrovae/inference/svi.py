"""The SVI object a training run steps: Pyro's ``SVI`` over the VAE's model and guide,
optionally with the loss compiled by Pyro's JIT.

``train.jit`` swaps the ``pathwise`` estimator (Pyro's ``Trace_ELBO``) for its JIT twin,
``JitTrace_ELBO``: the first step at each minibatch size records the model, the guide and
the loss as one TorchScript graph, and later steps run the graph instead of Pyro's Python
tracing. Pyro's JIT needs every tensor input passed positionally and everything else as
hashable keyword arguments, so the compiled programs take ``(x, [y,] kl_weight)`` with the
KL weight as a tensor (a float would be recorded as a constant, frozen during warm-up) and
the minibatch size as a keyword (a new size compiles a new graph rather than running one
recorded for another size).

Pyro's validation (distribution arguments and supports, model and guide matching) runs on
the first step only. It checks the program, which is the same at every step: a user's prior
or likelihood with a wrong support or shape fails there with Pyro's message, and later steps
skip checks that cost 10-20% of a small network's step. The data were checked when loaded
(range, shape, NaN) and the training loop checks every step's loss for NaN, so nothing the
checks would catch later goes unnoticed.

Recording a graph runs the program once more, drawing random numbers; it is done on a
forked random-number generator, so a run with ``train.jit`` draws the same numbers whether
or not it was interrupted and resumed (exact resume holds).
"""

import warnings
from typing import Optional

import pyro
import torch
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO

from ..errors import PyrovaeError

# Only Trace_ELBO: Pyro's JitTraceMeanField_ELBO draws other numbers than TraceMeanField_ELBO
# from the same random state (its steps differ by more than rounding), so it is not offered.
_JIT_TWINS = {Trace_ELBO: JitTrace_ELBO}


class TrainingSVI(SVI):
    """Pyro's SVI with the call the training loop makes, ``step(x, y, kl_weight)``."""

    def __init__(self, vae, optimizer, loss, jit: bool = False):
        self.jit = jit
        self.conditional = bool(vae.num_classes)
        self._compiled_sizes = set()
        self._weight = (None, None)  # the last KL weight and its tensor on the data's device
        self._validated = False  # the first step runs with Pyro's validation, the others without
        if not jit:
            super().__init__(vae.model, vae.guide, optimizer, loss)
            self.elbo = loss
            return
        twin = _JIT_TWINS.get(type(loss))
        if twin is None:
            raise PyrovaeError(f"train.jit works with the pathwise estimator only, not "
                               f"{type(loss).__name__}; set train.jit=false")
        loss = twin(num_particles=loss.num_particles, max_plate_nesting=loss.max_plate_nesting,
                    vectorize_particles=loss.vectorize_particles, ignore_jit_warnings=True)
        if self.conditional:
            def model(x, y, kl_weight, size):
                vae.model(x, y, kl_weight)

            def guide(x, y, kl_weight, size):
                vae.guide(x, y, kl_weight)
        else:
            def model(x, kl_weight, size):
                vae.model(x, None, kl_weight)

            def guide(x, kl_weight, size):
                vae.guide(x, None, kl_weight)
        super().__init__(model, guide, optimizer, loss)
        self.elbo = loss

    def step(self, x: torch.Tensor, y: Optional[torch.Tensor], kl_weight: float) -> float:
        """One gradient step on the minibatch; the loss (the negative ELBO summed over it)."""
        if not self._validated:
            loss = self._step(x, y, kl_weight)
            self._validated = True
            return loss
        with pyro.validation_enabled(False):
            return self._step(x, y, kl_weight)

    def _step(self, x: torch.Tensor, y: Optional[torch.Tensor], kl_weight: float) -> float:
        if not self.jit:
            return super().step(x, y, kl_weight)
        if self._weight[0] != kl_weight:
            self._weight = (kl_weight, torch.tensor(kl_weight, dtype=x.dtype, device=x.device))
        weight = self._weight[1]
        args = (x, y, weight) if self.conditional else (x, weight)
        size = x.shape[0]
        if size not in self._compiled_sizes:
            self._compile(args, size)
        return super().step(*args, size=size)

    def _compile(self, args, size: int) -> None:
        devices = [args[0].device] if args[0].device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), pyro.validation_enabled(False), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.trace. is deprecated", category=FutureWarning)
            self.elbo.differentiable_loss(self.model, self.guide, *args, size=size)
        self._compiled_sizes.add(size)
