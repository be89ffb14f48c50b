"""Portable run folders: a run carries copies of its plugin files, names them (and data kept in
the folder) relative to itself, and is opened from there wherever it is moved; every command
that opens a run or a config takes --plugin."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

import pyrovae
from pyrovae.cli import main
from pyrovae.plugins import forget_plugins
from tests.conftest import EXAMPLE_PLUGINS, tiny_overrides

PLUGIN = "student_t_prior.py"


def _train_with_plugin(tmp_path, where="src"):
    source = tmp_path / where / PLUGIN
    source.parent.mkdir(parents=True)
    shutil.copy(EXAMPLE_PLUGINS / PLUGIN, source)
    run = tmp_path / "made" / "run"
    pyrovae.train("quickstart", out=run, plugins=[str(source)],
                  overrides=tiny_overrides(**{"model.prior.name": "student_t", "model.latent_dim": 2}))
    return source, run


def test_a_moved_run_folder_evaluates_without_its_plugin_file(tmp_path, one_thread):
    source, run = _train_with_plugin(tmp_path)
    copy = run / "plugins" / PLUGIN
    assert copy.read_bytes() == source.read_bytes()
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["plugins"] == [f"plugins/{PLUGIN}"]
    recorded = json.loads((run / "inputs.json").read_text())["sha256"]["plugins"]
    assert recorded == {f"plugins/{PLUGIN}": hashlib.sha256(source.read_bytes()).hexdigest()}
    before = pyrovae.load(run).vae.encode(pyrovae.load(run).data.test.x[:5])[0]

    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(str(run), moved)
    shutil.rmtree(source.parent)  # the plugin file is gone
    forget_plugins()  # as in a new process
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(pyrovae.__file__).parents[1])}
    for argv in (["evaluate", str(moved), "--num-samples", "20", "--max-points", "5", "--quiet"],
                 ["report", str(moved)], ["sample", str(moved), "-n", "4"]):
        done = subprocess.run([sys.executable, "-m", "pyrovae.cli", *argv], cwd=elsewhere, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert json.loads((moved / "evaluation.json").read_text())["test"]["num_points"] == 5
    assert "student_t" in (moved / "config.yaml").read_text() and (moved / "outputs" / "samples.npz").is_file()
    again = pyrovae.load(moved)
    assert again.spec.plugins == [str(moved / "plugins" / PLUGIN)]
    assert np.array_equal(again.vae.encode(again.data.test.x[:5])[0].detach().numpy(), before.detach().numpy())
    resumed = pyrovae.train(moved, resume=True, overrides=["train.epochs=2"])  # resuming keeps the copy's name
    assert resumed.epochs_done == 2
    assert yaml.safe_load((moved / "config.yaml").read_text())["plugins"] == [f"plugins/{PLUGIN}"]
    assert sorted(p.name for p in (moved / "plugins").iterdir()) == [PLUGIN]


def test_plugin_names_where_a_moved_plugin_is_now(tmp_path, one_thread, capsys):
    """A run folder whose config names its plugin by an absolute path that no longer exists (one
    trained before runs kept copies) opens with --plugin naming the file's new place."""
    source, run = _train_with_plugin(tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["plugins"] = [str(source)]
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.rmtree(run / "plugins")
    new_place = tmp_path / "new" / PLUGIN
    new_place.parent.mkdir()
    shutil.move(str(source), new_place)
    forget_plugins()
    assert main(["evaluate", str(run), "--num-samples", "10", "--max-points", "3", "--quiet"]) == 2
    assert "--plugin NEW_PATH" in capsys.readouterr().err
    forget_plugins()
    assert main(["evaluate", str(run), "--num-samples", "10", "--max-points", "3", "--quiet",
                 "--plugin", str(new_place)]) == 0
    forget_plugins()
    assert pyrovae.load(run, plugins=[str(new_place)]).spec.model.prior.name == "student_t"


def test_every_command_opening_a_run_or_a_config_takes_plugin(tmp_path, one_thread):
    plugin = str(EXAMPLE_PLUGINS / PLUGIN)
    out = tmp_path / "var"
    assert main(["variance", "quickstart", "--plugin", plugin, "--set", "model.prior.name=student_t",
                 "--set", "data.train_size=100", "--set", "model.encoder.hidden=[16]", "--set",
                 "model.decoder.hidden=[16]", "--estimators", "pathwise", "--draws", "3", "--batch-size", "10",
                 "--out", str(out), "--quiet"]) == 0
    from pyrovae.cli import build_parser

    parser = build_parser()
    for command in ("train", "evaluate", "variance", "report", "posterior", "sample", "reconstruct", "encode",
                    "interpolate", "export", "list", "config"):
        sub = parser._subparsers._group_actions[0].choices[command]
        assert any("--plugin" in action.option_strings for action in sub._actions), command
