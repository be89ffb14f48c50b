"""Gradient estimators for discrete latents, as surrogate objectives on a :class:`DiscreteSite`.

Each class is a :class:`~pyrovae.inference.surrogates.ParticleELBO`: its ``objective`` returns
``(bound, surrogate)`` per draw and data point, the bound the ELBO's single-sample estimate at an
exact sample of q, the surrogate's gradient the estimator. The estimators of the guide's
gradient are written for the logits a = a_phi(x) of q(z|x): they compute a per-particle estimate
g_a of dELBO/da and put ``stop_gradient(g_a) . a`` in the surrogate, so backpropagation carries
it into the encoder; the model's parameters get grad log p(x, z) at the exact samples.

Notation: f(z) = log p(x, z) - log q(z|x) (the learning signal), sigma the logistic function,
u ~ U(0, 1)^D, logit(u) = log u - log(1 - u) logistic noise, H the unit step.

- ARM (Yin & Zhou 2019): b = H(u > sigma(-a)), b' = H(u < sigma(a)) (antithetic),
  g_a = (f(b) - f(b')) (u - 1/2).
- DisARM (Dong, Mnih & Tucker 2020): the same pair, u integrated out where b = b',
  g_a = 1/2 (f(b) - f(b')) (-1)^b' 1[b != b'] sigma(|a|).
- REBAR (Tucker et al. 2017) and RELAX (Grathwohl et al. 2018): z = a + logit(u), b = H(z),
  z~ ~ p(z | b) by v ~ U(0, 1), and a control variate c:
  g_a = (f(b) - c(z~)) (b - sigma(a)) + dc(z)/da - dc(z~)/da   (b - sigma(a) = d log q(b)/da),
  REBAR's c(z) = eta f(sigma(z / lambda)) (f continued to relaxed values), RELAX's adds a
  network r_psi(sigma(z / lambda)). eta, lambda and psi are trained by gradient descent on the
  estimator's variance, sum g_a^2, through a second backward pass (its gradient in eta, lambda,
  psi is that of the variance, E g_a being theirs to leave alone).
- Gumbel-softmax / Concrete (Jang et al. 2017; Maddison et al. 2017): z~ = sigma((a + logit(u)) / tau)
  (softmax((a + g) / tau) per group of a categorical, g Gumbel noise); the surrogate is f(z~), f
  continued to relaxed values, differentiated by the path z~(a). Biased for tau > 0.
- Straight-through Gumbel (Jang et al. 2017): f at the exact sample H(z~ - 1/2) (argmax per
  group), its gradient taken as if it were f(z~). Biased at every tau.
"""

import math
from typing import Sequence

import pyro
import torch
from torch import nn
from torch.nn import functional as F

from ..components.networks import NETWORKS
from .discrete_particles import DiscreteSite, discrete_site
from .enumeration import MAX_CONFIGURATIONS, enumerate_latents
from .surrogates import ParticleELBO

BINARY = ("bernoulli",)
DISCRETE = ("bernoulli", "categorical")


class DiscreteELBO(ParticleELBO):
    """Base class: the guide's discrete site with a value made by :meth:`make` from noise."""

    latent_families = DISCRETE
    reparameterized = False  # no pathwise sample of z: the estimator makes its own values
    name = "discrete"  # the registry name, for messages

    def make(self, fn):
        """``(value, noise)``: an exact sample of ``fn`` and the noise it came from."""
        raise NotImplementedError

    def particles(self, model, guide, args, kwargs, draws) -> DiscreteSite:
        return discrete_site(model, guide, args, kwargs, draws, self.num_particles, self.make,
                             self.latent_families, self.name)


def uniform_like(fn) -> torch.Tensor:
    """U(0, 1) noise of ``fn``'s batch and event shape, kept away from 0 and 1 so that
    logits of it are finite."""
    tiny = torch.finfo(fn.logits.dtype).tiny
    u = torch.rand(fn.batch_shape + fn.event_shape, dtype=fn.logits.dtype, device=fn.logits.device)
    return u.clamp(tiny, 1 - torch.finfo(fn.logits.dtype).eps)


def logit(u: torch.Tensor) -> torch.Tensor:
    return u.log() - (-u).log1p()


# ----------------------------------------------------------------------------- ARM, DisARM

class ARM(DiscreteELBO):
    """ARM, or with ``disarm`` DisARM: antithetic pairs for binary latents (see the module docstring)."""

    latent_families = BINARY

    def __init__(self, num_particles: int = 1, disarm: bool = False):
        super().__init__(num_particles)
        self.disarm = disarm
        self.name = "disarm" if disarm else "arm"

    def make(self, fn):
        u = uniform_like(fn)
        return (u > torch.sigmoid(-fn.logits.detach())).to(u.dtype), u

    def objective(self, site):
        a, u, b = site.logits, site.noise, site.value
        b_twin = (u < torch.sigmoid(a.detach())).to(u.dtype)
        log_p, log_p_twin = site.log_p(b), site.log_p(b_twin)
        f, f_twin = log_p - site.log_q(b), log_p_twin - site.log_q(b_twin)
        difference = (f - f_twin).detach().unsqueeze(-1)
        if self.disarm:
            g_a = 0.5 * difference * (1 - 2 * b_twin) * (b != b_twin) * torch.sigmoid(a.detach().abs())
        else:
            g_a = difference * (u - 0.5)
        surrogate = 0.5 * (log_p + log_p_twin) + (g_a * a).sum(-1)
        return (0.5 * (f + f_twin)).mean(-2), surrogate.mean(-2)


