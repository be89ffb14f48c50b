"""The variance laboratory: its statistics against known answers, its snapshots, and
``pyrovae variance`` end to end.

The 1-D toy of docs/estimators.md: z ~ N(0, 1), x|z ~ N(z, 1), q = N(m, s^2), z = m + s eps.
The exact ELBO gradient is d/dm = x - 2m, d/dlog s = 1 - 2 s^2; a pathwise draw of d/dm is
x - 2z (variance 4 s^2), a sticking-the-landing draw x - 2z + (z - m) / s^2 (variance
(1/s - 2s)^2, zero at the exact posterior s^2 = 1/2).
"""

import csv
import json
import math

import pyro
import pytest
import torch
from conftest import linear_gaussian_vae
from scipy.stats import norm

from pyrovae import load_config
from pyrovae.cli import main
from pyrovae.components.datasets import load_data
from pyrovae.inference.estimators import ESTIMATORS
from pyrovae.lab.gradient_stats import (
    Moments,
    Reference,
    gradient_moments,
    monte_carlo_reference,
    parameter_groups,
    reference_gradient,
    summarize,
)
from pyrovae.lab.variance import parse_estimators
from pyrovae.model import VAE
from pyrovae.runs.checkpoint import load_checkpoint
from pyrovae.runs.loading import build_vae
from pyrovae.training.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

M, LOG_S = 0.3, math.log(0.6)


def toy_vae() -> VAE:
    """The 1-D toy: decoder x = z (W = 1, b = 0, sigma = 1), encoder q = N(M, exp(LOG_S)^2)."""
    spec = load_config("linear_gaussian", ["model.latent_dim=1", "model.likelihood.sigma=1.0"])
    vae = VAE.from_config(spec, (1,), 0)
    with torch.no_grad():
        vae.decoder.head.weight.fill_(1.0)
        vae.decoder.head.bias.zero_()
        vae.encoder.head.weight.zero_()
        vae.encoder.head.bias.copy_(torch.tensor([M, LOG_S]))
    return vae


TOY_X = torch.tensor([[0.5], [-1.0], [2.0], [0.0]])


def test_exact_gradient_is_the_closed_form_on_the_toy():
    vae, x = toy_vae(), TOY_X
    s2 = math.exp(2 * LOG_S)
    elbo_gradient = -reference_gradient(vae, (x, None, 1.0), 1, 0, 0).mean  # gradient of the ELBO
    # parameters in order: encoder weight (2), encoder bias (m, log s), decoder weight, decoder bias
    n = x.shape[0]
    expected_bias = torch.tensor([(x - 2 * M).sum(), n * (1 - 2 * s2)], dtype=torch.float64)
    assert torch.allclose(elbo_gradient[2:4], expected_bias, atol=1e-5)
    assert elbo_gradient[4].item() == pytest.approx(((x - M) * M).sum().item() - n * s2, abs=1e-5)
    assert elbo_gradient[5].item() == pytest.approx((x - M).sum().item(), abs=1e-5)


@pytest.mark.parametrize("name, variance_per_point", [("pathwise", lambda s: 4 * s ** 2),
                                                      ("stl", lambda s: (1 / s - 2 * s) ** 2)],
                         ids=["pathwise", "stl"])
def test_draws_have_the_known_mean_and_variance_on_the_toy(name, variance_per_point):
    vae, x, draws = toy_vae(), TOY_X, 2000
    with pyro.validation_enabled(False):
        m = gradient_moments(ESTIMATORS.build(name), vae, (x, None, 1.0), draws, seed=0)
    # d loss / dm is minus a sum over the data points of Gaussian draws
    mean, var = m.mean[2].item(), m.var[2].item()
    true_var = variance_per_point(math.exp(LOG_S)) * x.shape[0]
    assert abs(mean + (x - 2 * M).sum().item()) < 4 * math.sqrt(true_var / draws)
    assert abs(var - true_var) < 4 * true_var * math.sqrt(2 / (draws - 1))


def test_monte_carlo_reference_agrees_with_the_exact_gradient():
    data = load_data(load_config("linear_gaussian").data)
    vae, args = linear_gaussian_vae(), (data.train.x[:20], None, 1.0)
    exact = reference_gradient(vae, args, 1, 0, 0)
    with pyro.validation_enabled(False):
        estimate = monte_carlo_reference(vae, args, 1, 20000, seed=1)
    assert estimate.kind == "pathwise average of 20000 draws"
    t = (estimate.mean - exact.mean) / estimate.var.sqrt()
    assert t.abs().max() < norm.isf(0.05 / (2 * t.numel()))


