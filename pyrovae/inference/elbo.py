"""The ELBO of a whole split, in nats per data point, computed in batches without gradients."""

from typing import Optional

import pyro
import torch
from pyro.infer import Trace_ELBO


@torch.no_grad()
def split_elbo(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, loss=None,
               batch_size: int = 1000) -> float:
    """Mean ELBO per data point over ``x`` (default loss: single-sample ``Trace_ELBO``; a
    multi-sample estimator's loss gives its IWAE_K bound instead).

    Pyro losses return the negative ELBO summed over the data plate; this divides by the
    number of points so values compare across batch sizes and splits.
    """
    loss = loss or Trace_ELBO()
    total = 0.0
    with pyro.validation_enabled(False):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size]
            yb = None if y is None else y[start:start + batch_size]
            total -= loss.loss(vae.model, vae.guide, xb, yb)
    return total / x.shape[0]
