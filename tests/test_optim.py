"""The training step's optimizer and SVI: fused Adam, gradients set to None, saved state placed
as torch places it, Pyro's validation on the first step (the compiled step: tests/test_compiled_step.py)."""

import pyro
import pytest
import torch
from conftest import tiny_overrides

from pyrovae import load_config
from pyrovae.errors import PyrovaeError
from pyrovae.inference.estimators import build_estimator
from pyrovae.inference.optim import OPTIMIZERS
from pyrovae.inference.svi import TrainingSVI
from pyrovae.runs.loading import build_vae

STEPS = 5


def _stepped(data, optimizer_options=None, estimator=None, sizes=(100,) * STEPS, seed=0):
    """A tiny VAE after one SVI step per minibatch size in ``sizes``; its optimizer; the losses."""
    spec = load_config("quickstart", tiny_overrides())
    vae = build_vae(spec, data)
    pyro.clear_param_store()
    optimizer = OPTIMIZERS.build("adam", options=optimizer_options or {})
    loss = estimator or build_estimator(spec.train.estimator)
    svi = TrainingSVI(vae, optimizer, loss)
    pyro.set_rng_seed(seed)
    losses, start = [], 0
    with pyro.validation_enabled(False):
        for size in sizes:
            losses.append(svi.step(data.train.x[start:start + size], None, 0.5))
            start += size
    return vae, optimizer, losses


def test_fused_and_default_adam_take_the_same_steps_up_to_rounding(mnist_data):
    fused, _, fused_losses = _stepped(mnist_data, {"fused": True})
    default, _, default_losses = _stepped(mnist_data, {"fused": False})
    assert fused_losses == pytest.approx(default_losses, rel=1e-5)
    for (name, a), b in zip(fused.named_parameters(), default.parameters()):
        # Adam moves each parameter by about lr = 1e-3 per step: rounding differences are
        # orders of magnitude below that
        assert torch.allclose(a, b, rtol=0, atol=1e-5), name
        assert not torch.equal(a, build_vae(load_config("quickstart", tiny_overrides()), mnist_data)
                               .state_dict()[name]), f"{name} did not move"


def test_the_default_adam_is_fused_and_gradients_are_none_after_a_step(mnist_data):
    vae, optimizer, _ = _stepped(mnist_data)
    assert optimizer.optimizer.param_groups[0]["fused"] is True
    assert all(p.grad is None for p in vae.parameters())


def test_saved_state_continues_a_fused_optimizer_exactly(mnist_data):
    """State saved after some steps and loaded into a fresh optimizer gives the same next
    step as the optimizer that was never interrupted, whichever implementation wrote it."""
    spec = load_config("quickstart", tiny_overrides())
    batches = [mnist_data.train.x[i * 50:(i + 1) * 50] for i in range(4)]

    def run(first_fused, state_from=None, steps=batches):
        vae = build_vae(spec, mnist_data) if state_from is None else state_from[0]
        pyro.clear_param_store()
        optimizer = OPTIMIZERS.build("adam", options={"fused": first_fused})
        if state_from is not None:
            optimizer.set_state(state_from[1])
        svi = TrainingSVI(vae, optimizer, build_estimator(spec.train.estimator))
        with pyro.validation_enabled(False):
            for xb in steps:
                svi.step(xb, None, 1.0)
        return vae, optimizer

    straight, _ = run(True)
    half, optimizer = run(True, steps=batches[:2])
    resumed, resumed_optimizer = run(True, state_from=(half, optimizer.get_state()), steps=batches[2:])
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    step = next(iter(resumed_optimizer.optimizer.state.values()))["step"]
    assert step.device.type == "cpu" and step.dtype == torch.float32 and step.item() == 4

    default_half, default_optimizer = run(False, steps=batches[:2])  # a checkpoint from before the fused default
    _, fused_again = run(True, state_from=(default_half, default_optimizer.get_state()), steps=batches[2:])
    assert all(s["step"].item() == 4 for s in fused_again.optimizer.state.values())


def test_a_fused_option_that_is_not_a_boolean_is_refused():
    with pytest.raises(PyrovaeError, match="optimizer.fused must be true or false"):
        OPTIMIZERS.build("adam", options={"fused": "yes"})


def test_pyro_validation_checks_the_first_step_and_is_off_after_it(mnist_data):
    """The first step runs with Pyro's checks (a program with an invalid distribution fails
    there with Pyro's message); later steps run without them, and validation is restored
    for the rest of the process after each step."""
    spec = load_config("quickstart", tiny_overrides())
    vae = build_vae(spec, mnist_data)
    pyro.clear_param_store()
    seen = []
    model = vae.model

    def watched_model(*args):
        seen.append(pyro.infer.is_validation_enabled() and torch.distributions.Distribution._validate_args)
        model(*args)

    vae.model = watched_model
    svi = TrainingSVI(vae, OPTIMIZERS.build("adam"), build_estimator(spec.train.estimator))
    xb = mnist_data.train.x[:20]
    with pyro.validation_enabled(True):
        for _ in range(3):
            svi.step(xb, None, 1.0)
        assert pyro.infer.is_validation_enabled()
    assert seen == [True, False, False]

    broken = build_vae(spec, mnist_data)
    broken.decode = lambda z, y=None: pyro.distributions.Bernoulli(probs=torch.full_like(xb, 2.0)).to_event(1)
    pyro.clear_param_store()
    with pyro.validation_enabled(True), pytest.raises(ValueError, match="probs"):
        TrainingSVI(broken, OPTIMIZERS.build("adam"), build_estimator(spec.train.estimator)).step(xb, None, 1.0)
