"""The shared HMC sampler: it targets the right distribution, adapts its step sizes toward
the target acceptance rate per data point, and draws per-point random numbers that do not
depend on how points are batched."""

import math

import torch

from pyrovae.inference.hmc import HMC, StepSizeAdaptation, hmc_transition
from pyrovae.inference.point_random import PointRandom, point_seed, stream_seed


def gaussian_potential(loc, scale):
    """U(z) of independent N(loc, scale^2) per point: loc, scale of shape (points, dim)."""
    return lambda z: (0.5 * ((z - loc) / scale).pow(2)).sum(-1)


def test_hmc_samples_each_points_gaussian_with_the_right_moments_and_adapted_acceptance():
    torch.manual_seed(0)
    points, dim, chains = 3, 2, 400
    loc = torch.tensor([[0.0, 1.0], [-2.0, 3.0], [5.0, 0.0]])
    scale = torch.tensor([[1.0, 0.5], [0.1, 0.2], [2.0, 2.0]])  # very different per point
    hmc = HMC(step_size=torch.full((points,), 0.5), num_leapfrog=10, target_accept=0.9,
              random=PointRandom(0, range(points)))
    potential = gaussian_potential(loc, scale)
    z = torch.zeros(chains, points, dim)
    z = hmc.sample(potential, z, num_transitions=150)             # warm-up with adaptation
    hmc.adaptation.step_size = hmc.adaptation.averaged()
    draws = []
    for _ in range(20):
        z = hmc.sample(potential, z, num_transitions=1, adapt=False)
        draws.append(z)
    draws = torch.stack(draws)                                     # (20, chains, points, dim)
    mean = draws.mean((0, 1))
    # chains are independent; 20 correlated draws per chain count as at most 20 * chains
    std_error = scale / math.sqrt(chains)
    assert ((mean - loc).abs() < 4 * std_error).all()
    var = draws[-1].var(0)                                         # last states: independent chains
    assert ((var / scale ** 2 - 1).abs() < 4 * math.sqrt(2 / (chains - 1))).all()
    # step sizes follow each point's scale (the narrow point gets the smallest step)
    assert hmc.step_size.argmin() == 1 and hmc.step_size.argmax() == 2
    assert abs(float(hmc.accept_rate) - 0.9) < 0.05


def test_a_transition_keeps_a_normal_distribution_invariant_for_any_fixed_step_size():
    """Exact draws from the target stay exact after a transition, even with a step size far
    from the adapted one (the Metropolis correction), per point."""
    torch.manual_seed(1)
    chains = 4000
    loc, scale = torch.tensor([[1.0], [-1.0]]), torch.tensor([[0.3], [3.0]])
    z = loc + scale * torch.randn(chains, 2, 1)
    out = hmc_transition(gaussian_potential(loc, scale), z, torch.tensor([1.5, 0.05]), num_leapfrog=3)
    u = (out.z - loc) / scale
    assert (u.mean(0).abs() < 4 / math.sqrt(chains)).all()
    assert ((u.var(0) - 1).abs() < 4 * math.sqrt(2 / chains)).all()
    assert out.accept_prob[:, 0].mean() < 0.5 < out.accept_prob[:, 1].mean()  # big step rejects often


def test_step_size_adaptation_shrinks_steps_when_acceptance_is_low_and_grows_them_when_high():
    adaptation = StepSizeAdaptation(torch.tensor([0.1, 0.1]), target_accept=0.8)
    for _ in range(30):
        adaptation.update(torch.tensor([[0.1, 1.0]]))
    assert adaptation.step_size[0] < 0.1 < adaptation.step_size[1]


def test_per_point_random_numbers_do_not_depend_on_the_batch():
    whole = PointRandom(7, [0, 1, 2, 3]).normal((5, 4, 2))
    part = PointRandom(7, [2, 3]).normal((5, 2, 2))
    assert torch.equal(whole[:, 2:], part)
    assert not torch.equal(whole[:, 0], whole[:, 1])
    assert not torch.equal(PointRandom(8, [2]).normal((5, 1, 2)), part[:, :1])


def test_stream_seeds_are_unrelated_to_the_runs_own_seeds():
    """A second stream for the same points (start states, a pilot, BDMC's directions) must
    not reproduce the run's own numbers: seed 0's stream 0 once was seed 0 itself."""
    own = {point_seed(seed, index) for seed in range(20) for index in range(500)}
    streams = {point_seed(stream_seed(seed, stream), index)
               for seed in range(20) for stream in range(4) for index in range(500)}
    assert not own & streams
    assert len(streams) == 20 * 4 * 500
