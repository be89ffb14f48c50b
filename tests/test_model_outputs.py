"""The commands that use a trained model: sample, reconstruct, encode, interpolate, export.

Each result is checked against the model it came from (``pyrovae.load``), and the export in a
separate Python process that does not import pyrovae."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import pyrovae
from pyrovae.cli import main
from tests.conftest import tiny_overrides


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    folder = tmp_path_factory.mktemp("outputs") / "run"
    pyrovae.train("quickstart", out=folder, overrides=tiny_overrides(**{"model.latent_dim": 2}))
    return folder


def test_sample_decodes_prior_draws_and_repeats_with_its_seed(trained, tmp_path):
    out = pyrovae.sample(trained, n=12, seed=3, out=tmp_path / "a")
    again = pyrovae.sample(trained, n=12, seed=3, out=tmp_path / "b")
    other = pyrovae.sample(trained, n=12, seed=4, out=tmp_path / "c")
    assert out["z"].shape == (12, 2) and out["mean"].shape == (12, 1, 28, 28)
    assert np.array_equal(out["z"], again["z"]) and not np.array_equal(out["z"], other["z"])
    vae = pyrovae.load(trained).vae
    expected = vae.decode_mean(torch.from_numpy(out["z"])).detach().numpy()
    np.testing.assert_allclose(out["mean"], expected, atol=1e-6)
    saved = np.load(tmp_path / "a" / "samples.npz")
    assert np.array_equal(saved["mean"], out["mean"]) and (tmp_path / "a" / "samples.png").is_file()


def test_reconstruct_points_of_a_split_and_of_a_file(trained, tmp_path):
    run = pyrovae.load(trained)
    out = pyrovae.reconstruct(trained, split="test", points=[3, 7, 42], out=tmp_path)
    x = run.data.test.x[[3, 7, 42]]
    assert np.array_equal(out["x"], x.numpy()) and list(out["index"]) == [3, 7, 42]
    np.testing.assert_allclose(out["reconstruction"], run.vae.reconstruct(x).detach().numpy(), atol=1e-6)
    np.save(tmp_path / "mine.npy", x.numpy())
    given = pyrovae.reconstruct(trained, input_file=tmp_path / "mine.npy", out=tmp_path)
    np.testing.assert_allclose(given["reconstruction"], out["reconstruction"], atol=1e-6)
    assert {"reconstructions_test.npz", "reconstructions_test.png", "reconstructions_mine.npz"} <= {
        p.name for p in tmp_path.iterdir()}


def test_encode_writes_every_point_of_the_split(trained):
    run = pyrovae.load(trained)
    out = pyrovae.encode(trained, split="valid")
    loc, scale = run.vae.encode(run.data.valid.x)
    assert out["loc"].shape == (len(run.data.valid), 2)
    np.testing.assert_allclose(out["loc"], loc.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(out["scale"], scale.detach().numpy(), rtol=1e-5)
    assert np.array_equal(out["code"], out["loc"])  # a diagonal Gaussian's code is its mean
    assert np.array_equal(np.load(trained / "outputs" / "latents_valid.npy"), out["code"])
    assert "y" not in out.arrays  # binarized MNIST has no labels


@pytest.mark.parametrize("guide", ["full_covariance", "bernoulli"])
def test_encode_and_interpolate_work_with_any_guide(tmp_path, one_thread, guide):
    setting = f"model.guide.name={guide}" if guide != "bernoulli" else "model.latent.name=bernoulli"
    estimator = {} if guide != "bernoulli" else {"train.estimator.name": "score_loo"}
    folder = tmp_path / "run"
    pyrovae.train("quickstart", out=folder, overrides=[*tiny_overrides(**{"model.latent_dim": 3}, **estimator),
                                                      setting])
    run = pyrovae.load(folder)
    out = pyrovae.encode(folder, split="valid", n=20, out=tmp_path)
    expected = run.vae.latent_code(run.data.valid.x[:20]).detach().numpy()
    np.testing.assert_allclose(out["code"], expected, atol=1e-5)
    assert "loc" not in out.arrays and "scale" not in out.arrays
    line = pyrovae.interpolate(folder, points=[0, 1], split="valid", steps=3, out=tmp_path)
    np.testing.assert_allclose(line["z"][0, 0], expected[0], atol=1e-5)
    np.testing.assert_allclose(line["z"][0, -1], expected[1], atol=1e-5)


def test_interpolate_runs_between_the_points_means(trained, tmp_path):
    run = pyrovae.load(trained)
    out = pyrovae.interpolate(trained, points=[3, 7, 9], steps=5, out=tmp_path)
    loc, _ = run.vae.encode(run.data.test.x[[3, 7, 9]])
    assert out["z"].shape == (2, 5, 2) and out["mean"].shape == (2, 5, 1, 28, 28)
    np.testing.assert_allclose(out["z"][0, 0], loc[0].detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(out["z"][1, -1], loc[2].detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(out["z"][0, -1], out["z"][1, 0], atol=1e-6)  # legs meet at point 7
    np.testing.assert_allclose(out["mean"][0, 0], run.vae.decode_mean(loc[:1])[0].detach().numpy(), atol=1e-6)


def test_the_commands_on_the_command_line(trained, tmp_path, capsys):
    for argv in (["sample", str(trained), "-n", "8", "--out", str(tmp_path)],
                 ["reconstruct", str(trained), "--split", "test", "-n", "5", "--out", str(tmp_path)],
                 ["encode", str(trained), "--split", "test", "-n", "30", "--out", str(tmp_path)],
                 ["interpolate", str(trained), "--points", "3,7", "--out", str(tmp_path)]):
        assert main(argv) == 0
    assert capsys.readouterr().out.count("wrote ") == 4
    assert np.load(tmp_path / "latents_test.npy").shape == (30, 2)
    assert np.load(tmp_path / "reconstructions_test.npz")["x"].shape == (5, 1, 28, 28)
    assert main(["interpolate", str(trained), "--points", "3"]) == 2
    assert main(["reconstruct", str(trained), "--points", "99999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "two points or more" in err[0] and "does not exist" in err[1]


CLEAN_PROCESS = """
import sys
import numpy as np
import torch
folder = sys.argv[1]
encoder = torch.jit.load(folder + '/encoder.pt')
decoder = torch.jit.load(folder + '/decoder.pt')
x = torch.from_numpy(np.load(folder + '/x.npy'))
z = torch.from_numpy(np.load(folder + '/z.npy'))
loc, scale = encoder(x)
np.savez(folder + '/got.npz', loc=loc.detach().numpy(), scale=scale.detach().numpy(),
         mean=decoder(z).detach().numpy())
assert not any(name.startswith('pyrovae') for name in sys.modules), 'pyrovae was imported'
"""


def test_export_reproduces_the_model_in_a_process_without_pyrovae(trained, tmp_path):
    folder = pyrovae.export(trained, out=tmp_path / "export")
    run = pyrovae.load(trained)
    x = run.data.test.x[:37]  # another batch size than export traced and checked with
    z = torch.randn(23, 2)
    np.save(folder / "x.npy", x.numpy())
    np.save(folder / "z.npy", z.numpy())
    # -I: isolated from PYTHONPATH, the working directory and user site-packages, so pyrovae cannot be found
    done = subprocess.run([sys.executable, "-I", "-c", CLEAN_PROCESS, str(folder)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    got = np.load(folder / "got.npz")
    loc, scale = run.vae.encode(x)
    np.testing.assert_allclose(got["loc"], loc.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["scale"], scale.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["mean"], run.vae.decode_mean(z).detach().numpy(), rtol=1e-6, atol=1e-6)
    description = json.loads((folder / "model.json").read_text())
    assert description["latent_dim"] == 2 and description["data_shape"] == [1, 28, 28]
    assert description["checkpoint"]["epoch"] == run.epochs_done
