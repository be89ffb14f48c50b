"""Monte Carlo EM with HMC and the appendix-D marginal-likelihood estimator, checked on the
linear-Gaussian model whose posterior and log p(x) are known in closed form."""

import math

import pyro
import pytest
import torch
from conftest import linear_gaussian_vae

from pyrovae import load_config
from pyrovae.errors import PyrovaeError
from pyrovae.evaluation.posterior_density import appendix_d_log_marginal
from pyrovae.evaluation.references import LinearGaussian
from pyrovae.inference import hmc as hmc_module
from pyrovae.inference.estimators import ESTIMATORS
from pyrovae.lab.variance import parse_estimators, run_variance
from pyrovae.runs.checkpoint import load_checkpoint
from pyrovae.training.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def _points(n=4, seed=5):
    torch.manual_seed(seed)
    return torch.randn(n, 5) * 1.5 + 0.3


@pytest.mark.slow
def test_e_step_chains_sample_the_exact_posterior():
    """A point's stored state, moved by one HMC transition per visit, is a Markov chain on
    p(z|x): after burn-in its mean and variance match the closed-form posterior's (tolerances
    from the chain's effective sample size, estimated by batch means)."""
    vae = linear_gaussian_vae(seed=1)
    x = _points(2)
    estimator = ESTIMATORS.build("mcem")
    pyro.set_rng_seed(3)
    draws = torch.stack([estimator.sample(vae, x) for _ in range(700)])[100:].double()  # (600, points, 2)
    mean, cov = LinearGaussian.from_vae(vae).posterior(x)
    batches = draws.reshape(20, 30, *draws.shape[1:]).mean(1)  # batch means: their spread includes autocorrelation
    se = batches.std(0) / math.sqrt(20)
    assert ((draws.mean(0) - mean).abs() / se).max() < 4.5
    variance = draws.var(0)
    assert ((variance / torch.diagonal(cov)[None] - 1).abs()).max() < 0.35
    assert 0.75 < float(estimator.hmc.accept_rate) <= 1.0  # adapted toward 90%


def _count_transitions(monkeypatch) -> list:
    """Record, for every HMC transition made from now on, (points moved, leapfrog steps)."""
    made = []

    def counted(potential, z, step_size, num_leapfrog=10, random=None, initial=None):
        made.append((z.shape[1], num_leapfrog))
        return transition(potential, z, step_size, num_leapfrog, random, initial)

    transition = hmc_module.hmc_transition
    monkeypatch.setattr(hmc_module, "hmc_transition", counted)
    return made


def test_every_visit_moves_each_point_by_one_hmc_transition(monkeypatch):
    """Appendix E's E-step on every visit: one transition of 10 leapfrog steps for every point
    of the minibatch, all points in one vectorized transition, continuing its chain."""
    vae = linear_gaussian_vae(seed=1)
    x = _points(3)
    estimator = ESTIMATORS.build("mcem")
    made = _count_transitions(monkeypatch)
    states = []
    for _ in range(6):
        states.append(estimator.sample(vae, x))
    assert made == [(3, 10)] * 6
    moves = torch.stack([(b - a).abs().sum(-1) > 0 for a, b in zip(states, states[1:])])
    assert moves.float().mean() > 0.5  # accepted moves change the state (about 90% of them)
    estimator.sample(vae, torch.cat([x[:1], _points(1, seed=9)]))  # a known point and a new one, together
    assert made[-1] == (2, 10) and len(estimator.states) == 4


def test_training_moves_each_point_once_per_epoch(tmp_path, monkeypatch):
    """A run of E epochs over N training points makes E x N point-transitions: every point is
    moved on every visit (an earlier version moved it on every fifth visit only)."""
    made = _count_transitions(monkeypatch)
    overrides = ["train.estimator.name=mcem", "train.progress=false", "train.device=cpu", "data.num_points=300",
                 "train.epochs=2", "train.batch_size=100"]
    train(load_config("linear_gaussian", overrides), tmp_path / "run")
    assert sum(points for points, _ in made) == 2 * 240  # 240 training points (300 less the held-out)
    assert [points for points, _ in made] == [100, 100, 40] * 2


def test_training_raises_the_exact_marginal_likelihood(tmp_path):
    spec = load_config("linear_gaussian", ["train.estimator.name=mcem", "train.epochs=3", "train.progress=false",
                                           "train.device=cpu", "data.num_points=500"])
    result = train(spec, tmp_path / "mcem")
    before = linear_gaussian_vae(seed=0)  # the same initialisation (seed 0)
    x = result.data.train.x
    start = LinearGaussian.from_vae(before).log_marginal(x).mean()
    end = LinearGaussian.from_vae(result.vae).log_marginal(x).mean()
    assert end > start + 3, (start, end)


def test_resuming_continues_the_chains_exactly(tmp_path):
    """The checkpoint keeps every point's chain, its visit count and the step-size adaptation,
    so 1 + 1 epochs give the parameters of 2 uninterrupted epochs."""
    overrides = ["train.estimator.name=mcem", "train.progress=false", "train.device=cpu", "data.num_points=300"]
    straight = train(load_config("linear_gaussian", overrides + ["train.epochs=2"]), tmp_path / "a").vae
    train(load_config("linear_gaussian", overrides + ["train.epochs=1"]), tmp_path / "b")
    resumed = train(load_config("linear_gaussian", overrides + ["train.epochs=2"]), tmp_path / "b", resume=True).vae
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)
    assert len(load_checkpoint(tmp_path / "b" / "checkpoint.pt")["estimator"]["keys"]) == 240  # the training points


@pytest.mark.slow
def test_appendix_d_estimator_agrees_with_the_exact_marginal():
    vae = linear_gaussian_vae(seed=2)
    x = _points(3, seed=6)
    estimate = appendix_d_log_marginal(vae, x, num_samples=300, chains=10, warmup=150)
    exact = LinearGaussian.from_vae(vae).log_marginal(x)
    assert ((estimate.value - exact).abs() < 0.05 + 4 * estimate.std_error).all(), (estimate, exact)


def test_appendix_d_refuses_five_or_more_latent_dimensions():
    spec = load_config("linear_gaussian", ["model.latent_dim=5"])
    from pyrovae import VAE

    vae = VAE.from_config(spec, (5,), 0)
    with pytest.raises(PyrovaeError, match="below 5"):
        appendix_d_log_marginal(vae, _points(2))


def test_the_variance_laboratory_says_mcem_has_no_gradient_to_draw(tmp_path):
    with pytest.raises(PyrovaeError, match="mcem"):
        run_variance("linear_gaussian", parse_estimators("mcem"), draws=10, out=tmp_path / "v", progress=False)
