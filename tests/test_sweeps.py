"""Sweeps: the spec and its one-line errors, run folders identical to `pyrovae train`'s, failures
recorded without stopping the sweep, budget pauses resumed exactly, and (slow) the 2 x 2 x 2-seed
acceptance sweep through the local engine and a real local Ray cluster with a worker killed mid-run."""

import csv
import json
import math
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from pyrovae.cli import main as cli_main
from pyrovae.commands.sweep import reported_job as run_job
from pyrovae.commands.sweep import resume as resume_sweep
from pyrovae.commands.sweep import sweep as run_sweep
from pyrovae.errors import PyrovaeError
from pyrovae.reports.sweep_report import results_table
from pyrovae.runs.checkpoint import load_checkpoint
from pyrovae.sweeps import load_sweep, read_results, run_folder, sweep_status
from pyrovae.sweeps.job import RUN_LOCK, read_curve
from pyrovae.sweeps.results import results_from_dict
from pyrovae.sweeps.sweep import format_status, parse_budget

# Floating-point sums depend on the number of torch threads: the reference runs use one, like
# each of the sweeps' two workers on a two-core machine.
pytestmark = pytest.mark.usefixtures("one_thread")

DATA_ROOT = os.environ["PYROVAE_DATA"]
TINY = {"data.train_size": 200, "data.root": DATA_ROOT, "model.latent_dim": 2, "model.encoder.hidden": [8],
        "model.decoder.hidden": [8], "train.epochs": 2, "train.device": "cpu"}
EVALUATE = {"num_samples": 8, "max_points": 20}


def tiny_sweep(grid, seeds=(0,), **changes):
    return {"name": "tiny", "base": "quickstart", "set": {**TINY, **changes}, "grid": grid, "seeds": list(seeds),
            "evaluate": EVALUATE}


# ----------------------------------------------------------------------------- the spec

@pytest.mark.parametrize("raw, message", [
    ({"base": "quickstart", "gird": {}}, "unknown sweep key 'gird' (did you mean 'grid'?)"),
    ({"base": "quikstart"}, "did you mean 'quickstart'?"),
    ({"base": "quickstart", "grid": {"model.latnt_dim": [3]}}, "did you mean 'model.latent_dim'?"),
    ({"base": "quickstart", "grid": {"model.prior.name": ["mog", "vampp"]}}, "prior.name=vampp: unknown prior 'vampp'"),
    ({"base": "quickstart", "grid": {"model.latent_dim": 3}}, "must be a non-empty list"),
    ({"base": "quickstart", "seeds": [0, 0]}, "lists a seed twice"),
    ({"base": "quickstart", "seeds": -1}, "must be positive"),
    ({"base": "quickstart", "evaluate": {"num_sample": 5}}, "did you mean 'num_samples'?"),
    ({"base": "quickstart", "curve": {"evry": 5}}, "did you mean 'every'?"),
    ({"base": "quickstart", "evaluate": {"method": "bdmc"}}, "evaluate.method must be one of is, ais"),
    ({"base": "quickstart", "evaluate": {"steps": 0}}, "sweep evaluate.steps must be a positive integer"),
    ({"grid": {}}, "a sweep needs a 'base'"),
    ({"base": "quickstart", "grid": {"model.latent_dim": [2, 3]}, "when": {"model.latent=2": {"train.epochs": 1}}},
     "must be GRIDKEY=VALUE with a key of the grid (model.latent_dim)"),
    ({"base": "quickstart", "grid": {"model.latent_dim": [2, 3]}, "when": {"model.latent_dim=4": {"train.epochs": 1}}},
     "4 is not a value of grid key model.latent_dim (2, 3)"),
    ({"base": "quickstart", "grid": {"model.latent_dim": [2]}, "when": {"model.latent_dim=2": {"train.epoch": 1}}},
     "did you mean 'train.epochs'?"),
])
def test_a_bad_sweep_is_one_line_saying_what_to_do(raw, message):
    with pytest.raises(PyrovaeError) as error:
        load_sweep(raw)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_runs_are_the_grid_product_with_seeds_innermost_and_validated_configs():
    spec = load_sweep(tiny_sweep({"model.prior.name": ["standard_normal", "mog"], "model.latent_dim": [2, 3]},
                                 seeds=[0, 5]))
    runs = spec.runs()
    assert [r.folder for r in runs[:3]] == ["prior=standard_normal,latent_dim=2/seed_0",
                                            "prior=standard_normal,latent_dim=2/seed_5",
                                            "prior=standard_normal,latent_dim=3/seed_0"]
    assert len(runs) == 8 and runs[-1].folder == "prior=mog,latent_dim=3/seed_5"
    last = runs[-1].config
    assert (last["model"]["prior"]["name"], last["model"]["latent_dim"], last["seed"]) == ("mog", 3, 5)
    assert last["model"]["prior"]["num_components"] == 10  # the new prior's defaults, not the old one's options
    assert last["model"]["encoder"]["hidden"] == [8] and last["train"]["progress"] is False


