"""Plugins that break the contract: each is one line (exit status 2) naming the part, its
plugin file and what the contract expects, and leaves no run folder behind."""

from pathlib import Path

import numpy as np
import pytest

from pyrovae.cli import main

TINY = ["data.name=array", "model.latent_dim=2", "model.decoder.hidden=[8]",
        "train.epochs=1", "train.batch_size=20", "train.progress=false", "train.device=cpu"]

HEAD = "import os, sys, torch, pyrovae, pyro.distributions as dist\nfrom torch import nn\n"
PRIOR_MODULE = HEAD + '''
class Prior(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.register_buffer("loc", torch.zeros(d))

    def forward(self):
        return {value}

@pyrovae.register("prior", "bad")
def bad(latent_dim):
    """a prior breaking the contract"""
    return Prior(latent_dim)
'''
FACTORY = HEAD + '''
@pyrovae.register("{family}", "bad")
def bad({signature}):
    """a part breaking the contract"""
    {body}
'''
ENCODER_GIVING_3 = '''
class Encoder(nn.Linear):
    def forward(self, x, cond=None):
        return super().forward(x)

@pyrovae.register("network", "bad")
def bad(in_shape):
    """an encoder giving 3 numbers"""
    return Encoder(in_shape[0], 3)
'''

# case: (config key set to 'bad', plugin source, what the one line must say)
CASES = {
    "prior returning a tensor": ("model.prior.name", PRIOR_MODULE.format(value="self.loc"),
                                 "returned a Tensor when called; a prior module's call must return a distribution"),
    "prior factory returning 42": ("model.prior.name", FACTORY.format(family="prior", signature="latent_dim",
                                                                      body="return 42"),
                                   "returned 42 (int); its factory must return an nn.Module"),
    "prior with a wrong event dimension": (
        "model.prior.name", PRIOR_MODULE.format(value="dist.Normal(torch.zeros(3), 1.0).to_event(1)"),
        "event shape (3,); it must have batch shape () and event shape (latent_dim,) = (2,)"),
    "factory that raises": ("model.prior.name", FACTORY.format(family="prior", signature="latent_dim",
                                                               body="raise ValueError('no luck')"),
                            "failed when built (line 7): ValueError: no luck"),
    "encoder with the wrong output shape": (
        "model.encoder.name", HEAD + ENCODER_GIVING_3,
        "maps the first training batch (20, 6) to (20, 3); an encoder must give (batch, *encoder_out_shape) = (20, 2, 2)"),
    "estimator returning a string": ("train.estimator.name", FACTORY.format(family="estimator", signature="",
                                                                           body="return 'pathwise'"),
                                     "returned 'pathwise' (str); its factory must return a Pyro loss"),
    "optimizer returning None": ("train.optimizer.name", FACTORY.format(family="optimizer", signature="*, lr=1e-3",
                                                                       body="return None"),
                                 "returned None; its factory must return a pyro.optim optimizer"),
    "likelihood with a wrong batch shape": (
        "model.likelihood.name", HEAD + '''
@pyrovae.register("likelihood", "bad")
class Bad(pyrovae.Likelihood):
    """a Bernoulli with an extra batch dimension"""
    data_kind = "binary"

    def distribution(self, logits):
        return dist.Bernoulli(logits=logits[None])
''', "distribution(*params) has batch shape (1, 20, 6) and event shape (); distribution(*params) must return a "
     "distribution with batch shape (batch, *data_shape) = (20, 6)"),
    "required keyword-only option": ("model.prior.name", FACTORY.format(family="prior", signature="latent_dim, *, df",
                                                                        body="return None"),
                                     "needs the option 'df', which has no default; set it, e.g. model.prior.df=VALUE"),
    "plugin changing the working directory": ("", HEAD + "os.chdir(os.path.dirname(os.getcwd()))\n",
                                              "changed the working directory to"),
    "factory changing the working directory": ("model.prior.name", FACTORY.format(
        family="prior", signature="latent_dim", body="os.chdir('..')"), "changed the working directory to"),
    "plugin calling sys.exit": ("", HEAD + "sys.exit(3)\n", "failed to import (line 3): SystemExit: 3"),
    "plugin raising KeyboardInterrupt": ("", HEAD + "raise KeyboardInterrupt\n",
                                         "failed to import (line 3): KeyboardInterrupt"),
    "network whose forward fails": ("model.encoder.name", FACTORY.format(
        family="network", signature="in_shape", body="return nn.Linear(in_shape[0], 4)"),
        "failed on the first training batch: TypeError: Linear.forward() takes 2 positional arguments but 3 were "
        "given; a network must be an nn.Module mapping (..., *in_shape) and a condition to (..., *out_shape)"),
    "factory raising KeyboardInterrupt": ("model.prior.name", FACTORY.format(
        family="prior", signature="latent_dim", body="raise KeyboardInterrupt"),
        "failed when built (line 7): KeyboardInterrupt; "),
}


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A working directory holding 100 binary vectors of 6 values, data.npy."""
    np.save(tmp_path / "data.npy", (np.random.default_rng(0).random((100, 6)) < 0.3).astype(np.float32))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pyrovae: error: "), err
    return err


@pytest.mark.parametrize("case", list(CASES))
def test_a_plugin_breaking_the_contract_is_one_line_naming_it_and_leaves_no_run_folder(case, work, capsys):
    key, source, expected = CASES[case]
    plugin = work / "parts.py"
    plugin.write_text(source)
    overrides = [*TINY, "data.path=data.npy"] + ([f"{key}=bad"] if key else [])
    argv = ["train", "quickstart", "--out", "run", "--plugin", str(plugin)]
    err = _one_line_error(capsys, argv + [a for item in overrides for a in ("--set", item)])
    assert str(plugin) in err and expected in err
    if key:
        assert f"{key.rsplit('.', 1)[0]}: " in err and "'bad' (from plugin " in err
    assert not (work / "run").exists() and not (work.parent / "run").exists()
    assert Path.cwd() == work  # put back after a plugin moved it


def test_a_plugin_stopping_list_is_one_line_without_resume_advice(work, capsys):
    plugin = work / "parts.py"
    plugin.write_text("raise KeyboardInterrupt\n")
    err = _one_line_error(capsys, ["list", "--plugin", str(plugin)])
    assert str(plugin) in err and "--resume" not in err


def test_a_folder_given_as_a_plugin_says_it_is_a_folder(work, capsys):
    (work / "parts").mkdir()
    err = _one_line_error(capsys, ["list", "--plugin", "parts/"])
    assert f"plugin parts/ is a folder ({work / 'parts'}), not a Python file" in err


def test_a_failed_start_in_an_existing_folder_keeps_what_it_holds(work, capsys):
    plugin = work / "parts.py"
    plugin.write_text(FACTORY.format(family="prior", signature="latent_dim", body="return 42"))
    (work / "run").mkdir()
    (work / "run" / "notes.txt").write_text("mine")
    (work / "empty").mkdir()
    for out in ("run", "empty"):
        argv = ["train", "quickstart", "--out", out, "--plugin", str(plugin), "--set", "model.prior.name=bad"]
        _one_line_error(capsys, argv + [a for item in [*TINY, "data.path=data.npy"] for a in ("--set", item)])
    assert (work / "run" / "notes.txt").read_text() == "mine"
    assert (work / "empty").is_dir() and not any((work / "empty").iterdir())


def test_list_shows_a_required_option_as_required(work, capsys):
    plugin = work / "parts.py"
    plugin.write_text(FACTORY.format(family="prior", signature="latent_dim, *, df", body="return None"))
    assert main(["list", "--plugin", str(plugin)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("bad "))
    assert "[options: df=<required>]" in line
