"""Custom gradient estimators as Pyro ELBOs, written as surrogate objectives.

Pyro turns any estimator into an ordinary backward pass by a *surrogate*: a scalar whose
value is the bound being estimated and whose gradient is the estimator. Score-function
terms appear as ``stop_gradient(f) * log q(z|x)`` with z held fixed, pathwise terms as
functions of a reparameterized z. Every class here builds its surrogate from the
per-particle terms of :func:`~pyrovae.inference.particles.trace_particles`, shaped
``(draws, K, batch)``, and returns

    loss = -(bound.detach() + surrogate - surrogate.detach())

so the reported loss is the negative bound and its gradient is the estimator's, exactly
as Pyro's ``Trace_ELBO.differentiable_loss`` does. Each is a :class:`pyro.infer.ELBO`, so
``SVI`` calls ``loss_and_grads`` for a training step; estimator state (a baseline's moving
average) advances only there, never in ``differentiable_loss``, which the variance
laboratory calls for its draws.
"""

import math
from typing import Dict, Sequence, Tuple

import pyro
import torch
from pyro.infer import ELBO

from ..components.networks import NETWORKS
from .particles import Particles, particle_traces, trace_particles


class ParticleELBO(ELBO):
    """Base class: subclasses define :meth:`objective` from a :class:`Particles`.

    ``bound_particles`` is the K of the IWAE bound whose gradient the estimator is
    unbiased for (1: the ELBO).
    """

    reparameterized = True
    scales_latent_gradients = False
    bound_particles = 1
    latent_families = ("continuous",)  # the guides it handles: continuous, bernoulli, categorical

    def __init__(self, num_particles: int = 1):
        super().__init__(num_particles=num_particles)

    def objective(self, particles: Particles) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(bound, surrogate)`` per draw and data point, each ``(draws, batch)``."""
        raise NotImplementedError

    def averaged_loss(self, model, guide, args: Sequence, kwargs: Dict, draws: int = 1) -> torch.Tensor:
        """The loss averaged over ``draws`` independent draws of the estimator, computed as
        one vectorized pass (``draws = 1``: the estimator itself)."""
        return self._evaluate(model, guide, args, kwargs, draws)[0]

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        return self.averaged_loss(model, guide, args, kwargs)

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """One training step's gradient; the estimator's own state advances afterwards."""
        loss, particles = self._evaluate(model, guide, args, kwargs, 1)
        loss.backward()
        self.observe(particles)
        return loss.item()

    def observe(self, particles: Particles) -> None:
        """Update estimator state after a training step (nothing by default)."""

    def state_dict(self) -> dict:
        """Everything an exact resume of training needs besides model and optimizer."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""

    def _get_trace(self, model, guide, args, kwargs):
        """Pyro's ELBO interface: the model and guide traces of one draw of the particles."""
        return particle_traces(model, guide, args, kwargs, 1, self.num_particles, self.reparameterized)

    def particles(self, model, guide, args, kwargs, draws):
        """What :meth:`objective` reads: the :class:`Particles` of ``draws`` draws (estimators of
        discrete latents read a :class:`~pyrovae.inference.discrete_particles.DiscreteSite`)."""
        return trace_particles(model, guide, args, kwargs, draws, self.num_particles,
                               reparameterized=self.reparameterized,
                               scale_latent_gradients=self.scales_latent_gradients)

    def _evaluate(self, model, guide, args, kwargs, draws):
        particles = self.particles(model, guide, args, kwargs, draws)
        bound, surrogate = self.objective(particles)
        bound, surrogate = bound.sum(-1).mean(), surrogate.sum(-1).mean()
        return -(bound.detach() + surrogate - surrogate.detach()), particles


def log_mean_exp(log_w: torch.Tensor, dim: int = -2) -> torch.Tensor:
    """log (1/K) sum_k exp(log_w_k) over the particle dimension, computed stably."""
    return torch.logsumexp(log_w, dim) - math.log(log_w.shape[dim])


class StickingTheLanding(ParticleELBO):
    """Pathwise ELBO gradient with q's parameters stopped inside log q (Roeder et al. 2017)."""

    def objective(self, particles):
        path = particles.log_p - particles.log_q_stopped()
        return particles.log_w.mean(-2), path.mean(-2)


class IWAE(ParticleELBO):
    """Pathwise gradient of the K-sample importance-weighted bound (Burda et al. 2016);
    with ``doubly_reparameterized`` the DReG encoder gradient (Tucker et al. 2019)."""

    def __init__(self, num_particles: int, doubly_reparameterized: bool = False):
        super().__init__(num_particles)
        self.doubly_reparameterized = doubly_reparameterized
        self.scales_latent_gradients = doubly_reparameterized
        self.bound_particles = num_particles

    def objective(self, particles):
        bound = log_mean_exp(particles.log_w)
        if not self.doubly_reparameterized:
            return bound, bound
        # The decoder's gradient sum_k w_k grad log p(x, z_k) keeps the normalized weights w_k;
        # the gradient reaching each z_k is scaled once more by w_k, giving DReG's w_k^2, and
        # stopping q's parameters removes the score term.
        weights = torch.softmax(particles.log_w.detach(), -2)
        particles.scale_latent_gradients(weights)
        return bound, (weights * (particles.log_p - particles.log_q_stopped())).sum(-2)