def test_when_ties_settings_to_one_grid_value_without_multiplying_the_grid(tmp_path):
    raw = tiny_sweep({"model.latent_dim": [2, 3], "train.estimator.name": ["pathwise", "wake_sleep"]})
    raw["when"] = {"train.estimator.name=wake_sleep": {"train.optimizer.lr": 0.0005}}
    spec = load_sweep(raw)
    rates = {r.folder: r.config["train"]["optimizer"]["lr"] for r in spec.runs()}
    assert rates == {"latent_dim=2,estimator=pathwise/seed_0": 0.001, "latent_dim=2,estimator=wake_sleep/seed_0": 0.0005,
                     "latent_dim=3,estimator=pathwise/seed_0": 0.001, "latent_dim=3,estimator=wake_sleep/seed_0": 0.0005}
    from pyrovae.sweeps.sweep import prepare_sweep

    prepare_sweep(spec, tmp_path / "s")  # stored with its 'when', and recognized as the same sweep again
    assert prepare_sweep(load_sweep(raw), tmp_path / "s").to_dict() == spec.to_dict()
    assert "when" in yaml.safe_load((tmp_path / "s" / "sweep.yaml").read_text())


def test_budget_text():
    assert parse_budget("2h") == 7200 and parse_budget("90m") == 5400 and parse_budget("1.5s") == 1.5
    with pytest.raises(PyrovaeError, match="write e.g. 90s"):
        parse_budget("two hours")


# ----------------------------------------------------------------------------- runs

def _train_reference(config: dict, out: Path) -> Path:
    """The same config trained and evaluated by the `pyrovae train` and `pyrovae evaluate` commands."""
    out.mkdir(parents=True)
    (out.parent / f"{out.name}.yaml").write_text(yaml.safe_dump(config))
    assert cli_main(["train", str(out.parent / f"{out.name}.yaml"), "--out", str(out), "--quiet"]) == 0
    assert cli_main(["evaluate", str(out), "--num-samples", str(EVALUATE["num_samples"]), "--max-points",
                     str(EVALUATE["max_points"]), "--quiet"]) == 0
    return out


