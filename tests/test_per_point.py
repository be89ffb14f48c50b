"""Every evaluation writes its per-point results beside evaluation.json, and the report tells
the standard error over data points from the Monte Carlo error."""

import json
import math

import numpy as np
import pytest

import pyrovae
from pyrovae.runs.csvlog import read_rows
from pyrovae.runs.evaluations import EVALUATION


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory, one_thread):
    folder = tmp_path_factory.mktemp("per_point") / "linear"
    pyrovae.train("linear_gaussian", out=folder, overrides=["train.epochs=2", "train.progress=false",
                                                            "train.device=cpu"])
    return folder


def _column(rows, name):
    return np.array([float(r[name]) for r in rows])


def test_importance_sampling_writes_each_points_estimate_error_ess_and_khat(linear_run):
    ev = pyrovae.evaluate(linear_run, num_samples=300, max_points=40, elbo_particles=2)
    s = ev.summary
    assert s["per_point_file"] == "evaluation_test.csv"
    assert json.loads((linear_run / EVALUATION).read_text())["test"]["per_point_file"] == "evaluation_test.csv"
    rows = read_rows(linear_run / "evaluation_test.csv")
    assert [int(r["index"]) for r in rows] == s["subset"]["indices"]
    lp, err = _column(rows, "log_marginal"), _column(rows, "mc_error")
    assert lp.mean() == pytest.approx(s["log_marginal"]["mean"], abs=1e-9)
    assert lp.std(ddof=1) / math.sqrt(40) == pytest.approx(s["log_marginal"]["std_error"], rel=1e-9)
    assert math.sqrt((err ** 2).sum()) / 40 == pytest.approx(s["log_marginal"]["mc_error_of_mean"], rel=1e-9)
    assert np.array_equal(_column(rows, "iwae_300"), lp)  # IWAE_K with all K draws is the estimate itself
    assert _column(rows, "elbo").mean() == pytest.approx(s["iwae"][0]["mean"], abs=1e-9)
    ess, khat = _column(rows, "ess"), _column(rows, "pareto_khat")
    assert ess.min() == pytest.approx(s["ess"]["min"]) and (ess <= 1).all() and (ess > 0).all()
    assert int((khat > 0.7).sum()) == s["unreliable"]["count"]
    assert np.array_equal(ev.per_point["log_marginal"], lp)
    report = (linear_run / "report.md").read_text()
    assert "importance sampled (K = 300): mean ± standard error over data points" in report
    assert "`evaluation_test.csv`" in report
    if s["log_marginal"]["mc_error_trusted"]:
        assert "Monte Carlo error (of the sampling) per point (mean) / of the mean" in report
        assert "(± over data points; Monte Carlo error " in repr(ev)
    else:  # too many unreliable points (k-hat > 0.7): no Monte Carlo error is given
        assert "(± over data points; Monte Carlo error unknown)" in repr(ev)


def test_ais_and_bdmc_write_theirs_too(linear_run):
    ais = pyrovae.evaluate(linear_run, method="ais", steps=20, chains=4, max_points=10).summary
    rows = read_rows(linear_run / ais["per_point_file"])
    assert ais["per_point_file"] == "evaluation_test_ais.csv" and len(rows) == 10
    assert list(_column(rows, "log_marginal")) == ais["per_point"]["log_marginal"]
    assert list(_column(rows, "mc_error")) == ais["per_point"]["std_error"]
    bdmc = pyrovae.evaluate(linear_run, method="bdmc", steps=10, chains=4, simulated=6).summary
    rows = read_rows(linear_run / "evaluation_simulated_bdmc.csv")
    assert bdmc["per_point_file"] == "evaluation_simulated_bdmc.csv" and len(rows) == 6
    np.testing.assert_allclose(_column(rows, "gap"), _column(rows, "upper") - _column(rows, "lower"), atol=1e-12)
    assert list(_column(rows, "lower")) == bdmc["per_point"]["lower"]
