"""Discrete latent families: binary and grouped-categorical codes chosen in the config, their
priors and guides, exact log p(x) by enumeration, the refusals of continuous-only methods, and
training the built-in sbn_mnist and categorical_mnist configs with exact resume."""

import math

import pyro
import pytest
import torch
from conftest import tiny_overrides

from pyrovae import VAE, load_config
from pyrovae.cli import main
from pyrovae.components.discrete import FactorizedBernoulli, GroupedOneHotCategorical
from pyrovae.errors import PyrovaeError
from pyrovae.evaluation.ais import annealed_importance_sample
from pyrovae.evaluation.bdmc import bidirectional_monte_carlo
from pyrovae.evaluation.discrete import configuration_count, exact_log_marginal
from pyrovae.evaluation.evaluate import evaluate_run
from pyrovae.evaluation.importance import importance_sample
from pyrovae.evaluation.posterior import grid_posterior, inspect_posterior, mcmc_posterior, optimal_gaussian
from pyrovae.evaluation.posterior_density import appendix_d_log_marginal
from pyrovae.evaluation.references import quadrature_log_marginal
from pyrovae.runs.checkpoint import load_checkpoint
from pyrovae.spec import config_text
from pyrovae.training.train import train

SMALL = {"model.encoder.hidden": "[16]", "model.decoder.hidden": "[16]"}


def small_vae(latent: str, latent_dim: int, seed: int = 0, **options) -> VAE:
    """An untrained VAE on 4 x 4 binary images with the given latent family."""
    pyro.set_rng_seed(seed)
    overrides = [f"model.latent.name={latent}", f"model.latent_dim={latent_dim}", "model.data_init=false",
                 *[f"{k}={v}" for k, v in SMALL.items()], *[f"model.latent.{k}={v}" for k, v in options.items()]]
    vae = VAE.from_config(load_config("quickstart", overrides), (1, 4, 4), 0)
    with torch.no_grad():  # a decoder far from uniform, so log p(x) depends on z
        for p in vae.decoder.parameters():
            p.mul_(4.0)
    return vae


def binary_images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, 1, 4, 4), 0.3), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- the config

def test_the_latent_family_sets_prior_and_guide_and_the_saved_config_names_it_once():
    spec = load_config("quickstart", ["model.latent.name=categorical", "model.latent_dim=40",
                                      "model.latent.groups=4"])
    assert (spec.model.prior.name, spec.model.prior.options) == ("categorical", {"groups": 4, "learned": False})
    assert (spec.model.guide.name, spec.model.guide.options) == ("categorical", {"groups": 4})
    text = config_text(spec)
    assert "latent:" in text and "\n  prior:" not in text and "\n  guide:" not in text
    again = load_config(spec.to_dict(), ["model.latent.groups=8"])  # one option reaches prior and guide
    assert again.model.prior.options["groups"] == again.model.guide.options["groups"] == 8
    assert "latent:" not in config_text(load_config("quickstart"))  # Gaussian configs read as before


def test_an_explicit_prior_or_guide_is_kept_and_one_on_another_space_is_refused():
    spec = load_config("quickstart", ["model.latent.name=bernoulli", "model.prior.name=bernoulli",
                                      "model.prior.learned=false"])
    assert spec.model.prior.options == {"learned": False} and spec.model.guide.name == "bernoulli"
    bad = load_config("quickstart", ["model.prior.name=bernoulli"])  # Gaussian guide left at its default
    with pytest.raises(PyrovaeError, match="lives on boolean latents but model.guide: guide 'diagonal_normal' "
                                           "on real"):
        VAE.from_config(bad, (1, 4, 4), 0)
    groups = load_config("quickstart", ["model.latent.name=categorical", "model.latent_dim=24",
                                        "model.latent.groups=6", "model.guide.name=categorical",
                                        "model.guide.groups=4"])
    with pytest.raises(PyrovaeError, match=r"groupedonehot\(6, 4\) latents but .* on groupedonehot\(4, 6\)"):
        VAE.from_config(groups, (1, 4, 4), 0)
    with pytest.raises(PyrovaeError, match="need model.latent_dim = groups x classes"):
        VAE.from_config(load_config("quickstart", ["model.latent.name=categorical", "model.latent_dim=30"]),
                        (1, 4, 4), 0)