def test_summary_statistics():
    moments = Moments(torch.tensor([1.0, -2.0, 0.0, 3.0], dtype=torch.float64),
                      torch.tensor([1.0, 4.0, 0.0, 0.0], dtype=torch.float64), draws=100, seconds_per_draw=0.01)
    reference = Reference(torch.tensor([1.0, -2.0, 0.0, 2.0], dtype=torch.float64), torch.zeros(4), "test")
    s = summarize(moments, reference, torch.arange(4))
    assert s["params"] == 4 and s["trace"] == 5.0 and s["mean_variance"] == 1.25 and s["max_variance"] == 4.0
    assert s["snr"] == pytest.approx(1.0)  # |1|/1 and |-2|/2; parameters without spread are left out
    assert s["cosine"] == pytest.approx(11 / math.sqrt(14 * 9))
    assert s["max_abs_t"] == math.inf and s["biased"] == 1  # the fourth is off without noise to excuse it
    assert s["mean_t_squared"] == math.inf
    assert s["bias_threshold"] == pytest.approx(norm.isf(0.05 / 8))
    assert s["variance_x_seconds"] == pytest.approx(0.05)


def test_parameter_groups_cover_every_parameter_at_every_level():
    vae = VAE.from_config(load_config("quickstart", ["model.prior.name=learned_normal"]), (1, 28, 28), 0)
    groups = parameter_groups(vae)
    total = sum(p.numel() for p in vae.parameters())
    assert torch.equal(groups["all"], torch.arange(total))
    assert set(groups) == {"all", "encoder", "decoder", "prior", "encoder.body.0", "encoder.head",
                           "decoder.body.0", "decoder.head"}
    assert sum(len(groups[g]) for g in ("encoder", "decoder", "prior")) == total
    assert len(groups["encoder.body.0"]) == 784 * 400 + 400


def test_epoch_zero_is_where_training_starts(tmp_path):
    spec = load_config("linear_gaussian", ["train.optimizer.lr=0.0", "train.epochs=1", "train.progress=false"])
    data = load_data(spec.data)
    train(spec, tmp_path, data=data)
    trained = load_checkpoint(tmp_path)["model"]
    for key, value in build_vae(spec, data).state_dict().items():
        assert torch.equal(value, trained[key]), key


def test_estimator_labels_carry_options():
    choices = parse_estimators("pathwise, iwae:num_particles=10,score_avg_baseline:baseline_beta=0.5")
    assert [(c.label, c.name, c.options) for c in choices] == [
        ("pathwise", "pathwise", {}), ("iwae:num_particles=10", "iwae", {"num_particles": 10}),
        ("score_avg_baseline:baseline_beta=0.5", "score_avg_baseline", {"baseline_beta": 0.5})]
    assert choices[1].build().bound_particles == 10


COMMAND = ["--draws", "30", "--batch-size", "20", "--quiet", "--estimators",
           "pathwise,score_nn_baseline,iwae:num_particles=3"]


