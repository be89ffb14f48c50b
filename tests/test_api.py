"""The Python API: the commands as functions, the same run folders, short results."""

import json

import pytest
import torch

import pyrovae
from pyrovae.api import Evaluation
from pyrovae.cli import main
from pyrovae.errors import PyrovaeError
from pyrovae.evaluation.references import LinearGaussian

FAST = ["train.epochs=2", "train.progress=false", "train.device=cpu", "data.num_points=600"]


def test_train_writes_the_folder_the_cli_writes_and_returns_a_short_summary(tmp_path, one_thread, capsys):
    run = pyrovae.train("linear_gaussian", out=tmp_path / "api", overrides=FAST)
    assert main(["train", "linear_gaussian", "--out", str(tmp_path / "cli"), *sum((["--set", o] for o in FAST), [])]) == 0
    capsys.readouterr()
    files = {p.relative_to(tmp_path / "api") for p in (tmp_path / "api").rglob("*") if "lock" not in p.name}
    assert files == {p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*") if "lock" not in p.name}
    assert (tmp_path / "api" / "metrics.csv").read_text().count("\n") == 3
    text = repr(run)
    assert text.startswith(f"Run('{tmp_path / 'api'}': linear_gaussian, 2 of 2 epochs") and len(text) < 200
    assert "tensor" not in text + repr(run.data) and len(repr(run.data)) < 400
    # The same parameters from the same config and seed, whichever way it was trained.
    cli_run = pyrovae.load(tmp_path / "cli")
    for (name, a), (_, b) in zip(run.vae.state_dict().items(), cli_run.vae.state_dict().items()):
        assert torch.equal(a, b), name
    assert run.vae.sample(16).shape == (16, 5)
    loc, scale = run.vae.encode(run.data.test.x[:3])
    assert loc.shape == scale.shape == (3, 2)


def test_evaluate_a_random_subset_and_say_which(tmp_path, one_thread):
    run = pyrovae.train("linear_gaussian", out=tmp_path / "run", overrides=FAST)
    ev = pyrovae.evaluate(run, num_samples=50, max_points=20, seed=3, elbo_particles=2)
    indices = ev["subset"]["indices"]
    assert len(indices) == 20 == len(set(indices)) and indices == sorted(indices) and indices != list(range(20))
    assert max(indices) < ev["subset"]["of"] == 60
    assert pyrovae.evaluate(run, num_samples=50, max_points=20, seed=3, elbo_particles=2)["subset"] == ev["subset"]
    # The reported numbers are over exactly those test points: their closed-form log p(x).
    assert ev["reference"]["method"] == "closed form"
    exact = LinearGaussian.from_vae(run.vae).log_marginal(run.data.test.x[indices]).mean()
    assert ev["reference"]["mean"] == pytest.approx(float(exact), rel=1e-5)
    text = repr(ev)
    assert "20 of 60 points chosen at random (seed 3" in text and len(text) < 300
    report = (tmp_path / "run" / "report.md").read_text()
    assert "### test split: 20 of 60 points chosen at random (seed 3; their indices are in evaluation.json)" in report
    everything = pyrovae.evaluate(run, num_samples=50, elbo_particles=2)
    assert "all 60 points" in repr(everything)
    assert json.loads((tmp_path / "run" / "evaluation.json").read_text())["test"]["subset"]["chosen"] == "all"


def test_variance_and_report_from_python(tmp_path, one_thread):
    run = pyrovae.train("linear_gaussian", out=tmp_path / "run", overrides=FAST)
    result = pyrovae.variance(run, estimators=["pathwise", "score"], draws=10, batch_size=20)
    assert result.encoder_variance("score") > result.encoder_variance("pathwise")
    assert repr(result) == f"VarianceResult('{tmp_path / 'run'}': pathwise, score at epoch(s) 2)"
    (tmp_path / "run" / "report.md").unlink()
    report = pyrovae.report(run)
    assert "## Variance" in report.read_text() and "## Training" in report.read_text()


def test_api_mistakes_are_one_line_errors(tmp_path):
    with pytest.raises(PyrovaeError, match="no run folder"):
        pyrovae.evaluate(tmp_path / "missing")
    with pytest.raises(PyrovaeError, match="overrides must be a list"):
        pyrovae.train("linear_gaussian", out=tmp_path / "x", overrides=3)


def test_every_evaluation_method_prints_a_one_line_summary(tmp_path):
    subset = {"chosen": "all", "of": 3}
    common = {"split": "test", "num_points": 3, "subset": subset}
    estimate = {"mean": -90.123, "std_error": 0.456, "mc_error_of_mean": 0.0123}
    shown = {
        "is": repr(Evaluation(tmp_path, {**common, "method": "is", "num_samples": 500, "log_marginal": estimate})),
        "ais": repr(Evaluation(tmp_path, {**common, "method": "ais", "steps": 200, "chains": 16,
                                          "log_marginal": estimate})),
        "bdmc": repr(Evaluation(tmp_path, {**common, "method": "bdmc", "split": "simulated", "steps": 100, "chains": 4,
                                           "lower": {"mean": -91.5}, "upper": {"mean": -91.25}})),
    }
    both = "log p(x) = -90.12 ± 0.46 nats (± over data points; Monte Carlo error 0.012)"
    assert f"K = 500: {both}" in shown["is"]
    assert f"AIS, 200 steps x 16 chains: {both}" in shown["ais"]
    untrusted = {**estimate, "mc_error_trusted": False}
    assert "(± over data points; Monte Carlo error unknown)" in repr(
        Evaluation(tmp_path, {**common, "method": "is", "num_samples": 500, "log_marginal": untrusted}))
    assert "BDMC, 100 steps x 4 chains: log p(x) between -91.50 and -91.25 nats" in shown["bdmc"]
    assert all("\n" not in text and "all 3 points" in text for text in shown.values())