class ScoreFunction(ParticleELBO):
    """REINFORCE for the guide's latent sites, with an optional baseline b:

        surrogate = log p(x, z) + stop_gradient(f - b) * log q(z|x),   f = log w, z fixed

    The model's parameters get grad log p(x, z) at the sampled z, exactly what Pyro's
    ``Trace_ELBO`` builds for a site whose distribution has no ``rsample``. A trainable
    baseline (a network) learns from its penalty, subtracted from the surrogate. With ``normalize``
    (NVIL) the centred signal f - b is divided by max(1, s), s the baseline's running spread of f:
    the encoder's gradient is the unbiased one scaled by that positive number, known at the step.
    """

    reparameterized = False
    latent_families = ("continuous", "bernoulli", "categorical")

    def __init__(self, num_particles: int = 1, baseline=None, normalize: bool = False):
        super().__init__(num_particles)
        self.baseline = baseline
        self.normalize = normalize
        self.unbiased = not normalize

    def objective(self, particles):
        signal = particles.log_w.detach()
        surrogate = particles.log_p
        if self.baseline is None:
            surrogate = surrogate + signal * particles.score
        else:
            b = self.baseline(signal, particles.x)
            centred = signal - b.detach()
            if self.normalize:  # NVIL's variance normalization
                centred = centred / max(1.0, self.baseline.scale)
            surrogate = surrogate + centred * particles.score - self.baseline.penalty(signal, b)
        return signal.mean(-2), surrogate.mean(-2)

    def observe(self, particles):
        if self.baseline is not None:
            self.baseline.observe(particles.log_w.detach())

    def adapt(self, model, guide, batches: Sequence[Sequence], steps: int) -> None:
        """Fit the baseline to the current, frozen model and guide on ``batches`` (argument
        tuples of the model), as training would have fitted it by now."""
        if self.baseline is None:
            return
        with torch.no_grad():
            pairs = [(args[0], trace_particles(model, guide, args, {}, 1, self.num_particles,
                                               reparameterized=False).log_w) for args in batches]
        self.baseline.fit(pairs, steps)

    def state_dict(self):
        return {} if self.baseline is None else {"baseline": self.baseline.state_dict()}

    def load_state_dict(self, state):
        if self.baseline is not None and "baseline" in state:
            self.baseline.load_state_dict(state["baseline"])


class VIMCO(ParticleELBO):
    """Score-function gradient of the K-sample bound with leave-one-out baselines
    (Mnih & Rezende 2016):

        grad L_K ~ sum_k stop_gradient(L_K - L_{-k}) grad log q(z_k|x) + sum_k w~_k grad log w_k,
        L_{-k} = log (1/K) (sum_{j != k} w_j + exp(mean_{j != k} log w_j))

    with normalized weights w~_k and the z_k fixed, so the second sum reaches the decoder and
    q's parameters but not z.
    """

    reparameterized = False
    latent_families = ("continuous", "bernoulli", "categorical")

    def __init__(self, num_particles: int):
        super().__init__(num_particles)
        self.bound_particles = num_particles

    def objective(self, particles):
        bound = log_mean_exp(particles.log_w)
        signal = bound.detach().unsqueeze(-2) - leave_one_out_bounds(particles.log_w.detach())
        return bound, bound + (signal * particles.score).sum(-2)


def leave_one_out_bounds(log_w: torch.Tensor) -> torch.Tensor:
    """L_{-k} for every k: the K-sample bound with log w_k replaced by the mean of the others'."""
    k = log_w.shape[-2]
    others_mean = (log_w.sum(-2, keepdim=True) - log_w) / (k - 1)
    every = log_w.unsqueeze(-3).expand(*log_w.shape[:-2], k, k, log_w.shape[-1])  # [k, j] = log w_j
    diagonal = torch.eye(k, dtype=torch.bool, device=log_w.device).unsqueeze(-1)
    return log_mean_exp(torch.where(diagonal, others_mean.unsqueeze(-2), every))


# ----------------------------------------------------------------------------- baselines

