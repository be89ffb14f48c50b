"""Estimators for discrete latents against exact gradients by enumeration.

A one-layer sigmoid belief net on static binarized MNIST digits max-pooled to 7 x 7 pixels, with
6 binary latents (64 configurations) or 2 groups of 4 classes (16), has an ELBO, K-sample bounds
and gradients that are finite sums (pyrovae.inference.enumeration), checked here against brute
arithmetic and Pyro's TraceEnum_ELBO. Every unbiased estimator's mean gradient must agree with the
exact one: t-statistics over all parameters, the mean of 100 chunks of vectorized draws with the
spread of the chunks as standard error (Student t with 99 degrees of freedom), Bonferroni-corrected
over every parameter and estimator as in tests/test_estimators.py. The relaxations' bias is
measured against the same exact gradient and must behave as theory says.
"""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from conftest import linear_gaussian_vae
from estimator_checks import assert_resumes_exactly, t_statistics
from pyro.infer import SVI, TraceEnum_ELBO, config_enumerate
from scipy.stats import t as student_t

from pyrovae.components.discrete import FactorizedBernoulli, GroupedOneHotCategorical
from pyrovae.errors import PyrovaeError
from pyrovae.inference.enumeration import enumerate_latents
from pyrovae.inference.estimators import ESTIMATORS, handles, load_estimator_state
from pyrovae.inference.sigmoid_belief_net import SigmoidBeliefNet
from pyrovae.lab.discrete import bias_table, small_discrete_model
from pyrovae.lab.gradient_stats import flat_gradient, parameter_groups
from pyrovae.lab.variance import parse_estimators

pytestmark = pytest.mark.usefixtures("one_thread")

CHUNKS, PER_CHUNK = 100, 40
UNBIASED = {  # estimator -> latent families, against the exact gradient of the bound it estimates
    "score": ("bernoulli", "categorical"),
    "score_avg_baseline": ("bernoulli", "categorical"),
    "score_nn_baseline": ("bernoulli", "categorical"),
    "score_loo": ("bernoulli", "categorical"),
    "vimco:num_particles=2": ("bernoulli", "categorical"),
    "arm": ("bernoulli",),
    "disarm": ("bernoulli",),
    "rebar": ("bernoulli",),
    "relax": ("bernoulli",),
    "enum": ("bernoulli", "categorical"),
}
TESTS = 850 * (len(UNBIASED) + 2)  # parameters x estimators (nvil and reweighted wake-sleep too), at most
THRESHOLD = student_t.isf(0.05 / (2 * TESTS), CHUNKS - 1)


@pytest.fixture(scope="module", params=["bernoulli", "categorical"])
def problem(request):
    return (request.param, *small_discrete_model(request.param))


def _measure(problem, label, chunks=CHUNKS, per_chunk=PER_CHUNK, seed=0):
    family, model, args, others = problem
    return bias_table(model, args, others, parse_estimators(label), chunks, per_chunk, seed)[label]


# ----------------------------------------------------------------------------- exact references

def test_exact_log_likelihood_and_elbo_are_brute_force_sums():
    """Three binary latents, four pixels: log p(x) and the ELBO written out configuration by
    configuration with Python floats."""
    pyro.set_rng_seed(3)
    sbn = SigmoidBeliefNet((4,), 3)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]])
    enumerated = enumerate_latents(sbn.model, sbn.guide, (x,))
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    with torch.no_grad():
        prior, q_logits = sbn.prior.logits.tolist(), sbn.encoder(x).tolist()
        for i in range(2):
            joint, elbo = [], 0.0
            for z in itertools.product((0, 1), repeat=3):
                log_prior = sum(math.log(sig(a) if zd else 1 - sig(a)) for a, zd in zip(prior, z))
                logits = sbn.decoder(torch.tensor([z], dtype=torch.float32))[0].tolist()
                log_lik = sum(math.log(sig(a) if xd else 1 - sig(a)) for a, xd in zip(logits, x[i].tolist()))
                log_q = sum(math.log(sig(a) if zd else 1 - sig(a)) for a, zd in zip(q_logits[i], z))
                joint.append(log_prior + log_lik)
                elbo += math.exp(log_q) * (log_prior + log_lik - log_q)
            top = max(joint)
            assert enumerated.log_likelihood[i].item() == pytest.approx(
                top + math.log(sum(math.exp(j - top) for j in joint)), abs=1e-4)
            assert enumerated.elbo[i].item() == pytest.approx(elbo, abs=1e-4)
            assert enumerated.elbo[i].item() < enumerated.log_likelihood[i].item()


