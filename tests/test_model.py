"""The Pyro model and guide compute exactly the ELBO of the paper, and every prior and
likelihood trains."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import Adam

from pyrovae import VAE, load_config
from pyrovae.components import LATENTS, LIKELIHOODS, PRIORS
from pyrovae.components.datasets import load_data
from pyrovae.errors import PyrovaeError


def _vae(*overrides, data_shape=(1, 28, 28), num_classes=0, dtype=torch.float64):
    spec = load_config("quickstart", ["model.latent_dim=5", "model.encoder.hidden=[64]",
                                      "model.decoder.hidden=[64]", *overrides])
    return VAE.from_config(spec, data_shape, num_classes).to(dtype)


def _handwritten_negative_elbo(vae, x, analytic_kl=False):
    """-ELBO of the paper's estimator A (MC KL) or B (analytic KL), one z per point."""
    loc, scale = vae.encode(x)
    z = loc + scale * torch.randn_like(loc)
    logits = vae.decoder(z).squeeze(-4)
    log_lik = (x * logits - torch.nn.functional.softplus(logits)).sum((-3, -2, -1))
    if analytic_kl:
        kl = 0.5 * (scale ** 2 + loc ** 2 - 1 - 2 * scale.log()).sum(-1)
    else:
        log_q = (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * torch.log(torch.tensor(2 * torch.pi))).sum(-1)
        log_p = (-0.5 * z ** 2 - 0.5 * torch.log(torch.tensor(2 * torch.pi))).sum(-1)
        kl = log_q - log_p
    return -(log_lik - kl).sum()


@pytest.mark.parametrize("loss_class,analytic", [(Trace_ELBO, False), (TraceMeanField_ELBO, True)])
def test_pyro_loss_equals_the_handwritten_elbo_with_the_same_seed(mnist_data, loss_class, analytic):
    vae = _vae()
    x = mnist_data.test.x[:64].double()
    pyro.set_rng_seed(123)
    pyro_loss = loss_class().loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(123)
    with torch.no_grad():
        handwritten = _handwritten_negative_elbo(vae, x, analytic_kl=analytic).item()
    assert abs(pyro_loss - handwritten) < 1e-5
    assert pyro_loss > 0  # and it is a real number of nats, not a degenerate zero


def test_the_gradients_pyro_takes_equal_the_handwritten_ones(mnist_data):
    vae = _vae()
    x = mnist_data.test.x[:32].double()
    pyro.set_rng_seed(7)
    Trace_ELBO().loss_and_grads(vae.model, vae.guide, x)
    pyro_grads = [p.grad.clone() for p in vae.parameters()]
    vae.zero_grad()
    pyro.set_rng_seed(7)
    _handwritten_negative_elbo(vae, x).backward()
    for g_pyro, p in zip(pyro_grads, vae.parameters()):
        assert torch.allclose(g_pyro, p.grad, atol=1e-8)


def test_kl_weight_scales_exactly_the_kl_term(mnist_data):
    vae = _vae()
    x = mnist_data.test.x[:16].double()
    losses = {}
    for w in (1.0, 0.25):
        pyro.set_rng_seed(3)
        losses[w] = TraceMeanField_ELBO().loss(vae.model, vae.guide, x, None, w)
    loc, scale = vae.encode(x)
    kl = 0.5 * (scale ** 2 + loc ** 2 - 1 - 2 * scale.log()).sum().item()
    assert losses[1.0] - losses[0.25] == pytest.approx(0.75 * kl, rel=1e-9)


def _training_data(likelihood, mnist_data, frey):
    if LIKELIHOODS.build(likelihood).data_kind == "count":  # Frey faces' 8-bit pixel values as counts
        return (frey.train.x[:200] * 255).round().float()
    return (mnist_data.train.x[:200] if likelihood == "bernoulli" else frey.train.x[:200]).float()


@pytest.fixture(scope="module")
def frey():
    return load_data(load_config("frey_aevb").data)


