"""The course's claims that are formulas: chapter 1's identity log p(x) - ELBO = KL on the
conjugate model, and chapter 2's measured gradient variances against their exact values.
The tests call the same functions the chapters' scripts draw their figures and tables from."""

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "course"))

import ch1_elbo  # noqa: E402
import ch2_gradients  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_chapter1_gap_is_the_kl_divergence_to_the_posterior():
    mu, sigma = torch.meshgrid(torch.linspace(-3, 4, 71, dtype=torch.float64),
                               torch.linspace(0.05, 3, 60, dtype=torch.float64), indexing="xy")
    for x, noise in [(1.5, 0.8), (-2.0, 0.3), (4.0, 2.0)]:
        log_px, elbo, kl = ch1_elbo.identity_terms(x, noise, mu, sigma)
        assert log_px.item() == pytest.approx(-0.5 * math.log(2 * math.pi * (1 + noise ** 2))
                                              - x ** 2 / (2 * (1 + noise ** 2)), abs=1e-12)
        assert (log_px - elbo - kl).abs().max().item() < 1e-6
        assert (kl >= 0).all()


def test_chapter1_elbo_is_largest_at_the_posterior_and_equals_log_px_there():
    x, noise = ch1_elbo.X, ch1_elbo.NOISE
    post_mean, post_sd = x / (1 + noise ** 2), noise / math.sqrt(1 + noise ** 2)
    at = torch.tensor([post_mean], dtype=torch.float64)
    log_px, elbo, kl = ch1_elbo.identity_terms(x, noise, at, torch.tensor([post_sd], dtype=torch.float64))
    assert elbo.item() == pytest.approx(log_px.item(), abs=1e-12)
    assert kl.item() == pytest.approx(0.0, abs=1e-12)
    nearby = torch.tensor([post_mean + 0.01, post_mean - 0.01, post_mean], dtype=torch.float64)
    _, other, _ = ch1_elbo.identity_terms(x, noise, nearby, torch.tensor([post_sd, post_sd, post_sd * 1.01]).double())
    assert (other < elbo).all()


@pytest.mark.parametrize("mu, sigma", [(-0.5, 1.0), (1.5, 0.3), (2.0, 0.62)])
def test_chapter1_pyro_trace_elbo_agrees_with_the_closed_form(mu, sigma):
    torch.manual_seed(0)
    estimate, error = ch1_elbo.pyro_elbo(ch1_elbo.X, ch1_elbo.NOISE, mu, sigma, 2000, 20)
    _, elbo, _ = ch1_elbo.identity_terms(ch1_elbo.X, ch1_elbo.NOISE, torch.tensor([mu], dtype=torch.float64),
                                         torch.tensor([sigma], dtype=torch.float64))
    assert abs(estimate - elbo.item()) < 3 * error


@pytest.mark.parametrize("name", ["pathwise", "stl", "score"])
def test_chapter2_closed_forms_equal_exact_quadrature(name):
    for x, m, s, baseline in [(1.0, 0.3, 0.6, 0.0), (-0.5, 1.0, 1.3, -2.0), (2.0, 1.0, 0.5 ** 0.5, 0.7)]:
        variance, _ = ch2_gradients.exact_moments(name, x, m, s, baseline)
        assert variance == pytest.approx(ch2_gradients.closed_form_variance(name, x, m, s, baseline), rel=1e-10)


def test_chapter2_stl_has_no_variance_at_the_posterior():
    x = 1.3
    variance, _ = ch2_gradients.exact_moments("stl", x, x / 2, 0.5 ** 0.5)
    assert variance == pytest.approx(0.0, abs=1e-20)


def test_chapter2_leave_one_out_quadrature_matches_simulation():
    """The quadrature is exact; a million simulated draws agree with it to their error."""
    x, m, s, k = ch2_gradients.X, ch2_gradients.M, ch2_gradients.S, 5
    variance, fourth = ch2_gradients.exact_moments("score_loo", x, m, s, 0.0, k)
    eps = torch.randn(1_000_000, k, generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    draws = ch2_gradients.draw("score_loo", eps, x, m, s)
    assert abs(draws.var() - variance) < 3 * math.sqrt((fourth - variance ** 2) / len(draws))


@pytest.mark.parametrize("label", ch2_gradients.TOY_ESTIMATORS)
def test_chapter2_measured_variance_is_within_three_standard_errors_of_the_exact_one(label):
    row = ch2_gradients.toy_table(blocks=10, draws=200, labels=[label])[0]
    assert abs(row["z"]) < 3, row
