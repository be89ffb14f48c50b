"""Sample quality: the Fréchet distance against independent computations, its finite-sample
bias, k-NN precision and recall on known geometry, the cached feature classifier, the
Inception weights file, the per-epoch score of training and ``pyrovae quality``."""

import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import mnist_test_images

from pyrovae import load_config
from pyrovae.cli import main
from pyrovae.components.datasets import Dataset, Split
from pyrovae.errors import PyrovaeError
from pyrovae.reports.plots import pca_projection
from pyrovae.runs.folder import metrics_text
from pyrovae.sample_quality import features as feature_module
from pyrovae.sample_quality import frechet_distance, gaussian_moments, precision_recall
from pyrovae.sample_quality.features import classifier_network, inception_network
from pyrovae.spec import config_text
from pyrovae.sweeps import load_sweep

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_gaussian(gen, d):
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return torch.randn(d, generator=gen, dtype=torch.float64), a @ a.T + 0.1 * torch.eye(d, dtype=torch.float64)


def test_the_frechet_distance_matches_scipys_matrix_square_root_on_known_gaussians():
    from scipy.linalg import sqrtm

    gen = torch.Generator().manual_seed(0)
    for d in (1, 3, 8, 30):
        (m1, s1), (m2, s2) = _random_gaussian(gen, d), _random_gaussian(gen, d)
        cross = sqrtm(s1.numpy() @ s2.numpy()).real
        expected = float(((m1 - m2) ** 2).sum() + s1.trace() + s2.trace()) - 2 * np.trace(cross)
        assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-8, abs=1e-8)


