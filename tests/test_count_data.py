"""Count data: data.scale=none keeps integer values, and the built-in poisson and binomial
likelihoods score them (and refuse data that are not their counts)."""

import math

import numpy as np
import pytest
import torch

import pyrovae
from pyrovae.components import LIKELIHOODS
from pyrovae.components.likelihoods import check_data_fits
from pyrovae.errors import PyrovaeError
from tests.conftest import mnist_test_images, tiny_overrides


def test_the_likelihoods_are_the_poisson_and_binomial_distributions():
    raw = torch.randn(5, 3)
    x = torch.tensor([[0.0, 3, 7]] * 5)
    poisson = LIKELIHOODS.build("poisson")
    rate = 1e-3 + raw.exp()
    assert torch.allclose(poisson.distribution(raw).log_prob(x),
                          x * rate.log() - rate - torch.lgamma(x + 1), atol=1e-5)
    binomial = LIKELIHOODS.build("binomial", options={"total_count": 7})
    p = torch.sigmoid(raw)
    expected = (torch.lgamma(torch.tensor(8.0)) - torch.lgamma(x + 1) - torch.lgamma(8 - x)
                + x * p.log() + (7 - x) * (1 - p).log())
    assert torch.allclose(binomial.distribution(raw).log_prob(x), expected, atol=1e-4)
    means = torch.tensor([0.5, 2.0, 40.0])  # data_init: the decoder starts at the data's mean
    assert torch.allclose(poisson.mean(poisson.raw_location(means)), means, rtol=1e-4)
    assert torch.allclose(binomial.mean(binomial.raw_location(means / 10)), means / 10, rtol=1e-4)


def test_their_data_checks():
    poisson = LIKELIHOODS.build("poisson")
    binomial = LIKELIHOODS.build("binomial", options={"total_count": 10})
    counts = torch.tensor([[0.0, 4, 10]])
    check_data_fits("poisson", poisson, counts)
    check_data_fits("binomial", binomial, counts)
    with pytest.raises(PyrovaeError, match="needs count data .non-negative integers.*data.scale=none"):
        check_data_fits("poisson", poisson, counts / 255)  # counts scaled to [0, 1]
    with pytest.raises(PyrovaeError, match="needs count data"):
        check_data_fits("poisson", poisson, torch.tensor([[-1.0, 2.0]]))
    with pytest.raises(PyrovaeError, match=r"needs counts out of total_count=10 \(integers from 0 to 10\)"):
        check_data_fits("binomial", binomial, counts + 1)
    assert LIKELIHOODS.build("binomial").total_count == 255  # 8-bit values by default
    with pytest.raises(PyrovaeError, match="total_count must be a positive integer"):
        LIKELIHOODS.build("binomial", options={"total_count": 0})


@pytest.fixture(scope="module")
def digit_counts(tmp_path_factory):
    """1000 MNIST test digits as the files hold them: 8-bit pixel values, counts out of 255."""
    x, _ = mnist_test_images(1000)
    path = tmp_path_factory.mktemp("counts") / "digits.npy"
    np.save(path, x)
    return path


def _overrides(path, likelihood, *extra):
    return tiny_overrides(**{"data.name": "array", "data.path": str(path), "data.train_size": "null",
                             "model.likelihood.name": likelihood, "model.latent_dim": 2,
                             "train.epochs": 2, "train.batch_size": 50}) + list(extra)


def test_a_binomial_run_on_eight_bit_counts(digit_counts, tmp_path, one_thread):
    """The count-data run: pixel values kept as integers 0..255 and scored as Binomial(255, p)."""
    run = pyrovae.train("quickstart", out=tmp_path / "run", overrides=_overrides(
        digit_counts, "binomial", "model.likelihood.total_count=255", "data.scale=none"))
    x = run.data.train.x
    assert float(x.max()) == 255 and bool((x == x.round()).all())  # not divided by 255
    sample = run.vae.sample(4)
    assert float(sample.min()) >= 0 and float(sample.max()) <= 255
    ev = pyrovae.evaluate(run, num_samples=50, max_points=20, elbo_particles=2)
    assert math.isfinite(ev.log_px) and ev.log_px >= ev["iwae"][0]["mean"]
    assert ev["bits_per_dim_formula"].endswith("integer counts per dimension")
    assert ev["bits_per_dim"] == pytest.approx(-ev.log_px / (784 * math.log(2)))
    from pyrovae.runs.csvlog import read_rows

    valid = [float(r["valid_elbo"]) for r in read_rows(run.folder / "metrics.csv")]
    assert valid[1] > valid[0]  # it learns: the second epoch's validation ELBO is higher


def test_count_data_scaled_by_default_are_refused_with_the_setting_that_keeps_them(digit_counts, tmp_path):
    with pytest.raises(PyrovaeError, match="data.scale=none"):
        pyrovae.train("quickstart", out=tmp_path / "run", overrides=_overrides(
            digit_counts, "binomial", "model.likelihood.total_count=255"))
    with pytest.raises(PyrovaeError, match="data.scale must be auto"):
        pyrovae.train("quickstart", out=tmp_path / "run2", overrides=_overrides(digit_counts, "poisson",
                                                                                "data.scale=raw"))


def test_a_poisson_run_on_coarse_counts(tmp_path, one_thread):
    """Pixel values in 8 levels (value // 32: integers 0..7) as Poisson counts."""
    x, _ = mnist_test_images(600)
    np.save(tmp_path / "coarse.npy", (x // 32).astype(np.int64))
    run = pyrovae.train("quickstart", out=tmp_path / "run", overrides=_overrides(
        tmp_path / "coarse.npy", "poisson", "data.scale=none", "train.epochs=1"))
    assert float(run.data.train.x.max()) == 7
    assert math.isfinite(run.best_valid_elbo) and run.best_valid_elbo < 0
