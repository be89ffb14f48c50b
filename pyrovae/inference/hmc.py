"""Hamiltonian Monte Carlo vectorized over data points and chains, with per-point step sizes
adapted toward a target acceptance rate.

One HMC transition (Neal 2011) draws a momentum r ~ N(0, I), follows the Hamiltonian
H(z, r) = U(z) + |r|^2 / 2 with ``num_leapfrog`` leapfrog steps (Pyro's
``velocity_verlet``) and accepts the end point with probability min(1, exp(H_0 - H_1)).
It leaves the density proportional to exp(-U) invariant, for any step size fixed before
the transition.

The contract, shared by annealed importance sampling and Monte Carlo EM:

* ``z`` has shape ``(chains, points, dim)``: every data point has its own chains;
* ``potential(z)`` returns U(z) with shape ``(chains, points)``, each entry depending only
  on its own row of ``z`` (so the gradient of the sum is every row's own gradient); it is
  called with gradients enabled, outside ``torch.inference_mode``;
* step sizes have shape ``(points,)`` (one per data point, shared by its chains) or ``()``
  (one for all), and broadcast over chains and latent dims;
* random numbers come from a :class:`~pyrovae.inference.point_random.PointRandom` (one
  generator per data point, so results do not depend on how points are batched), or from
  torch's global generator when none is given.

:class:`StepSizeAdaptation` adapts the step sizes by Pyro's dual averaging (Hoffman &
Gelman 2014), vectorized: the statistic of each point is the target minus its acceptance
probability averaged over its chains. :class:`HMC` puts the two together for a sampler
that continues its chains from call to call (Monte Carlo EM: the paper's 10 leapfrog steps
and 90% acceptance are the defaults)::

    hmc = HMC(step_size=torch.full((n,), 0.1))             # or a float: one step size for all
    z = torch.randn(1, n, latent_dim)                      # one chain per data point
    for epoch in ...:
        potential = lambda z: -log_joint(model, x, z)      # (chains, n), fresh each E-step
        z = hmc.sample(potential, z, num_transitions=1)    # continue the chains
"""

from typing import Callable, NamedTuple, Optional, Union

import torch
from pyro.ops.dual_averaging import DualAveraging
from pyro.ops.integrator import velocity_verlet

Potential = Callable[[torch.Tensor], torch.Tensor]

# Log step sizes are kept in this range: a run of rejections cannot drive a step size to
# zero (which would freeze the chains) nor an early run of acceptances to overflow.
LOG_STEP_SIZE_RANGE = (-12.0, 3.0)


class Transition(NamedTuple):
    z: torch.Tensor            # (chains, points, dim): the chains' new states
    energy: torch.Tensor       # (chains, points): U at the new states
    grad: torch.Tensor         # (chains, points, dim): dU/dz at the new states
    accept_prob: torch.Tensor  # (chains, points): min(1, exp(H_0 - H_1)), 0 where H_1 is not finite