@pytest.mark.parametrize("groups", [None, 2])
def test_exact_elbo_and_gradient_agree_with_pyros_trace_enum_elbo(groups):
    pyro.set_rng_seed(1)
    sbn = SigmoidBeliefNet((6,), 4, groups=groups)
    x = torch.bernoulli(torch.full((5, 6), 0.4))
    params = list(sbn.parameters())
    ours = -enumerate_latents(sbn.model, sbn.guide, (x,)).elbo.sum()
    theirs = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(sbn.model, config_enumerate(sbn.guide), x)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    assert torch.allclose(flat_gradient(ours, params), flat_gradient(theirs, params), rtol=1e-4, atol=1e-5)


def test_exact_multi_sample_bound_lies_between_the_elbo_and_log_likelihood():
    model, args, _ = small_discrete_model("bernoulli")
    enumerated = enumerate_latents(model.model, model.guide, args)
    bounds = [enumerated.elbo] + [enumerated.iwae_bound(k) for k in (2, 3)]
    assert torch.allclose(enumerated.iwae_bound(1), enumerated.elbo)
    for lower, upper in zip(bounds, bounds[1:] + [enumerated.log_likelihood]):
        assert (lower < upper).all()


def test_enumeration_refuses_a_large_latent_space():
    sbn = SigmoidBeliefNet((6,), 13)
    with pytest.raises(PyrovaeError, match="8192 configurations, more than max_configurations=4096"):
        enumerate_latents(sbn.model, sbn.guide, (torch.zeros(2, 6),))


# ----------------------------------------------------------------------------- unbiasedness

@pytest.mark.parametrize("label", UNBIASED)
def test_unbiased_estimators_average_to_the_exact_gradient(problem, label):
    if problem[0] not in UNBIASED[label]:
        pytest.skip(f"{label} is for {UNBIASED[label]} latents")
    result = _measure(problem, label)
    assert result["reference"].kind.startswith("exact")
    assert result["t"].abs().max() < THRESHOLD, f"{label}: max |t| = {result['t'].abs().max():.2f}"
    if label != "enum":
        assert result["moments"].var.sum() > 0  # a test that could fail: the draws do vary
    else:
        assert result["moments"].var.max() < 1e-10  # the exact gradient, every time


def test_nvil_is_the_exact_gradient_with_the_encoders_scaled_by_its_normalization(problem):
    """NVIL divides the encoder's learning signal by max(1, s), s the baseline's running spread of
    the signal: undo it and the estimator is unbiased; the decoder's gradient is untouched."""
    result = _measure(problem, "nvil")
    model = problem[1]
    encoder = parameter_groups(model)["encoder"]
    factor = max(1.0, result["estimator"].baseline.scale)
    assert factor > 1  # at initialization the signal's spread is tens of nats
    moments, reference = result["moments"], result["reference"]
    mean = moments.mean.clone()
    mean[encoder] *= factor
    var_of_mean = moments.var / moments.draws
    var_of_mean[encoder] *= factor ** 2
    t = t_statistics(mean, var_of_mean, reference.mean)
    assert t.abs().max() < THRESHOLD