@pytest.mark.parametrize("prior,likelihood", [(p, "bernoulli") for p in PRIORS.names()] +
                         [("standard_normal", lk) for lk in LIKELIHOODS.names() if lk != "bernoulli"])
def test_every_prior_and_likelihood_samples_scores_and_trains(prior, likelihood, mnist_data, frey):
    x = _training_data(likelihood, mnist_data, frey)
    overrides = [f"model.prior.name={prior}", f"model.likelihood.name={likelihood}"]
    if prior == "vamp":
        overrides.append("model.prior.num_pseudo_inputs=20")
    if prior in LATENTS:  # a discrete prior comes with its guide (and Trace_ELBO's score function)
        overrides[0] = f"model.latent.name={prior}"
        if prior == "categorical":
            overrides.append("model.latent.groups=1")
    vae = _vae(*overrides, data_shape=tuple(x.shape[1:]), dtype=torch.float32)
    vae.check_data(x)
    vae.initialize_from_data(x)
    images = vae.sample(6)
    assert images.shape == (6, *x.shape[1:]) and torch.isfinite(images).all()
    svi = SVI(vae.model, vae.guide, Adam({"lr": 3e-3}), Trace_ELBO())
    evaluate = lambda: sum(Trace_ELBO().loss(vae.model, vae.guide, x) for _ in range(20)) / 20  # noqa: E731
    before = evaluate()
    for _ in range(60):
        assert torch.isfinite(torch.tensor(svi.step(x)))
    after = evaluate()
    # discrete codes train the encoder by the score function, whose noisier gradient moves less in 60 steps;
    # 0.2% of the loss (about 80 nats here) is still well above the noise of the 20-draw average
    assert after < before - (0.002 if prior in LATENTS else 0.01) * abs(before)


def test_a_conditional_vae_feeds_the_label_to_both_networks():
    vae = _vae("model.conditional=true", num_classes=10, dtype=torch.float32)
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3))
    y = torch.tensor([0, 1, 2, 3])
    loc_a, _ = vae.encode(x, y)
    loc_b, _ = vae.encode(x, (y + 1) % 10)
    assert not torch.allclose(loc_a, loc_b)
    assert torch.isfinite(torch.tensor(Trace_ELBO().loss(vae.model, vae.guide, x, y)))
    with pytest.raises(PyrovaeError, match="pass the labels"):
        vae.encode(x)


def test_vectorized_particles_average_the_elbo(mnist_data):
    vae = _vae()
    x = mnist_data.test.x[:50].double()
    pyro.set_rng_seed(0)
    many = Trace_ELBO(num_particles=400, vectorize_particles=True, max_plate_nesting=1).loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(1)
    singles = torch.tensor([Trace_ELBO().loss(vae.model, vae.guide, x) for _ in range(400)])
    standard_error = singles.std().item() / 20
    assert abs(many - singles.mean().item()) < 4 * standard_error * 2 ** 0.5


def test_model_is_one_plate_of_z_and_x_as_in_the_paper(mnist_data):
    vae = _vae(dtype=torch.float32)
    x = mnist_data.test.x[:3]
    trace = pyro.poutine.trace(vae.model).get_trace(x)
    sites = [n for n, s in trace.nodes.items() if s["type"] == "sample" and n != "data"]  # "data": the plate
    assert sites == ["z", "x"]
    assert trace.nodes["x"]["is_observed"] and trace.nodes["x"]["fn"].event_shape == (1, 28, 28)
    assert [f.name for f in trace.nodes["z"]["cond_indep_stack"]] == ["data"]
    guide_z = pyro.poutine.trace(vae.guide).get_trace(x).nodes["z"]["fn"]
    assert isinstance(guide_z.base_dist, dist.Normal) and guide_z.event_shape == (5,)


def test_data_of_the_wrong_shape_is_refused():
    vae = _vae(dtype=torch.float32)
    with pytest.raises(PyrovaeError, match=r"has shape \(784,\) per item but the model expects \(1, 28, 28\)"):
        vae.check_data(torch.zeros(3, 784))