def test_the_frechet_distance_of_commuting_covariances_has_its_closed_form():
    """Diagonal covariances commute: d^2 = |m1 - m2|^2 + sum (sqrt(a) - sqrt(b))^2."""
    gen = torch.Generator().manual_seed(1)
    m1, m2 = torch.randn(6, generator=gen, dtype=torch.float64), torch.randn(6, generator=gen, dtype=torch.float64)
    a, b = torch.rand(6, generator=gen, dtype=torch.float64) + 0.01, torch.rand(6, generator=gen, dtype=torch.float64) * 5
    expected = float(((m1 - m2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    assert frechet_distance(m1, torch.diag(a), m2, torch.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_equal_singular_gaussians_are_at_distance_zero():
    """Fewer samples than dimensions (a rank-deficient covariance, as with 128 features of
    50 samples): the symmetric square root stays real and the distance to itself is zero."""
    features = torch.randn(50, 128, generator=torch.Generator().manual_seed(2))
    mean, cov = gaussian_moments(features)
    assert torch.linalg.matrix_rank(cov) < 128
    assert frechet_distance(mean, cov, mean, cov) < 1e-8 * float(cov.trace())
    np.testing.assert_allclose(cov.numpy(), np.cov(features.double().numpy(), rowvar=False), rtol=1e-10, atol=1e-12)


def test_the_finite_sample_bias_falls_as_one_over_the_sample_size():
    """Two samples of n points of N(0, I_d): the estimated distance is pure bias, to first order
    2d/n from the means and d(d + 1)/(2n) from the covariances (a quarter of the expected squared
    Frobenius distance of the two sample covariances), so 10x the samples cut it ~10x."""
    def mean_distance(n):
        values = []
        for seed in range(5):
            gen = torch.Generator().manual_seed(seed)
            a, b = torch.randn(n, 10, generator=gen), torch.randn(n, 10, generator=gen)
            values.append(frechet_distance(*gaussian_moments(a), *gaussian_moments(b)))
        return sum(values) / len(values)

    small, large = mean_distance(200), mean_distance(2000)
    assert 6 < small / large < 15
    assert large == pytest.approx(2 * 10 / 2000 + 10 * 11 / (2 * 2000), rel=0.25)


def test_precision_and_recall_on_known_geometry():
    gen = torch.Generator().manual_seed(3)
    left = torch.randn(400, 2, generator=gen) * 0.1
    right = torch.randn(400, 2, generator=gen) * 0.1 + torch.tensor([10.0, 0.0])
    real = torch.cat([left, right])
    same = torch.cat([torch.randn(400, 2, generator=gen) * 0.1, torch.randn(400, 2, generator=gen) * 0.1 + 10 * torch.eye(2)[0]])
    p, r = precision_recall(real, same)
    assert p > 0.9 and r > 0.9
    collapsed = torch.randn(800, 2, generator=gen) * 0.1  # one mode of two: realistic, half the variety
    p, r = precision_recall(real, collapsed)
    assert p > 0.9 and abs(r - 0.5) < 0.05
    far = torch.randn(800, 2, generator=gen) * 0.1 + 100
    assert precision_recall(real, far) == (0.0, 0.0)


def _labelled_digits(n_per_class=40, classes=(0, 1, 7)):
    """Real MNIST test digits of three classes, as a small labelled Dataset."""
    x, y = mnist_test_images(2000)
    keep = np.concatenate([np.flatnonzero(y == c)[:n_per_class] for c in classes])
    images = torch.from_numpy(x[keep]).float().div(255).unsqueeze(1)
    labels = torch.tensor([classes.index(int(v)) for v in y[keep]])
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    images, labels = images[order], labels[order]
    cut = int(0.8 * len(labels))
    train, test = Split(images[:cut], labels[:cut]), Split(images[cut:], labels[cut:])
    return Dataset("digits", (1, 28, 28), 3, train, test, test, class_names=tuple(map(str, classes)))


def test_the_classifier_is_trained_once_cached_and_accurate(tmp_path, monkeypatch):
    monkeypatch.setenv("PYROVAE_CACHE", str(tmp_path))
    data = _labelled_digits()
    spec = load_config({"data": {"name": "array", "path": str(tmp_path)}})  # only data.name is read
    network = classifier_network(spec.data, data)
    assert network.accuracy >= 0.75  # 0, 1 and 7 from 96 training digits (chance: 1/3)
    cached = list((tmp_path / "feature_networks").glob("*.pt"))
    assert len(cached) == 1 and cached[0].name.startswith("array-")

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier was trained again")

    monkeypatch.setattr(feature_module, "train_classifier", no_training)
    again = classifier_network(spec.data, data)
    assert again.accuracy == network.accuracy
    torch.testing.assert_close(again.features(data.test.x), network.features(data.test.x))
    assert network.features(data.test.x).shape == (len(data.test), 128)
    colour = data.test.x.expand(-1, 3, -1, -1)  # colour images go in as grey: the same features
    torch.testing.assert_close(network.features(colour), network.features(data.test.x), atol=1e-5, rtol=1e-5)


def test_a_missing_or_wrong_inception_file_is_a_one_line_error(tmp_path):
    with pytest.raises(PyrovaeError, match="not found.*downloads no weights"):
        inception_network(str(tmp_path / "absent.pth"))
    wrong = tmp_path / "wrong.pth"
    torch.save({"weight": torch.zeros(3)}, wrong)
    with pytest.raises(PyrovaeError, match="not a torchvision inception_v3 state dict") as caught:
        inception_network(str(wrong))
    assert "\n" not in str(caught.value)


def test_an_inception_weights_file_gives_2048_pool_features(tmp_path):
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    weights = tmp_path / "inception.pth"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), weights)
    network = inception_network(str(weights))
    grey = torch.rand(2, 1, 28, 28)
    features = network.features(grey)
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    torch.testing.assert_close(network.features(grey.expand(-1, 3, -1, -1)), features)


def test_quality_is_left_out_of_a_config_until_switched_on_and_is_checked():
    assert "quality" not in config_text(load_config("quickstart"))
    on = load_config("quickstart", ["train.quality.every=2"])
    assert "quality:\n    every: 2\n    samples: 2000" in config_text(on)
    with pytest.raises(PyrovaeError, match="train.quality.every must be an integer >= 0"):
        load_config("quickstart", ["train.quality.every=-1"])
    with pytest.raises(PyrovaeError, match="train.quality.samples"):
        load_config("quickstart", ["train.quality.samples=1"])


def test_metrics_text_adds_the_columns_some_rows_carry():
    rows = [{"epoch": 1, "step": 1, "kl_weight": 1, "lr": 1, "train_elbo": 0, "valid_elbo": 0, "seconds": 0},
            {"epoch": 2, "step": 2, "kl_weight": 1, "lr": 1, "train_elbo": 0, "valid_elbo": 0, "seconds": 0,
             "frechet": 3.5}]
    assert metrics_text(rows).splitlines() == ["epoch,step,kl_weight,lr,train_elbo,valid_elbo,seconds,frechet",
                                               "1,1,1,1,0,0,0,", "2,2,1,1,0,0,0,3.5"]
    assert "frechet" not in metrics_text(rows[:1])


def _digit_folder(root):
    from PIL import Image

    data = _labelled_digits(30)
    for i, (x, y) in enumerate(zip(torch.cat([data.train.x, data.test.x]), torch.cat([data.train.y, data.test.y]))):
        folder = root / data.class_names[int(y)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((x[0] * 255).round().byte().numpy()).save(folder / f"{i:03d}.png")
    return root


def _train(folder, run, *extra):
    return main(["train", "quickstart", "--out", str(run), "--quiet", "--set", "data.name=array",
                 "--set", f"data.path={folder}", "--set", "model.likelihood.name=discretized_logistic",
                 "--set", "model.encoder.hidden=[32]", "--set", "model.decoder.hidden=[32]",
                 "--set", "model.latent_dim=3", "--set", "train.epochs=2", "--set", "train.device=cpu",
                 "--set", "data.train_size=40", *extra])


def test_per_epoch_quality_changes_no_metric_and_quality_scores_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYROVAE_CACHE", str(tmp_path / "cache"))
    folder = _digit_folder(tmp_path / "digits")
    assert _train(folder, tmp_path / "off") == 0
    assert _train(folder, tmp_path / "on", "--set", "train.quality.every=1", "--set", "train.quality.samples=20") == 0
    off = (tmp_path / "off" / "metrics.csv").read_text().splitlines()
    on = (tmp_path / "on" / "metrics.csv").read_text().splitlines()
    assert on[0].endswith("seconds,frechet,precision,recall,frechet_floor") and "frechet" not in off[0]
    # epoch ... valid_elbo (the seconds differ): scoring drew none of training's randomness
    assert [line.split(",")[:6] for line in on] == [line.split(",")[:6] for line in off]
    scores = [float(v) for v in on[2].split(",")[7:]]
    assert scores[0] > 0 and 0 <= scores[1] <= 1 and 0 <= scores[2] <= 1 and scores[3] > 0
    assert (tmp_path / "on" / "figures" / "sample_quality.png").is_file()
    assert "Fréchet distance" in (tmp_path / "on" / "report.md").read_text()
    assert (tmp_path / "on" / "figures" / "latent_space.png").is_file()  # 3-D latents are drawn

    capsys.readouterr()
    assert main(["quality", str(tmp_path / "on"), "--samples", "20", "--seeds", "2"]) == 0
    summary = json.loads((tmp_path / "on" / "quality.json").read_text())
    assert summary["samples"] == 20 and summary["floor_samples"] == 9  # the test split holds 9 digits
    model = summary["model"]["frechet"]
    assert len(model["values"]) == 2 and model["sd"] == pytest.approx(np.std(model["values"], ddof=1))
    assert summary["floor"]["frechet"]["mean"] < model["mean"]  # 2 epochs of a tiny VAE are far from the data
    # the classifier and the reference are the whole training split, not the 40 images trained on
    assert "trained on the 72 labelled training images of array" in summary["features"]
    assert "## Sample quality" in (tmp_path / "on" / "report.md").read_text()
    assert "frechet:" in capsys.readouterr().out


def test_quality_of_a_folder_that_is_no_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["quality", str(tmp_path / "absent")]) == 2
    assert "no run folder" in capsys.readouterr().err


def test_the_pca_projection_keeps_the_variance_of_a_plane():
    gen = torch.Generator().manual_seed(4)
    plane = torch.randn(500, 2, generator=gen) @ torch.randn(2, 6, generator=gen)
    projected, share = pca_projection(plane + 1e-4 * torch.randn(500, 6, generator=gen))
    assert projected.shape == (500, 2) and share == pytest.approx(1, abs=1e-6)
    assert math.isclose(float(projected.var(0).sum()), float(plane.var(0).sum()), rel_tol=1e-3)


def test_the_docs_report_draws_every_recorded_stage(tmp_path):
    """benchmarks/sample_quality/report.py, as the site build runs it, on the committed results."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "sample_quality" / "report.py"), "--out",
                           str(tmp_path)], capture_output=True, text=True, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root), "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr
    recorded = {p.stem for p in (root / "benchmarks" / "sample_quality" / "results").glob("*.json")}
    for stage, figure in [("floor", "floor.png"), ("fashion_trajectory", "trajectories.png"), ("priors", "priors.png")]:
        assert (tmp_path / figure).is_file() == (stage in recorded)
    floor = json.loads((root / "benchmarks" / "sample_quality" / "results" / "floor.json").read_text())
    first = floor["rows"][0]
    assert f"| {first['samples']} |" in (tmp_path / "floor.md").read_text()


def _benchmark_script(name: str):
    """``benchmarks/sample_quality/NAME.py`` as a module."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "sample_quality" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"sample_quality_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_priors_sweep_records_log_px_and_the_score_of_every_run_and_the_docs_table(tmp_path, monkeypatch):
    """The priors stage of benchmarks/sample_quality: a sweep shaped like the built-in
    fashion_priors_quality (tiny), then ``pyrovae quality`` of each run, then report.py's table."""
    monkeypatch.setenv("PYROVAE_CACHE", str(tmp_path / "cache"))
    builtin = load_sweep("fashion_priors_quality")
    assert builtin.base["name"] == "fashion_vae" and len(builtin.grid["model.prior.name"]) >= 3
    assert builtin.set["train.quality.every"] == builtin.set["train.epochs"]  # each run scored at its last epoch
    folder = _digit_folder(tmp_path / "digits")
    tiny = {"name": "priors_tiny", "base": "quickstart", "grid": {"model.prior.name": ["standard_normal", "mog"]},
            "seeds": 2, "evaluate": {"split": "test", "num_samples": 10},
            "set": {"data.name": "array", "data.path": str(folder), "data.train_size": 40,
                    "model.likelihood.name": "discretized_logistic", "model.encoder.hidden": [32],
                    "model.decoder.hidden": [32], "model.latent_dim": 3, "train.epochs": 2, "train.device": "cpu",
                    "train.quality.every": 2, "train.quality.samples": 20}}
    result = _benchmark_script("measure").priors(load_sweep(tiny), tmp_path / "sweep", {"samples": 20, "seeds": 2})
    rows = result["rows"]
    assert [(r["prior"], r["seed"]) for r in rows] == [("standard_normal", 0), ("standard_normal", 1),
                                                        ("mog", 0), ("mog", 1)]
    for r in rows:
        assert r["log_px"] < 0 and r["log_px_se"] > 0 and r["log_px_points"] == 9 and r["is_samples"] == 10
        assert r["last_epoch"]["epoch"] == 2 and r["last_epoch"]["frechet"] > 0  # the sweep's own score
        assert len(r["per_point"]["log_px"]) == 9 and statistics.fmean(r["per_point"]["log_px"]) == pytest.approx(
            r["log_px"], abs=1e-2)  # the per-image estimates behind the mean, for paired differences
        draws = r["quality"]["model"]["frechet"]["values"]
        assert len(draws) == 2 and r["quality"]["model"]["frechet"]["sd"] == pytest.approx(np.std(draws, ddof=1))
    assert len({r["log_px"] for r in rows}) == 4  # four different runs

    report = _benchmark_script("report")
    monkeypatch.setattr(report, "RESULTS", tmp_path / "results")
    report.RESULTS.mkdir()
    (report.RESULTS / "priors.json").write_text(json.dumps({**result, "wall_seconds": 60.0, "machine": "test"}))
    (tmp_path / "out").mkdir()
    report.priors(tmp_path / "out")
    text = (tmp_path / "out" / "priors.md").read_text()
    assert f"| mog | 1 | {rows[3]['log_px']:.1f} ± {rows[3]['log_px_se']:.1f} |" in text
    assert "| test split (floor) |" in text
    assert any(f"order {alike} of the 1 pairs of priors alike" in text for alike in (0, 1))
    per_prior = [np.mean([rows[i]["per_point"]["log_px"], rows[i + 1]["per_point"]["log_px"]], axis=0) for i in (0, 2)]
    first, second = per_prior if rows[0]["log_px"] + rows[1]["log_px"] > rows[2]["log_px"] + rows[3]["log_px"] \
        else per_prior[::-1]
    difference = first - second
    assert f"{difference.mean():.1f} ± {difference.std(ddof=1) / 3:.1f}" in text  # paired over the 9 test images
    assert (tmp_path / "out" / "priors.png").is_file()


def test_the_frey_faces_written_as_png_files_come_back_through_the_face_folder_loader(tmp_path):
    """benchmarks/sample_quality/frey_folder.py and the celeba dataset's "any folder of faces"."""
    from pyrovae.components.datasets import load_data

    assert _benchmark_script("frey_folder").write_faces(tmp_path / "faces") == 1965
    spec = load_config("celeba_conv", [f"data.path={tmp_path / 'faces'}", "data.crop=20", "data.size=20",
                                       "data.channels=1"])
    faces = load_data(spec.data)
    assert (len(faces.train), len(faces.valid), len(faces.test)) == (1573, 196, 196)
    assert faces.train.x.shape[1:] == (1, 20, 20)
    frey = load_data(load_config({"data": {"name": "frey_faces"}}).data)
    centres = torch.cat([frey.train.x, frey.valid.x, frey.test.x])[:, :, 4:24, :]  # the middle 20 of 28 rows
    for image in faces.test.x[:5]:  # 8-bit values kept exactly: each is the centre of a Frey face
        assert ((centres - image).abs().amax(dim=(1, 2, 3)) == 0).any()


def test_a_face_run_is_recorded_with_the_overrides_that_make_its_config():
    faces = _benchmark_script("faces")
    base = load_config("celeba_conv").to_dict()
    run = load_config("celeba_conv", ["data.size=32", "data.channels=1", "train.epochs=3", "train.progress=false"])
    assert faces.overrides(run.to_dict(), base) == ["data.size=32", "data.channels=1", "train.epochs=3"]
    assert faces.overrides(base, base) == []
