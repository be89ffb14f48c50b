"""``pyrovae evaluate``: the report a run folder gets, and the errors a user can make."""

import hashlib
import json
import math
import os
import shlex
from pathlib import Path

import pyro
import pytest
from conftest import tiny_overrides

os.environ.setdefault("PYROVAE_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

from pyrovae import load_config  # noqa: E402
from pyrovae.cli import main  # noqa: E402
from pyrovae.commands.evaluate import evaluate  # noqa: E402
from pyrovae.commands.train import train  # noqa: E402
from pyrovae.components.datasets import load_data  # noqa: E402
from pyrovae.errors import PyrovaeError, PyrovaeWarning  # noqa: E402
from pyrovae.evaluation import evaluate as evaluate_module  # noqa: E402
from pyrovae.evaluation.blocks import sample_in_blocks  # noqa: E402
from pyrovae.evaluation.evaluate import bits_per_dim, bound_sizes  # noqa: E402
from pyrovae.evaluation.references import exact_log_marginal  # noqa: E402
from pyrovae.model import VAE  # noqa: E402
from pyrovae.reports.markdown import REPORT, update_section  # noqa: E402
from pyrovae.runs.evaluations import EVALUATION  # noqa: E402
from pyrovae.runs.files import write_atomic  # noqa: E402
from pyrovae.runs.loading import load_run  # noqa: E402

QUIET = ["train.progress=false", "train.device=cpu"]


def trained_run(folder: Path, config: str, overrides) -> Path:
    pyro.set_rng_seed(0)
    train(load_config(config, [*overrides, *QUIET]), folder)
    return folder


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """A 2-D latent VAE trained for one epoch on 500 binarized MNIST digits."""
    return trained_run(tmp_path_factory.mktemp("runs") / "mnist", "quickstart",
                       ["data.train_size=500", "model.latent_dim=2", "model.encoder.hidden=[32]",
                        "model.decoder.hidden=[32]", "train.epochs=1"])


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory):
    return trained_run(tmp_path_factory.mktemp("runs") / "linear", "linear_gaussian", ["train.epochs=2"])


def test_evaluate_saves_the_full_report_with_consistent_numbers(mnist_run):
    update_section(mnist_run, "Training", "kept as it was")
    s = evaluate(mnist_run, num_samples=200, max_points=20, quadrature=True)
    assert s["split"] == "test" and s["num_points"] == 20 and s["num_samples"] == 200
    assert [b["k"] for b in s["iwae"]] == [1, 10, 100, 200]
    means = [b["mean"] for b in s["iwae"]]
    assert means == sorted(means) and means[-1] == s["log_marginal"]["mean"]
    assert s["elbo"]["importance_samples"] == means[0]
    assert -(s["rate"] + s["distortion"]) == pytest.approx(means[0], abs=1e-9)  # ELBO = -(rate + distortion)
    assert s["gap"]["mean"] == pytest.approx(means[-1] - means[0], abs=1e-9) and s["gap"]["mean"] > 0
    for name in ("pathwise", "analytic_kl"):  # Pyro's estimators, noisier, agree with the K-sample ELBO
        assert abs(s["elbo"][name] - means[0]) < 1.0
    assert 0 < s["ess"]["min"] <= s["ess"]["median"] <= 1 and 0 < s["ess"]["mean"] <= 1
    assert 0 <= s["pareto_khat"]["share_above_0.7"] <= 1 and math.isfinite(s["pareto_khat"]["mean"])
    assert s["active_units"]["latent_dim"] == 2 and 0 <= s["active_units"]["count"] <= 2
    assert s["bits_per_dim"] is None  # binary data: nats
    ref = s["reference"]
    assert ref["method"] == "quadrature" and abs(ref["is_minus_reference"]["mean"]) < 0.2

    saved = json.loads((mnist_run / EVALUATION).read_text())
    assert saved["test"]["log_marginal"] == s["log_marginal"]
    report = (mnist_run / REPORT).read_text()
    assert "## Evaluation" in report and "kept as it was" in report  # other sections stay
    assert "IWAE_100" in report and "q(z\\|x)" in report
    assert (mnist_run / "figures" / "bounds_vs_k_test.png").stat().st_size > 1000


