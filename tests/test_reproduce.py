"""``pyrovae reproduce``: built-in experiments on the sweep mechanism, their figures, and
continuing after an interruption without redoing finished work."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pyrovae import VAE, load_config
from pyrovae.cli import main
from pyrovae.commands.reproduce import EXPERIMENTS, experiment_sweep, reproduce
from pyrovae.reports.paper_figures import bound_curve, manifold_image, manifold_lattice, tile
from pyrovae.training.train import train

REPO = Path(__file__).resolve().parents[1]
# A Frey Face version of Fig. 2 small enough for a test: one latent size, tiny networks.
SMALL = ["train.epochs=3", "data.train_size=200", "model.encoder.hidden=[8]", "model.decoder.hidden=[8]"]
ONLY = ["model.latent_dim=2"]


def test_list_names_every_experiment_and_its_sweeps(capsys):
    assert main(["reproduce", "--list"]) == 0
    text = capsys.readouterr().out
    for entry in EXPERIMENTS.values():
        assert entry.name in text
        assert all(sweep in text for sweep in entry.sweeps)


def test_mistakes_are_one_line(capsys, tmp_path):
    assert main(["reproduce", "kingma2014-fig9", "--out", str(tmp_path)]) == 2
    assert "kingma2014-fig2" in capsys.readouterr().err
    assert main(["reproduce", "kingma2014-fig2", "--out", str(tmp_path), "--set", "model.latent_dim=4"]) == 2
    assert "--only" in capsys.readouterr().err
    for option, item in [("--set", "train.estimator.name=[pathwise"), ("--only", "model.latent_dim")]:
        assert main(["reproduce", "kingma2014-fig2", "--out", str(tmp_path), option, item]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("estimator" in err if option == "--set" else "key=value" in err)
    assert not any(tmp_path.iterdir())  # nothing started


def test_only_keeps_grid_values_and_drops_emptied_sweeps():
    mnist = experiment_sweep("kingma2014-fig2-mnist", {}, {"model.latent_dim": [3, 20]})
    assert mnist.grid["model.latent_dim"] == [3, 20] and len(mnist.runs()) == 4
    assert experiment_sweep("kingma2014-fig2-mnist", {}, {"model.latent_dim": 2}) is None


def test_bound_curve_counts_training_points_by_epoch(tmp_path):
    """Training points evaluated = epochs x training-set size (200 faces: 2 batches a pass)."""
    spec = load_config("frey_aevb", ["data.train_size=200", "train.epochs=2", "train.progress=false",
                                     "model.encoder.hidden=[8]", "model.decoder.hidden=[8]", "train.device=cpu"])
    train(spec, tmp_path / "run")
    curve = bound_curve(tmp_path / "run")
    assert curve["points"] == [200, 400]
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert curve["heldout"] == [float(r["valid_elbo"]) for r in rows]


def test_manifold_tiles_touch_and_sit_at_prior_quantiles():
    """Fig. 4: tile (row r, column c) is the decoded mean at z = (q_c, q_{T-1-r}), with q the
    N(0, 1) quantiles at probabilities 0.05..0.95, and the tiles fill the canvas."""
    vae = VAE.from_config(load_config("frey_aevb", ["model.encoder.hidden=[8]", "model.decoder.hidden=[8]"]),
                          (1, 28, 20), 0)
    canvas, coords = manifold_image(vae, tiles=4)
    assert canvas.shape == (4 * 28, 4 * 20)
    torch.testing.assert_close(coords, torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, 4)))
    assert coords[0] < 0 < coords[-1] and torch.allclose(coords, -coords.flip(0), atol=1e-6)
    with torch.no_grad():
        tile_1_2 = vae.decode_mean(torch.tensor([[coords[2], coords[4 - 1 - 1]]]))[0, 0]
    torch.testing.assert_close(canvas[28:56, 40:60], tile_1_2)
    assert torch.equal(tile(torch.ones(6, 1, 2, 3), 3), torch.ones(4, 9))
    assert manifold_lattice(3).shape == (3,)


def _runs(out: Path):
    return out / "kingma2014-fig2-frey" / "runs"


def _epochs(run: Path):
    return [int(r["epoch"]) for r in csv.DictReader(open(run / "metrics.csv"))]


@pytest.mark.slow
def test_an_interrupted_reproduction_continues_without_redoing_finished_work(tmp_path):
    """Kill ``pyrovae reproduce`` (and its workers) once its first run is done, run it again:
    the finished run is left untouched, the other continues, and the figure is drawn."""
    out = tmp_path / "fig2"
    args = [sys.executable, "-m", "pyrovae.cli", "reproduce", "kingma2014-fig2", "--out", str(out), "--workers", "1",
            *[a for s in SMALL for a in ("--set", s)], *[a for o in ONLY for a in ("--only", o)]]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(args, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = _runs(out) / "latent_dim=2,estimator=pathwise" / "seed_0"
    try:
        deadline = time.time() + 600
        while time.time() < deadline and process.poll() is None:
            record = first / "sweep_run.json"
            if record.exists() and json.loads(record.read_text()).get("state") == "done":
                break
            time.sleep(0.2)
        assert process.poll() is None, f"finished before it could be interrupted: {process.stderr.read().decode()}"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (out / "figures" / "kingma2014-fig2.png").exists()
    finished = {p.name: p.stat().st_mtime_ns for p in first.iterdir() if p.is_file() and p.suffix in (".pt", ".csv")}

    report = reproduce("kingma2014-fig2", out, overrides=SMALL, only=ONLY, workers=1, log=lambda _: None)

    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir() if p.name in finished} == finished
    second = _runs(out) / "latent_dim=2,estimator=wake_sleep" / "seed_0"
    assert _epochs(first) == [1, 2, 3] and _epochs(second) == [1, 2, 3]
    assert (out / "figures" / "kingma2014-fig2.png").is_file()
    text = report.read_text()
    assert "Frey Face, N_z = 2" in text and "wake-sleep" in text and "AEVB" in text


# ----------------------------------------------------------------------------- issue 25

def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pyrovae: error: ")
    return err


def test_only_matching_nothing_other_settings_and_foreign_folders_are_one_line(tmp_path, capsys):
    """--only that keeps no run lists the values there are (not 'no finished epochs'); other
    --set values than the folder's say what differs; an --out pyrovae did not make is refused."""
    from pyrovae.sweeps.sweep import prepare_sweep

    out = tmp_path / "fig2"
    assert main(["reproduce", "kingma2014-fig2", "--out", str(out), "--only", "model.latent_dim=7"]) == 2
    assert "leaves no run of kingma2014-fig2 (model.latent_dim takes 2, 20, 5, 10, 3, 200)" in _one_error_line(capsys)
    assert main(["reproduce", "kingma2014-fig2", "--out", str(out), "--only", "model.latent=2"]) == 2
    assert "no sweep of kingma2014-fig2 has that grid key" in _one_error_line(capsys)
    assert not out.exists()

    prepare_sweep(experiment_sweep("kingma2014-fig2-frey", {"train.epochs": 3}, {"model.latent_dim": 2}),
                  out / "kingma2014-fig2-frey")
    assert main(["reproduce", "kingma2014-fig2", "--out", str(out), "--set", "train.epochs=4", "--only",
                 "model.latent_dim=2"]) == 2
    assert "set.train.epochs: 3 there, 4 here" in _one_error_line(capsys)

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my notes")
    assert main(["reproduce", "kingma2014-fig2", "--out", str(mine), *[a for s in SMALL for a in ("--set", s)]]) == 2
    assert "already holds files (report.md) but no sweep" in _one_error_line(capsys)
    assert [p.name for p in mine.iterdir()] == ["report.md"] and (mine / "report.md").read_text() == "my notes"