def assert_same_run(run: Path, reference: Path) -> None:
    """Same parameters, optimizer state and metrics (all but wall-clock seconds)."""
    a, b = load_checkpoint(run), load_checkpoint(reference)
    for key in ("model", "best_model"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (run, key, name)
    assert a["epoch"] == b["epoch"] and a["best_valid_elbo"] == b["best_valid_elbo"]
    assert json.dumps(a["optim"], default=lambda t: t.tolist()) == json.dumps(b["optim"], default=lambda t: t.tolist())
    rows = [[{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(p / "metrics.csv"))]
            for p in (run, reference)]
    assert rows[0] == rows[1] and len(rows[0]) == a["epoch"]
    evaluations = [json.loads((p / "evaluation.json").read_text())["test"] for p in (run, reference)]
    for e in evaluations:
        e.pop("seconds")
        e["checkpoint"].pop("sha256")  # the checkpoints differ in their wall-clock seconds
    assert evaluations[0] == evaluations[1]
    assert yaml.safe_load((run / "config.yaml").read_text()) == yaml.safe_load((reference / "config.yaml").read_text())
    sections = [re.findall(r"<!-- section: (.*?) -->", (p / "report.md").read_text()) for p in (run, reference)]
    assert sections[0] == sections[1] == ["Training", "Evaluation"]


def test_local_sweep_matches_pyrovae_train_records_a_failure_and_resumes_only_what_is_left(tmp_path, capsys):
    sweep = tiny_sweep({"data.root": [DATA_ROOT, str(tmp_path / "no_data_here")]})
    statuses = run_sweep(sweep, tmp_path / "sweep", workers=2, threads=1, log=lambda line: None)
    by_root = {s.plan.point["data.root"]: s for s in statuses}
    assert by_root[DATA_ROOT].state == "done"
    failed = by_root[str(tmp_path / "no_data_here")]
    assert failed.state == "failed" and "no_data_here" in failed.error and "\n" not in failed.error

    good = run_folder(tmp_path / "sweep", {"data.root": DATA_ROOT}, 0)
    assert_same_run(good, _train_reference(by_root[DATA_ROOT].plan.config, tmp_path / "reference"))

    status = format_status(tmp_path / "sweep")
    assert "1 done, 1 failed" in status and "no_data_here" in status
    results = read_results(tmp_path / "sweep")
    assert results.points[0].n == 1 and results.points[1].n == 0
    assert results.points[0].values[0] == json.loads((good / "evaluation.json").read_text())["test"]["log_marginal"]["mean"]
    assert "| `" in (tmp_path / "sweep" / "report.md").read_text()
    stored = results_from_dict(load_sweep(tmp_path / "sweep" / "sweep.yaml"),
                               json.loads((tmp_path / "sweep" / "results.json").read_text()))
    assert results_table(stored) == results_table(results) and stored.to_dict() == results.to_dict()

    finished = (good / "checkpoint.pt").stat().st_mtime_ns
    again = resume_sweep(tmp_path / "sweep", workers=2, threads=1, log=lambda line: None)
    assert [s.state for s in again] == ["done", "failed"]  # the failure is tried again, and fails again
    assert (good / "checkpoint.pt").stat().st_mtime_ns == finished  # the finished run is left alone

    with pytest.raises(PyrovaeError, match="holds a different sweep"):
        run_sweep(tiny_sweep({"model.latent_dim": [3]}), tmp_path / "sweep", log=lambda line: None)


def test_a_sweep_evaluated_by_ais_compares_each_runs_ais_estimate(tmp_path):
    sweep = {**tiny_sweep({}), "evaluate": {"method": "ais", "steps": 3, "chains": 2, "max_points": 4}}
    statuses = run_sweep(sweep, tmp_path / "sweep", workers=1, threads=1, log=lambda line: None)
    assert [s.state for s in statuses] == ["done"]
    results = read_results(tmp_path / "sweep")
    entry = json.loads((run_folder(tmp_path / "sweep", {}, 0) / "evaluation.json").read_text())["test (ais)"]
    assert results.points[0].values == [entry["log_marginal"]["mean"]]
    assert "AIS, 3 steps x 2 chains" in results.metric


def test_a_curve_gets_one_whole_row_per_curve_epoch(tmp_path):
    sweep = {**tiny_sweep({}, **{"train.epochs": 3}), "evaluate": False,
             "curve": {"every": 1, "num_samples": 4, "points": 5}}
    assert [s.state for s in run_sweep(sweep, tmp_path / "sweep", workers=1, threads=1, log=lambda line: None)] == ["done"]
    folder = run_folder(tmp_path / "sweep", {}, 0)
    assert [line.split(",")[0] for line in (folder / "curve.csv").read_text().splitlines()] == ["epoch", "1", "2", "3"]
    rows = read_curve(folder)
    assert [r["epoch"] for r in rows] == [1, 2, 3] and all(r["points"] == 5 and r["samples"] == 4 for r in rows)
    assert all(math.isfinite(r["test_log_px"]) and r["test_log_px"] < 0 for r in rows)
    assert [r["wall_seconds"] for r in rows] == sorted(r["wall_seconds"] for r in rows)


def test_a_run_paused_by_the_budget_resumes_to_the_same_parameters(tmp_path):
    spec = load_sweep(tiny_sweep({}, **{"train.epochs": 3}))
    plan = spec.runs()[0]
    task = {"run_dir": str(tmp_path / "run"), "config": plan.config, "evaluate": spec.evaluate, "curve": None,
            "chunk_epochs": 1, "deadline": time.time()}  # already past: one chunk, then pause
    paused = run_job(task)
    assert paused["state"] == "paused" and paused["epochs"] == 1
    assert "another worker" not in paused.get("error", "")
    done = run_job({**task, "deadline": None})
    assert done["state"] == "done" and done["epochs"] == 3
    assert_same_run(tmp_path / "run", _train_reference(plan.config, tmp_path / "reference"))


def test_a_run_held_by_another_worker_is_left_to_it_not_failed(tmp_path):
    """Two sittings in one folder: a run the other one holds is reported running (not failed),
    and its record is not touched."""
    import fcntl

    spec = load_sweep(tiny_sweep({}))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "sweep_run.json").write_text('{"state": "paused", "epochs": 1}')  # the other sitting's
    with open(run_dir / RUN_LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        outcome = run_job({"run_dir": str(run_dir), "config": spec.runs()[0].config, "evaluate": None})
    assert outcome["state"] == "running" and "another worker is running" in outcome["error"]
    assert json.loads((run_dir / "sweep_run.json").read_text()) == {"state": "paused", "epochs": 1}


def test_sweep_command_line(tmp_path, capsys):
    path = tmp_path / "grid.yaml"  # not sweep.yaml: that name marks a sweep folder
    path.write_text(yaml.safe_dump(tiny_sweep({}, **{"train.epochs": 1})))
    assert cli_main(["sweep", str(path)]) == 2
    assert "--out DIR" in capsys.readouterr().err
    assert cli_main(["sweep", str(tmp_path), "--status"]) == 2
    assert "holds no sweep" in capsys.readouterr().err
    assert cli_main(["sweep", str(path), "--out", str(tmp_path / "s"), "--workers", "1", "--engine", "rey"]) == 2
    assert "did you mean 'ray'" in capsys.readouterr().err


def test_a_sweep_over_your_own_prior_loads_the_plugin_its_base_config_names(tmp_path):
    """A base config that lists a plugin (relative to the sweep file) puts the user's component
    in the grid: each run is trained in a worker process that loads the plugin from the run's
    config, which names it by absolute path."""
    plugin = Path(__file__).parents[1] / "examples" / "plugins" / "student_t_prior.py"
    (tmp_path / plugin.name).write_text(plugin.read_text())
    sweep = tiny_sweep({"model.prior.name": ["standard_normal", "student_t"]}, **{"train.epochs": 1})
    sweep["base"] = {**yaml.safe_load((Path(__file__).parents[1] / "pyrovae" / "configs" / "quickstart.yaml").read_text()),
                     "plugins": [plugin.name]}
    sweep["evaluate"] = False
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(sweep))
    statuses = run_sweep(tmp_path / "grid.yaml", tmp_path / "out", workers=1, threads=1, log=lambda line: None)
    assert [s.state for s in statuses] == ["done", "done"]
    config = yaml.safe_load((run_folder(tmp_path / "out", {"model.prior.name": "student_t"}, 0) / "config.yaml").read_text())
    assert config["model"]["prior"] == {"name": "student_t", "df": 5.0}
    assert config["plugins"] == [str((tmp_path / plugin.name).resolve())]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pyrovae: error: ")
    return err


