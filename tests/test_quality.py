"""The published-setup configs and the resumable reproduction script of benchmarks/quality."""

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_overrides

from pyrovae import load_config
from pyrovae.errors import PyrovaeError
from pyrovae.inference.optim import iwae_stages
from pyrovae.model import VAE
from pyrovae.runs.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

QUALITY = Path(__file__).resolve().parents[1] / "benchmarks" / "quality"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"quality_{name}", QUALITY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("config, parameters", [
    # 784-300-300 gated encoder to 2 x 40 and 40-300-300-784 gated decoder: each gated
    # layer has two weight matrices and two biases.
    ("mnist_vae_standard", 2 * (784 * 300 + 300) + 2 * (300 * 300 + 300) + 300 * 80 + 80
     + 2 * (40 * 300 + 300) + 2 * (300 * 300 + 300) + 300 * 784 + 784),
    ("mnist_iwae_k50", 784 * 200 + 200 + 200 * 200 + 200 + 200 * 100 + 100
     + 50 * 200 + 200 + 200 * 200 + 200 + 200 * 784 + 784),
])
def test_published_architectures_have_the_papers_parameter_counts(config, parameters):
    vae = VAE.from_config(load_config(config), (1, 28, 28), 0)
    networks = list(vae.encoder.parameters()) + list(vae.decoder.parameters())
    assert sum(p.numel() for p in networks) == parameters


def test_the_vamp_and_mog_priors_add_500_pseudo_inputs_or_components():
    vamp = VAE.from_config(load_config("mnist_vae_vamp"), (1, 28, 28), 0)
    assert vamp.prior.pseudo_inputs.shape == (500, 1, 28, 28)
    mog = VAE.from_config(load_config("mnist_vae_mog"), (1, 28, 28), 0)
    assert mog.prior.locs.shape == (500, 40)


def test_a_reproduction_resumes_across_sittings_and_records_its_results(tmp_path):
    """The built-in quality sweeps' mechanism on a tiny config: a sitting cut short by its
    budget records curve points and a paused run; the next finishes, evaluates and records."""
    from pyrovae.sweeps import load_sweep, sweep_status
    from pyrovae.sweeps.job import run_job
    from pyrovae.sweeps.sweep import job_task, prepare_sweep

    reproduce = _script("reproduce")
    assert load_sweep(reproduce.sweep_name("mnist_vae_standard")).curve == {"every": 10, "num_samples": 500,
                                                                            "points": 1000}
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in tiny_overrides(**{"train.epochs": 3}))}
    sweep = prepare_sweep({"name": "quality_quickstart", "base": "quickstart", "set": overrides, "seeds": [0],
                           "evaluate": {"num_samples": 20}, "curve": {"every": 2, "num_samples": 20, "points": 50}},
                          tmp_path / "quickstart")
    plan = sweep.runs()[0]
    assert run_job(job_task(sweep, tmp_path / "quickstart", plan, deadline=0.0))["state"] == "paused"
    assert sweep_status(tmp_path / "quickstart")[0].state == "paused"
    run = tmp_path / "quickstart" / "runs" / plan.folder
    assert load_checkpoint(run)["epoch"] == 2
    assert run_job(job_task(sweep, tmp_path / "quickstart", plan, deadline=None))["state"] == "done"
    with open(run / "curve.csv", newline="") as f:
        curve = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in curve] == [2, 3]
    assert all(float(r["test_log_px"]) < 0 and int(r["points"]) == 50 for r in curve)
    assert float(curve[1]["wall_seconds"]) > float(curve[0]["wall_seconds"])

    record = json.loads(reproduce.record("quickstart", tmp_path / "quickstart", tmp_path / "results").read_text())
    assert record["epochs"] == 3 and record["finished"] and record["config_epochs"] == 3
    assert record["test"]["num_points"] == 10000 and record["test"]["num_samples"] == 20
    assert record["test"]["log_marginal"]["mean"] >= record["test"]["iwae"][0]["mean"]  # IWAE_20 >= IWAE_1
    assert [row["epoch"] for row in record["curve"]] == [2.0, 3.0]


def test_the_report_puts_pyrovae_beside_the_published_value():
    report = _script("report")
    lp = {"mean": -88.0, "std_error": 0.05}
    result = {"config": "mnist_iwae_k50", "epochs": 40, "config_epochs": 3280, "stopped_early": False,
              "finished": False, "wall_seconds": 3600.0, "evaluate_seconds": 600.0,
              "test": {"log_marginal": lp, "bits_per_dim": None, "num_points": 10000, "elbo": {"pathwise": -92.5}}}
    row = report._row(result)
    assert row[1:5] == ["-87.10", "-88.00 ± 0.05", "-0.90", "-92.50"]
    assert row[5] == ""  # no seed-to-seed spread measured for this config
    assert row[8:10] == ["40 of 3280 (cut short)", "60.0 min"]
    standard = report._row({**result, "config": "mnist_vae_standard"})
    assert standard[5] == "0.27 (4 seeds, 5 epochs)"  # the sweep mnist_standard_seeds, recorded in benchmarks/sweeps


def test_lr_schedules_refuse_bad_options():
    with pytest.raises(PyrovaeError, match="decay_stages must be positive"):
        iwae_stages(decay_stages=0.0)
    with pytest.raises(PyrovaeError, match="did you mean 'iwae_stages'"):
        load_config("quickstart", ["train.lr_schedule.name=iwae_stage"])