def test_variance_command_measures_snapshots_without_disturbing_training(tmp_path, capsys):
    out = tmp_path / "var"
    assert main(["variance", "linear_gaussian", "--set", "data.train_size=200", "--snapshots", "0,2",
                 "--out", str(out)] + COMMAND) == 0
    with open(out / "variance.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    groups = {"all", "encoder", "decoder", "encoder.head", "decoder.head"}
    assert len(rows) == 2 * 3 * len(groups)
    assert {(r["epoch"], r["step"]) for r in rows} == {("0", "0"), ("2", "4")}
    iwae = [r for r in rows if r["estimator"] == "iwae:num_particles=3"]
    assert all(r["bound_particles"] == "3" and r["reference"].startswith("IWAE-3") for r in iwae)
    assert all(r["reference"].startswith("exact") for r in rows if r["estimator"] == "pathwise")
    results = json.loads((out / "variance.json").read_text())
    assert [s["epoch"] for s in results["snapshots"]] == [0, 2]
    report = (out / "report.md").read_text()
    assert "## Variance" in report and "### Epoch 0 (step 0)" in report and "### Epoch 2 (step 4)" in report
    assert (out / "figures" / "variance.png").stat().st_size > 0

    # measuring between epochs leaves the training exactly as if it had run straight through
    straight = load_config("linear_gaussian", ["data.train_size=200", "train.epochs=2", "train.progress=false"])
    train(straight, tmp_path / "straight")
    a, b = load_checkpoint(out), load_checkpoint(tmp_path / "straight")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key

    # a run folder is measured at its latest checkpoint, into its own report
    assert main(["variance", str(out), "--draws", "20", "--batch-size", "20", "--quiet",
                 "--estimators", "stl"]) == 0
    with open(out / "variance.csv", newline="") as f:
        assert {(r["epoch"], r["estimator"]) for r in csv.DictReader(f)} == {("2", "stl")}
    assert (out / "report.md").read_text().count("## Variance") == 1


@pytest.mark.parametrize("args, message", [
    (["linear_gaussian", "--estimators", "pathwsie"], "unknown estimator 'pathwsie' (did you mean 'pathwise'?)"),
    (["linear_gaussian", "--estimators", "iwae:num_particles"], "written name:key=value"),
    (["linear_gaussian", "--estimators", "iwae:k=3"], "has no option 'k'"),
    (["linear_gaussian", "--estimators", "vimco:num_particles=1"], "num_particles must be an integer >= 2"),
    (["linear_gaussian", "--snapshots", "0,x"], "--snapshots must be comma-separated epochs"),
    (["linear_gaussian", "--snapshots", "-1"], "--snapshots must list epochs >= 0"),
    (["linear_gaussian", "--draws", "1"], "--draws must be at least 2"),
])
def test_variance_command_explains_user_errors(args, message, capsys):
    assert main(["variance"] + args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_variance_command_refuses_to_overwrite_or_retrain_a_run(tmp_path, capsys):
    spec = load_config("linear_gaussian", ["data.train_size=100", "train.epochs=1", "train.progress=false"])
    train(spec, tmp_path)
    assert main(["variance", str(tmp_path), "--snapshots", "0,1"]) == 2
    assert "--snapshots and --set need a config" in capsys.readouterr().err
    assert main(["variance", "linear_gaussian", "--out", str(tmp_path)]) == 2
    assert "already holds a run" in capsys.readouterr().err


# ----------------------------------------------------------------------------- slow

@pytest.mark.slow
def test_quickstart_score_function_variance_dwarfs_pathwise_at_initialisation(mnist_data):
    spec = load_config("quickstart")
    vae = build_vae(spec, mnist_data)
    args = (mnist_data.train.x[:100], None, 1.0)
    encoder = parameter_groups(vae)["encoder"]
    with pyro.validation_enabled(False):
        traces = {name: gradient_moments(ESTIMATORS.build(name), vae, args, 100, seed=0).var[encoder].sum().item()
                  for name in ("pathwise", "score")}
    assert traces["score"] > 1e3 * traces["pathwise"]


@pytest.mark.slow
def test_score_nn_baseline_trains_quickstart_to_a_finite_improving_elbo(tmp_path, mnist_data):
    spec = load_config("quickstart", ["train.estimator.name=score_nn_baseline", "data.train_size=5000",
                                      "train.epochs=3", "train.progress=false"])
    train(spec, tmp_path, data=mnist_data)
    with open(tmp_path / "metrics.csv", newline="") as f:
        valid = [float(row["valid_elbo"]) for row in csv.DictReader(f)]
    assert all(math.isfinite(v) for v in valid) and valid[-1] > valid[0]


def test_the_report_shows_na_where_a_measurement_has_no_number(tmp_path):
    """NaN in memory and null in variance.json (how `pyrovae report` reads it back) print as n/a."""
    from pyrovae.reports.variance_report import report_body

    numbers = {"trace": 2.0, "snr": None, "mean_t_squared": float("nan"), "seconds_per_draw": 0.001,
               "variance_x_seconds": 0.002}
    entry = {"groups": {"encoder": numbers, "decoder": {**numbers, "trace": None}, "all": {"cosine": None}},
             "reference": "pathwise mean"}
    results = {"settings": {"draws": 10, "batch_size": 5, "seed": 0},
               "snapshots": [{"epoch": 0, "step": 0, "estimators": {"pathwise": entry}}]}
    body = report_body(results, tmp_path / "variance.png")
    assert "| pathwise | 2 | 1 | n/a | n/a | n/a / n/a | n/a | n/a / n/a | 1.00 | 0.002 | pathwise mean |" in body


def test_variance_never_writes_into_a_folder_of_someone_elses_files(tmp_path):
    from pyrovae.errors import PyrovaeError
    from pyrovae.lab.variance import run_variance

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "report.md").write_text("my notes")
    with pytest.raises(PyrovaeError, match="did not write"):
        run_variance("linear_gaussian", parse_estimators("pathwise"), draws=3, out=theirs, progress=False)
    assert [p.name for p in theirs.iterdir()] == ["report.md"] and (theirs / "report.md").read_text() == "my notes"


def test_single_snapshot_figure_names_the_estimators_on_its_x_axis(tmp_path, monkeypatch):
    from pyrovae.reports import variance_figures

    captured = {}
    monkeypatch.setattr(variance_figures, "save_figure", lambda fig, path: captured.setdefault("fig", fig) and path)
    rows = [{"estimator": name, "group": group, "step": 0, "trace": trace, "snr": 0.1}
            for name, trace in [("pathwise", 1.0), ("score", 1e4)] for group in ("encoder", "decoder")]
    variance_figures.variance_curves(rows, tmp_path / "variance.png")
    bottom = captured["fig"].axes[-1]
    assert [t.get_text() for t in bottom.get_xticklabels()] == ["pathwise", "score"]
    assert bottom.get_xlabel() == "estimator (all at training step 0)"
    first = captured["fig"].axes[0]
    assert [line.get_ydata()[0] for line in first.get_lines()] == [1.0, 1e4]
