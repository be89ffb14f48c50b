"""Monte Carlo EM with HMC (the baseline of Kingma & Welling's Fig. 3), as a training method.

Every data point keeps a latent state z_i. A training step on a minibatch

1. (E-step) moves each point's z_i by ``hmc_steps`` HMC transitions on p_theta(z | x_i),
   continuing from the state the point had before (10 leapfrog steps, one step size
   adapted toward 90% acceptance by dual averaging: the shared sampler of
   :mod:`pyrovae.inference.hmc`);
2. (M-step) ascends log p_theta(x_i, z_i) in theta at those samples.

The paper follows each E-step with 5 weight updates on the same minibatch. In pyrovae's
training loop a step is one update of one minibatch, so a point is moved only on every
``updates_per_sample``-th visit (5 by default) and its stored sample serves the updates in
between: the same ratio of weight updates per HMC move of every point, interleaved with
other minibatches instead of consecutive. (A first visit always samples.)

The encoder is not part of MCEM; it is fitted here to the HMC samples by maximum
likelihood (ascend log q_phi(z_i | x_i)), which leaves theta's updates untouched but gives
the model an amortized posterior for the training loop's ELBO, importance sampling and the
other evaluations. The loss reported is minus a single-sample ELBO with that encoder.

Points are recognised by their content (a hash of the row), since the training loop
passes minibatches without indices: data must be fixed (static binarization), and
identical rows share a state.
"""

import hashlib
from typing import List

import pyro.distributions as dist
import torch
from pyro.infer import ELBO, Trace_ELBO

from ..errors import PyrovaeError
from .hmc import HMC


def row_keys(x: torch.Tensor) -> List[str]:
    """A content hash per data point (row of ``x``)."""
    rows = x.detach().reshape(x.shape[0], -1).cpu().contiguous().numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=12).hexdigest() for row in rows]


class MonteCarloEM(ELBO):
    """Pyro loss whose ``loss_and_grads`` is one MCEM step (see the module docstring). Its model
    must be a :class:`~pyrovae.model.VAE`'s ``model`` method (the sampler needs the VAE)."""

    unbiased = False  # no bound's gradient: an E-step by sampling, then log p(x, z) at the samples
    measurable = False  # no differentiable_loss for the variance laboratory to draw

    def __init__(self, hmc_steps: int = 1, num_leapfrog: int = 10, target_accept: float = 0.9,
                 updates_per_sample: int = 5, step_size: float = 0.1):
        super().__init__(num_particles=1)
        self.hmc_steps, self.updates_per_sample = hmc_steps, updates_per_sample
        self.hmc = HMC(step_size=step_size, num_leapfrog=num_leapfrog, target_accept=target_accept)
        self.states = {}  # row key -> (latent state, visits so far)
        self._elbo = Trace_ELBO()

    @staticmethod
    def _vae(model):
        vae = getattr(model, "__self__", None)
        if vae is None or not hasattr(vae, "latent_dim"):
            raise PyrovaeError("mcem trains a pyrovae VAE (its model method); use another estimator for other models")
        return vae

    def _get_trace(self, model, guide, args, kwargs):
        raise PyrovaeError("mcem builds no model/guide trace pair; its steps are loss_and_grads")

    def loss(self, model, guide, *args, **kwargs) -> float:
        """Minus the single-sample ELBO with the fitted encoder (validation, evaluation)."""
        return self._elbo.loss(model, guide, *args, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        raise PyrovaeError("mcem has no single differentiable objective (its E-step is a sampler); "
                           "it trains, but the variance laboratory cannot draw its gradients")

    def loss_and_grads(self, model, guide, x, y=None, kl_weight=1.0) -> float:
        from .log_joint import log_joint

        vae = self._vae(model)
        z = self.sample(vae, x, y)
        # M-step: theta ascends log p(x, z) at the samples; the encoder fits q(z|x) to them.
        log_p = log_joint(vae, x, y, z.unsqueeze(0)).sum()
        loc, scale = vae.encode(x, y)
        log_q = dist.Normal(loc, scale).log_prob(z).sum()
        (-(log_p + log_q)).backward()
        with torch.no_grad():
            return self._elbo.loss(model, guide, x, y, kl_weight)

    def sample(self, vae, x, y=None) -> torch.Tensor:
        """The E-step: every point's latent state after this visit, ``(batch, latent_dim)``."""
        from .log_joint import log_joint

        keys = row_keys(x)
        dim = vae.latent_dim
        z = torch.empty(len(keys), dim, dtype=x.dtype, device=x.device)
        due = torch.zeros(len(keys), dtype=torch.bool)
        for i, key in enumerate(keys):
            state = self.states.get(key)
            if state is None:
                with torch.no_grad():  # a new point's chain starts at its encoder's mean
                    z[i] = vae.encode(x[i:i + 1], None if y is None else y[i:i + 1])[0][0]
                due[i] = True
            else:
                z[i] = state[0].to(z)
                due[i] = state[1] % self.updates_per_sample == 0
        if due.any():
            xs, ys = x[due], None if y is None else y[due]
            potential = lambda zz: -log_joint(vae, xs, ys, zz)  # noqa: E731
            z[due] = self.hmc.sample(potential, z[due].unsqueeze(0).detach(), self.hmc_steps)[0].to(z)
        for i, key in enumerate(keys):
            visits = self.states[key][1] if key in self.states else 0
            self.states[key] = (z[i].detach().cpu(), visits + 1)
        return z.detach()

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """Chain states, visit counts and the step-size adaptation, in tensors and numbers."""
        keys = sorted(self.states)
        scheme = self.hmc.adaptation._scheme
        return {"keys": keys,
                "z": torch.stack([self.states[k][0] for k in keys]) if keys else torch.empty(0),
                "visits": torch.tensor([self.states[k][1] for k in keys], dtype=torch.long),
                "step_size": self.hmc.adaptation.step_size.clone(),
                "dual_averaging": {name: torch.as_tensor(getattr(scheme, name)).clone()
                                   for name in ("prox_center", "_x_avg", "_g_avg", "_t", "_x_t")
                                   if hasattr(scheme, name)}}

    def load_state_dict(self, state: dict) -> None:
        self.states = {k: (state["z"][i], int(state["visits"][i])) for i, k in enumerate(state["keys"])}
        self.hmc.adaptation.step_size = state["step_size"].clone()
        scheme = self.hmc.adaptation._scheme
        for name, value in state["dual_averaging"].items():
            setattr(scheme, name, value.item() if name == "_t" else value.clone())
