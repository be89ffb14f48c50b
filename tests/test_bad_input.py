"""Bad input to ``evaluate``, ``posterior`` and ``report``: one line on stderr, exit status 2,
nothing written where pyrovae was not asked to write, and no stale files left behind."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
from conftest import tiny_overrides

from pyrovae import load_config
from pyrovae.cli import main
from pyrovae.commands.posterior import check_out_folder
from pyrovae.errors import MAX_SEED, PyrovaeError
from pyrovae.runs.files import TEMP_SUFFIX, temp_name_prefix
from pyrovae.training.train import train

REPO = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).resolve().parent / "fault_driver.py"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-D latent VAE trained for one epoch on 500 binarized MNIST digits."""
    pyro.set_rng_seed(0)
    folder = tmp_path_factory.mktemp("runs") / "run"
    train(load_config("quickstart", tiny_overrides(**{"model.latent_dim": 2})), folder)
    return folder


def one_line_error(argv, capsys) -> str:
    """The error ``pyrovae argv`` prints, checked to be one line with exit status 2."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyrovae: error: ") and err.count("\n") == 1, err
    return err


def folder_state(folder: Path) -> dict:
    """Every file under ``folder`` with its content, to check that nothing changed."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- seeds and steps

@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1])
def test_a_seed_numpy_cannot_take_is_one_line(run, seed, capsys, tmp_path):
    before = folder_state(run)
    err = one_line_error(["evaluate", run, f"--seed={seed}", "--quiet"], capsys)
    assert f"--seed must be an integer from 0 to {MAX_SEED}, got {seed}" in err
    err = one_line_error(["posterior", run, "--points", "0", "--out", tmp_path / "post", f"--seed={seed}"], capsys)
    assert f"--seed must be an integer from 0 to {MAX_SEED}, got {seed}" in err
    assert not (tmp_path / "post").exists() and folder_state(run) == before


def test_too_many_ais_steps_are_named_as_the_problem(run, capsys):
    err = one_line_error(["evaluate", run, "--method", "ais", "--steps", str(10 ** 12), "--max-points", "2",
                          "--quiet"], capsys)
    assert ("a memory bound of 953.7 MiB is too small for 1000000000000 annealing steps and 16 chains "
            "(--steps, --chains): they need 7450.6 GiB per data point; use fewer" in err)


# ----------------------------------------------------------------------------- report

def test_report_on_a_missing_folder_says_it_does_not_exist(tmp_path, capsys):
    err = one_line_error(["report", tmp_path / "nowhere"], capsys)
    assert f"no run folder {tmp_path / 'nowhere'} (it does not exist)" in err and "resume" not in err


# ----------------------------------------------------------------------------- posterior --out

POSTERIOR = ["--points", "0", "--mcmc", "none", "--svi-steps", "5", "--elbo-samples", "20"]


def test_posterior_refuses_an_out_that_is_a_file(run, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    err = one_line_error(["posterior", run, *POSTERIOR, "--out", tmp_path / "notes.txt"], capsys)
    assert f"--out {tmp_path / 'notes.txt'} is a file" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_posterior_refuses_a_folder_of_other_files_and_the_run_folder(run, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my own report")
    for out in (mine, run):
        before = folder_state(out)
        err = one_line_error(["posterior", run, *POSTERIOR, "--out", out], capsys)
        assert f"--out {out} holds files 'pyrovae posterior' did not write" in err and "new folder" in err
        assert folder_state(out) == before


def test_posterior_takes_a_new_an_empty_or_its_own_earlier_folder(tmp_path):
    """The folders --out accepts (a full run writing into them: test_posterior.py)."""
    (tmp_path / "empty").mkdir()
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "posterior.json").write_text(json.dumps({"run": "runs/qs", "per_point": []}))
    (earlier / "report.md").write_text("# Posterior inspection of runs/qs\n")
    for out in (tmp_path / "new" / "post", tmp_path / "empty", earlier):
        check_out_folder(out)  # no error
    (earlier / "posterior.json").write_text("[1, 2]")  # JSON, but not what the command writes
    with pytest.raises(PyrovaeError, match="did not write"):
        check_out_folder(earlier)


# ----------------------------------------------------------------------------- killed evaluations

def killed_evaluate(run: Path, kill_point: str) -> None:
    """Run ``pyrovae evaluate`` on ``run`` in a process killed (SIGKILL) at ``kill_point``."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.run([sys.executable, str(DRIVER), kill_point, "evaluate", str(run), "--num-samples", "10",
                            "--max-points", "5", "--quiet"], env=env, capture_output=True, text=True)
    assert child.returncode == -9, child.stderr[-2000:]


def test_the_next_evaluate_removes_the_temporary_files_of_a_killed_one(run, capsys):
    killed_evaluate(run, "write:evaluation.json:1:100")
    figure = run / "figures" / "bounds_vs_k_valid.png"  # as a kill while drawing it leaves it
    figure.parent.mkdir(exist_ok=True)
    (figure.parent / f"{temp_name_prefix(figure)}k1ll3d{TEMP_SUFFIX}").write_bytes(b"\x89PNG")
    temps = sorted(p.name for p in run.rglob(".*.tmp"))
    # The kill came while evaluation.json and its per-point file were staged together.
    assert temps[0].startswith(".bounds_vs_k_valid.png.") and len(temps) >= 2
    assert all(name.startswith((".evaluation.json.", ".evaluation_test.csv.")) for name in temps[1:])
    assert main(["evaluate", str(run), "--num-samples", "10", "--max-points", "5", "--quiet"]) == 0
    assert list(run.rglob(".*.tmp")) == []
    assert json.loads((run / "evaluation.json").read_text())["test"]["num_points"] == 5
