"""``train.compile``: the recorded step is Pyro's estimator (the same loss and gradient at the
same random state), for every built-in prior, likelihood and network and the estimators it
takes; the rest is refused in one line; exact resume holds.

Most checks run the recorded graph as it is (``inductor=False``): the recording is what
could go wrong here, and compiling a graph takes inductor tens of seconds on a small
machine. The checks marked slow run the same through inductor."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from conftest import tiny_overrides

from pyrovae import VAE, load_config
from pyrovae.errors import PyrovaeError
from pyrovae.inference import svi as svi_module
from pyrovae.inference.compiled import CompiledStep
from pyrovae.inference.estimators import ESTIMATORS, build_estimator
from pyrovae.inference.optim import OPTIMIZERS
from pyrovae.inference.surrogates import StickingTheLanding
from pyrovae.inference.svi import TrainingSVI
from pyrovae.runs.checkpoint import load_checkpoint
from pyrovae.runs.loading import build_vae
from pyrovae.training.train import train

ESTIMATOR_CASES = [("pathwise", {}), ("pathwise", {"num_particles": 3}), ("analytic_kl", {}), ("stl", {}),
                   ("iwae", {"num_particles": 4}), ("iwae_dreg", {"num_particles": 4})]
MODEL_CASES = [{}, {"model.prior.name": "learned_normal"}, {"model.prior.name": "mog"},
               {"model.prior.name": "vamp", "model.prior.num_pseudo_inputs": 20},
               {"model.likelihood.name": "continuous_bernoulli"}, {"model.likelihood.name": "gaussian"},
               {"model.likelihood.name": "gaussian_fixed"}, {"model.likelihood.name": "laplace"},
               {"model.likelihood.name": "discretized_logistic"},
               {"model.encoder.name": "conv", "model.decoder.name": "conv"}]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: one thread (and the inductor kernels are compiled for it)."""


def _vae(data, overrides=None, num_classes=None):
    spec = load_config("quickstart", tiny_overrides(**(overrides or {})))
    torch.manual_seed(1)
    if num_classes:
        return VAE.from_config(spec, tuple(data.train.x.shape[1:]), num_classes)
    return build_vae(spec, data)


def _eager(vae, estimator, x, y, weight, seed):
    """Pyro's interpreted loss and the gradient of every parameter, drawn from ``seed``."""
    pyro.set_rng_seed(seed)
    loss = estimator.differentiable_loss(vae.model, vae.guide, x, y, weight)
    params = [p for p in vae.parameters()]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.item(), {id(p): g for p, g in zip(params, grads) if g is not None}


def _compiled(vae, estimator, x, y, weight, seed, inductor=False):
    step = CompiledStep(vae, OPTIMIZERS.build("adam"), estimator, inductor=inductor)
    pyro.set_rng_seed(seed)
    loss, params, grads = step.loss_and_grads(x, y, weight)
    return loss.item(), {id(p): g for p, g in zip(params, grads)}


def _assert_same(eager, compiled):
    (eager_loss, eager_grads), (compiled_loss, compiled_grads) = eager, compiled
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-5)
    assert compiled_grads.keys() == eager_grads.keys() and compiled_grads
    for key, g in eager_grads.items():  # float32 sums over 784 pixels and the minibatch: relative to the largest entry
        torch.testing.assert_close(compiled_grads[key], g, rtol=1e-4, atol=1e-4 * float(g.abs().max()) + 1e-6)


@pytest.mark.parametrize("name,options", ESTIMATOR_CASES, ids=lambda v: str(v))
def test_the_recorded_loss_and_gradient_are_pyros_at_the_same_random_state(mnist_data, name, options):
    vae = _vae(mnist_data)
    x = mnist_data.train.x[:50]
    eager = _eager(vae, ESTIMATORS.build(name, options=options), x, None, 0.3, seed=7)
    compiled = _compiled(vae, ESTIMATORS.build(name, options=options), x, None, 0.3, seed=7)
    _assert_same(eager, compiled)
    other_draw = _compiled(vae, ESTIMATORS.build(name, options=options), x, None, 0.3, seed=8)
    assert other_draw[0] != compiled[0]  # the noise is an input, not a constant of the graph


