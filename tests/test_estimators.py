"""Gradient estimators: unbiased where the gradient is known, ordered as the literature
predicts, trainable through the training loop, resumable exactly, and the two Pyro
behaviours they work around still as observed in pyro-ppl 1.9.

The linear-Gaussian VAE of the ``linear_gaussian`` config has a closed-form ELBO, so the
exact gradient of every encoder and decoder parameter is known; the multi-sample bounds are
checked against an IWAE gradient computed here directly in torch. Tolerances are standard
errors of the draws, Bonferroni-corrected over every parameter and estimator.
"""

import csv
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from conftest import linear_gaussian_vae
from estimator_checks import assert_resumes_exactly, t_statistics
from pyro.infer import SVI, RenyiELBO, Trace_ELBO
from scipy.stats import norm

from pyrovae import load_config
from pyrovae.components.datasets import load_data
from pyrovae.errors import PyrovaeError
from pyrovae.inference.estimators import ESTIMATORS, bound_particles, estimator_state, handles
from pyrovae.inference.particles import NonReparameterizedNormal, ScoreFunctionSites
from pyrovae.lab.gradient_stats import flat_gradient, gradient_moments, parameter_groups, reference_gradient
from pyrovae.model import VAE
from pyrovae.training.train import train

DRAWS = 400
BATCH = 20
# The estimators for continuous (reparameterizable) guides; those for discrete latents only are
# tested in tests/test_discrete_estimators.py.
CONTINUOUS = [name for name in ESTIMATORS.names() if handles(ESTIMATORS.build(name), "continuous")]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lg_batch():
    data = load_data(load_config("linear_gaussian").data)
    return data, (data.train.x[:BATCH], None, 1.0)


@pytest.fixture(scope="module")
def lg_draws(lg_batch):
    """Every registered estimator's gradient moments on one minibatch at initialization,
    with the same seed (common random numbers make their comparisons paired)."""
    data, args = lg_batch
    vae = linear_gaussian_vae()
    others = [(data.train.x[i:i + 100], None, 1.0) for i in range(100, 600, 100)]
    moments = {}
    with pyro.validation_enabled(False):
        for entry in ESTIMATORS:
            estimator = entry.factory()
            if not getattr(estimator, "unbiased", True):  # wake-sleep, MCEM: tests/test_wake_sleep.py, test_mcem.py
                continue
            if not handles(estimator, "continuous"):
                continue
            if hasattr(estimator, "adapt"):
                estimator.adapt(vae.model, vae.guide, others, 20)
            moments[entry.name] = (estimator, gradient_moments(estimator, vae, args, DRAWS, seed=0))
        moments["score:num_particles=5"] = (None, gradient_moments(ESTIMATORS.build("score", options={
            "num_particles": 5}), vae, args, DRAWS, seed=0))
    return vae, moments


