"""The worked examples of docs/extending.md (examples/plugins/), one per family, each checked
against what it claims to compute."""

import math

import pyro
import pytest
import torch
from conftest import EXAMPLE_PLUGINS, linear_gaussian_vae

import pyrovae
from pyrovae.components import LIKELIHOODS, NETWORKS, PRIORS
from pyrovae.components.datasets import load_data
from pyrovae.errors import PyrovaeError
from pyrovae.inference.estimators import ESTIMATORS
from pyrovae.plugins import load_plugins
from pyrovae.spec import load_config


def _load(name):
    load_plugins([str(EXAMPLE_PLUGINS / name)])


def test_the_student_t_prior_has_the_student_t_variance():
    _load("student_t_prior.py")
    prior = PRIORS.build("student_t", {"latent_dim": 3, "encode": None, "data_shape": (5,)}, options={"df": 5.0})
    z = prior().sample((200_000,))
    assert z.shape == (200_000, 3)
    # Var = df / (df - 2) = 5/3; the sample variance's standard error needs the fourth moment,
    # finite for df = 5 only in theory, so the tolerance is generous.
    assert z.var(0).mean().item() == pytest.approx(5 / 3, rel=0.05)
    lp = prior().log_prob(torch.zeros(3))
    one = math.lgamma(3.0) - math.lgamma(2.5) - 0.5 * math.log(5 * math.pi)
    assert lp.item() == pytest.approx(3 * one, rel=1e-5)
    with pytest.raises(PyrovaeError, match="df must be positive"):
        PRIORS.build("student_t", {"latent_dim": 3}, options={"df": -1.0})


def test_the_beta_likelihood_fits_only_the_open_interval_and_its_mean_is_a_over_a_plus_b():
    _load("beta_likelihood.py")
    beta = LIKELIHOODS.build("beta")
    a, b = torch.tensor([0.0, 2.0]), torch.tensor([1.0, -1.0])
    fa, fb = 0.01 + torch.nn.functional.softplus(a), 0.01 + torch.nn.functional.softplus(b)
    assert torch.allclose(beta.mean(a, b), fa / (fa + fb))
    assert beta.fits(torch.tensor([0.3, 0.999])) and not beta.fits(torch.tensor([0.0, 0.5]))
    spec = load_config({"model": {"likelihood": "beta"}}, plugins=[str(EXAMPLE_PLUGINS / "beta_likelihood.py")])
    vae = pyrovae.VAE.from_config(spec, (1, 4, 4), 0)
    assert vae.decoder(torch.zeros(7, 20)).shape == (7, 2, 1, 4, 4)  # num_params = 2 outputs per pixel


def test_the_encoder_keeps_any_leading_dimensions():
    _load("small_encoder.py")
    net = NETWORKS.build("two_layer_encoder", {"in_shape": (1, 28, 28), "out_shape": (2, 4), "cond_dim": 0},
                         options={"width": 16})
    x = torch.rand(3, 5, 1, 28, 28)
    out = net(x)
    assert out.shape == (3, 5, 2, 4)
    assert torch.allclose(out[1, 2], net(x[1, 2]))


def test_the_dataset_lies_near_the_unit_circle_and_trains_a_one_dimensional_vae(tmp_path):
    _load("noisy_circle.py")
    spec = load_config({"data": {"name": "noisy_circle", "noise": 0.05},
                        "model": {"latent_dim": 1, "likelihood": {"name": "gaussian", "mean_activation": "identity"},
                                  "encoder": {"name": "mlp", "hidden": [32]}, "decoder": {"name": "mlp", "hidden": [32]}},
                        "train": {"epochs": 2, "progress": False, "device": "cpu"}},
                       plugins=[str(EXAMPLE_PLUGINS / "noisy_circle.py")])
    data = load_data(spec.data)
    assert (len(data.train), len(data.valid), len(data.test)) == (1800, 100, 100)
    radius = data.train.x.norm(dim=1)
    assert radius.mean().item() == pytest.approx(1.0, abs=0.01) and radius.std().item() < 0.1
    run = pyrovae.train(spec, out=tmp_path / "circle")
    assert math.isfinite(run.best_valid_elbo)


def test_the_renyi_estimator_at_alpha_zero_estimates_the_iwae_bound(one_thread):
    _load("renyi_estimator.py")
    vae = linear_gaussian_vae()
    x = torch.randn(20, 5)
    renyi = ESTIMATORS.build("renyi", options={"alpha": 0.0, "num_particles": 5})
    iwae = ESTIMATORS.build("iwae", options={"num_particles": 5})
    draws = {"renyi": [], "iwae": []}
    with pyro.validation_enabled(False):
        for i in range(300):
            pyro.set_rng_seed(i)
            draws["renyi"].append(renyi.loss(vae.model, vae.guide, x))
            pyro.set_rng_seed(10_000 + i)
            draws["iwae"].append(iwae.loss(vae.model, vae.guide, x))
    r, w = torch.tensor(draws["renyi"]), torch.tensor(draws["iwae"])
    standard_error = math.sqrt(r.var() / len(r) + w.var() / len(w))
    assert abs(r.mean() - w.mean()) < 4 * standard_error
    pathwise = ESTIMATORS.build("pathwise")
    elbo_loss = torch.tensor([pathwise.loss(vae.model, vae.guide, x) for _ in range(300)])
    assert r.mean() < elbo_loss.mean()  # IWAE_5 >= ELBO: a smaller loss
    with pytest.raises(PyrovaeError, match="alpha != 1"):
        ESTIMATORS.build("renyi", options={"alpha": 1.0})