def test_a_linear_network_is_an_mlp_without_hidden_layers():
    spec = load_config("sbn_mnist")
    vae = VAE.from_config(spec, (1, 28, 28), 0)
    assert spec.model.encoder.options["hidden"] == [] and len(vae.encoder.body) == 0
    assert vae.encoder.head.weight.shape == (200, 784) and vae.decoder.head.weight.shape == (784, 200)


# ----------------------------------------------------------------------------- distributions

@pytest.mark.parametrize("latent, dim, options", [("bernoulli", 5, {}), ("categorical", 6, {"groups": 2})])
def test_guide_prior_and_their_kl_agree_with_sums_over_every_configuration(latent, dim, options):
    vae = small_vae(latent, dim, learned_prior=True, **options)
    with torch.no_grad():
        vae.prior.logits.normal_()
    x = binary_images(3)
    q, p = vae.posterior(x), vae.prior()
    z = p.enumerate_support(expand=False).reshape(-1, 1, dim)
    assert z.shape[0] == configuration_count(vae) == (2 ** 5 if latent == "bernoulli" else 3 ** 2)
    log_q, log_p = q.log_prob(z), p.log_prob(z)
    assert torch.allclose(torch.logsumexp(log_q, 0), torch.zeros(3), atol=1e-5)  # q sums to one
    assert torch.allclose(torch.logsumexp(log_p, 0), torch.zeros(()), atol=1e-5)
    kl = (log_q.exp() * (log_q - log_p)).sum(0)
    assert torch.allclose(torch.distributions.kl_divergence(q, p.expand((3,))), kl, atol=1e-5)
    if latent == "bernoulli":
        assert isinstance(q, FactorizedBernoulli)
        reference = torch.distributions.Bernoulli(logits=vae.encoding(x)).log_prob(z).sum(-1)
        assert torch.allclose(log_q, reference, atol=1e-5)
    else:
        assert isinstance(q, GroupedOneHotCategorical) and q.groups == 2


# ----------------------------------------------------------------------------- exact evaluation

@pytest.mark.parametrize("latent, dim, options", [("bernoulli", 6, {}), ("categorical", 9, {"groups": 3})])
def test_exact_log_marginal_is_the_sum_over_configurations_and_importance_sampling_agrees(latent, dim, options):
    vae = small_vae(latent, dim, **options)
    x = binary_images(4)
    exact = exact_log_marginal(vae, x, max_memory=20_000)  # a bound small enough to force chunks
    z = vae.prior().enumerate_support(expand=False).reshape(-1, 1, dim)
    with torch.no_grad():
        direct = torch.logsumexp(vae.prior().log_prob(z) + vae.decode(z).log_prob(x), 0)
    assert torch.allclose(exact, direct.double(), atol=1e-4)
    result = importance_sample(vae, x, num_samples=4000, seed=0)
    t = (result.log_marginal.value - exact) / result.log_marginal.std_error
    assert t.abs().max() < 4, t  # the delta-method error; the estimate's bias is far smaller here


def test_exact_enumeration_refuses_large_and_continuous_latent_spaces():
    with pytest.raises(PyrovaeError, match="2097152 configurations, more than 4096"):
        exact_log_marginal(small_vae("bernoulli", 21), binary_images(1))
    with pytest.raises(PyrovaeError, match="needs discrete latents"):
        exact_log_marginal(small_vae("gaussian", 2), binary_images(1))


def test_seeded_importance_sampling_of_a_point_does_not_depend_on_its_neighbours():
    vae = small_vae("bernoulli", 8)
    x = binary_images(3)
    together = importance_sample(vae, x, num_samples=50, seed=3, indices=[10, 11, 12])
    alone = importance_sample(vae, x[1:2], num_samples=50, seed=3, indices=[11])
    # the same draws (a different draw moves the estimate by about its error, 0.5 nats here); the log-weights
    # agree to float32 rounding of the networks run on batches of another size
    assert torch.allclose(together.log_marginal.value[1:2], alone.log_marginal.value, rtol=0, atol=1e-5)