def test_a_folder_pyrovae_did_not_make_is_never_written_into(tmp_path, capsys):
    """--out naming a file, a run folder, a folder holding a report, or a folder holding some
    other tool's sweep.yaml: one line, exit status 2, every file left as it was. --status on a
    sweep file says it wants the folder, not '--out grid.yaml'."""
    from pyrovae.spec import load_config
    from pyrovae.training.train import train

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep({}, **{"train.epochs": 1})))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "report.md").write_text("my report")
    (reports / "results.json").write_text("{}")
    foreign = tmp_path / "wandb"
    foreign.mkdir()
    (foreign / "sweep.yaml").write_text("method: bayes\nmetric: {name: loss}\n")
    run = tmp_path / "run"
    config = load_config(tiny_sweep({})["base"], [f"{k}={v}" for k, v in {**TINY, "train.epochs": 1}.items()])
    train(config, run)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    for out, message in [(a_file, "is a file, not a folder"), (reports, "already holds files (report.md, results.json)"),
                         (run, "but no sweep"), (foreign, "already holds files (sweep.yaml)")]:
        assert cli_main(["sweep", str(path), "--out", str(out), "--workers", "1"]) == 2
        assert message in _one_error_line(capsys)
    assert cli_main(["sweep", str(foreign), "--resume"]) == 2
    assert "holds no sweep" in _one_error_line(capsys)
    assert cli_main(["sweep", str(path), "--status"]) == 2
    err = _one_error_line(capsys)
    assert "is a file, not a sweep folder" in err and f"--out {path}" not in err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_different_sweep_in_the_folder_is_refused_saying_what_differs(tmp_path):
    from pyrovae.sweeps.sweep import prepare_sweep

    prepare_sweep(load_sweep(tiny_sweep({"model.latent_dim": [2]})), tmp_path / "s")
    with pytest.raises(PyrovaeError) as error:
        prepare_sweep(load_sweep(tiny_sweep({"model.latent_dim": [2]}, **{"train.epochs": 5})), tmp_path / "s")
    assert "set.train.epochs: 2 there, 5 here" in str(error.value)
    assert "base.train.epochs" not in str(error.value)  # the base is the same; only the overrides differ


