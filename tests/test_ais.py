"""Annealed importance sampling and bidirectional Monte Carlo against exact references: the
closed form of the linear-Gaussian model and quadrature over a 2-D latent space."""

import math
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("PYROVAE_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

from test_marginal import linear_vae, small_data  # noqa: E402

from pyrovae import load_config  # noqa: E402
from pyrovae.components.datasets import load_data  # noqa: E402
from pyrovae.errors import PyrovaeError  # noqa: E402
from pyrovae.evaluation.ais import _start, anneal, annealed_importance_sample, sigmoid_schedule  # noqa: E402
from pyrovae.evaluation.bdmc import bidirectional_monte_carlo, simulate  # noqa: E402
from pyrovae.evaluation.importance import importance_sample  # noqa: E402
from pyrovae.evaluation.references import LinearGaussian, quadrature_log_marginal  # noqa: E402
from pyrovae.inference.point_random import PointRandom  # noqa: E402
from pyrovae.model import VAE  # noqa: E402


def error_of_mean(std_errors: torch.Tensor) -> float:
    return float(std_errors.pow(2).sum().sqrt() / std_errors.shape[0])


@pytest.fixture(scope="module")
def linear():
    data = load_data(load_config("linear_gaussian").data)
    truth = LinearGaussian.from_extras(data.extras)
    # a guide too narrow and off-centre: importance sampling's weights have a heavy tail
    return data, truth, linear_vae(truth, guide_scale=0.5, guide_shift=0.7)


def test_the_sigmoidal_schedule_runs_from_0_to_1_with_its_smallest_steps_at_the_ends():
    betas = sigmoid_schedule(100)
    steps = betas.diff()
    assert betas[0] == 0 and betas[-1] == 1 and (steps > 0).all()
    assert steps[0] < steps[50] and steps[-1] < steps[50]


@pytest.mark.parametrize("start", ["guide", "prior"])
def test_ais_is_within_three_of_its_standard_errors_of_the_closed_form(linear, start):
    data, truth, vae = linear
    x = data.test.x[:20]
    result = annealed_importance_sample(vae, x, steps=50, chains=8, start=start, seed=1)
    diff = result.log_marginal.value - truth.log_marginal(x)
    assert abs(float(diff.mean())) < 3 * error_of_mean(result.log_marginal.std_error)
    assert 0.5 < float(result.accept_rate.mean()) < 0.8  # adapted toward the 0.65 target
    # more steps: the chains' log-weights agree more closely
    longer = annealed_importance_sample(vae, x, steps=200, chains=8, start=start, seed=1)
    assert float(longer.spread.mean()) < float(result.spread.mean())


def test_prior_start_states_and_hmc_momenta_come_from_independent_streams(linear):
    """The prior's sampler draws the start states and the point's generator the momenta.
    Seeded alike, the first momentum was the start state itself (correlation 1), and the
    first transition did not leave its density invariant."""
    data, _, vae = linear
    indices = [4, 5, 6]
    _, _, _, z0 = _start(vae, data.test.x[:3], None, "prior", 2000, PointRandom(7, indices), 7, indices)
    momenta = PointRandom(7, indices).normal(z0.shape)
    pairs = torch.stack([z0.flatten(), momenta.flatten()])
    assert abs(float(torch.corrcoef(pairs)[0, 1])) < 4 / math.sqrt(pairs.shape[1])


@pytest.mark.slow
@pytest.mark.parametrize("steps", [20, 100])
def test_ais_from_the_prior_is_within_three_errors_of_the_closed_form_after_few_steps(linear, steps):
    """With the momenta and start states on one stream, AIS from the prior landed 4-7 of
    its errors low at 100 steps. Many chains keep the log's own downward (Jensen) bias,
    about spread^2 / (2 chains) per point, below one error of the mean."""
    data, truth, vae = linear
    x = data.test.x[:40]
    result = annealed_importance_sample(vae, x, steps=steps, chains=128, start="prior", seed=2)
    diff = float((result.log_marginal.value - truth.log_marginal(x)).mean())
    assert abs(diff) < 3 * error_of_mean(result.log_marginal.std_error)


def test_step_sizes_come_from_the_pilot_chains_alone():
    """AIS's weights are unbiased only if every transition is fixed before the chains it
    moves arrive: the step sizes adapt from pilot chains whose weights are discarded, so
    they do not change when the weighted chains start elsewhere."""
    points, dim, pilot, chains = 3, 2, 4, 6
    loc, scale = torch.zeros(points, dim), torch.ones(points, dim)
    log_start = lambda z: -0.5 * z.double().pow(2).sum(-1)  # noqa: E731
    log_target = lambda z: -0.5 * ((z.double() - 1.5) / 0.3).pow(2).sum(-1)  # noqa: E731
    u = torch.randn(pilot + chains, points, dim, generator=torch.Generator().manual_seed(0))
    moved = torch.cat([u[:pilot], u[pilot:] + 2.0])
    betas = sigmoid_schedule(30)
    runs = [anneal(log_start, log_target, start, loc, scale, betas, PointRandom(0, range(points)), pilot=pilot)
            for start in (u, moved)]
    assert torch.equal(runs[0].step_sizes, runs[1].step_sizes)
    assert not torch.equal(runs[0].log_weights, runs[1].log_weights)
    assert runs[0].log_weights.shape == (points, chains)  # the pilot chains carry no weight
    assert (runs[0].step_sizes[:, -1] != runs[0].step_sizes[:, 0]).all()  # and they did adapt


def test_ais_where_importance_sampling_from_the_same_guide_is_biased(linear):
    """With the same number of model evaluations per point, IS from the narrow guide lands
    many of its standard errors below the closed form; AIS does not."""
    data, truth, vae = linear
    x = data.test.x[:20]
    exact = truth.log_marginal(x)
    torch.manual_seed(0)
    ais = annealed_importance_sample(vae, x, steps=50, chains=8, seed=2)
    budget = 8 * 49 * 11  # chains x transitions x (leapfrog steps + 1) gradient evaluations
    sampled = importance_sample(vae, x, num_samples=budget, khat=True)
    is_diff = float((sampled.log_marginal.value - exact).mean())
    assert -is_diff > 2 * error_of_mean(sampled.log_marginal.std_error)
    assert float((sampled.khat > 0.7).double().mean()) > 0.5  # and k-hat says so
    assert abs(float((ais.log_marginal.value - exact).mean())) < 3 * error_of_mean(ais.log_marginal.std_error)


def test_a_point_gets_the_same_estimate_in_any_batch_or_split(linear):
    data, _, vae = linear
    x = data.test.x[:6]
    whole = annealed_importance_sample(vae, x, steps=20, chains=4, seed=3)
    part = annealed_importance_sample(vae, x[3:5], steps=20, chains=4, seed=3, indices=[3, 4])
    assert torch.allclose(whole.log_marginal.value[3:5], part.log_marginal.value, atol=1e-9, rtol=0)
    small_chunks = annealed_importance_sample(vae, x, steps=20, chains=4, seed=3, max_memory="200KB")
    assert torch.allclose(whole.log_marginal.value, small_chunks.log_marginal.value, atol=1e-9, rtol=0)
    other_seed = annealed_importance_sample(vae, x, steps=20, chains=4, seed=4)
    assert not torch.allclose(whole.log_marginal.value, other_seed.log_marginal.value)


def test_bdmc_bounds_bracket_the_closed_form_and_close_with_more_steps(linear):
    _, truth, vae = linear
    short = bidirectional_monte_carlo(vae, 20, steps=5, chains=8, seed=0)
    long = bidirectional_monte_carlo(vae, 20, steps=100, chains=8, seed=0)
    x, _ = simulate(vae, 20, seed=0)
    exact = truth.log_marginal(x)
    for run in (short, long):
        lower, upper = run.lower, run.upper
        assert float((lower.value - exact).mean()) < 3 * error_of_mean(lower.std_error)
        assert float((upper.value - exact).mean()) > -3 * error_of_mean(upper.std_error)
    assert float(short.gap.mean()) > 0.1
    assert float(long.gap.mean()) < float(short.gap.mean()) / 3


def test_simulated_points_do_not_depend_on_how_many_are_simulated(linear):
    _, _, vae = linear
    x10, z10 = simulate(vae, 10, seed=5)
    x3, z3 = simulate(vae, 3, seed=5)
    assert torch.equal(x10[:3], x3) and torch.equal(z10[:3], z3)


@pytest.mark.parametrize("overrides, kind, start", [
    (["model.prior.name=mog", "model.prior.num_components=3"], "binary", "guide"),
    pytest.param(["model.prior.name=vamp", "model.prior.num_pseudo_inputs=5"], "binary", "prior", marks=pytest.mark.slow),
    pytest.param(["model.likelihood.name=discretized_logistic"], "8bit", "guide", marks=pytest.mark.slow),
])
def test_ais_agrees_with_quadrature_for_other_priors_and_likelihoods(overrides, kind, start):
    spec = load_config("quickstart", ["model.latent_dim=2", "model.encoder.hidden=[8]", "model.decoder.hidden=[8]",
                                      *overrides])
    x = small_data(kind)
    torch.manual_seed(0)
    vae = VAE.from_config(spec, data_shape=tuple(x.shape[1:]), num_classes=0)
    reference, error = quadrature_log_marginal(vae, x)
    result = annealed_importance_sample(vae, x, steps=100, chains=8, start=start)
    diff = float((result.log_marginal.value - reference).mean())
    assert abs(diff) < 3 * error_of_mean(result.log_marginal.std_error) + float(error.max())


def test_bad_ais_settings_get_one_line_errors(linear):
    data, _, vae = linear
    x = data.test.x[:2]
    for kwargs, match in [({"steps": 1}, "at least 2 steps"), ({"chains": 0}, "chains"),
                          ({"start": "posterior"}, "unknown AIS start"), ({"target_accept": 1.0}, "acceptance")]:
        with pytest.raises(PyrovaeError, match=match):
            annealed_importance_sample(vae, x, **kwargs)
    with pytest.raises(PyrovaeError, match="memory bound of .* is too small"):
        annealed_importance_sample(vae, x, steps=5, chains=100000, max_memory="1MB")
    assert math.isfinite(float(annealed_importance_sample(vae, x, steps=2, chains=2).log_marginal.value.sum()))