def independent_iwae_gradient(vae, x, k: int, draws: int, seed: int, chunk: int = 2000):
    """Mean and variance-of-the-mean of the IWAE-K loss gradient, written directly with
    torch distributions (no Pyro): log w = log p(x|z) + log N(z; 0, I) - log q(z|x)."""
    params = list(vae.parameters())
    generator = torch.Generator().manual_seed(seed)
    means = []
    for _ in range(draws // chunk):
        loc, scale = vae.encode(x)
        z = loc + scale * torch.randn((chunk, k) + loc.shape, generator=generator)
        log_w = (vae.decode(z).log_prob(x) + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
                 - torch.distributions.Normal(loc, scale).log_prob(z).sum(-1))
        bound = (torch.logsumexp(log_w, 1) - math.log(k)).sum(-1).mean()
        means.append(flat_gradient(-bound, params).double())
    means = torch.stack(means)
    return means.mean(0), means.var(0) / means.shape[0]


def test_every_estimator_averages_to_the_exact_gradient(lg_batch, lg_draws):
    _, args = lg_batch
    vae, moments = lg_draws
    tests = sum(m.mean.numel() for _, m in moments.values())
    threshold = max(4.0, norm.isf(0.05 / (2 * tests)))  # Bonferroni over every parameter and estimator
    exact = reference_gradient(vae, args, 1, 0, 0)
    assert exact.kind.startswith("exact") and exact.var.eq(0).all()
    iwae_refs = {}
    for name, (estimator, m) in moments.items():
        k = 1 if estimator is None else bound_particles(estimator)
        if k == 1:
            ref_mean, ref_var = exact.mean, exact.var
        else:
            if k not in iwae_refs:
                iwae_refs[k] = independent_iwae_gradient(vae, args[0], k, 20000, seed=123)
            ref_mean, ref_var = iwae_refs[k]
        t = t_statistics(m.mean, m.var / m.draws, ref_mean, ref_var)
        assert t.abs().max() < threshold, f"{name}: max |t| = {t.abs().max():.2f} >= {threshold:.2f}"


def test_multi_sample_bound_gradient_agrees_with_an_independent_iwae(lg_batch):
    _, args = lg_batch
    vae = linear_gaussian_vae()
    with pyro.validation_enabled(False):
        ours = reference_gradient(vae, args, 5, 20000, seed=1)
    mean, var = independent_iwae_gradient(vae, args[0], 5, 20000, seed=2)
    t = t_statistics(ours.mean, ours.var, mean, var)
    assert t.abs().max() < norm.isf(0.05 / (2 * t.numel()))


def _trace(moments, group: str) -> float:
    """Trace of the gradient covariance of the linear-Gaussian VAE's encoder or decoder."""
    index = parameter_groups(linear_gaussian_vae())[group]
    return moments.var[index].sum().item()


def test_score_function_variance_is_far_above_pathwise(lg_draws):
    _, moments = lg_draws
    assert _trace(moments["score"][1], "encoder") > 10 * _trace(moments["pathwise"][1], "encoder")
    # the decoder's gradient is pathwise in both: the same draws give the same variance
    assert _trace(moments["score"][1], "decoder") == pytest.approx(_trace(moments["pathwise"][1], "decoder"))


def test_baselines_reduce_score_function_variance(lg_draws):
    """Paired comparisons: every estimator drew the same particles."""
    _, moments = lg_draws
    encoder = {name: _trace(m, "encoder") for name, (_, m) in moments.items()}
    assert encoder["score_avg_baseline"] < 0.9 * encoder["score"]
    assert encoder["score_nn_baseline"] < 0.9 * encoder["score"]
    # leave-one-out baselines against REINFORCE with the same five particles
    assert encoder["score_loo"] < 0.5 * encoder["score:num_particles=5"]
    assert encoder["vimco"] < encoder["score:num_particles=5"]


def posterior_matched_vae(offset: float) -> VAE:
    """A linear-Gaussian VAE whose decoder has orthogonal columns, so its posterior is
    diagonal and a linear encoder can equal it exactly; ``offset`` moves the encoder away."""
    vae = linear_gaussian_vae()
    sigma = vae.likelihood.fixed_scale
    basis, _ = torch.linalg.qr(torch.randn(5, 2, generator=torch.Generator().manual_seed(1)))
    weight, bias = basis * torch.tensor([1.0, 2.0]), torch.randn(5, generator=torch.Generator().manual_seed(2))
    variance = 1 / (1 + weight.pow(2).sum(0) / sigma ** 2)  # diagonal of the posterior covariance
    gain = variance[:, None] * weight.T / sigma ** 2         # posterior mean = gain (x - bias)
    direction = torch.randn(4, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        vae.decoder.head.weight.copy_(weight)
        vae.decoder.head.bias.copy_(bias)
        vae.encoder.head.weight.copy_(torch.cat([gain, torch.zeros(2, 5)]) + offset * direction[:, :5])
        vae.encoder.head.bias.copy_(torch.cat([-gain @ bias, 0.5 * variance.log()]) + offset * direction[:, 5])
    return vae


def test_stl_variance_vanishes_as_q_approaches_the_posterior(lg_batch):
    _, args = lg_batch
    stl, pathwise = ESTIMATORS.build("stl"), ESTIMATORS.build("pathwise")
    traces = {}
    with pyro.validation_enabled(False):
        for offset in (0.3, 0.1, 0.03, 0.0):
            vae = posterior_matched_vae(offset)
            traces[offset] = [_trace(gradient_moments(e, vae, args, 100, seed=0), "encoder")
                              for e in (stl, pathwise)]
    stl_traces = [traces[o][0] for o in (0.3, 0.1, 0.03, 0.0)]
    assert stl_traces == sorted(stl_traces, reverse=True)
    assert stl_traces[-1] < 1e-8 * stl_traces[0]
    assert traces[0.0][1] > 0.1 * traces[0.3][1]  # the pathwise estimator keeps its score term's noise


def test_encoder_snr_falls_with_k_for_iwae_and_rises_for_dreg(tmp_path):
    """Rainforth et al. (2018): at a trained VAE and a single data point, the encoder SNR of
    IWAE shrinks like 1/sqrt(K); DReG's grows (Tucker et al. 2019). |E g| comes from a
    20000-draw reference, so the SNR is not floored by the noise of the draws' mean."""
    spec = load_config("linear_gaussian", ["train.epochs=10", "train.progress=false"])
    vae = train(spec, tmp_path).vae
    args = (load_data(spec.data).train.x[:1], None, 1.0)
    encoder = slice(0, sum(p.numel() for p in vae.encoder.parameters()))
    snr = {False: [], True: []}
    with pyro.validation_enabled(False):
        for k in (1, 10, 100):
            expected = reference_gradient(vae, args, k, 20000, seed=1).mean[encoder]
            for dreg in snr:
                name = "iwae_dreg" if dreg else "iwae"
                m = gradient_moments(ESTIMATORS.build(name, options={"num_particles": k}), vae, args, 200, seed=0)
                snr[dreg].append((expected.abs() / m.var[encoder].sqrt()).mean().item())
    assert snr[False][0] > snr[False][1] > snr[False][2]
    assert snr[True][0] < snr[True][1] < snr[True][2]


# ----------------------------------------------------------------------------- agreement with Pyro

def _gradient(loss, vae, args, seed=0):
    pyro.set_rng_seed(seed)
    return flat_gradient(loss.differentiable_loss(vae.model, vae.guide, *args), list(vae.parameters()))


def test_score_is_pyros_trace_elbo_on_a_non_reparameterized_guide(lg_batch):
    _, args = lg_batch
    vae = linear_gaussian_vae()
    ours = _gradient(ESTIMATORS.build("score"), vae, args)
    pyro_guide = ScoreFunctionSites()(vae.guide)
    pyro.set_rng_seed(0)
    theirs = flat_gradient(Trace_ELBO().differentiable_loss(vae.model, pyro_guide, *args), list(vae.parameters()))
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_iwae_with_one_particle_is_pyros_pathwise_elbo(lg_batch):
    _, args = lg_batch
    vae = linear_gaussian_vae()
    assert torch.allclose(_gradient(ESTIMATORS.build("iwae", options={"num_particles": 1}), vae, args),
                          _gradient(ESTIMATORS.build("pathwise"), vae, args), rtol=1e-5, atol=1e-5)


def test_loss_value_is_the_negative_bound(lg_batch):
    _, args = lg_batch
    vae = linear_gaussian_vae()
    for name in CONTINUOUS:
        pyro.set_rng_seed(0)
        value = ESTIMATORS.build(name).loss(vae.model, vae.guide, *args)
        assert math.isfinite(value) and value > 0, name  # the data's log density is negative here


# ----------------------------------------------------------------------------- Pyro pitfalls

def _toy(guide_distribution):
    x = torch.randn(10)
    loc = torch.zeros(10, 1, requires_grad=True)

    def model(x):
        with pyro.plate("data", 10):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
            pyro.sample("x", dist.Normal(z.squeeze(-1), 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", 10):
            pyro.sample("z", guide_distribution(loc).to_event(1))

    return model, guide, x, loc


def test_pitfall_has_rsample_setter_fails_under_to_event_in_a_plate():
    """Pyro 1.9: ``Normal(...).has_rsample_(False).to_event(1)`` in a plate raises, which is
    why score-function sites use the NonReparameterizedNormal subclass. If this test fails,
    Pyro fixed it and the subclass could give way to has_rsample_(False)."""
    model, guide, x, _ = _toy(lambda loc: dist.Normal(loc, 1.0).has_rsample_(False))
    with pytest.raises(AttributeError, match="has_rsample"):
        Trace_ELBO().differentiable_loss(model, guide, x)


def test_non_reparameterized_subclass_is_a_score_function_site_with_vectorized_particles():
    model, guide, x, loc = _toy(lambda loc: NonReparameterizedNormal(loc, 1.0))
    with pyro.plate("particles", 4, dim=-2):
        site = pyro.poutine.trace(guide).get_trace(x).nodes["z"]
    assert site["value"].shape == (4, 10, 1) and not site["value"].requires_grad
    assert not site["fn"].has_rsample
    elbo = Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    grad, = torch.autograd.grad(elbo.differentiable_loss(model, guide, x), loc)
    assert grad.abs().sum() > 0


def test_pitfall_renyi_alpha_zero_has_no_guide_gradient_for_score_function_sites():
    """Pyro 1.9: RenyiELBO(alpha=0), the IWAE bound, carries a factor alpha / (1 - alpha) on its
    score term, so a non-reparameterized guide gets no gradient at all; vimco has its own
    surrogate. If this test fails, Pyro changed RenyiELBO."""
    model, guide, x, loc = _toy(lambda loc: NonReparameterizedNormal(loc, 1.0))
    iwae_bound = RenyiELBO(alpha=0, num_particles=5, vectorize_particles=True, max_plate_nesting=1)
    iwae_bound.loss_and_grads(model, guide, x)
    assert loc.grad is None or loc.grad.abs().sum() == 0
    grad, = torch.autograd.grad(ESTIMATORS.build("vimco").differentiable_loss(model, guide, x), loc)
    assert grad.abs().sum() > 0


# ----------------------------------------------------------------------------- training and state

@pytest.mark.parametrize("name", CONTINUOUS)
def test_every_estimator_trains_to_a_finite_improving_elbo(name, tmp_path, lg_batch):
    data, _ = lg_batch
    spec = load_config("linear_gaussian", [f"train.estimator.name={name}", "data.train_size=200",
                                           "train.batch_size=50", "train.epochs=3", "train.progress=false"])
    train(spec, tmp_path, data=data)
    with open(tmp_path / "metrics.csv", newline="") as f:
        valid = [float(row["valid_elbo"]) for row in csv.DictReader(f)]
    assert len(valid) == 3 and all(math.isfinite(v) for v in valid) and valid[-1] > valid[0]


@pytest.mark.parametrize("name", ["score_avg_baseline", "score_nn_baseline"])
def test_estimator_state_with_model_optimizer_and_rng_resumes_exactly(name, lg_batch, tmp_path):
    """What train.py checkpoints (model, optimizer state, torch RNG) plus estimator_state(),
    written to a checkpoint file and read back, continues a run exactly as if uninterrupted."""
    _, args = lg_batch

    def start():
        vae = linear_gaussian_vae()
        optimizer = pyro.optim.Adam({"lr": 1e-2})
        loss = ESTIMATORS.build(name)
        pyro.clear_param_store()
        return vae, optimizer, loss, SVI(vae.model, vae.guide, optimizer, loss)

    assert_resumes_exactly(start, args, tmp_path)


def test_differentiable_loss_leaves_estimator_state_alone(lg_batch):
    _, args = lg_batch
    vae = linear_gaussian_vae()
    loss = ESTIMATORS.build("score_avg_baseline")
    initial = estimator_state(loss)
    loss.differentiable_loss(vae.model, vae.guide, *args)
    assert estimator_state(loss) == initial
    loss.loss_and_grads(vae.model, vae.guide, *args)  # a training step
    assert estimator_state(loss) != initial


@pytest.mark.parametrize("name, options, message", [
    ("vimco", {"num_particles": 1}, "num_particles must be an integer >= 2"),
    ("score_loo", {"num_particles": 1}, "num_particles must be an integer >= 2"),
    ("iwae", {"num_particles": 2.5}, "num_particles"),
    ("score_avg_baseline", {"baseline_beta": 1.0}, "baseline_beta"),
    ("score_nn_baseline", {"hidden": [0]}, "hidden"),
    ("score", {"baseline_beta": 0.9}, "has no option 'baseline_beta'"),
])
def test_options_are_validated(name, options, message):
    with pytest.raises(PyrovaeError, match=message):
        ESTIMATORS.build(name, options=options)


@pytest.mark.slow
def test_every_estimator_is_unbiased_at_a_trained_model_with_many_draws(tmp_path):
    """The bias check again with ten times the draws, at a model trained for a few epochs."""
    spec = load_config("linear_gaussian", ["train.epochs=5", "train.progress=false"])
    data = load_data(spec.data)
    vae = train(spec, tmp_path, data=data).vae
    args = (data.train.x[:BATCH], None, 1.0)
    others = [(data.train.x[i:i + 100], None, 1.0) for i in range(100, 600, 100)]
    threshold = max(4.0, norm.isf(0.05 / (2 * 39 * len(CONTINUOUS))))
    with pyro.validation_enabled(False):
        for entry in ESTIMATORS:
            estimator = entry.factory()
            if not getattr(estimator, "unbiased", True) or not handles(estimator, "continuous"):
                continue
            if hasattr(estimator, "adapt"):
                estimator.adapt(vae.model, vae.guide, others, 20)
            m = gradient_moments(estimator, vae, args, 10 * DRAWS, seed=5)
            k = bound_particles(estimator)
            if k == 1:
                ref = reference_gradient(vae, args, 1, 0, 0)
                ref_mean, ref_var = ref.mean, ref.var
            else:
                ref_mean, ref_var = independent_iwae_gradient(vae, args[0], k, 100000, seed=7)
            t = t_statistics(m.mean, m.var / m.draws, ref_mean, ref_var)
            assert t.abs().max() < threshold, f"{entry.name}: max |t| = {t.abs().max():.2f}"