def test_sigterm_to_a_sweep_leaves_resumable_runs_and_resume_finishes_it(tmp_path):
    """How a background sweep is stopped (kill PID, a scheduler's SIGTERM): the driver stops
    its workers, which leaves every started run interrupted (its last epoch's checkpoint, no
    lock held) and the command exits 130; --resume then finishes every run, the stopped one
    with the same parameters and metrics as one `pyrovae train` run."""
    import subprocess
    import sys

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep({"model.latent_dim": [2, 3]}, **{"train.epochs": 6,
                                                                                 "data.train_size": 1000})))
    sweep_dir = tmp_path / "sweep"
    command = [sys.executable, "-m", "pyrovae.cli", "sweep", str(path), "--out", str(sweep_dir), "--workers", "2",
               "--threads", "1"]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    caught = None
    while caught is None and driver.poll() is None:
        for metrics in sweep_dir.glob("runs/*/seed_0/metrics.csv"):
            if len(metrics.read_text().splitlines()) >= 2 and not (metrics.parent / "sweep_run.json").exists():
                caught = metrics.parent
                break
        time.sleep(0.02)
    assert caught is not None, "the sweep ended before a run was caught mid-run"
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate()
    assert driver.returncode == 130 and "continue with --resume" in err

    statuses = {s.plan.folder: s for s in sweep_status(sweep_dir)}
    stopped = statuses[str(caught.relative_to(sweep_dir / "runs"))]
    assert stopped.state == "interrupted" and (caught / "checkpoint.pt").exists()
    assert all(s.state in ("interrupted", "pending", "done") for s in statuses.values())  # no worker runs on
    assert 1 <= load_checkpoint(caught)["epoch"] < 6

    again = resume_sweep(sweep_dir, workers=2, threads=1, log=lambda line: None)
    assert [s.state for s in again] == ["done", "done"]
    assert_same_run(caught, _train_reference(stopped.plan.config, tmp_path / "reference"))