def test_reweighted_wake_sleep_decoder_gradient_is_the_exact_iwae_one_and_sleep_trains_the_encoder(problem):
    result = _measure(problem, "reweighted_wake_sleep:num_particles=2")
    groups = parameter_groups(problem[1])
    assert result["reference"].kind.startswith("exact (IWAE-2")
    theta = torch.cat([groups["decoder"], groups["prior"]])
    assert result["t"][theta].abs().max() < THRESHOLD
    encoder = result["moments"].mean[groups["encoder"]]
    assert torch.isfinite(encoder).all() and encoder.abs().sum() > 0  # the sleep phase runs on discrete dreams


# ----------------------------------------------------------------------------- relaxations' bias

@pytest.mark.parametrize("family", ["bernoulli", "categorical"])
def test_gumbel_softmax_bias_is_detected_and_shrinks_with_the_temperature_as_its_variance_grows(family):
    """The relaxed objective tends to the ELBO as tau -> 0: its gradient's bias falls, the
    variance of its pathwise estimate rises (Jang et al. 2017; Maddison et al. 2017)."""
    problem = (family, *small_discrete_model(family))
    labels = [f"gumbel_softmax:temperature={tau}" for tau in (1.0, 0.5, 0.25)]
    results = [_measure(problem, label) for label in labels]
    bias = [r["groups"]["all"]["relative_bias"] for r in results]
    noise = [r["groups"]["all"]["relative_noise"] for r in results]
    variance = [r["groups"]["encoder"]["trace"] for r in results]
    assert results[0]["t"].abs().max() > THRESHOLD  # biased at tau = 1, detectably
    assert bias[0] > bias[1] > bias[2] and bias[1] > 2 * noise[1]
    assert variance[0] < variance[1] < variance[2]


def test_straight_through_gumbel_is_biased():
    problem = ("bernoulli", *small_discrete_model("bernoulli"))
    result = _measure(problem, "gumbel_st")
    assert result["t"].abs().max() > THRESHOLD
    assert result["groups"]["all"]["relative_bias"] > 5 * result["groups"]["all"]["relative_noise"]


def test_temperature_anneals_with_training_steps_to_its_floor():
    loss = ESTIMATORS.build("gumbel_softmax", options={"temperature": 1.0, "anneal_rate": 0.1, "min_temperature": 0.5})
    temperatures = []
    for step in (0, 1, 5, 100):
        load_estimator_state(loss, {"step": step})
        temperatures.append(loss.temperature)
    assert temperatures == pytest.approx([1.0, math.exp(-0.1), math.exp(-0.5), 0.5])


# ----------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("name", ["pathwise", "analytic_kl", "stl", "iwae", "iwae_dreg"])
def test_pathwise_estimators_refuse_a_discrete_guide_naming_the_discrete_ones(name):
    model, args, _ = small_discrete_model("bernoulli")
    with pytest.raises(PyrovaeError, match="FactorizedBernoulli, which has no pathwise gradient.*arm, disarm, rebar"):
        ESTIMATORS.build(name).differentiable_loss(model.model, model.guide, *args)


def test_mcem_refuses_a_discrete_guide():
    model, args, _ = small_discrete_model("bernoulli")
    with pytest.raises(PyrovaeError, match="mcem moves the latents by HMC.*FactorizedBernoulli; train discrete"):
        ESTIMATORS.build("mcem").loss_and_grads(model.model, model.guide, *args)


@pytest.mark.parametrize("name", ["arm", "disarm", "rebar", "relax"])
def test_binary_estimators_refuse_categorical_latents(name):
    model, args, _ = small_discrete_model("categorical")
    with pytest.raises(PyrovaeError, match=f"estimator '{name}' handles bernoulli latents.*GroupedOneHotCategorical"):
        ESTIMATORS.build(name).differentiable_loss(model.model, model.guide, *args)
    assert not handles(ESTIMATORS.build(name), "categorical")


@pytest.mark.parametrize("name", ["gumbel_softmax", "gumbel_st", "arm", "rebar", "enum"])
def test_discrete_estimators_refuse_a_continuous_guide(name):
    vae = linear_gaussian_vae()
    x = torch.randn(4, 5)
    with pytest.raises(PyrovaeError, match=r"is Independent \(continuous\); use a pathwise estimator"):
        ESTIMATORS.build(name).differentiable_loss(vae.model, vae.guide, x, None, 1.0)