# ----------------------------------------------------------------------------- Gumbel relaxations

class _StraightThrough(torch.autograd.Function):
    """``hard`` forward, the gradient passed to ``relaxed`` backward."""

    @staticmethod
    def forward(ctx, hard, relaxed):
        return hard.clone()

    @staticmethod
    def backward(ctx, grad):
        return None, grad


def gumbel_noise(fn) -> torch.Tensor:
    """Logistic noise logit(u) for binary latents (the difference of two Gumbels), Gumbel noise
    -log(-log u) for categorical ones."""
    u = uniform_like(fn)
    return logit(u) if fn.family == "bernoulli" else -(-u.log()).log()


def hard_sample(fn, noise: torch.Tensor) -> torch.Tensor:
    """The exact sample of q the noise makes: H(a + logit(u)), or the one-hot argmax of a + g per group."""
    perturbed = fn.logits.detach() + noise
    if fn.family == "bernoulli":
        return (perturbed > 0).to(noise.dtype)
    index = fn.grouped(perturbed).argmax(-1)
    return F.one_hot(index, fn.classes).to(noise.dtype).flatten(-2)


def relaxed_sample(fn, noise: torch.Tensor, temperature) -> torch.Tensor:
    """sigma((a + logit(u)) / tau), or softmax((a + g) / tau) per group: differentiable in a."""
    perturbed = (fn.logits + noise) / temperature
    if fn.family == "bernoulli":
        return torch.sigmoid(perturbed)
    return torch.softmax(fn.grouped(perturbed), -1).flatten(-2)


class GumbelRelaxation(DiscreteELBO):
    """Gumbel-softmax (Concrete), or with ``straight_through`` the straight-through Gumbel estimator,
    with temperature tau_t = max(min_temperature, temperature * exp(-anneal_rate * t)) after t
    training steps (Jang et al. 2017's schedule; ``anneal_rate = 0``: a fixed temperature; a
    starting temperature below ``min_temperature`` stays where it starts).

    The loss reports the ELBO at the exact sample H(.) of the same noise (for Gumbel-softmax one
    more forward pass of the model, without gradient), so that it is comparable across estimators.
    """

    unbiased = False  # its mean is the gradient of the relaxed objective, or no objective's (ST)

    def __init__(self, num_particles: int = 1, temperature: float = 1.0, anneal_rate: float = 0.0,
                 min_temperature: float = 0.5, straight_through: bool = False):
        super().__init__(num_particles)
        self.initial_temperature, self.anneal_rate, self.min_temperature = temperature, anneal_rate, min_temperature
        self.straight_through = straight_through
        self.name = "gumbel_st" if straight_through else "gumbel_softmax"
        self.step = 0

    @property
    def temperature(self) -> float:
        floor = min(self.min_temperature, self.initial_temperature)
        return max(floor, self.initial_temperature * math.exp(-self.anneal_rate * self.step))

    def make(self, fn):
        noise = gumbel_noise(fn)
        return hard_sample(fn, noise), noise

    def objective(self, site):
        relaxed = relaxed_sample(site.fn, site.noise, self.temperature)
        if self.straight_through:
            f = site.log_w(_StraightThrough.apply(site.value, relaxed), relaxed=True)
            return f.mean(-2), f.mean(-2)
        with torch.no_grad():
            bound = site.log_w(site.value)
        return bound.mean(-2), site.log_w(relaxed, relaxed=True).mean(-2)

    def observe(self, site):
        self.step += 1

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = state["step"]


# ----------------------------------------------------------------------------- REBAR, RELAX

class ControlVariate(nn.Module):
    """c(z) = eta f(sigma(z / lambda)) [+ r_psi(sigma(z / lambda))], with eta, log lambda and, for
    RELAX, a tanh MLP r_psi of the relaxed latent, built at the first call (when the latent
    dimension is known) with its last layer at zero, so RELAX starts as REBAR."""

    def __init__(self, eta: float, temperature: float, hidden: Sequence[int] = None):
        super().__init__()
        self.eta = nn.Parameter(torch.tensor(float(eta)))
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.hidden = None if hidden is None else list(hidden)
        self.latent_dim = None
        self.net = None

    def build(self, latent_dim: int) -> None:
        self.latent_dim = latent_dim
        if self.hidden is not None:
            self.net = NETWORKS.build("mlp", {"in_shape": (latent_dim,), "out_shape": (), "cond_dim": 0},
                                      options={"hidden": self.hidden, "activation": "tanh"})
            nn.init.zeros_(self.net.head.weight)
            nn.init.zeros_(self.net.head.bias)

    def forward(self, site: DiscreteSite, z: torch.Tensor) -> torch.Tensor:
        relaxed = torch.sigmoid(z / self.log_temperature.exp())
        c = self.eta * site.log_w(relaxed, relaxed=True)
        if self.net is not None:
            c = c + self.net.to(z.device)(relaxed)
        return c


