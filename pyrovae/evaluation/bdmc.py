"""Bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015): log p(x) sandwiched between
a stochastic lower and upper bound on data simulated from the model.

For z* ~ p(z) and x ~ p(x|z*), z* is an exact sample of the posterior p(z|x). Forward AIS
from the start density to p(x, z) gives chain weights with E[W] = p(x), so the log of their
mean is, in expectation, at most log p(x). Reverse AIS from z* down the same schedule
gives weights with E[W'] = 1 / p(x), so minus the log of their mean is, in expectation, at
least log p(x). The gap between the two bounds the error of forward AIS with these settings
on data like the model's own; Wu, Burda, Salakhutdinov & Grosse (2017) use it to choose the
number of AIS steps for decoder-based models.
"""

from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import PyrovaeError, positive_int
from ..inference.point_random import point_seed, stream_seed
from .ais import (
    DEFAULT_LEAPFROG,
    DEFAULT_TARGET_ACCEPT,
    AISResult,
    annealed_importance_sample,
    check_settings,
    reverse_annealed_importance_sample,
)
from .chunking import DEFAULT_MAX_MEMORY
from .diagnostics import Estimate
from .discrete import DISCRETE_INSTEAD

# Separate random streams for the simulation and the two directions of the same points.
SIMULATION_STREAM, FORWARD_STREAM, REVERSE_STREAM = 0, 1, 2


@torch.no_grad()
def simulate(vae, num_points: int, seed: int = 0, y: Optional[torch.Tensor] = None):
    """``num_points`` pairs (z*, x) from the model: z* ~ p(z), x ~ p(x|z*) (given the labels
    ``y`` for a conditional VAE). Point i draws from its own seed, so the first n points of a
    larger simulation are the same n points."""
    param = next(vae.parameters())
    prior, zs, xs = vae.prior(), [], []
    for index in range(num_points):
        with torch.random.fork_rng(devices=[] if param.device.type == "cpu" else [param.device]):
            torch.manual_seed(point_seed(stream_seed(seed, SIMULATION_STREAM), index))
            z = prior.sample((1,))
            label = None if y is None else y[index:index + 1].to(param.device)
            xs.append(vae.decode(z.to(param), label).sample())
            zs.append(z)
    return torch.cat(xs), torch.cat(zs)


@dataclass
class BDMCResult:
    """Per simulated point (float64, ``(N,)``): the forward (lower) and reverse (upper)
    estimates with their standard errors over chains, and the runs themselves."""

    lower: Estimate
    upper: Estimate
    forward: AISResult
    reverse: AISResult

    @property
    def gap(self) -> torch.Tensor:
        """Upper minus lower bound per point: how far forward AIS may be from log p(x)."""
        return self.upper.value - self.lower.value


def bidirectional_monte_carlo(vae, num_points: int = 100, steps: int = 1000, chains: int = 16,
                              leapfrog: int = DEFAULT_LEAPFROG, start: str = "guide",
                              target_accept: float = DEFAULT_TARGET_ACCEPT, seed: int = 0,
                              y: Optional[torch.Tensor] = None, max_memory=DEFAULT_MAX_MEMORY,
                              progress: bool = False) -> BDMCResult:
    """Forward and reverse AIS on ``num_points`` points simulated from ``vae``: lower and
    upper bounds of each point's log p(x). The reverse run replays the forward run's step
    sizes, so the two directions use the same transitions in opposite orders."""
    positive_int(num_points, "the number of simulated points")
    vae.require_continuous_latents("BDMC (its AIS transitions are Hamiltonian Monte Carlo)", DISCRETE_INSTEAD)
    check_settings(steps, chains, leapfrog, start, target_accept)
    if vae.num_classes and (y is None or y.shape[0] < num_points):
        raise PyrovaeError("this is a conditional VAE: simulating data needs one label per simulated point")
    x, z_exact = simulate(vae, num_points, seed, y)
    y = None if y is None else y[:num_points]
    forward = annealed_importance_sample(vae, x, y, steps, chains, leapfrog, start, target_accept,
                                         stream_seed(seed, FORWARD_STREAM), max_memory=max_memory, progress=progress)
    reverse = reverse_annealed_importance_sample(vae, x, z_exact, forward, y, stream_seed(seed, REVERSE_STREAM),
                                                 max_memory=max_memory, progress=progress)
    upper = Estimate(-reverse.log_marginal.value, reverse.log_marginal.std_error)
    return BDMCResult(forward.log_marginal, upper, forward, reverse)
