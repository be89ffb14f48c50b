"""Importance-sampled log p(x), IWAE bounds, quadrature and diagnostics, checked against
exact references with tolerances taken from the estimates' own standard errors."""

import math
import os
from pathlib import Path

import pyro
import pytest
import torch
from pyro.infer import SVI, RenyiELBO
from pyro.infer.importance import vectorized_importance_weights

os.environ.setdefault("PYROVAE_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

from pyrovae import load_config  # noqa: E402
from pyrovae.components.datasets import load_data  # noqa: E402
from pyrovae.errors import PyrovaeError  # noqa: E402
from pyrovae.evaluation.ais import annealed_importance_sample  # noqa: E402
from pyrovae.evaluation.chunking import Cost, parse_memory, plan_chunks  # noqa: E402
from pyrovae.evaluation.diagnostics import active_units, normalized_ess, pareto_khat  # noqa: E402
from pyrovae.evaluation.importance import importance_sample, iwae_bound, log_marginal  # noqa: E402
from pyrovae.evaluation.references import (  # noqa: E402
    LinearGaussian,
    exact_elbo,
    exact_log_marginal,
    quadrature_log_marginal,
)
from pyrovae.model import VAE  # noqa: E402
from pyrovae.training.train import train  # noqa: E402


def mc_error_of_mean(std_errors: torch.Tensor) -> float:
    return float(std_errors.pow(2).sum().sqrt() / std_errors.shape[0])


# ----------------------------------------------------------------------------- the linear-Gaussian model

@pytest.fixture(scope="module")
def linear():
    """The linear_gaussian dataset and the true model that generated it."""
    data = load_data(load_config("linear_gaussian").data)
    return data, LinearGaussian.from_extras(data.extras)


def linear_vae(truth: LinearGaussian, guide_scale: float = 1.0, guide_shift: float = 0.0,
               dtype=torch.float32) -> VAE:
    """The linear_gaussian config's VAE with the true decoder and the exact posterior mean
    map as its encoder; the guide's scales are the posterior's marginal standard deviations
    times ``guide_scale`` and its means are moved by ``guide_shift`` of them."""
    vae = VAE.from_config(load_config("linear_gaussian")).to(dtype)
    matrix, offset, cov = truth.posterior_map()
    sd = cov.diagonal().sqrt()
    latent = vae.latent_dim
    with torch.no_grad():
        vae.decoder.head.weight.copy_(truth.weight)
        vae.decoder.head.bias.copy_(truth.bias)
        encoder = vae.encoder.head  # outputs (2, latent): rows [:latent] the mean, [latent:] log scale
        encoder.weight.zero_()
        encoder.weight[:latent] = matrix
        encoder.bias[:latent] = offset + guide_shift * sd
        encoder.bias[latent:] = (guide_scale * sd).log()
    return vae


def rotated(truth: LinearGaussian) -> LinearGaussian:
    """The same marginal p(x) with W's columns made orthogonal (W -> W V from W = U S V^T),
    so that the exact posterior has a diagonal covariance, as the VAE's guide does."""
    _, _, vh = torch.linalg.svd(truth.weight, full_matrices=False)
    return LinearGaussian(truth.weight @ vh.T, truth.bias, truth.noise)


def test_importance_sampled_log_marginal_is_within_three_standard_errors_of_the_closed_form(linear):
    data, truth = linear
    vae = linear_vae(truth, guide_scale=1.2)  # a diagonal guide, a little too wide
    x = data.test.x[:200]
    result = importance_sample(vae, x, num_samples=5000, bounds=[5000])
    exact = exact_log_marginal(vae, x)
    assert torch.allclose(exact, truth.log_marginal(x))  # the VAE is the data's true model

    estimate = result.log_marginal
    diff = estimate.value - exact
    assert abs(float(diff.mean())) < 3 * mc_error_of_mean(estimate.std_error)
    assert float((diff.abs() < 3 * estimate.std_error).double().mean()) >= 0.97
    assert torch.equal(result.iwae[5000].value, estimate.value)
    # The K-sample ELBO estimate matches the closed-form ELBO of the same guide.
    elbo_diff = result.elbo.value - exact_elbo(vae, x)
    assert abs(float(elbo_diff.mean())) < 3 * mc_error_of_mean(result.elbo.std_error)
    assert torch.allclose(result.log_likelihood - result.kl, result.elbo.value)


def test_elbo_with_the_exact_posterior_as_guide_equals_the_closed_form(linear):
    data, truth = linear
    x = data.test.x[:50].double()
    mean, cov = truth.posterior(x)
    assert torch.allclose(truth.elbo(x, mean, cov), truth.log_marginal(x), atol=1e-10)
    assert (truth.elbo(x, mean, cov.diagonal().diag()) < truth.log_marginal(x)).all()  # dropping correlations

    # With orthogonal columns the posterior is diagonal: the VAE's guide can equal it, and
    # then every importance weight p(x, z) / q(z|x) equals p(x).
    exact_model = rotated(truth)
    vae = linear_vae(exact_model, dtype=torch.float64)
    exact = exact_model.log_marginal(x)
    assert torch.allclose(exact, truth.log_marginal(x), atol=1e-10)
    result = importance_sample(vae, x, num_samples=100, bounds=[1, 10, 100])
    assert torch.allclose(exact_elbo(vae, x), exact, atol=1e-10)
    for estimate in [result.elbo, result.log_marginal, *result.iwae.values()]:
        assert torch.allclose(estimate.value, exact, atol=1e-9)
        assert float(estimate.std_error.max()) < 1e-6
    assert torch.allclose(result.ess, torch.ones_like(result.ess))


def test_iwae_bound_increases_with_k_toward_the_log_marginal(linear):
    data, truth = linear
    vae = linear_vae(truth, guide_scale=0.6, guide_shift=0.5)  # a poor guide leaves a visible gap
    x = data.test.x[:100]
    ks = [1, 10, 100, 1000]
    result = importance_sample(vae, x, num_samples=10000, bounds=ks)  # IWAE_1000 from 10 groups
    exact = float(exact_log_marginal(vae, x).mean())
    means = [float(result.iwae[k].value.mean()) for k in ks]
    errors = [mc_error_of_mean(result.iwae[k].std_error) for k in ks]
    assert all(b - a > 3 * max(ea, eb) for a, b, ea, eb in zip(means, means[1:], errors, errors[1:]))
    assert all(m < exact + 3 * e for m, e in zip(means, errors))
    gaps = [exact - m for m in means]
    assert gaps[0] > 0.5 and gaps[-1] < 0.1 * gaps[0]

    # iwae_bound draws its own samples and agrees with the grouped estimate above.
    alone = iwae_bound(vae, x, k=10, num_samples=2000)
    assert abs(float(alone.value.mean()) - means[1]) < 3 * math.hypot(mc_error_of_mean(alone.std_error), errors[1])


def test_quadrature_matches_the_closed_form_even_from_a_misplaced_guide(linear):
    data, truth = linear
    x = data.test.x[:30]
    exact = truth.log_marginal(x)
    for vae in [linear_vae(truth, guide_scale=1.2),
                linear_vae(truth, guide_scale=0.3, guide_shift=10.0)]:  # the box must widen to find the posterior
        value, error = quadrature_log_marginal(vae, x)
        assert float((value - exact).abs().max()) < 1e-5
        assert float(error.max()) < 1e-3


def test_log_weights_keep_the_data_dimension_unlike_pyros_whole_batch_weights(linear):
    data, truth = linear
    vae = linear_vae(truth, guide_scale=1.5, guide_shift=0.5)
    x = data.test.x[:100]
    exact_total = float(truth.log_marginal(x).sum())
    per_point = log_marginal(vae, x, num_samples=1000)
    assert abs(float(per_point.value.sum()) - exact_total) < 3 * float(per_point.std_error.pow(2).sum().sqrt())
    # Pyro's vectorized_importance_weights gives one weight per sample for the whole batch.
    with torch.no_grad():
        log_w, _, _ = vectorized_importance_weights(vae.model, vae.guide, x, num_samples=1000, max_plate_nesting=1)
    whole_batch = float(torch.logsumexp(log_w.double(), 0) - math.log(1000))
    assert whole_batch < exact_total - 10


# ----------------------------------------------------------------------------- nonlinear models

@pytest.fixture(scope="module")
def mnist_2d(tmp_path_factory):
    """A 2-D latent VAE trained briefly on 2000 static binarized MNIST digits."""
    spec = load_config("quickstart", ["data.train_size=2000", "model.latent_dim=2", "model.encoder.hidden=[64]",
                                      "model.decoder.hidden=[64]", "train.epochs=3", "train.progress=false",
                                      "train.device=cpu"])
    pyro.set_rng_seed(0)
    result = train(spec, tmp_path_factory.mktemp("mnist_2d"))
    return result.vae, result.data


def assert_agrees_with_quadrature(vae, x, y=None, num_samples=5000):
    """IS and quadrature agree on average within three Monte Carlo errors of the mean, plus
    the IS estimate's downward bias (about half its squared error) and quadrature's error."""
    estimate = log_marginal(vae, x, y, num_samples=num_samples)
    reference, error = quadrature_log_marginal(vae, x, y)
    bias = float(estimate.std_error.pow(2).mean() / 2)
    tolerance = 3 * mc_error_of_mean(estimate.std_error) + bias + float(error.max())
    assert abs(float((estimate.value - reference).mean())) < tolerance
    return estimate, reference


def test_importance_sampling_agrees_with_quadrature_on_a_trained_mnist_vae(mnist_2d):
    vae, data = mnist_2d
    pyro.set_rng_seed(1)
    estimate, reference = assert_agrees_with_quadrature(vae, data.test.x[:20])
    assert float(estimate.std_error.mean()) < 0.1


SMALL_IMAGE = ["model.encoder.hidden=[8]", "model.decoder.hidden=[8]"]


def small_data(kind: str, shape=(1, 4, 4), n=6) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(n, *shape, generator=gen)
    return {"binary": (u > 0.5).float(), "8bit": (u * 255).round() / 255}.get(kind, u)


@pytest.mark.parametrize("overrides, kind", [
    (["model.prior.name=learned_normal"], "binary"),
    (["model.prior.name=mog", "model.prior.num_components=3"], "binary"),
    (["model.prior.name=vamp", "model.prior.num_pseudo_inputs=5"], "binary"),
    (["model.likelihood.name=continuous_bernoulli"], "unit"),
    (["model.likelihood.name=gaussian"], "unit"),
    (["model.likelihood.name=gaussian_fixed", "model.likelihood.sigma=0.5"], "unit"),
    (["model.likelihood.name=laplace"], "unit"),
    (["model.likelihood.name=discretized_logistic"], "8bit"),
])
def test_every_prior_and_likelihood_agrees_with_quadrature(overrides, kind):
    spec = load_config("quickstart", ["model.latent_dim=2", *SMALL_IMAGE, *overrides])
    x = small_data(kind)
    vae = VAE.from_config(spec, data_shape=tuple(x.shape[1:]), num_classes=0)
    assert_agrees_with_quadrature(vae, x, num_samples=2000)


def test_conv_networks_and_conditional_models_agree_with_quadrature():
    conv = load_config("quickstart", ["model.latent_dim=2", "model.encoder.name=conv", "model.decoder.name=conv",
                                      "model.encoder.channels=[4]", "model.decoder.channels=[4]",
                                      "model.encoder.hidden=[8]", "model.decoder.hidden=[8]"])
    x = small_data("binary", shape=(1, 8, 8))
    assert_agrees_with_quadrature(VAE.from_config(conv, data_shape=(1, 8, 8), num_classes=0), x, num_samples=2000)

    conditional = load_config("quickstart", ["model.latent_dim=1", "model.conditional=true", *SMALL_IMAGE])
    vae = VAE.from_config(conditional, data_shape=(1, 4, 4), num_classes=3)
    x, y = small_data("binary"), torch.tensor([0, 1, 2, 0, 1, 2])
    estimate, _ = assert_agrees_with_quadrature(vae, x, y, num_samples=2000)
    other = log_marginal(vae, x, (y + 1) % 3, num_samples=2000)  # log p(x|y) depends on y
    assert ((estimate.value - other.value).abs() > 3 * estimate.std_error.hypot(other.std_error)).any()
    with pytest.raises(PyrovaeError, match="labels"):
        log_marginal(vae, x)


# ----------------------------------------------------------------------------- memory and diagnostics

def test_a_small_memory_bound_means_small_chunks_not_a_different_answer(linear):
    data, truth = linear
    vae = linear_vae(truth, guide_scale=1.2)
    x = data.test.x[:20]
    result = log_marginal(vae, x, num_samples=3000, max_memory="2MB")
    diff = result.value - truth.log_marginal(x)
    assert abs(float(diff.mean())) < 3 * mc_error_of_mean(result.std_error)
    with pytest.raises(PyrovaeError, match="too small"):
        log_marginal(vae, x, num_samples=3000, max_memory="10KB")


def test_chunk_plans_stay_under_the_bound():
    cost = Cost(fixed=1e5, per_point=1e4, per_pair=2e4)
    for bound in [10**6, 10**7, 10**9]:
        plan = plan_chunks(cost, num_points=10000, num_samples=5000, max_memory=bound, stored_per_point=1.6e5)
        assert plan.points >= 1 and 1 <= plan.samples <= 5000
        assert cost.bytes(plan.points, plan.samples, 1.6e5) <= bound
    with pytest.raises(PyrovaeError, match="raise the memory bound"):
        plan_chunks(cost, 10, 5000, 10**5, 1.6e5)


@pytest.mark.parametrize("text, value", [("2GB", 2 * 10**9), ("512MB", 512 * 10**6), ("1.5GiB", 3 * 2**29),
                                         ("4096", 4096), (" 8 kib ", 8192)])
def test_memory_sizes_parse(text, value):
    assert parse_memory(text) == value


@pytest.mark.parametrize("text", ["lots", "2XB", "-1GB", "0MB", "", "1e9"])
def test_bad_memory_sizes_say_what_is_expected(text):
    with pytest.raises(PyrovaeError, match="512MB"):
        parse_memory(text)


def test_effective_sample_size_and_pareto_khat():
    k = 4000
    assert torch.allclose(normalized_ess(torch.zeros(3, k, dtype=torch.float64)), torch.ones(3, dtype=torch.float64))
    dominated = torch.full((1, k), -1e3, dtype=torch.float64)
    dominated[0, 0] = 0.0
    assert float(normalized_ess(dominated)) == pytest.approx(1 / k)

    gen = torch.Generator().manual_seed(0)
    # log of Pareto weights with tail index k = 0.8 (density ~ w^(-1 - 1/0.8)), and light-tailed weights.
    heavy = -0.8 * torch.rand(20, k, generator=gen, dtype=torch.float64).log()
    light = 0.3 * torch.randn(20, k, generator=gen, dtype=torch.float64)
    assert abs(float(pareto_khat(heavy).mean()) - 0.8) < 0.1
    assert float(pareto_khat(light).max()) < 0.5
    assert pareto_khat(light[:, :40]).isnan().all()  # too few weights for a tail fit


def test_active_units_count_latent_dimensions_the_data_use(linear):
    data, truth = linear
    vae = linear_vae(truth)
    assert active_units(vae, data.test.x)[0] == 2
    with torch.no_grad():
        vae.encoder.head.weight[1] = 0.0  # the second latent mean no longer depends on x
    count, variances = active_units(vae, data.test.x)
    assert count == 1 and float(variances[1]) == 0.0


def test_misuse_is_refused_with_a_hint(linear, mnist_2d):
    data, truth = linear
    vae, mnist = mnist_2d
    with pytest.raises(PyrovaeError, match="linear_gaussian"):
        exact_log_marginal(vae, mnist.test.x[:2])
    deep = VAE.from_config(load_config("quickstart", ["model.latent_dim=3", *SMALL_IMAGE]), (1, 4, 4), 0)
    with pytest.raises(PyrovaeError, match="1-D or 2-D"):
        quadrature_log_marginal(deep, small_data("binary"))
    linear_model = linear_vae(truth)
    with pytest.raises(PyrovaeError, match="positive integer"):
        log_marginal(linear_model, data.test.x[:2], num_samples=0)
    with pytest.raises(PyrovaeError, match="IWAE_100"):
        importance_sample(linear_model, data.test.x[:2], num_samples=10, bounds=[100])
    with pytest.raises(PyrovaeError, match="shape"):
        log_marginal(linear_model, mnist.test.x[:2])


# ----------------------------------------------------------------------------- the acceptance check

@pytest.mark.slow
def test_importance_sampling_matches_quadrature_within_005_nats_on_200_mnist_test_points():
    """A 2-D VAE with 200-unit tanh MLPs trained for 15 epochs on all of static binarized
    MNIST with the IWAE bound (K = 20; Pyro's RenyiELBO with alpha = 0, whose wider guides
    propose well), then IS with K = 5000 and AIS against quadrature on the first 200 test
    points.

    Each estimate is held to its own trustworthy uncertainty. The trained model depends on
    the torch build, and the weights of a few points have a heavy tail whose size varies
    with it: their delta-method error is meaningless, and Pareto k-hat > 0.7 says which
    they are. So IS must agree with quadrature within its errors on the points k-hat calls
    reliable, and AIS, whose chains' weights are well behaved, on the first 100 points and
    on the unreliable ones, where it is the reference IS is judged by. (Trained on the ELBO
    instead, the guide misses distant posterior modes of some digits by tens of nats.)"""
    spec = load_config("quickstart", ["model.latent_dim=2", "model.encoder.hidden=[200]",
                                      "model.decoder.hidden=[200]"])
    data = load_data(spec.data)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    vae = VAE.from_config(spec)
    vae.initialize_from_data(data.train.x)
    iwae = RenyiELBO(alpha=0, num_particles=20, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), iwae)
    x = data.train.x
    with pyro.validation_enabled(False):
        for _ in range(15):
            order = torch.randperm(x.shape[0])
            for i in range(0, x.shape[0], 100):
                svi.step(x[order[i:i + 100]])

    test_x = data.test.x[:200]
    pyro.set_rng_seed(0)
    sampled = importance_sample(vae, test_x, num_samples=5000, khat=True)
    reference, error = quadrature_log_marginal(vae, test_x)
    assert float(error.max()) < 1e-2
    grid_error = float(error.max())

    estimate, reliable = sampled.log_marginal, sampled.khat <= 0.7
    is_diff = (estimate.value - reference)[reliable]
    bias = float(estimate.std_error[reliable].pow(2).mean() / 2)  # IS is low by about half its squared error
    assert abs(float(is_diff.mean())) < 3 * mc_error_of_mean(estimate.std_error[reliable]) + bias + grid_error

    checked = torch.zeros(200, dtype=torch.bool)
    checked[:100] = True
    checked |= ~reliable
    ais = annealed_importance_sample(vae, test_x[checked], steps=100, chains=8, seed=0,
                                     indices=checked.nonzero().flatten().tolist())
    ais_diff = ais.log_marginal.value - reference[checked]
    for subset in (slice(0, 100), ~reliable[checked]):
        errors = ais.log_marginal.std_error[subset]
        if errors.numel():
            assert abs(float(ais_diff[subset].mean())) < 3 * mc_error_of_mean(errors) + grid_error
