"""Your own components from a config file: plugins, the public registration API, and the
whole life of a run built from plugins on your own data, through the command line alone."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import EXAMPLE_PLUGINS, mnist_test_images

import pyrovae
from pyrovae.cli import main
from pyrovae.components import PRIORS
from pyrovae.errors import PyrovaeError
from pyrovae.plugins import load_plugins
from pyrovae.registry import registering_as
from pyrovae.spec import load_config

PARTS = ["student_t_prior.py", "beta_likelihood.py", "small_encoder.py"]
REPO = Path(__file__).resolve().parents[1]


def _squeezed_mnist_npz(path: Path, n: int) -> None:
    """MNIST test digits with pixel k/255 moved to (k + 0.5)/256: strictly inside (0, 1)."""
    images, labels = mnist_test_images(n)
    np.savez(path, images=((images.astype(np.float32) + 0.5) / 256), labels=labels)


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pyrovae: error: ")
    return err


@pytest.mark.slow
def test_a_plugin_run_trains_resumes_evaluates_measures_and_reports_from_the_cli(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    for part in PARTS:
        shutil.copy(EXAMPLE_PLUGINS / part, work / part)
    _squeezed_mnist_npz(work / "digits.npz", 1000)
    config = {
        "name": "byo", "plugins": PARTS,
        "data": {"name": "array", "path": "digits.npz", "x": "images", "y": "labels",
                 "valid_fraction": 0.1, "test_fraction": 0.1},
        "model": {"latent_dim": 4, "prior": {"name": "student_t", "df": 5},
                  "likelihood": {"name": "beta"}, "encoder": {"name": "two_layer_encoder", "width": 64},
                  "decoder": {"name": "mlp", "hidden": [64]}},
        "train": {"epochs": 1, "batch_size": 100, "device": "cpu", "progress": False},
    }
    (work / "my.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(work)

    assert main(["train", "my.yaml", "--out", "run"]) == 0
    saved = yaml.safe_load((work / "run" / "config.yaml").read_text())
    # the run keeps a copy of each plugin and its config names the copy, relative to the folder
    assert saved["plugins"] == [f"plugins/{p}" for p in PARTS]
    assert all((work / "run" / "plugins" / p).read_bytes() == (work / p).read_bytes() for p in PARTS)
    assert saved["data"]["path"] == str((work / "digits.npz").resolve())

    assert main(["train", "run", "--resume", "--set", "train.epochs=2"]) == 0
    with open(work / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[1]["valid_elbo"]) > float(rows[0]["valid_elbo"])  # the Beta VAE learns
    capsys.readouterr()

    # A fresh process elsewhere finds the plugins and the data through the run's config alone.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "pyrovae.cli", "evaluate", str(work / "run"), "--num-samples", "20",
                           "--max-points", "30", "--elbo-particles", "2", "--quiet"],
                          cwd=elsewhere, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads((work / "run" / "evaluation.json").read_text())["test"]
    assert summary["num_points"] == 30 and summary["subset"]["of"] == 100
    assert np.isfinite(summary["log_marginal"]["mean"])

    assert main(["variance", "run", "--estimators", "pathwise,stl", "--draws", "4", "--batch-size", "20",
                 "--quiet"]) == 0
    measured = json.loads((work / "run" / "variance.json").read_text())["snapshots"][0]
    assert measured["epoch"] == 2 and set(measured["estimators"]) == {"pathwise", "stl"}

    (work / "run" / "report.md").unlink()
    shutil.rmtree(work / "run" / "figures")
    assert main(["report", "run"]) == 0
    report = (work / "run" / "report.md").read_text()
    for section in ("## Training", "## Evaluation", "## Variance"):
        assert section in report
    assert "Run folder `run`" in report
    assert (work / "run" / "figures" / "samples.png").is_file()


def test_list_shows_a_plugins_parts_beside_the_built_ins(capsys):
    plugin = EXAMPLE_PLUGINS / "student_t_prior.py"
    assert main(["list", "--plugin", str(plugin)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.strip().startswith("student_t"))
    assert f"(from {plugin})" in line and "df=5.0" in line
    assert "standard_normal" in out


def test_a_broken_plugin_is_one_line_naming_the_file_and_the_line(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("import pyrovae\n\nraise RuntimeError('half-written plugin')\n")
    err = _one_line_error(capsys, ["list", "--plugin", str(broken)])
    assert str(broken) in err and "failed to import (line 3): RuntimeError: half-written plugin" in err
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def f(:\n")
    assert "(line 1): SyntaxError" in _one_line_error(capsys, ["list", "--plugin", str(syntax)])


def test_a_plugin_clashing_with_a_built_in_is_one_line_and_leaves_nothing_registered(tmp_path, capsys):
    clash = tmp_path / "clash.py"
    clash.write_text("import pyrovae\n\n"
                     "@pyrovae.register('prior', 'fresh_name')\ndef fresh(latent_dim):\n    '''new'''\n\n"
                     "@pyrovae.register('prior', 'standard_normal')\ndef mine(latent_dim):\n    '''clash'''\n")
    err = _one_line_error(capsys, ["list", "--plugin", str(clash)])
    assert str(clash) in err and "prior 'standard_normal' is already registered (built-in)" in err
    assert "fresh_name" not in PRIORS  # the plugin's earlier registrations are undone
    assert PRIORS.get("standard_normal").origin == "built-in"


def test_a_missing_plugin_and_an_unknown_name_say_what_to_do(tmp_path, capsys):
    assert "plugin file nowhere.py not found" in _one_line_error(capsys, ["list", "--plugin", "nowhere.py"])
    with pytest.raises(PyrovaeError, match="unknown prior 'student_t'.*load a plugin that registers it"):
        load_config("quickstart", ["model.prior.name=student_t"])


def test_plugins_load_once_from_a_file_or_an_importable_module(tmp_path, monkeypatch):
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "vae_parts.py").write_text(
        "import pyrovae\nfrom pyrovae.components.priors import StandardNormal\n\n"
        "@pyrovae.register('prior', 'module_prior')\ndef module_prior(latent_dim):\n"
        "    '''a standard normal from a module'''\n    return StandardNormal(latent_dim)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = load_config("quickstart", ["model.prior.name=module_prior"], plugins=["mypkg.vae_parts"])
    assert spec.plugins == ["mypkg.vae_parts"]
    assert PRIORS.get("module_prior").origin == "mypkg.vae_parts"
    # Loading it again (every command of a session does) is not a second registration.
    assert load_plugins(["mypkg.vae_parts", "mypkg.vae_parts"]) == ["mypkg.vae_parts"]


def test_a_factory_input_pyrovae_does_not_give_is_a_one_line_error():
    with registering_as("a test"):
        @pyrovae.register("prior", "needs_temperature")
        def needs_temperature(latent_dim, temperature):
            """asks for an input that does not exist"""

    try:
        with pytest.raises(PyrovaeError, match="takes an input 'temperature'.*inputs are: latent_dim, encode, "
                                               "data_shape.*make 'temperature' keyword-only"):
            PRIORS.build("needs_temperature", {"latent_dim": 2, "encode": None, "data_shape": (3,)})
    finally:
        PRIORS.remove_origin("a test")


def test_register_names_the_families():
    with pytest.raises(PyrovaeError, match="unknown component family 'priors' \\(did you mean 'prior'\\?\\)"):
        pyrovae.register("priors", "x")
