"""The pyrovae command: listing, training to a full run folder, resuming, and one-line
errors with exit status 2 for user mistakes."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_overrides

from pyrovae.cli import main
from pyrovae.components import LIKELIHOODS, NETWORKS, PRIORS
from pyrovae.components.datasets import DATASETS
from pyrovae.inference.estimators import ESTIMATORS
from pyrovae.sweeps.engines import ENGINES


def _set(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


def test_list_names_every_registered_component(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for registry in (PRIORS, LIKELIHOODS, NETWORKS, DATASETS, ESTIMATORS, ENGINES):
        for name in registry.names():
            assert f"  {name} " in out
    assert "quickstart" in out and "num_components=10" in out
    assert "built-in sweeps: " in out and "quickstart_priors" in out


def test_train_writes_a_complete_run_folder_and_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    overrides = tiny_overrides(**{"model.latent_dim": 2, "data.train_size": 1000})
    assert main(["train", "quickstart", "--out", str(run), "--quiet", *_set(overrides)]) == 0
    figures = {p.name for p in (run / "figures").iterdir()}
    assert figures == {"training_curves.png", "reconstructions.png", "samples.png", "latent_space.png",
                       "manifold.png"}
    report = (run / "report.md").read_text()
    assert "## Training" in report and "figures/manifold.png" in report and "best validation ELBO" in capsys.readouterr().out
    assert main(["train", str(run), "--resume", "--quiet", "--set", "train.epochs=2"]) == 0
    assert report.count("## Training") == 1
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs


@pytest.mark.parametrize("argv,message", [
    (["train", "quickstart", "--set", "model.latnt_dim=2"], "did you mean 'model.latent_dim'"),
    (["train", "no_such_config"], "no config file or built-in config 'no_such_config'"),
    (["train", "quickstart", "--set", "data.root=/nonexistent"], "binarized_mnist_train.amat[.gz] not found"),
    (["train", "/nonexistent/run", "--resume"], "no run folder /nonexistent/run to resume"),
])
def test_user_mistakes_are_one_line_on_stderr_with_status_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run folder runs/quickstart must not exist yet
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("pyrovae: error: ")


def test_help_is_available_for_every_command(capsys):
    for argv in (["--help"], ["train", "--help"], ["list", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
    assert "--resume" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--help"], ["list"]])
def test_help_and_list_import_neither_matplotlib_nor_scipy(argv):
    """Start-up speed: the command line loads plotting and statistics libraries only for the
    commands that use them."""
    code = ("import sys\nfrom pyrovae.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('heavy:', sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'scipy'}))")
    run = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "heavy: []"