@pytest.mark.parametrize("overrides", MODEL_CASES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "quickstart")
def test_every_built_in_prior_likelihood_and_network_records_pyros_loss(mnist_data, overrides):
    vae = _vae(mnist_data, overrides)
    x = mnist_data.train.x[:20]
    _assert_same(_eager(vae, build_estimator(load_config("quickstart").train.estimator), x, None, 1.0, seed=3),
                 _compiled(vae, ESTIMATORS.build("pathwise"), x, None, 1.0, seed=3))


def test_a_conditional_vae_gets_its_labels(mnist_data):
    vae = _vae(mnist_data, {"model.conditional": "true"}, num_classes=10)
    x, y = mnist_data.train.x[:40], torch.arange(40) % 10  # labels made up: both paths must use them alike
    compiled = _compiled(vae, ESTIMATORS.build("pathwise"), x, y, 1.0, seed=2)
    _assert_same(_eager(vae, ESTIMATORS.build("pathwise"), x, y, 1.0, seed=2), compiled)
    assert _compiled(vae, ESTIMATORS.build("pathwise"), x, (y + 1) % 10, 1.0, seed=2)[0] != compiled[0]


def test_compiled_steps_follow_the_interpreted_ones_and_leave_the_random_state_alike(mnist_data):
    """A smoke test of the whole step: five steps of each over two minibatch shapes and
    changing KL weights end at the same parameters, and the generator is left where
    Pyro's steps leave it (recording draws nothing from it)."""
    sizes, weights = [50, 50, 30, 50, 30], [0.1, 0.2, 0.3, 0.3, 1.0]
    runs = []
    for compiled in (False, True):
        vae = _vae(mnist_data)
        pyro.clear_param_store()
        svi = TrainingSVI(vae, OPTIMIZERS.build("adam"), ESTIMATORS.build("pathwise"))
        if compiled:
            svi.compiled = CompiledStep(vae, svi.optim, svi.elbo, inductor=False)
        pyro.set_rng_seed(0)
        losses, start = [], 0
        for size, weight in zip(sizes, weights):
            losses.append(svi.step(mnist_data.train.x[start:start + size], None, weight))
            start += size
        runs.append((losses, [p.detach().clone() for p in vae.parameters()], torch.rand(3)))
    (eager_losses, eager_params, eager_next), (losses, params, after) = runs
    assert losses == pytest.approx(eager_losses, rel=1e-5)
    assert len(svi.compiled._graphs) == 2  # one per minibatch shape, not per KL weight
    for a, b in zip(params, eager_params):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert torch.equal(after, eager_next)


@pytest.mark.parametrize("name,message", [
    ("score", "reparameterizes the guide's samples; ScoreFunction does not"),
    ("score_avg_baseline", "ScoreFunction does not"),
    ("vimco", "VIMCO does not"),
    ("wake_sleep", "WakeSleep does not"),
    ("mcem", "not MonteCarloEM; set train.compile=false"),
])
def test_estimators_it_cannot_compile_are_refused_in_one_line(mnist_data, name, message):
    with pytest.raises(PyrovaeError, match=message) as caught:
        CompiledStep(_vae(mnist_data), OPTIMIZERS.build("adam"), ESTIMATORS.build(name))
    assert "\n" not in str(caught.value)


def test_an_estimator_with_state_between_steps_is_refused(mnist_data):
    class Remembering(StickingTheLanding):
        def observe(self, particles):
            self.last = particles.log_w.detach()

    with pytest.raises(PyrovaeError, match="Remembering: it carries state from step to step"):
        CompiledStep(_vae(mnist_data), OPTIMIZERS.build("adam"), Remembering())


def _refusal(vae, data):
    step = CompiledStep(vae, OPTIMIZERS.build("adam"), ESTIMATORS.build("pathwise"), inductor=False)
    with pytest.raises(PyrovaeError) as caught:
        step.step(data.train.x[:10], None, 1.0)
    assert "\n" not in str(caught.value) and str(caught.value).endswith("set train.compile=false")
    return str(caught.value)