@pytest.mark.parametrize("name, options, message", [
    ("gumbel_softmax", {"temperature": 0}, "temperature must be a positive number"),
    ("gumbel_st", {"anneal_rate": -1}, "anneal_rate must be a number >= 0"),
    ("rebar", {"eta": -1.0}, "eta must be a positive number"),
    ("relax", {"hidden": [0]}, "hidden"),
    ("enum", {"max_configurations": 0}, "max_configurations must be a positive integer"),
    ("arm", {"num_particles": 0}, "num_particles"),
])
def test_options_are_validated(name, options, message):
    with pytest.raises(PyrovaeError, match=message):
        ESTIMATORS.build(name, options=options)


def test_distributions_sample_the_support_and_score_relaxed_values_linearly():
    pyro.set_rng_seed(0)
    logits = torch.randn(3, 6)
    for fn in (FactorizedBernoulli(logits), GroupedOneHotCategorical(logits, 2)):
        samples = fn.sample((2000,))
        assert fn.support.check(samples).all()
        assert torch.allclose(samples.mean(0), fn.mean, atol=0.05)
        support = fn.enumerate_support()
        assert torch.allclose(fn.log_prob(support).exp().sum(0), torch.ones(3))
        a, b = support[0], support[-1]
        relaxed = fn.expand(fn.batch_shape)  # unvalidated, as the relaxed estimators use it
        assert torch.allclose(relaxed.log_prob(0.3 * a + 0.7 * b), 0.3 * fn.log_prob(a) + 0.7 * fn.log_prob(b), atol=1e-5)
        with pytest.raises(ValueError, match="support"):
            fn.log_prob(0.3 * a + 0.7 * b)
    with pytest.raises(PyrovaeError, match="multiple of groups"):
        GroupedOneHotCategorical(logits, 4)
    assert dist.Bernoulli(0.5).has_enumerate_support  # the same interface as Pyro's own


# ----------------------------------------------------------------------------- training and state

@pytest.mark.parametrize("name", ["score_loo", "vimco", "arm", "disarm", "rebar", "relax", "gumbel_softmax",
                                  "gumbel_st", "enum", "nvil"])
def test_loss_is_minus_the_bound_at_exact_samples(name):
    """loss() (run without gradients, as the validation ELBO is) averages to minus the exact ELBO
    (for vimco: the exact IWAE-5 bound, no further from it than the ELBO is)."""
    model, args, _ = small_discrete_model("bernoulli")
    enumerated = enumerate_latents(model.model, model.guide, args)
    loss = ESTIMATORS.build(name)
    values = torch.tensor([loss.loss(model.model, model.guide, *args) for _ in range(100)])
    exact = -enumerated.elbo.sum().item()
    if name == "vimco":
        assert -enumerated.log_likelihood.sum().item() < values.mean() < exact
    else:
        assert abs(values.mean() - exact) < 4 * values.std() / math.sqrt(len(values)) + 1e-4


DISCRETE_TRAINERS = [name for name in ESTIMATORS.names() if handles(ESTIMATORS.build(name), "bernoulli")]


@pytest.mark.parametrize("name", DISCRETE_TRAINERS)
def test_every_discrete_estimator_trains_the_small_sigmoid_belief_net(name):
    """50 Adam steps on one minibatch raise the exact ELBO (the training objective of all but
    wake-sleep, whose encoder follows the sleep phase)."""
    model, args, _ = small_discrete_model("bernoulli", batch=20)
    exact = lambda: enumerate_latents(model.model, model.guide, args).elbo.mean().item()  # noqa: E731
    before = exact()
    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 3e-2}), ESTIMATORS.build(name))
    for _ in range(50):
        assert math.isfinite(svi.step(*args))
    assert exact() > before + 1.0, name