def test_the_docs_sweeps_are_drawn_from_their_committed_results(tmp_path):
    """benchmarks/sweeps/report.py (run by the site build) draws every recorded sweep's figure
    and tables from its committed sweep.yaml and results.json, with the sweep report's code."""
    import subprocess
    import sys

    root = Path(__file__).parents[1]
    recorded = sorted((root / "benchmarks" / "sweeps" / "results").glob("*/results.json"))
    assert {p.parent.name for p in recorded} >= {"quickstart_priors", "mnist_standard_seeds"}
    subprocess.run([sys.executable, str(root / "benchmarks" / "sweeps" / "report.py"), "--out", str(tmp_path)],
                   check=True, env={**os.environ, "MPLBACKEND": "Agg"})
    for path in recorded:
        results = json.loads(path.read_text())
        assert (tmp_path / f"{results['sweep']}.png").stat().st_size > 0
        table = (tmp_path / f"{results['sweep']}.md").read_text()
        for point in results["points"]:
            assert f"{point['mean']:.2f} ± {point['sd']:.2f}" in table
            assert all(f"{v:.2f}" in table for v in point["values"])
        if any("gaps" in run for run in results["runs"]):
            assert "| approximation gap | amortization gap |" in table


# ----------------------------------------------------------------------------- acceptance (slow)

def acceptance_sweep() -> dict:
    """The sweep that benchmarks/sweeps/workers_wall_clock.py times, on this test's data."""
    sweep = yaml.safe_load((Path(__file__).parents[1] / "benchmarks" / "sweeps" / "acceptance_sweep.yaml").read_text())
    assert sweep["evaluate"] == EVALUATE  # what _train_reference evaluates with
    return {**sweep, "set": {**sweep["set"], "data.root": DATA_ROOT}}


def _kill_one_worker_mid_run(sweep_dir: Path, killed: list, stop: threading.Event) -> None:
    """Kill (SIGKILL) the worker of the first run seen past its first epoch and not finished."""
    while not stop.is_set() and not killed:
        for lock in sorted((sweep_dir / "runs").glob(f"*/seed_*/{RUN_LOCK}")):
            run = lock.parent
            metrics = run / "metrics.csv"
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 2 and not (run / "sweep_run.json").exists():
                text = lock.read_text().split()
                if len(text) == 2:
                    os.kill(int(text[1]), signal.SIGKILL)
                    killed.append(run)
                    return
        time.sleep(0.02)


def _run_with_a_kill(sweep: dict, sweep_dir: Path, **options) -> tuple:
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_one_worker_mid_run, args=(sweep_dir, killed, stop))
    killer.start()
    try:
        statuses = run_sweep(sweep, sweep_dir, log=lambda line: None, **options)
    finally:
        stop.set()
        killer.join()
    return statuses, killed


def start_local_ray(ray) -> None:
    """A real local Ray instance of 2 CPUs for this test (never a mock), started as the ray
    engine starts a private one."""
    from pyrovae.sweeps.engines import start_ray

    assert not ray.is_initialized()
    start_ray(num_cpus=2, env={"PYROVAE_DATA": DATA_ROOT})


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_acceptance_2x2_grid_2_seeds_killed_worker_resumed_identical_to_pyrovae_train(tmp_path, engine):
    sweep = acceptance_sweep()
    if engine == "ray":
        ray = pytest.importorskip("ray", reason="the ray engine needs Ray: pip install 'pyrovae[ray]'")
        start_local_ray(ray)
    try:
        statuses, killed = _run_with_a_kill(sweep, tmp_path / "sweep", engine=engine, workers=2, threads=1)
        assert len(killed) == 1, "no run was caught mid-run"
        states = {s.plan.folder: s.state for s in statuses}
        victim = str(killed[0].relative_to(tmp_path / "sweep" / "runs"))
        assert states.pop(victim) == "interrupted" and set(states.values()) == {"done"}
        assert (killed[0] / "checkpoint.pt").exists()
        statuses = resume_sweep(tmp_path / "sweep", engine=engine, workers=2, threads=1, log=lambda line: None)
        assert [s.state for s in statuses] == ["done"] * 8
    finally:
        if engine == "ray":
            ray.shutdown()
    for status in sweep_status(tmp_path / "sweep"):
        reference = _train_reference(status.plan.config, tmp_path / "reference" / status.plan.folder.replace("/", "_"))
        assert_same_run(tmp_path / "sweep" / "runs" / status.plan.folder, reference)
    results = read_results(tmp_path / "sweep")
    assert [p.n for p in results.points] == [2, 2, 2, 2]