def test_a_widened_proposal_needs_a_gaussian_guide():
    from pyrovae.evaluation.importance import Proposal

    with pytest.raises(PyrovaeError, match="widened or Student-t proposal is built from a diagonal Gaussian guide"):
        importance_sample(small_vae("bernoulli", 4), binary_images(2), num_samples=10, seed=0,
                          proposal=Proposal(scale=2.0))


def test_methods_that_move_z_continuously_refuse_discrete_latents_in_one_line():
    vae, x = small_vae("bernoulli", 2), binary_images(1)
    calls = [lambda: annealed_importance_sample(vae, x, steps=10, chains=2),
             lambda: bidirectional_monte_carlo(vae, num_points=1, steps=10, chains=2),
             lambda: mcmc_posterior(vae, x, num_samples=10, warmup_steps=5),
             lambda: grid_posterior(vae, x),
             lambda: quadrature_log_marginal(vae, x),
             lambda: optimal_gaussian(vae, x, steps=2),
             lambda: inspect_posterior(vae, x, num_samples=10, warmup_steps=5),
             lambda: appendix_d_log_marginal(vae, x)]
    for call in calls:
        with pytest.raises(PyrovaeError) as info:
            call()
        message = str(info.value)
        assert "needs continuous latents" in message and "importance sampling with q" in message
        assert "\n" not in message


# ----------------------------------------------------------------------------- training

def _straight_and_resumed(tmp_path, config, data, overrides):
    straight = load_config(config, tiny_overrides(**overrides, **{"train.epochs": 2}))
    train(straight, tmp_path / "straight", data=data)
    train(load_config(config, tiny_overrides(**overrides, **{"train.epochs": 1})), tmp_path / "resumed", data=data)
    pyro.set_rng_seed(999)  # whatever happens in between must not matter
    train(load_config(tmp_path / "resumed", ["train.epochs=2"]), tmp_path / "resumed", resume=True, data=data)
    return load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "resumed")


@pytest.mark.parametrize("config, overrides", [
    ("sbn_mnist", {"train.estimator.name": "score_nn_baseline"}),
    ("categorical_mnist", {"model.latent.groups": 2, "train.estimator.name": "vimco"}),
])
def test_the_discrete_configs_train_and_resume_bit_identically(tmp_path, mnist_data, config, overrides):
    a, b = _straight_and_resumed(tmp_path, config, mnist_data, overrides)
    assert a["epoch"] == b["epoch"] == 2
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    prior = a["model"]["prior.logits"]
    if config == "sbn_mnist":
        assert prior.abs().sum() > 0  # the learned Bernoulli prior moved from zero
    else:
        assert torch.equal(prior, torch.zeros_like(prior))  # the uniform categorical prior is a buffer


def test_sbn_trains_from_the_command_line_and_its_evaluation_checks_itself_against_enumeration(tmp_path):
    run = tmp_path / "sbn"
    settings = tiny_overrides(**{"model.latent_dim": 6, "train.estimator.name": "vimco",
                                 "train.estimator.num_particles": 3})
    args = ["train", "sbn_mnist", "--quiet", "--out", str(run)]
    for item in settings:
        args += ["--set", item]
    assert main(args) == 0
    figures = {p.name for p in (run / "figures").iterdir()}
    assert {"reconstructions.png", "samples.png"} <= figures and "manifold.png" not in figures
    summary = evaluate_run(run, max_points=20, num_samples=2000, seed=0)
    reference = summary["reference"]
    assert reference["method"] == "enumeration"
    difference = reference["is_minus_reference"]
    assert abs(difference["mean"]) < 4 * difference["std_error_of_mean"] + 1e-9
    assert summary["iwae"][0]["mean"] < reference["mean"]  # the ELBO lies below the exact log p(x)
    with pytest.raises(PyrovaeError, match="AIS .* needs continuous latents"):
        evaluate_run(run, method="ais", max_points=2, steps=10, chains=2)