STATEFUL = ["nvil", "score_avg_baseline", "rebar", "relax", "gumbel_softmax:anneal_rate=0.1",
            "gumbel_st:anneal_rate=0.1"]


@pytest.mark.parametrize("label", STATEFUL)
def test_estimator_state_round_trip_resumes_exactly(label, tmp_path):
    """Model, optimizer, torch RNG and estimator_state() through a checkpoint file continue a run
    exactly as if uninterrupted (the RELAX network, REBAR's eta and temperature, the baselines,
    the annealing step)."""
    choice, = parse_estimators(label)
    _, args, _ = small_discrete_model("bernoulli")

    def start():
        model, _, _ = small_discrete_model("bernoulli")
        optimizer = pyro.optim.Adam({"lr": 1e-2})
        loss = choice.build()
        pyro.clear_param_store()
        return model, optimizer, loss, SVI(model.model, model.guide, optimizer, loss)

    assert assert_resumes_exactly(start, args, tmp_path) != {}


def test_rebar_learns_its_control_variate_and_relax_its_network():
    """Training steps move eta and the temperature (and RELAX's network) down the variance's gradient."""
    for name in ("rebar", "relax"):
        model, args, _ = small_discrete_model("bernoulli")
        loss = ESTIMATORS.build(name)
        svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 1e-2}), loss)
        svi.step(*args)
        before = {k: v.clone() for k, v in loss.control.state_dict().items()}
        for _ in range(5):
            svi.step(*args)
        after = loss.control.state_dict()
        assert {k for k in after if not torch.equal(after[k], before[k])} >= (
            {"eta", "log_temperature"} | ({"net.head.weight"} if name == "relax" else set()))
        pyro.clear_param_store()


@pytest.mark.slow
@pytest.mark.parametrize("label", list(UNBIASED) + ["nvil"])
def test_unbiased_estimators_with_ten_times_the_draws(label):
    for family in ("bernoulli", "categorical"):
        if family in UNBIASED.get(label, ("bernoulli", "categorical")):
            problem = (family, *small_discrete_model(family, seed=5))
            t = _measure(problem, label, per_chunk=10 * PER_CHUNK, seed=5)["t"]
            if label == "nvil":  # only the decoder and prior: the encoder's is scaled (test above)
                groups = parameter_groups(problem[1])
                t = t[torch.cat([groups["decoder"], groups["prior"]])]
            assert t.abs().max() < THRESHOLD, f"{label}, {family}: max |t| = {t.abs().max():.2f}"


# ----------------------------------------------------------------------------- the laboratory

def test_variance_laboratory_on_the_small_model_has_exact_references_and_reports_bias(tmp_path):
    from pyrovae.lab.discrete import run_discrete_variance
    from pyrovae.lab.variance import measurable_estimators
    from pyrovae.reports.variance_report import write_variance_report

    assert "arm" in measurable_estimators("bernoulli") and "arm" not in measurable_estimators("categorical")
    assert "arm" not in measurable_estimators()  # the default (continuous) list is what it was, plus nvil
    out, results = run_discrete_variance(tmp_path / "lab", parse_estimators("score_loo,gumbel_softmax,enum"), draws=200)
    entries = results["snapshots"][0]["estimators"]
    assert all(e["reference"] == "exact (ELBO by enumeration of 64 configurations)" for e in entries.values())
    every = {label: e["groups"]["all"] for label, e in entries.items()}
    assert every["enum"]["relative_bias"] < 1e-6 and every["enum"]["cosine"] > 0.999999
    assert every["score_loo"]["relative_bias"] < 4 * every["score_loo"]["relative_noise"]
    assert every["gumbel_softmax"]["relative_bias"] > 4 * every["gumbel_softmax"]["relative_noise"]
    header = (out / "variance.csv").read_text().splitlines()[0]
    assert header.endswith("relative_bias,relative_noise")
    report = write_variance_report(out, results).read_text()
    assert "norm of bias / norm of exact (noise)" in report and "exact (ELBO by enumeration" in report