# ----------------------------------------------------------------------------- data-parallel evaluation

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from pyrovae.spec import load_config
    from pyrovae.training.train import train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("split") / "run"
    train(load_config(tiny_sweep({})["base"], [f"{k}={v}" for k, v in TINY.items()]), out)
    return out


SPLIT_EVALUATION = {"num_samples": 16, "max_points": 250}  # three blocks of points: 100, 100, 50


def _without_seconds(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "seconds"}


def test_importance_draws_belong_to_each_point_not_to_its_batch(trained_run):
    """With a seed, a point's estimate depends on its index in the split, not on which points
    share its batch (up to float32 rounding of matrix products of other shapes)."""
    from pyrovae.components.datasets import load_data
    from pyrovae.evaluation.importance import importance_sample
    from pyrovae.runs.loading import load_run

    spec, vae = load_run(trained_run)
    x = load_data(spec.data).split("test").x[:60]
    whole = importance_sample(vae, x, num_samples=32, seed=4, indices=range(500, 560))
    tail = importance_sample(vae, x[37:], num_samples=32, seed=4, indices=range(537, 560), max_memory="200KB")
    torch.testing.assert_close(tail.log_marginal.value, whole.log_marginal.value[37:], rtol=0, atol=1e-4)
    other_seed = importance_sample(vae, x, num_samples=32, seed=5, indices=range(500, 560))
    assert (other_seed.log_marginal.value - whole.log_marginal.value).abs().mean() > 1e-2