def test_each_split_gets_its_own_entry(mnist_run):
    evaluate(mnist_run, split="valid", num_samples=20, max_points=10)
    evaluate(mnist_run, split="train", num_samples=20, max_points=10)
    saved = json.loads((mnist_run / EVALUATION).read_text())
    assert {"valid", "train"} <= set(saved)
    report = (mnist_run / REPORT).read_text()
    assert "### valid split" in report and "### train split" in report
    assert report.count("<!-- section: Evaluation -->") == 1


def test_a_linear_gaussian_run_is_checked_against_its_closed_form(linear_run):
    s = evaluate(linear_run, num_samples=2000, max_points=100)
    ref = s["reference"]
    assert ref["method"] == "closed form" and ref["error_estimate_max"] == 0
    # Importance sampling is biased low, however poor the briefly trained guide.
    assert ref["is_minus_reference"]["mean"] < 3 * s["log_marginal"]["mc_error_of_mean"]
    assert ref["mean"] == pytest.approx(float(exact_log_marginal(load_run(linear_run)[1], _evaluated_x(linear_run, s)).mean()))
    assert s["bits_per_dim"] == pytest.approx(-s["log_marginal"]["mean"] / (5 * math.log(2)))
    assert "density" in s["bits_per_dim_formula"]


def test_ais_and_bdmc_get_their_own_entries_checked_against_the_closed_form(linear_run):
    ais = evaluate(linear_run, method="ais", steps=50, chains=8, max_points=20)
    diff = ais["reference"]["ais_minus_reference"]
    assert ais["reference"]["method"] == "closed form" and abs(diff["mean"]) < 3 * diff["std_error_of_mean"]
    assert len(ais["per_point"]["log_marginal"]) == 20 and 0.5 < ais["accept_rate"] < 0.8
    bdmc = evaluate(linear_run, method="bdmc", steps=20, chains=4, simulated=10)
    assert bdmc["split"] == "simulated" and bdmc["num_points"] == 10
    assert bdmc["lower"]["mean"] - 3 * bdmc["lower"]["mc_error_of_mean"] < bdmc["reference"]["mean"]
    assert bdmc["upper"]["mean"] + 3 * bdmc["upper"]["mc_error_of_mean"] > bdmc["reference"]["mean"]
    saved = json.loads((linear_run / EVALUATION).read_text())
    assert {"test (ais)", "simulated (bdmc)"} <= set(saved)
    report = (linear_run / REPORT).read_text()
    assert "AIS, 50 steps" in report and "BDMC, 20 steps" in report
    assert "upper bound: reverse AIS" in report
    # the report is made again from the folder's files, AIS and BDMC sections included
    (linear_run / REPORT).unlink()
    assert main(["report", str(linear_run)]) == 0
    assert (linear_run / REPORT).read_text() == report


def test_the_headline_withholds_the_monte_carlo_error_when_many_points_are_unreliable(linear_run):
    """A Student-t proposal with one degree of freedom and a tiny scale puts the weights'
    tail on nearly every point: the report says so instead of giving an error."""
    s = evaluate(linear_run, num_samples=500, max_points=20, proposal_scale=0.2, proposal_df=1.0)
    assert s["unreliable"]["share"] > 0.1 and not s["log_marginal"]["mc_error_trusted"]
    report = (linear_run / REPORT).read_text()
    assert "not known" in report and "Student-t (1 degrees of freedom)" in report
    wide = evaluate(linear_run, num_samples=500, max_points=20, proposal_scale=2.0)
    assert wide["unreliable"]["share"] < s["unreliable"]["share"] / 2  # a wider proposal: lighter-tailed weights
    assert wide["log_marginal"]["mc_error_trusted"] == (wide["unreliable"]["share"] <= 0.1)