# ----------------------------------------------------------------------------- the benchmark scripts

def test_the_budget_limited_run_is_recorded_and_reported(tmp_path, monkeypatch):
    """reproduce.py trains its steps (rounded up to whole epochs) in one call and, asked for fewer
    steps than the run has, records it as it stands; report.py sets the test ELBO beside NVIL's."""
    import importlib.util
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks" / "discrete"

    def script(name):
        spec = importlib.util.spec_from_file_location(f"discrete_{name}", folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    overrides = [f"--set={item}" for item in tiny_overrides(**{"model.latent_dim": 8, "data.train_size": 200})]
    arguments = ["--out", str(tmp_path / "run"), "--test-points", "5", "--samples", "20",
                 "--results", str(tmp_path / "results"), *overrides]
    reproduce, report = script("reproduce"), script("report")
    reproduce.main(["sbn_mnist", "--steps", "3", *arguments])  # 200 points in batches of 100: 2 epochs
    (result,) = report.load_results(tmp_path / "results")
    assert (result["epochs"], result["steps"], result["epochs_this_call"]) == (2, 4, 2)
    assert [row["step"] for row in result["curve"]] == [2, 4]
    assert result["test"]["points"] == 5 and result["test"]["elbo"] <= result["test"]["log_marginal"] + 1e-9
    assert result["test"]["elbo_std_error"] > 0
    reproduce.main(["sbn_mnist", "--steps", "2", *arguments])
    (again,) = report.load_results(tmp_path / "results")
    assert again["curve"] == result["curve"]  # nothing trained; the time is the call's that trained it
    assert (again["epochs_this_call"], again["seconds_this_call"]) == (2, result["seconds_this_call"])
    text = report.section([result])
    assert "| `sbn_mnist` | nvil | 4 (2) |" in text and f"{result['test']['elbo']:.2f}" in text
    nvil = report.comparison_rows([result])[0]
    test = result["test"]
    assert nvil[2:5] == ["-113.1", "test ELBO", f"{test['elbo']:.2f} ± {test['elbo_std_error']:.2f}"]
    assert nvil[5] == f"{result['test']['elbo'] + 113.1:+.2f}"
    report.curve_figure([result], tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0


def _every_binary_estimator():
    from pyrovae.inference.estimators import ESTIMATORS, handles

    return [name for name in ESTIMATORS.names() if handles(ESTIMATORS.build(name), "bernoulli")]


@pytest.mark.slow
@pytest.mark.parametrize("estimator", _every_binary_estimator())
def test_every_binary_estimator_trains_sbn_mnist_from_the_command_line_and_resumes_bit_identically(tmp_path,
                                                                                                      estimator):
    settings = tiny_overrides(**{"model.latent_dim": 6, "train.estimator.name": estimator,
                                 "train.batch_size": 50, "data.train_size": 200})

    def run(folder, epochs, *extra):
        args = ["train", *extra, "--quiet"]
        for item in [*settings, f"train.epochs={epochs}"]:
            args += ["--set", item]
        assert main(args) == 0

    run(tmp_path / "straight", 2, "sbn_mnist", "--out", str(tmp_path / "straight"))
    run(tmp_path / "resumed", 1, "sbn_mnist", "--out", str(tmp_path / "resumed"))
    pyro.set_rng_seed(999)  # whatever happens in between must not matter
    assert main(["train", str(tmp_path / "resumed"), "--resume", "--quiet", "--set", "train.epochs=2"]) == 0
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "resumed")
    assert a["epoch"] == b["epoch"] == 2
    assert [m["valid_elbo"] for m in a["metrics"]] == [m["valid_elbo"] for m in b["metrics"]]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["estimator"].keys() == b["estimator"].keys()
    first, last = a["metrics"][0]["valid_elbo"], a["metrics"][-1]["valid_elbo"]
    assert math.isfinite(first) and math.isfinite(last)
