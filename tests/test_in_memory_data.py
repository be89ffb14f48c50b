"""pyrovae.train(..., data=...): data in memory (a tensor or array with labels, a torch Dataset,
a DataLoader) kept in the run folder, so the run resumes, evaluates and reports from the folder
alone, in another process and after the folder is moved."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

import pyrovae
from pyrovae.errors import PyrovaeError
from tests.conftest import mnist_test_images, tiny_overrides

GREY = tiny_overrides(**{"model.likelihood.name": "continuous_bernoulli", "model.latent_dim": 2,
                         "data.train_size": "null"})


@pytest.fixture(scope="module")
def digits():
    """600 grey MNIST test digits (uint8, as the files hold them) and their labels."""
    x, y = mnist_test_images(600)
    return torch.from_numpy(x), torch.from_numpy(y)


def test_a_tensor_trains_and_the_folder_alone_resumes_evaluates_and_reports(tmp_path, digits, one_thread):
    x, y = digits
    run = pyrovae.train("quickstart", out=tmp_path / "run", overrides=GREY, data=x, labels=y)
    kept = np.load(run.folder / "data.npz")
    assert np.array_equal(kept["x"], x.numpy()) and np.array_equal(kept["y"], y.numpy())
    assert kept["x"].dtype == np.uint8  # kept as given: the array dataset scales uint8 to [0, 1]
    data = yaml.safe_load((run.folder / "config.yaml").read_text())["data"]
    assert data["name"] == "array" and data["path"] == "data.npz" and data["y"] == "y"
    assert len(run.data.train) + len(run.data.valid) + len(run.data.test) == 600
    assert float(run.data.train.x.max()) == pytest.approx(1.0) and run.data.train.y is not None

    moved = tmp_path / "moved" / "run"
    shutil.move(str(run.folder), moved)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(pyrovae.__file__).parents[1])}
    for argv in (["train", str(moved), "--resume", "--set", "train.epochs=2", "--quiet"],
                 ["evaluate", str(moved), "--num-samples", "20", "--max-points", "10", "--quiet"],
                 ["report", str(moved)]):
        done = subprocess.run([sys.executable, "-m", "pyrovae.cli", *argv], cwd=elsewhere, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    again = pyrovae.load(moved)
    assert again.epochs_done == 2 and np.array_equal(again.data.test.x.numpy(), run.data.test.x.numpy())
    assert "## Evaluation" in (moved / "report.md").read_text()


@pytest.mark.parametrize("form", ["array", "pair", "dataset", "loader"])
def test_every_form_of_data_in_memory_keeps_the_same_file(tmp_path, digits, form):
    x, y = digits[0][:60], digits[1][:60]
    given = {"array": dict(data=x.numpy(), labels=y.numpy()), "pair": dict(data=(x, y)),
             "dataset": dict(data=TensorDataset(x, y)), "loader": dict(data=DataLoader(TensorDataset(x, y)))}[form]
    from pyrovae.commands.train import keep_data
    from pyrovae.spec import load_config

    spec = keep_data(load_config("quickstart", GREY), tmp_path / "run", **given)
    kept = np.load(tmp_path / "run" / "data.npz")
    assert np.array_equal(kept["x"], x.numpy()) and np.array_equal(kept["y"], y.numpy())
    assert spec.data.name == "array" and spec.data.options["path"] == str(tmp_path / "run" / "data.npz")


def test_wrong_data_are_one_line_errors(tmp_path, digits):
    x = digits[0][:50].float()
    with pytest.raises(PyrovaeError, match="must be a torch tensor, a NumPy array, a torch Dataset") as error:
        pyrovae.train("quickstart", out=tmp_path / "a", overrides=GREY, data=["not", "data"])
    config = {"name": "mine", "data": {"name": "array", "path": x}}
    with pytest.raises(PyrovaeError) as error:
        pyrovae.train(config, out=tmp_path / "b")
    message = str(error.value)
    assert "data=x" in message and "\n" not in message and len(message) < 200
    from pyrovae.spec import load_config

    with pytest.raises(PyrovaeError) as error:  # the config itself, however it is loaded
        load_config(config)
    assert "data.path must be a string, got a Tensor of shape (50, 28, 28)" in str(error.value)
    with pytest.raises(PyrovaeError, match="leave out data="):
        pyrovae.train(tmp_path / "a", resume=True, data=x)