def _evaluated_x(run, summary):
    """The test points an evaluation chose (at random, their indices recorded)."""
    return load_data(load_config(run).data).test.x[summary["subset"]["indices"]]


def test_bits_per_dimension_follow_the_likelihood():
    x = (pyro.distributions.Uniform(0, 1).sample((4, 1, 2, 2)) * 255).round() / 255
    spec = load_config("quickstart", ["model.likelihood.name=discretized_logistic"])
    discrete = VAE.from_config(spec, data_shape=(1, 2, 2), num_classes=0)
    assert bits_per_dim(-4 * math.log(2), discrete, x)[0] == pytest.approx(1.0)
    spec = load_config("quickstart", ["model.likelihood.name=gaussian"])
    density = VAE.from_config(spec, data_shape=(1, 2, 2), num_classes=0)
    assert bits_per_dim(4 * math.log(255), density, x)[0] == pytest.approx(0.0)


@pytest.mark.parametrize("k, sizes", [(1, [1]), (100, [1, 10, 100]), (5000, [1, 10, 100, 1000, 5000])])
def test_bound_sizes_are_powers_of_ten_up_to_k(k, sizes):
    assert bound_sizes(k) == sizes


def test_the_command_prints_and_saves_the_report(mnist_run, capsys):
    assert main(["evaluate", str(mnist_run), "--num-samples", "50", "--max-points", "5", "--quiet",
                 "--max-memory", "256MB"]) == 0
    out = capsys.readouterr().out
    assert "log p(x), importance sampled (K = 50)" in out and "IWAE_10" in out and str(EVALUATION) in out