def test_evaluate_split_over_local_workers_equals_one_process(trained_run, tmp_path, capsys):
    from pyrovae.evaluation.evaluate import evaluate_run
    from pyrovae.sweeps.split_evaluation import SplitSampler

    one = _without_seconds(evaluate_run(trained_run, **SPLIT_EVALUATION))
    assert one["num_points"] == 250 and one["block_points"] == 100
    split = evaluate_run(trained_run, **SPLIT_EVALUATION, sampler=SplitSampler(workers=2, threads=1))
    assert _without_seconds(split) == one  # every number, per-point lists (unreliable points) included

    assert cli_main(["evaluate", str(trained_run), "--num-samples", "16", "--max-points", "250", "--workers", "2",
                     "--threads", "1", "--quiet"]) == 0
    assert _without_seconds(json.loads((trained_run / "evaluation.json").read_text())["test"]) == one
    for args, message in [(["--split", "train"], "valid and test splits"), (["--method", "ais"], "--method is"),
                          (["--workers", "0"], "--workers must be a positive integer")]:
        assert cli_main(["evaluate", str(trained_run), "--workers", "2", *args]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_split_over_a_local_ray_cluster_equals_one_process(trained_run):
    ray = pytest.importorskip("ray", reason="the ray engine needs Ray: pip install 'pyrovae[ray]'")
    from pyrovae.evaluation.evaluate import evaluate_run
    from pyrovae.sweeps.split_evaluation import SplitSampler

    one = _without_seconds(evaluate_run(trained_run, **SPLIT_EVALUATION))
    start_local_ray(ray)
    try:
        split = evaluate_run(trained_run, **SPLIT_EVALUATION, sampler=SplitSampler("ray", workers=2, threads=1))
    finally:
        ray.shutdown()
    assert _without_seconds(split) == one


# ----------------------------------------------------------------------------- issue 25: resumed curves, evaluations, folders

def test_a_curve_resumed_from_a_killed_worker_keeps_its_epochs_at_multiples_of_every(tmp_path):
    """A worker killed after epoch 1 of a chunk of 2: the next sitting trains to epoch 2 (not
    3), so the curve holds epochs 2 and 4, as an uninterrupted run's does."""
    from pyrovae.spec import load_config
    from pyrovae.training.train import train

    spec = load_sweep({**tiny_sweep({}, **{"train.epochs": 4}), "evaluate": False,
                       "curve": {"every": 2, "num_samples": 4, "points": 5}})
    plan = spec.runs()[0]
    first_epoch = load_config(plan.config)
    first_epoch.train.epochs = 1
    train(first_epoch, tmp_path / "run")  # what the killed worker left: a checkpoint at epoch 1
    task = {"run_dir": str(tmp_path / "run"), "config": plan.config, "evaluate": None, "curve": spec.curve}
    assert run_job(task)["state"] == "done"
    assert [r["epoch"] for r in read_curve(tmp_path / "run")] == [2, 4]


def test_a_run_re_evaluated_with_other_settings_or_retrained_is_not_done_until_the_sweep_evaluates_it(tmp_path, capsys):
    """The table reads evaluation.json: an entry replaced by `pyrovae evaluate` with other
    settings (K = 4 on 10 points under the sweep's K = 8 on 20), or left from an earlier
    checkpoint, is not the sweep's. --status counts such a run as paused, and the next
    sitting evaluates it again, giving the table the sweep's number back."""
    from pyrovae.runs.checkpoint import save_checkpoint

    sweep_dir = tmp_path / "sweep"
    run_sweep(tiny_sweep({}), sweep_dir, workers=1, threads=1, log=lambda line: None)
    run = run_folder(sweep_dir, {}, 0)
    sweep_value = read_results(sweep_dir).points[0].values[0]
    assert cli_main(["evaluate", str(run), "--num-samples", "4", "--max-points", "10", "--quiet"]) == 0
    [status] = sweep_status(sweep_dir)
    assert status.state == "paused" and "K = 4, points = 10" in status.error and "K = 8, points = 20" in status.error
    assert "1 paused" in format_status(sweep_dir) and "done" not in format_status(sweep_dir).splitlines()[0]
    assert read_results(sweep_dir).points[0].n == 0

    assert [s.state for s in resume_sweep(sweep_dir, workers=1, threads=1, log=lambda line: None)] == ["done"]
    assert json.loads((run / "evaluation.json").read_text())["test"]["num_samples"] == 8
    assert read_results(sweep_dir).points[0].values == [sweep_value]
    assert json.loads((sweep_dir / "results.json").read_text())["points"][0]["values"] == [sweep_value]

    state = load_checkpoint(run / "checkpoint.pt")
    name = next(iter(state["best_model"]))
    state["best_model"][name] = state["best_model"][name] + 1.0  # as if trained further
    save_checkpoint(state, run / "checkpoint.pt")
    [status] = sweep_status(sweep_dir)
    assert status.state == "paused" and "checkpoint.pt changed" in status.error


def test_the_exit_status_says_whether_the_sweep_is_done_to_continue_or_has_failed_runs(tmp_path, capsys):
    from pyrovae.sweeps.sweep import EXIT_DONE, EXIT_FAILED, EXIT_UNFINISHED, RunStatus, exit_status

    plan = load_sweep(tiny_sweep({})).runs()[0]
    assert exit_status([RunStatus(plan, "done")]) == EXIT_DONE == 0
    assert exit_status([RunStatus(plan, "done"), RunStatus(plan, "paused"), RunStatus(plan, "pending")]) == EXIT_UNFINISHED
    assert exit_status([RunStatus(plan, "paused"), RunStatus(plan, "interrupted")]) == EXIT_FAILED
    assert exit_status([RunStatus(plan, "running"), RunStatus(plan, "failed")]) == EXIT_FAILED != EXIT_UNFINISHED

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep({})))
    assert cli_main(["sweep", str(path), "--out", str(tmp_path / "later"), "--budget", "0.001s"]) == EXIT_UNFINISHED
    assert f"1 pending; report: {tmp_path / 'later' / 'report.md'}; continue with: pyrovae sweep " in capsys.readouterr().out
    path.write_text(yaml.safe_dump(tiny_sweep({}, **{"data.root": str(tmp_path / "no_data_here")})))
    assert cli_main(["sweep", str(path), "--out", str(tmp_path / "failing"), "--workers", "1"]) == EXIT_FAILED
    assert "1 failed" in capsys.readouterr().out