class Baseline:
    """A control variate b for the signal f = log w, shaped to broadcast against f
    ``(draws, K, batch)``; it must not depend on the particle it centres."""

    def __call__(self, signal: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self, signal: torch.Tensor, b: torch.Tensor):
        """What a trainable baseline minimises, subtracted from the surrogate (0: nothing)."""
        return 0.0

    def observe(self, signal: torch.Tensor) -> None:
        """Learn from a training step's signal."""

    def fit(self, pairs, steps: int) -> None:
        """Fit to ``pairs`` of (minibatch, signal) at frozen model parameters."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class LeaveOneOut(Baseline):
    """b_k = mean of the other particles' signals, mean_{j != k} f_j: independent of z_k,
    so unbiased, and needing no state (Kool et al. 2019, 'Buy 4 REINFORCE samples')."""

    def __call__(self, signal, x):
        k = signal.shape[-2]
        return (signal.sum(-2, keepdim=True) - signal) / (k - 1)


class MovingAverage:
    """Exponential moving average of numbers with decay ``beta``, bias-corrected so that it
    is a weighted mean of the numbers seen from the first one on (0 before any)."""

    def __init__(self, beta: float):
        self.beta = beta
        self.total, self.weight = 0.0, 0.0

    @property
    def value(self) -> float:
        return self.total / self.weight if self.weight else 0.0

    def update(self, number: float) -> None:
        self.total = self.beta * self.total + (1 - self.beta) * number
        self.weight = self.beta * self.weight + (1 - self.beta)

    def reset(self, number: float) -> None:
        self.total, self.weight = number, 1.0

    def state_dict(self) -> dict:
        return {"total": self.total, "weight": self.weight}

    def load_state_dict(self, state: dict) -> None:
        self.total, self.weight = state["total"], state["weight"]


class AverageBaseline(Baseline):
    """b_t = moving average of the mean signal of past steps. Step t uses b_{t-1}, which
    does not depend on its own samples, so the estimator stays unbiased."""

    def __init__(self, beta: float):
        self.average = MovingAverage(beta)

    def __call__(self, signal, x):
        return signal.new_tensor(self.average.value)

    def observe(self, signal):
        self.average.update(signal.mean().item())

    def fit(self, pairs, steps):
        self.average.reset(torch.cat([s.reshape(-1) for _, s in pairs]).mean().item())

    def state_dict(self):
        return self.average.state_dict()

    def load_state_dict(self, state):
        self.average.load_state_dict(state)


class NeuralBaseline(Baseline):
    """b(x) = c + s b_psi(x), NVIL-style (Mnih & Gregor 2014): c and s^2 are moving averages
    of the signal's mean and of its squared deviation from c, b_psi an MLP of the data point
    fitted to the standardized residual (f - c) / s by least squares, so it works at any
    scale of the signal. Its parameters are registered as Pyro module ``"baseline"``, so
    SVI trains them with the VAE's optimizer; its last layer starts at zero (b starts at c)."""

    fit_lr = 1e-2  # Adam step size of :meth:`fit`

    def __init__(self, beta: float, hidden: Sequence[int]):
        self.center, self.spread = MovingAverage(beta), MovingAverage(beta)
        self.hidden = list(hidden)
        self.net = None
        self.data_shape = None

    @property
    def scale(self) -> float:
        return math.sqrt(self.spread.value) or 1.0

    def network(self, x: torch.Tensor) -> torch.nn.Module:
        """The network for data like ``x``, built at the first call (when the data's shape
        is known) and kept on ``x``'s device."""
        if self.net is None:
            self._build(tuple(x.shape[1:]))
        return self.net.to(x.device)

    def _build(self, data_shape):
        self.data_shape = data_shape
        self.net = NETWORKS.build("mlp", {"in_shape": data_shape, "out_shape": (), "cond_dim": 0},
                                  options={"hidden": self.hidden, "activation": "tanh"})
        torch.nn.init.zeros_(self.net.head.weight)
        torch.nn.init.zeros_(self.net.head.bias)

    def __call__(self, signal, x):
        net = pyro.module("baseline", self.network(x))
        return self.center.value + self.scale * net(x.detach())

    def penalty(self, signal, b):
        return ((signal - b) / self.scale).pow(2)

    def observe(self, signal):
        self.center.update(signal.mean().item())
        self.spread.update((signal - self.center.value).pow(2).mean().item())

    def fit(self, pairs, steps):
        """Set c and s from the signals, then take ``steps`` Adam passes over ``pairs`` of
        (minibatch, signal) regressing the standardized residual on the data."""
        signals = torch.cat([s.reshape(-1) for _, s in pairs])
        self.center.reset(signals.mean().item())
        self.spread.reset((signals - self.center.value).pow(2).mean().item())
        net = self.network(pairs[0][0])
        optimizer = torch.optim.Adam(net.parameters(), lr=self.fit_lr)
        for _ in range(steps):
            for x, signal in pairs:
                optimizer.zero_grad()
                ((signal - self.center.value) / self.scale - net(x)).pow(2).mean().backward()
                optimizer.step()

    def state_dict(self):
        net = None if self.net is None else {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        return {"center": self.center.state_dict(), "spread": self.spread.state_dict(),
                "data_shape": self.data_shape, "net": net}

    def load_state_dict(self, state):
        self.center.load_state_dict(state["center"])
        self.spread.load_state_dict(state["spread"])
        if state["net"] is not None:
            if self.net is None:
                with torch.random.fork_rng(devices=[]):  # its initial values are overwritten anyway
                    self._build(tuple(state["data_shape"]))
            self.net.load_state_dict(state["net"])