def energy_and_grad(potential: Potential, z: torch.Tensor):
    """U(z) with shape ``(chains, points)`` and its gradient with respect to ``z``."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        energy = potential(z)
        (grad,) = torch.autograd.grad(energy.sum(), z)
    return energy.detach(), grad


def hmc_transition(potential: Potential, z: torch.Tensor, step_size: torch.Tensor, num_leapfrog: int = 10,
                   random=None, initial=None) -> Transition:
    """One HMC transition of every chain, leaving exp(-U) invariant.

    ``initial`` may pass ``(energy, grad)`` at ``z`` when the caller has them (they are
    computed otherwise). ``random`` is a :class:`PointRandom` or None for torch's global
    generator.
    """
    energy, grad = energy_and_grad(potential, z) if initial is None else initial
    step = _broadcast(step_size, z)
    momentum = random.normal(z.shape) if random is not None else torch.randn_like(z)
    recorded = {}

    def summed(state):  # velocity_verlet wants one scalar; each row's gradient is its own
        recorded["energy"] = potential(state["z"])
        return recorded["energy"].sum()

    with torch.enable_grad():
        new, new_momentum, new_grad, _ = velocity_verlet({"z": z.detach()}, {"z": momentum}, summed,
                                                         lambda r: r, step, num_leapfrog, {"z": grad})
    new_energy = recorded["energy"].detach()
    delta = (energy - new_energy) + 0.5 * (momentum.pow(2).sum(-1) - new_momentum["z"].pow(2).sum(-1))
    accept_prob = torch.where(delta.isfinite() & new_energy.isfinite(), delta.clamp(max=0).exp(),
                              torch.zeros_like(delta))
    uniform = random.uniform(accept_prob.shape) if random is not None else torch.rand_like(accept_prob)
    accept = uniform < accept_prob
    return Transition(torch.where(accept[..., None], new["z"].detach(), z),
                      torch.where(accept, new_energy, energy),
                      torch.where(accept[..., None], new_grad["z"], grad),
                      accept_prob.to(z.dtype))


def _broadcast(step_size: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """A ``()`` or ``(points,)`` step size shaped to multiply ``(chains, points, dim)``."""
    step_size = torch.as_tensor(step_size, dtype=z.dtype, device=z.device)
    return step_size[..., None] if step_size.dim() == 1 else step_size


class StepSizeAdaptation:
    """Step sizes (shape ``()`` or ``(points,)``) adapted toward ``target_accept`` by Pyro's
    dual averaging, one independent scheme per entry.

    After each transition :meth:`update` takes the acceptance probabilities
    ``(chains, points)``; :attr:`step_size` is then the scheme's latest iterate (what a
    sampler uses while adapting, also while its target moves, as in annealing) and
    :meth:`averaged` the average of the iterates (what to freeze after warm-up).
    """

    def __init__(self, step_size: Union[float, torch.Tensor], target_accept: float = 0.9):
        if not 0 < target_accept < 1:
            raise ValueError(f"the target acceptance rate must lie in (0, 1), got {target_accept}")
        self.target_accept = target_accept
        self.step_size = torch.as_tensor(step_size, dtype=torch.float64).clone()
        # Hoffman & Gelman's prox center log(10 eps_0): the scheme is pulled toward larger steps
        self._scheme = DualAveraging(prox_center=(10 * self.step_size).log())

    def update(self, accept_prob: torch.Tensor) -> torch.Tensor:
        """One dual-averaging step per entry from the acceptance probabilities of a transition."""
        rate = accept_prob.double().mean() if self.step_size.dim() == 0 else accept_prob.double().mean(0)
        self._scheme.step(self.target_accept - rate.to(self.step_size.device))
        log_step, _ = self._scheme.get_state()
        self.step_size = log_step.clamp(*LOG_STEP_SIZE_RANGE).exp()
        return self.step_size

    def averaged(self) -> torch.Tensor:
        """The averaged iterate: the step size to keep once adaptation stops."""
        return self._scheme.get_state()[1].clamp(*LOG_STEP_SIZE_RANGE).exp()


class HMC:
    """An HMC sampler whose chains continue from call to call, with step sizes adapted toward
    ``target_accept`` (the defaults are Kingma & Welling's MCEM setting: 10 leapfrog steps,
    90% acceptance). ``step_size`` is a float (one step size for all chains) or a
    ``(points,)`` tensor (one per data point)."""

    def __init__(self, step_size: Union[float, torch.Tensor] = 0.1, num_leapfrog: int = 10,
                 target_accept: float = 0.9, random=None):
        self.num_leapfrog = num_leapfrog
        self.adaptation = StepSizeAdaptation(step_size, target_accept)
        self.random = random
        self.accept_rate: Optional[torch.Tensor] = None  # mean acceptance probability of the last call

    @property
    def step_size(self) -> torch.Tensor:
        return self.adaptation.step_size

    def sample(self, potential: Potential, z: torch.Tensor, num_transitions: int = 1, adapt: bool = True) -> torch.Tensor:
        """Run ``num_transitions`` transitions from ``z`` (``(chains, points, dim)``) and
        return the chains' states; with ``adapt`` the step sizes adapt after each one."""
        initial, rates = None, []
        for _ in range(num_transitions):
            step = self.adaptation.step_size.to(z.device)
            z, energy, grad, accept_prob = hmc_transition(potential, z, step, self.num_leapfrog, self.random, initial)
            initial = (energy, grad)  # the potential is the same within one call
            rates.append(accept_prob.mean())
            if adapt:
                self.adaptation.update(accept_prob)
        self.accept_rate = torch.stack(rates).mean() if rates else None
        return z
