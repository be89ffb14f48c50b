"""Sweeps: the spec and its one-line errors, run folders identical to `pyrovae train`'s, failures
recorded without stopping the sweep, budget pauses resumed exactly, and (slow) the 2 x 2 x 2-seed
acceptance sweep through the local engine and a real local Ray cluster with a worker killed mid-run."""

import csv
import json
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
from pyrovae.errors import PyrovaeError
from pyrovae.runs.checkpoint import load_checkpoint
from pyrovae.sweeps import load_sweep, read_results, resume_sweep, run_folder, run_sweep, sweep_status
from pyrovae.sweeps.job import RUN_LOCK, run_job
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

    finished = (good / "checkpoint.pt").stat().st_mtime_ns
    again = resume_sweep(tmp_path / "sweep", workers=2, threads=1, log=lambda line: None)
    assert [s.state for s in again] == ["done", "failed"]  # the failure is tried again, and fails again
    assert (good / "checkpoint.pt").stat().st_mtime_ns == finished  # the finished run is left alone

    with pytest.raises(PyrovaeError, match="holds a different sweep"):
        run_sweep(tiny_sweep({"model.latent_dim": [3]}), tmp_path / "sweep", log=lambda line: None)


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


def test_a_run_held_by_another_worker_is_refused(tmp_path):
    import fcntl

    spec = load_sweep(tiny_sweep({}))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / RUN_LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        outcome = run_job({"run_dir": str(run_dir), "config": spec.runs()[0].config, "evaluate": None})
    assert outcome["state"] == "failed" and "another worker is running" in outcome["error"]


def test_sweep_command_line(tmp_path, capsys):
    path = tmp_path / "grid.yaml"  # not sweep.yaml: that name marks a sweep folder
    path.write_text(yaml.safe_dump(tiny_sweep({}, **{"train.epochs": 1})))
    assert cli_main(["sweep", str(path)]) == 2
    assert "--out DIR" in capsys.readouterr().err
    assert cli_main(["sweep", str(tmp_path), "--status"]) == 2
    assert "holds no sweep" in capsys.readouterr().err
    assert cli_main(["sweep", str(path), "--out", str(tmp_path / "s"), "--workers", "1", "--engine", "rey"]) == 2
    assert "did you mean 'ray'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- acceptance (slow)

ACCEPTANCE_GRID = {"model.prior.name": ["standard_normal", "mog"], "model.latent_dim": [2, 3]}


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


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_acceptance_2x2_grid_2_seeds_killed_worker_resumed_identical_to_pyrovae_train(tmp_path, engine):
    sweep = tiny_sweep(ACCEPTANCE_GRID, seeds=[0, 1], **{"train.epochs": 4, "data.train_size": 1000})
    if engine == "ray":
        ray = pytest.importorskip("ray", reason="the ray engine needs Ray: pip install 'pyrovae[ray]'")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", ""),
                                           "PYROVAE_DATA": DATA_ROOT}})
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
    from pyrovae.runs.train import train
    from pyrovae.spec import load_config

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("split") / "run"
    train(load_config(tiny_sweep({})["base"], [f"{k}={v}" for k, v in TINY.items()]), out, report=False)
    return out


def _same_points(a, b) -> None:
    for name in ("log_marginal", "elbo"):
        assert torch.equal(getattr(a, name).value, getattr(b, name).value)
        assert torch.equal(getattr(a, name).std_error, getattr(b, name).std_error)
    for name in ("log_likelihood", "kl", "ess", "khat"):  # k-hat is NaN where K is too small for it
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0, equal_nan=True)
    assert all(torch.equal(a.iwae[k].value, b.iwae[k].value) for k in a.iwae)


def test_evaluation_split_over_workers_equals_one_process(trained_run):
    from pyrovae.sweeps.split_evaluation import evaluate_points_parallel

    options = {"num_samples": 16, "max_points": 30, "block_points": 7, "threads": 1}
    one, indices, summary = evaluate_points_parallel(trained_run, workers=1, **options)
    two, indices_two, _ = evaluate_points_parallel(trained_run, workers=2, **options)
    assert indices == indices_two and len(indices) == 30 and one.log_marginal.value.shape == (30,)
    _same_points(one, two)
    assert summary["log_marginal"]["mean"] == pytest.approx(float(one.log_marginal.value.mean()))
    with pytest.raises(PyrovaeError, match="valid and test splits"):
        evaluate_points_parallel(trained_run, split="train")