def test_gap_points_split_the_gap_of_the_first_evaluated_points(mnist_run, capsys):
    """``--gap-points N``: the inference gaps of the first N evaluated points, against this
    evaluation's log p(x), printed and saved; the two gaps add up to log p(x) - ELBO(q)."""
    assert main(["evaluate", str(mnist_run), "--num-samples", "100", "--max-points", "6", "--gap-points", "3",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    report = (mnist_run / "report.md").read_text()
    for text in (out, report):  # printed, and in the report's Evaluation section with its command
        assert "gaps, first 3 points" in text
        assert "approximation gap log p(x) - ELBO(q*)" in text and "amortization gap ELBO(q*) - ELBO(q)" in text
    saved = json.loads((mnist_run / EVALUATION).read_text())["test"]
    gaps = saved["gaps"]
    assert {"log_marginal", "elbo_q", "elbo_qstar", "approximation_gap", "amortization_gap", "total_gap",
            "khat_median", "ess_mean"} <= set(gaps)
    assert gaps["points"] == 3 and saved["num_points"] == 6
    from pyrovae.reports.evaluation_report import _rerun_command  # what the report offers once it is out of date
    assert "--gap-points 3" in _rerun_command(mnist_run, saved)
    mean = {key: gaps[key]["mean"] for key in ("log_marginal", "elbo_q", "elbo_qstar", "approximation_gap",
                                                "amortization_gap", "total_gap")}
    assert mean["approximation_gap"] + mean["amortization_gap"] == pytest.approx(mean["total_gap"], abs=1e-9)
    assert mean["total_gap"] == pytest.approx(mean["log_marginal"] - mean["elbo_q"], abs=1e-9)
    assert mean["approximation_gap"] == pytest.approx(mean["log_marginal"] - mean["elbo_qstar"], abs=1e-9)
    per_point = (mnist_run / saved["per_point_file"]).read_text().splitlines()
    column = per_point[0].split(",").index("log_marginal")
    first = [float(row.split(",")[column]) for row in per_point[1:4]]
    assert mean["log_marginal"] == pytest.approx(sum(first) / 3, abs=1e-9)  # the first 3 of the 6 evaluated
    assert gaps["amortization_gap"]["mean"] > -3 * gaps["amortization_gap"]["std_error"]  # q* is fitted from q


@pytest.mark.parametrize("args, message", [
    (["{run}", "--gap-points", "-1"], "--gap-points must be 0 (no gap decomposition) or a positive integer"),
    (["{run}", "--max-points", "5", "--gap-points", "6"], "--gap-points 6 is more than the 5 points evaluated"),
    (["{run}", "--method", "bdmc", "--gap-points", "2"], "which --method bdmc does not estimate"),
    (["no/such/run"], "no run folder"),
    (["{run}", "--max-memory", "plenty"], "512MB"),
    (["{run}", "--split", "tset"], "did you mean 'test'"),
    (["{run}", "--num-samples", "0"], "positive integer"),
    (["{run}", "--method", "ais", "--steps", "1"], "at least 2 steps"),
    (["{run}", "--proposal-scale", "0"], "must be positive"),
])
def test_user_mistakes_are_one_line_errors(mnist_run, tmp_path, capsys, args, message):
    args = [a.format(run=mnist_run) for a in args]
    assert main(["evaluate", *args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyrovae: error:") and message in err and err.count("\n") == 1


def test_user_mistakes_raise_pyrovae_error(mnist_run, tmp_path):
    with pytest.raises(PyrovaeError, match="train one"):
        evaluate(tmp_path / "missing")
    with pytest.raises(PyrovaeError, match="memory bound"):
        evaluate(mnist_run, max_memory="2XB")
    with pytest.raises(PyrovaeError, match="choose one of: train, valid, test"):
        evaluate(mnist_run, split="validation")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PyrovaeError, match="config.yaml"):
        evaluate(tmp_path / "empty")


# ----------------------------------------------------------------------------- issue 25: evaluations of earlier checkpoints

def _evaluation_section(run: Path) -> str:
    report = (run / REPORT).read_text()
    return report[report.index("<!-- section: Evaluation -->"):report.index("<!-- end: Evaluation -->")]


def test_a_report_shows_no_evaluation_of_parameters_other_than_the_checkpoints(tmp_path, mnist_data, monkeypatch):
    """evaluation.json records the epoch and hash of the checkpoint it evaluated; after
    'train --resume' (or when training replaced the checkpoint during the evaluation) the
    report leaves the earlier numbers out and gives the command that evaluates the new ones."""
    run = tmp_path / "run"
    spec = load_config("quickstart", [*tiny_overrides(**{"model.latent_dim": 2}), *QUIET])
    train(spec, run, data=mnist_data)
    first = (run / "checkpoint.pt").read_bytes()
    s = evaluate(run, num_samples=20, max_points=10)
    assert s["checkpoint"] == {"epoch": 1, "sha256": hashlib.sha256(first).hexdigest()}
    assert "log p(x), importance sampled" in _evaluation_section(run)

    train(load_config(run, ["train.epochs=2"]), run, resume=True, data=mnist_data)
    section = _evaluation_section(run)
    rerun = f"pyrovae evaluate {run} --split test --num-samples 20 --max-points 10 --seed 0"
    assert "log p(x), importance sampled" not in section and "IWAE" not in section
    assert "now holds the checkpoint of epoch 2" in section and f"`{rerun}`" in section
    assert "evaluated the checkpoint of epoch 1" in section

    assert main([*shlex.split(rerun)[1:], "--quiet"]) == 0
    saved = json.loads((run / EVALUATION).read_text())["test"]["checkpoint"]
    assert saved == {"epoch": 2, "sha256": hashlib.sha256((run / "checkpoint.pt").read_bytes()).hexdigest()}
    section = _evaluation_section(run)
    assert "log p(x), importance sampled" in section and "earlier checkpoint" not in section

    def replaced_meanwhile(*args, **kwargs):  # as a training process going on in the folder would
        write_atomic(run / "checkpoint.pt", first)
        return sample_in_blocks(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "sample_in_blocks", replaced_meanwhile)
    with pytest.warns(PyrovaeWarning, match="was replaced while it was evaluated"):
        evaluate(run, num_samples=20, max_points=10)
    section = _evaluation_section(run)
    assert "log p(x), importance sampled" not in section and "now holds the checkpoint of epoch 1" in section
    assert "evaluated the checkpoint of epoch 2" in section
