"""Priors, likelihoods and networks: densities normalise, samples lie in the support,
shapes pass leading dimensions through, and bad options are refused."""

import math

import pyro.distributions as dist
import pytest
import torch

from pyrovae.components import LIKELIHOODS, NETWORKS, PRIORS
from pyrovae.components.likelihoods import DiscretizedLogistic, check_data_fits
from pyrovae.components.priors import DiagonalNormalMixture
from pyrovae.errors import PyrovaeError


def _encode_2d(u):
    """A fixed stand-in encoder for the VampPrior: data in (K, 1, 3, 3) -> 2-D Gaussians."""
    flat = u.flatten(1)
    return torch.stack([flat[:, :2].sum(1), flat[:, 2:4].sum(1)], -1) - 1, 0.3 + flat[:, 4:6]


@pytest.mark.parametrize("name", PRIORS.names())
def test_every_prior_is_a_normalised_density_that_samples(name):
    torch.manual_seed(1)
    prior = PRIORS.build(name, {"latent_dim": 2, "encode": _encode_2d, "data_shape": (1, 3, 3)},
                         options={"num_components": 3} if name == "mog" else
                         {"num_pseudo_inputs": 4, "init_mean": 0.5, "init_std": 0.3} if name == "vamp" else
                         {"groups": 1} if name == "categorical" else {})
    with torch.no_grad():
        for p in prior.parameters():  # move away from the symmetric initial values
            p.add_(0.3 * torch.randn_like(p))
        d = prior()
        assert d.event_shape == (2,) and d.batch_shape == ()
        samples = d.sample((1000,))
        assert samples.shape == (1000, 2) and torch.isfinite(d.log_prob(samples)).all()
        if d.support.is_discrete:  # binary or categorical codes: the sum over every configuration
            mass = d.log_prob(d.enumerate_support()).exp().sum()
        else:  # Riemann sum of the density over [-8, 8]^2 on a fine grid.
            g = torch.linspace(-8, 8, 801)
            zz = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
            mass = d.log_prob(zz).exp().sum() * (g[1] - g[0]) ** 2
    assert mass == pytest.approx(1.0, abs=2e-3)


def test_the_matrix_product_mixture_density_equals_the_componentwise_one():
    torch.manual_seed(0)
    k, d = 50, 40
    logits, locs = torch.randn(k), 3 * torch.randn(k, d)
    scales = torch.exp(torch.empty(k, d).uniform_(-4, 1))  # 0.02 .. 2.7: large precision terms cancel
    mixture = DiagonalNormalMixture(logits, locs, scales)
    reference = dist.MixtureSameFamily(dist.Categorical(logits=logits.double()),
                                       dist.Normal(locs.double(), scales.double()).to_event(1))
    z = torch.cat([locs[:5] + 0.01 * torch.randn(5, d), 5 * torch.randn(5, d)])  # near modes and far out
    assert torch.allclose(mixture.log_prob(z).double(), reference.log_prob(z.double()), rtol=1e-6, atol=1e-3)
    assert mixture.expand([3, 10]).log_prob(z).shape == (3, 10)

    draws = mixture.sample((20000,))
    weights = logits.softmax(0)
    mean = weights @ locs
    std_error = draws.std(0) / math.sqrt(draws.shape[0])
    assert ((draws.mean(0) - mean).abs() < 4 * std_error).all()


def test_discretized_logistic_puts_unit_mass_on_the_256_levels():
    levels = torch.arange(256.0) / 255
    for loc, scale in [(0.5, 0.1), (0.02, 0.01), (0.97, 0.3), (0.4, 1e-4), (-0.3, 0.05), (1.2, 2.0)]:
        d = DiscretizedLogistic(torch.tensor(loc), torch.tensor(scale))
        assert d.log_prob(levels).exp().sum().item() == pytest.approx(1.0, abs=1e-4)
        samples = d.sample((2000,))
        assert torch.allclose(samples * 255, (samples * 255).round())
        assert samples.min() >= 0 and samples.max() <= 1


def test_discretized_logistic_matches_its_cdf_away_from_the_edges():
    d = DiscretizedLogistic(torch.tensor(0.3), torch.tensor(0.05))
    x = torch.tensor(100 / 255)
    cdf = lambda v: torch.sigmoid((v - 0.3) / 0.05)  # noqa: E731
    expected = (cdf(x + 0.5 / 255) - cdf(x - 0.5 / 255)).log()
    assert d.log_prob(x).item() == pytest.approx(expected.item(), rel=1e-5)


SUPPORT = {
    "bernoulli": lambda s: bool(((s == 0) | (s == 1)).all()),
    "continuous_bernoulli": lambda s: bool(((s >= 0) & (s <= 1)).all()),
    "discretized_logistic": lambda s: bool(torch.allclose(s * 255, (s * 255).round())),
}


@pytest.mark.parametrize("name", LIKELIHOODS.names())
def test_every_likelihood_samples_in_its_support_and_scores_its_samples(name):
    torch.manual_seed(0)
    likelihood = LIKELIHOODS.build(name)
    params = [torch.randn(7, 1, 4, 3) for _ in range(likelihood.num_params)]
    d = likelihood.distribution(*params).to_event(3)
    assert d.batch_shape == (7,) and d.event_shape == (1, 4, 3)
    samples = d.sample()
    assert SUPPORT.get(name, lambda s: bool(torch.isfinite(s).all()))(samples)
    assert torch.isfinite(d.log_prob(samples)).all()
    assert likelihood.mean(*params).shape == (7, 1, 4, 3)