def test_a_non_gaussian_guide_is_refused(mnist_data):
    vae = _vae(mnist_data)

    def laplace_guide(x, y=None, kl_weight=1.0):
        pyro.module("encoder", vae.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, scale = vae.encode(x, y)
            pyro.sample("z", dist.Laplace(loc, scale).to_event(1))
    vae.guide = laplace_guide
    assert "guide site 'z' is a Laplace" in _refusal(vae, mnist_data)


def test_a_full_covariance_gaussian_guide_records_pyros_loss(mnist_data):
    vae = _vae(mnist_data)

    def full_guide(x, y=None, kl_weight=1.0):
        pyro.module("encoder", vae.encoder)
        with pyro.plate("data", x.shape[0]), pyro.poutine.scale(scale=kl_weight):
            loc, scale = vae.encode(x, y)
            tril = torch.diag_embed(scale) + 0.1 * torch.ones(loc.shape[-1], loc.shape[-1]).tril(-1)
            pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=tril))
    vae.guide = full_guide
    x = mnist_data.train.x[:30]
    _assert_same(_eager(vae, ESTIMATORS.build("pathwise"), x, None, 0.5, seed=4),
                 _compiled(vae, ESTIMATORS.build("pathwise"), x, None, 0.5, seed=4))


def test_a_program_drawing_its_own_random_numbers_is_refused(mnist_data):
    vae = _vae(mnist_data)
    model = vae.model

    def noisy_model(x, y=None, kl_weight=1.0):
        model(x + 0 * torch.rand_like(x), y, kl_weight)  # noise drawn inside: the graph would freeze its stream
    vae.model = noisy_model
    assert "draws random numbers besides the guide's Gaussian noise" in _refusal(vae, mnist_data)


def test_parameters_outside_the_vae_are_refused(mnist_data):
    vae = _vae(mnist_data)
    guide = vae.guide

    def guide_with_a_param(x, y=None, kl_weight=1.0):
        pyro.param("shift", torch.zeros(()))
        guide(x, y, kl_weight)
    vae.guide = guide_with_a_param
    assert "registers 1 other pyro.param site(s)" in _refusal(vae, mnist_data)


def _resume_matches(tmp_path, data):
    """2 epochs straight against 1 + resume + 1 with train.compile; 230 points make a last
    minibatch of 30, whose graph each process records afresh."""
    overrides = {"data.train_size": 230, "train.compile": "true", "train.batch_size": 100}
    train(load_config("quickstart", tiny_overrides(**overrides, **{"train.epochs": 2})), tmp_path / "straight", data=data)
    train(load_config("quickstart", tiny_overrides(**overrides, **{"train.epochs": 1})), tmp_path / "resumed", data=data)
    pyro.set_rng_seed(999)  # whatever happens in between must not matter
    torch.randn(100)
    train(load_config(tmp_path / "resumed", ["train.epochs=2"]), tmp_path / "resumed", resume=True, data=data)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "resumed")
    assert a["step"] == b["step"] == 6
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for name, state in a["optim"].items():
        assert all(torch.equal(v, b["optim"][name][k]) for k, v in state.items()), name
    assert [m["train_elbo"] for m in a["metrics"]] == [m["train_elbo"] for m in b["metrics"]]


def test_resume_is_exact_with_the_recorded_step(tmp_path, mnist_data, monkeypatch):
    monkeypatch.setattr(svi_module, "CompiledStep", lambda *a: CompiledStep(*a, inductor=False))
    _resume_matches(tmp_path, mnist_data)


@pytest.mark.slow
def test_resume_is_exact_with_the_compiled_step(tmp_path, mnist_data):
    _resume_matches(tmp_path, mnist_data)


@pytest.mark.slow
@pytest.mark.parametrize("name,options", ESTIMATOR_CASES, ids=lambda v: str(v))
def test_the_compiled_loss_and_gradient_are_pyros(mnist_data, name, options):
    vae = _vae(mnist_data)
    x = mnist_data.train.x[:50]
    _assert_same(_eager(vae, ESTIMATORS.build(name, options=options), x, None, 0.3, seed=7),
                 _compiled(vae, ESTIMATORS.build(name, options=options), x, None, 0.3, seed=7, inductor=True))


@pytest.mark.slow
@pytest.mark.parametrize("overrides", MODEL_CASES[1:], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_every_built_in_prior_likelihood_and_network_compiles(mnist_data, overrides):
    vae = _vae(mnist_data, overrides)
    x = mnist_data.train.x[:20]
    _assert_same(_eager(vae, ESTIMATORS.build("pathwise"), x, None, 1.0, seed=3),
                 _compiled(vae, ESTIMATORS.build("pathwise"), x, None, 1.0, seed=3, inductor=True))
