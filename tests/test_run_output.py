"""What a run tells its user: plain per-epoch lines off a terminal, --version, TensorBoard logs."""

import csv
import sys

import numpy as np
import pytest
import torch
from conftest import mnist_test_images, tiny_overrides

import pyrovae
from pyrovae.cli import main
from pyrovae.commands.train import train as train_and_report
from pyrovae.errors import PyrovaeError
from pyrovae.reports.training import make_figures
from pyrovae.runs.checkpoint import load_checkpoint
from pyrovae.training.train import train


def small_digits(tmp_path, **extra):
    """Overrides for a tiny VAE on 300 grey MNIST test digits (quick to load)."""
    np.save(tmp_path / "digits.npy", mnist_test_images(300)[0])
    return tiny_overrides(**{"data.name": "array", "data.path": tmp_path / "digits.npy",
                             "model.likelihood.name": "continuous_bernoulli", "train.batch_size": 50, **extra})


def test_off_a_terminal_training_prints_one_plain_line_per_epoch(tmp_path, capsys):
    assert main(["train", "quickstart", "--out", str(tmp_path / "run"),
                 *sum((["--set", o] for o in small_digits(tmp_path, **{"train.epochs": 2, "train.progress": "true"})), [])]) == 0
    out, err = capsys.readouterr()
    assert "\r" not in out + err
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2"]


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"pyrovae {pyrovae.__version__}"


def test_tensorboard_logs_the_elbo_its_terms_the_schedule_and_images(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = pyrovae.train("quickstart", out=tmp_path / "run",
                        overrides=small_digits(tmp_path, **{"train.epochs": 2, "train.log": "tensorboard"}))
    events = EventAccumulator(str(run.folder / "tensorboard"), size_guidance={"images": 0}).Reload()
    with open(run.folder / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for key in ("train_elbo", "valid_elbo", "kl_weight", "lr"):
        logged = events.Scalars(key)
        assert [e.step for e in logged] == [int(r["step"]) for r in rows]
        assert [e.value for e in logged] == pytest.approx([float(r[key]) for r in rows], rel=1e-6)
    reconstruction = [e.value for e in events.Scalars("valid_reconstruction")]
    rate = [e.value for e in events.Scalars("valid_rate")]
    # The two terms make up the validation ELBO: one-sample estimates on 500 of its points.
    for rec, kl, row in zip(reconstruction, rate, rows):
        assert rate[0] > 0 and rec - kl == pytest.approx(float(row["valid_elbo"]), abs=3.0)
    assert {"reconstructions", "samples"} <= set(events.Tags()["images"])
    image = events.Images("samples")[-1]
    assert image.width > 28 and image.height > 28


def _trained(folder, mnist_data, epochs: int, tensorboard: bool, resume: bool = False) -> dict:
    """The checkpoint of a tiny MNIST run of ``epochs`` epochs (resumed from ``folder``)."""
    overrides = [f"train.epochs={epochs}"] + (["train.log=tensorboard"] if tensorboard else [])
    spec = pyrovae.load_config(folder if resume else "quickstart", overrides if resume else tiny_overrides() + overrides)
    train(spec, folder, resume=resume, data=mnist_data)
    return load_checkpoint(folder)


def _same_training(a: dict, b: dict) -> bool:
    """Bit for bit the same parameters, optimizer state, random state and metrics (but seconds)."""
    untimed = [[{k: v for k, v in row.items() if k != "seconds"} for row in s["metrics"]] for s in (a, b)]
    return (all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
            and all(torch.equal(v, b["optim"][name][k]) for name, state in a["optim"].items() for k, v in state.items())
            and torch.equal(a["rng"], b["rng"]) and untimed[0] == untimed[1])


def test_tensorboard_changes_nothing_training_draws_and_resumes_exactly(tmp_path, mnist_data):
    """Its ELBO terms and image grids draw from a stream of their own: the same config and
    seed train to the same parameters and metrics with the log or without it, and
    1 epoch + --resume + 1 epoch equals 2 epochs with the log on."""
    pytest.importorskip("tensorboard")
    plain = _trained(tmp_path / "plain", mnist_data, 2, tensorboard=False)
    logged = _trained(tmp_path / "logged", mnist_data, 2, tensorboard=True)
    _trained(tmp_path / "resumed", mnist_data, 1, tensorboard=True)
    resumed = _trained(tmp_path / "resumed", mnist_data, 2, tensorboard=True, resume=True)
    assert _same_training(plain, logged)
    assert _same_training(plain, resumed)


def test_report_figures_draw_privately_and_are_redrawn_the_same(tmp_path, mnist_data):
    """The figures' samples leave the global random state alone, and drawing them again (as
    'pyrovae report' does) gives the very images training's report drew."""
    spec = pyrovae.load_config("quickstart", tiny_overrides())
    result = train_and_report(spec, tmp_path, data=mnist_data)
    drawn = {name: (tmp_path / "figures" / name).read_bytes() for name in ("samples.png", "reconstructions.png")}
    torch.randn(10)  # whatever was drawn in between
    before = torch.get_rng_state()
    make_figures(result, spec.seed)
    assert torch.equal(torch.get_rng_state(), before)
    assert {name: (tmp_path / "figures" / name).read_bytes() for name in drawn} == drawn


def test_tensorboard_without_the_package_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(PyrovaeError, match="pip install 'pyrovae\\[tensorboard\\]'"):
        pyrovae.train("quickstart", out=tmp_path / "run", overrides=small_digits(tmp_path, **{"train.log": "tensorboard"}))


def test_an_unknown_log_is_refused():
    with pytest.raises(PyrovaeError, match="train.log must be one of tensorboard.*did you mean 'tensorboard'"):
        pyrovae.load_config("quickstart", ["train.log=tensorbord"])