def test_the_gaussian_variance_floor_bounds_the_density():
    likelihood = LIKELIHOODS.build("gaussian", options={"min_variance": 1e-2})
    x = torch.full((5,), 0.7)
    d = likelihood.distribution(torch.logit(x), torch.full((5,), -1e4))
    assert d.log_prob(x).max().item() == pytest.approx(-0.5 * math.log(2 * math.pi * 1e-2), rel=1e-5)


@pytest.mark.parametrize("name,x,ok", [
    ("bernoulli", torch.tensor([0.0, 1.0, 1.0]), True),
    ("bernoulli", torch.tensor([0.0, 0.5, 1.0]), False),
    ("continuous_bernoulli", torch.tensor([0.0, 0.5, 1.0]), True),
    ("continuous_bernoulli", torch.tensor([0.0, 1.5]), False),
    ("discretized_logistic", torch.tensor([0.0, 3 / 255, 1.0]), True),
    ("discretized_logistic", torch.tensor([0.0, 0.001]), False),
    ("gaussian", torch.tensor([-3.0, 7.0]), True),
    ("gaussian", torch.tensor([0.0, float("nan")]), False),
])
def test_data_that_does_not_fit_the_likelihood_is_refused_with_the_fitting_choices(name, x, ok):
    likelihood = LIKELIHOODS.build(name)
    if ok:
        check_data_fits(name, likelihood, x)
        return
    with pytest.raises(PyrovaeError, match="choose model.likelihood.name from") as err:
        check_data_fits(name, likelihood, x)
    assert "\n" not in str(err.value)


def test_grey_pixels_under_bernoulli_suggest_binarization():
    with pytest.raises(PyrovaeError, match=r"continuous_bernoulli.*data.binarize=static"):
        check_data_fits("bernoulli", LIKELIHOODS.build("bernoulli"), torch.tensor([0.2, 0.9]))


@pytest.mark.parametrize("name", NETWORKS.names())
@pytest.mark.parametrize("image", [(1, 28, 28), (1, 28, 20), (3, 25, 17)])
def test_networks_map_shapes_and_keep_leading_dimensions(name, image):
    encoder = NETWORKS.build(name, {"in_shape": image, "out_shape": (2, 6), "cond_dim": 10})
    decoder = NETWORKS.build(name, {"in_shape": (6,), "out_shape": (2, *image), "cond_dim": 10})
    x, y = torch.rand(5, *image), torch.eye(10)[torch.arange(5)]
    assert encoder(x, y).shape == (5, 2, 6)
    z = torch.randn(3, 5, 6)  # particles x batch x latent
    assert decoder(z, y).shape == (3, 5, 2, *image)


def test_gated_units_multiply_a_value_by_a_sigmoid_gate():
    net = NETWORKS.build("mlp", {"in_shape": (3,), "out_shape": (2,), "cond_dim": 0},
                         options={"hidden": [4], "gated": True, "activation": "identity"})
    layer = net.body[0]
    x = torch.randn(5, 3)
    expected = layer.value(x) * torch.sigmoid(layer.gate(x))
    assert torch.allclose(layer(x), expected)
    assert sum(p.numel() for p in net.parameters()) == 2 * (3 * 4 + 4) + (4 * 2 + 2)


def test_the_conv_network_refuses_vector_data():
    with pytest.raises(PyrovaeError, match="image data"):
        NETWORKS.build("conv", {"in_shape": (5,), "out_shape": (2, 3), "cond_dim": 0})


def test_the_mlp_initialisation_option_sets_the_weight_scale():
    torch.manual_seed(0)
    net = NETWORKS.build("mlp", {"in_shape": (784,), "out_shape": (2, 20), "cond_dim": 0},
                         options={"hidden": [500], "init_std": 0.01})
    assert net.body[0].weight.std().item() == pytest.approx(0.01, rel=0.02)


@pytest.mark.parametrize("registry,name,options,message", [
    (PRIORS, "mog", {"num_components": 0}, "num_components must be a positive integer"),
    (NETWORKS, "mlp", {"activation": "tanhh"}, "did you mean 'tanh'"),
    (LIKELIHOODS, "gaussian_fixed", {"sigma": -1}, "sigma must be a positive number"),
    (LIKELIHOODS, "gaussian", {"mean_activation": "sigmod"}, "did you mean 'sigmoid'"),
    (LIKELIHOODS, "bernoulli", {"sigma": 1}, "has no option 'sigma'"),
])
def test_bad_component_options_get_one_line_errors(registry, name, options, message):
    inputs = {PRIORS: {"latent_dim": 2, "data_shape": (1, 3, 3)},
              NETWORKS: {"in_shape": (784,), "out_shape": (2, 4), "cond_dim": 0}, LIKELIHOODS: {}}[registry]
    with pytest.raises(PyrovaeError, match=message) as err:
        registry.build(name, inputs, options=options)
    assert "\n" not in str(err.value)