def test_a_sitting_whose_budget_ends_first_exits_3_and_says_how_to_continue(tmp_path, capsys):
    out = tmp_path / "fig2"
    args = ["reproduce", "kingma2014-fig2", "--out", str(out), "--budget", "0.001s",
            *[a for s in SMALL for a in ("--set", s)], *[a for o in ONLY for a in ("--only", o)]]
    assert main(args) == 3
    text = capsys.readouterr().out
    assert "continue with: pyrovae reproduce kingma2014-fig2 --out" in text and "--resume" not in text
    assert "'train.estimator.name" not in text and "--set train.epochs=3" in text


def test_the_estimator_comparison_waits_for_finished_runs_and_starts_nothing_past_the_deadline(tmp_path):
    """Only finished models are compared (a paused one trains on, and its comparison would be
    thrown away), and no estimate starts after the sitting's deadline."""
    from pyrovae.commands.reproduce import MARGINALS, compare_marginals, finished_runs
    from pyrovae.sweeps.sweep import prepare_sweep

    out = tmp_path / "fig3"
    spec = experiment_sweep("kingma2014-fig3-small", {}, {})
    prepare_sweep(spec, out / spec.name)
    states = dict(zip(spec.grid["train.estimator.name"], ["done", "paused", "failed"]))
    for plan in spec.runs():
        run = out / spec.name / "runs" / plan.folder
        run.mkdir(parents=True)
        (run / "sweep_run.json").write_text(json.dumps({"state": states[plan.point["train.estimator.name"]]}))
    assert [point["train.estimator.name"] for point, _ in finished_runs(out, spec.name)] == ["pathwise"]

    config = load_config("mnist_aevb", ["data.train_size=100", "model.latent_dim=2", "model.encoder.hidden=[8]",
                                        "model.decoder.hidden=[8]", "train.epochs=1", "train.progress=false",
                                        "train.device=cpu"])
    train(config, tmp_path / "run")
    record = compare_marginals(tmp_path / "run", points=3, deadline=time.time() - 1)
    assert record["epoch"] == 1 and not any(key.startswith(("train_", "test_")) for key in record)
    assert not (tmp_path / "run" / MARGINALS).exists()