class REBAR(DiscreteELBO):
    """REBAR, or with ``hidden`` layer sizes RELAX, for binary latents (see the module docstring).
    A training step (:meth:`loss_and_grads`) also sets the gradient of the control variate's
    parameters, registered as Pyro module ``"control_variate"`` so SVI's optimizer steps them."""

    latent_families = BINARY

    def __init__(self, num_particles: int = 1, eta: float = 1.0, temperature: float = 0.5, hidden=None):
        super().__init__(num_particles)
        self.control = ControlVariate(eta, temperature, hidden)
        self.name = "rebar" if hidden is None else "relax"
        self._train_control = False
        self._variance = None

    def make(self, fn):
        u = uniform_like(fn)
        return (fn.logits.detach() + logit(u) > 0).to(u.dtype), u

    def objective(self, site):
        a, u, b = site.logits, site.noise, site.value
        if self.control.latent_dim is None:
            with torch.random.fork_rng(devices=[]):  # a network's initial draws leave the particles alone
                self.control.build(a.shape[-1])
        control = pyro.module("control_variate", self.control)
        v = torch.rand_like(u).clamp(torch.finfo(u.dtype).tiny, 1 - torch.finfo(u.dtype).eps)
        theta = torch.sigmoid(a)
        v_given_b = torch.where(b > 0, v * theta + (1 - theta), v * (1 - theta))  # u | b, in a's terms
        z, z_given_b = a + logit(u), a + logit(v_given_b)
        log_p = site.log_p(b)
        f = log_p - site.log_q(b)
        if not (torch.is_grad_enabled() and a.requires_grad):  # loss() only: the bound's value
            return f.mean(-2), f.mean(-2)
        c, c_given_b = control(site, z), control(site, z_given_b)
        path, = torch.autograd.grad((c - c_given_b).sum(), a, create_graph=self._train_control)
        # d log q(b) / da = b - sigma(a); the coefficient f - c(z~) keeps its dependence on the
        # control variate's parameters (the variance's gradient needs it), not on a
        g_a = (f.detach() - c_given_b).unsqueeze(-1) * (b - theta.detach()) + path
        if self._train_control:
            self._variance = g_a.pow(2).sum() / g_a.shape[0]
        return f.mean(-2), (log_p + (g_a.detach() * a).sum(-1)).mean(-2)

    fit_lr = 1e-2  # Adam step size of :meth:`adapt`

    def _control_gradients(self, model, guide, args, kwargs):
        """The loss of one draw and the variance's gradient for the control variate's parameters."""
        self._train_control = True
        try:
            loss, _ = self._evaluate(model, guide, args, kwargs, 1)
        finally:
            self._train_control = False
        params = list(self.control.parameters())
        grads = torch.autograd.grad(self._variance, params, retain_graph=True, allow_unused=True)
        self._variance = None
        return loss, [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """A training step: the estimator's gradient for the model and guide, the variance's for
        the control variate."""
        loss, control_grads = self._control_gradients(model, guide, args, kwargs)
        loss.backward()
        for p, g in zip(self.control.parameters(), control_grads):
            p.grad = g
        return loss.item()

    def adapt(self, model, guide, batches: Sequence[Sequence], steps: int) -> None:
        """Fit the control variate to the current, frozen model and guide: ``steps`` Adam passes
        over ``batches`` (argument tuples of the model) down the variance's gradient, as training
        would have fitted it by now (the variance laboratory measures it so)."""
        self._control_gradients(model, guide, batches[0], {})  # builds RELAX's network
        optimizer = torch.optim.Adam(self.control.parameters(), lr=self.fit_lr)
        for _ in range(steps):
            for args in batches:
                _, grads = self._control_gradients(model, guide, args, {})
                for p, g in zip(self.control.parameters(), grads):
                    p.grad = g
                optimizer.step()

    def state_dict(self):
        return {"latent_dim": self.control.latent_dim,
                "control": {k: v.detach().clone() for k, v in self.control.state_dict().items()}}

    def load_state_dict(self, state):
        if state["latent_dim"] is not None and self.control.latent_dim is None:
            with torch.random.fork_rng(devices=[]):  # its initial values are overwritten anyway
                self.control.build(state["latent_dim"])
        self.control.load_state_dict(state["control"])


# ----------------------------------------------------------------------------- exact enumeration

class Enumeration(ParticleELBO):
    """The exact ELBO by summing over every configuration of the latent site
    (:mod:`pyrovae.inference.enumeration`): a deterministic loss whose gradient is exact.
    Particles and draws play no part."""

    latent_families = DISCRETE
    reparameterized = False

    def __init__(self, max_configurations: int = MAX_CONFIGURATIONS):
        super().__init__(1)
        self.max_configurations = max_configurations

    def _evaluate(self, model, guide, args, kwargs, draws):
        enumerated = enumerate_latents(model, guide, args, kwargs, self.max_configurations)
        return -enumerated.elbo.sum(), enumerated
