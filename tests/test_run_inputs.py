"""A run records the sha256 of its plugins and data files; opening it after one changed is
refused in one line naming the file, unless changed inputs are allowed."""

import json

import numpy as np
import pytest

from pyrovae import cli
from pyrovae.plugins import forget_plugins

PRIOR = '''import torch, pyrovae, pyro.distributions as dist
from torch import nn

SCALE = {scale}

class Scaled(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.register_buffer("loc", torch.zeros(d))

    def forward(self):
        return dist.Normal(self.loc, SCALE * torch.ones_like(self.loc)).to_event(1)

@pyrovae.register("prior", "scaled")
def scaled(latent_dim):
    """N(0, SCALE^2 I)"""
    return Scaled(latent_dim)
'''
TRAIN = ["train", "quickstart", "--out", "run", "--plugin", "scaled.py"] + [
    a for item in ["data.name=array", "data.path=data.npy", "model.latent_dim=2", "model.encoder.hidden=[8]",
                   "model.decoder.hidden=[8]", "model.prior.name=scaled", "train.epochs=1", "train.batch_size=20",
                   "train.progress=false", "train.device=cpu"] for a in ("--set", item)]
EVALUATE = ["evaluate", "run", "--num-samples", "50", "--elbo-particles", "2", "--quiet"]


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    """A run trained one epoch on 200 binary vectors (data.npy) with the plugin prior scaled.py."""
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "data.npy", (np.random.default_rng(0).random((200, 6)) < 0.3).astype(np.float32))
    (tmp_path / "scaled.py").write_text(PRIOR.format(scale=1.0))
    assert main(TRAIN) == 0
    capsys.readouterr()
    return tmp_path / "run"


def main(argv) -> int:
    """The command line as a new process runs it: plugins imported afresh, as they are now."""
    forget_plugins()
    return cli.main(argv)


def _log_px(run_dir):
    """The evaluated log p(x) and its standard error."""
    estimate = json.loads((run_dir / "evaluation.json").read_text())["test"]["log_marginal"]
    return estimate["mean"], estimate["std_error"]


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pyrovae: error: "), err
    return err


def test_the_run_records_the_sha256_of_its_plugin_and_data_file(run):
    """The plugin by the name of its copy in the run folder (which the run loads), the data file
    (outside the folder) by its absolute path."""
    import hashlib

    recorded = json.loads((run / "inputs.json").read_text())["sha256"]
    for kind, key, path in (("plugins", "plugins/scaled.py", run.parent / "scaled.py"),
                            ("data", str(run.parent / "data.npy"), run.parent / "data.npy")):
        assert recorded[kind] == {key: hashlib.sha256(path.read_bytes()).hexdigest()}


def test_the_run_loads_its_copy_of_the_plugin_not_the_file_it_was_trained_from(run):
    assert main(EVALUATE) == 0
    trained = _log_px(run)
    (run.parent / "scaled.py").write_text(PRIOR.format(scale=10.0))  # the original edited: the run is unaffected
    assert main(EVALUATE) == 0
    assert _log_px(run) == trained


def test_a_plugin_changed_after_training_is_refused_by_every_command_unless_allowed(run, capsys):
    assert main(EVALUATE) == 0
    trained = _log_px(run)
    (run / "plugins" / "scaled.py").write_text(PRIOR.format(scale=10.0))
    commands = [EVALUATE, ["train", "run", "--resume", "--set", "train.epochs=2"], ["report", "run"],
                ["variance", "run", "--draws", "4", "--batch-size", "20"]]
    for argv in commands:
        err = _one_line_error(capsys, argv)
        assert "run/plugins/scaled.py changed since " in err and "run was trained" in err
        assert "--allow-changed-inputs" in err
    assert _log_px(run) == trained  # nothing was overwritten
    assert main([*EVALUATE, "--allow-changed-inputs"]) == 0
    assert "changed since run was trained; using it as it is now" in capsys.readouterr().err
    # the prior's scale ten times larger lowers log p(x) by far more than its Monte Carlo error
    changed = _log_px(run)
    assert trained[0] - changed[0] > 4 * (trained[1] ** 2 + changed[1] ** 2) ** 0.5


def test_a_data_file_changed_after_training_is_refused(run, capsys):
    data = np.load(run.parent / "data.npy")
    np.save(run.parent / "data.npy", 1 - data)
    err = _one_line_error(capsys, EVALUATE)
    assert f"data file {run.parent / 'data.npy'} changed since run was trained" in err


def test_a_run_without_recorded_inputs_still_opens(run, capsys):
    (run / "inputs.json").unlink()
    (run / "plugins" / "scaled.py").write_text(PRIOR.format(scale=3.0))
    assert main(EVALUATE) == 0
    assert main(["train", "run", "--resume", "--set", "train.epochs=2"]) == 0
    assert (run / "inputs.json").is_file()  # recorded from now on, with the plugin as the resume used it
    (run / "plugins" / "scaled.py").write_text(PRIOR.format(scale=1.0))
    assert "changed since run was trained" in _one_line_error(capsys, EVALUATE)


def test_a_folder_of_data_is_hashed_by_its_files(tmp_path):
    from pyrovae.runs.inputs import folder_sha256

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"one")
    before = folder_sha256(tmp_path)
    (tmp_path / "a" / "x.png").write_bytes(b"two")
    assert folder_sha256(tmp_path) != before


def test_a_resume_by_the_training_engine_refuses_a_changed_plugin_and_keeps_the_record(run):
    """Sweeps and the laboratory resume through the training loop itself: it checks the inputs
    too, so a changed plugin is refused there and inputs.json keeps the trained run's hashes."""
    from pyrovae.errors import PyrovaeError
    from pyrovae.spec import load_config
    from pyrovae.training.train import train

    recorded = (run / "inputs.json").read_text()
    (run / "plugins" / "scaled.py").write_text(PRIOR.format(scale=3.0))
    forget_plugins()
    spec = load_config(run, ["train.epochs=2"])
    with pytest.raises(PyrovaeError, match="scaled.py changed since"):
        train(spec, run, resume=True)
    assert (run / "inputs.json").read_text() == recorded


def test_workers_are_handed_the_permission_to_open_changed_inputs(run):
    """A worker process does not inherit the caller's context: the sweep's and the split
    evaluation's tasks carry --allow-changed-inputs themselves."""
    from pyrovae.runs.inputs import changed_inputs_allowed
    from pyrovae.sweeps.spec import load_sweep
    from pyrovae.sweeps.split_evaluation import sample_task
    from pyrovae.sweeps.sweep import job_task

    sweep = load_sweep({"name": "one", "base": "quickstart", "seeds": [0]})
    plan = sweep.runs()[0]
    assert job_task(sweep, run.parent, plan, None)["allow_changed_inputs"] is False
    with changed_inputs_allowed():
        assert job_task(sweep, run.parent, plan, None)["allow_changed_inputs"] is True

    (run / "plugins" / "scaled.py").write_text(PRIOR.format(scale=3.0))
    forget_plugins()
    task = {"run_dir": str(run), "split": "test", "indices": [0, 1], "num_samples": 4, "bounds": [1],
            "max_memory": 2 ** 26, "proposal": (1.0, None), "seed": 0}
    refused = sample_task({**task, "allow_changed_inputs": False})
    assert refused["state"] == "failed" and "scaled.py changed since" in refused["error"]
    with pytest.warns(Warning, match="scaled.py"):
        assert sample_task({**task, "allow_changed_inputs": True})["state"] == "done"
