"""Monte Carlo EM with HMC (the baseline of Kingma & Welling's Fig. 3), as a training method.

Every data point keeps a latent state z_i. A training step on a minibatch

1. (E-step) moves each point's z_i by ``hmc_steps`` HMC transitions (one by default) on
   p_theta(z | x_i), continuing from the state the point had before (10 leapfrog steps, one
   step size adapted toward 90% acceptance by dual averaging: the shared sampler of
   :mod:`pyrovae.inference.hmc`), all points of the minibatch at once;
2. (M-step) ascends log p_theta(x_i, z_i) in theta at those samples.

So every visit of a point makes the paper's HMC move (appendix E: "10 HMC leapfrog steps
with an automatically tuned stepsize such that the acceptance rate was 90%"). The paper
then makes 5 weight updates on the same minibatch with that sample; pyrovae's training loop
makes one optimizer step per minibatch visit, so here each HMC move is followed by one
weight update (docs/paper.md says what that changes).

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
                 step_size: float = 0.1):
        super().__init__(num_particles=1)
        self.hmc_steps = hmc_steps
        self.hmc = HMC(step_size=step_size, num_leapfrog=num_leapfrog, target_accept=target_accept)
        self.states = {}  # row key -> the point's latent state after its last visit
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
        log_q = vae.posterior(x, y).log_prob(z).sum()
        (-(log_p + log_q)).backward()
        with torch.no_grad():
            return self._elbo.loss(model, guide, x, y, kl_weight)

    def sample(self, vae, x, y=None) -> torch.Tensor:
        """The E-step: every point of ``x`` moved by ``hmc_steps`` HMC transitions from its
        last state (a new point from its encoder's mean), ``(batch, latent_dim)``."""
        from .log_joint import log_joint

        keys = row_keys(x)
        z = self._last_states(vae, x, y, keys)
        potential = lambda zz: -log_joint(vae, x, y, zz)  # noqa: E731
        z = self.hmc.sample(potential, z.unsqueeze(0), self.hmc_steps)[0]
        for key, state in zip(keys, z.cpu()):
            self.states[key] = state
        return z

    def _last_states(self, vae, x, y, keys: List[str]) -> torch.Tensor:
        """Each point's stored latent state; a point seen for the first time starts its chain
        at its guide's latent code (the mean for Gaussian guides)."""
        with torch.no_grad():
            z = vae.latent_code(x, y).detach().clone()
        for i, key in enumerate(keys):
            if key in self.states:
                z[i] = self.states[key].to(z)
        return z

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """Chain states and the step-size adaptation, in tensors and numbers."""
        keys = sorted(self.states)
        scheme = self.hmc.adaptation._scheme
        return {"keys": keys,
                "z": torch.stack([self.states[k] for k in keys]) if keys else torch.empty(0),
                "step_size": self.hmc.adaptation.step_size.clone(),
                "dual_averaging": {name: torch.as_tensor(getattr(scheme, name)).clone()
                                   for name in ("prox_center", "_x_avg", "_g_avg", "_t", "_x_t")
                                   if hasattr(scheme, name)}}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (checkpoints that also hold visit counts, written before
        every visit moved its point, load too: the counts are not needed)."""
        self.states = {k: state["z"][i] for i, k in enumerate(state["keys"])}
        self.hmc.adaptation.step_size = state["step_size"].clone()
        scheme = self.hmc.adaptation._scheme
        for name, value in state["dual_averaging"].items():
            setattr(scheme, name, value.item() if name == "_t" else value.clone())
