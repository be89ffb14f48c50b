"""Posterior inspection: NUTS against the grid posterior, q* against the exact posterior of
a linear-Gaussian model, the gap decomposition against closed forms, the mode count, and
the ``pyrovae posterior`` command. Tolerances come from Monte Carlo standard errors (with
effective sample sizes for MCMC)."""

import json
import math

import pyro
import pytest
import torch
from conftest import tiny_overrides

from pyrovae import VAE, load_config
from pyrovae.cli import main
from pyrovae.commands.posterior import parse_points
from pyrovae.errors import PyrovaeError
from pyrovae.evaluation.importance import importance_sample
from pyrovae.evaluation.modes import find_modes, is_multimodal
from pyrovae.evaluation.posterior import (
    compare_moments,
    gap_decomposition,
    grid_posterior,
    guide_gaussians,
    inspect_posterior,
    mcmc_posterior,
    optimal_gaussian,
)
from pyrovae.evaluation.references import LinearGaussian
from pyrovae.training.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- models with known answers

def curved_vae(seed: int = 0) -> VAE:
    """A 2-D latent VAE on 4x4 binary images with a fixed random decoder whose weights are
    scaled up, so that posteriors are narrow and curved rather than prior-like."""
    pyro.set_rng_seed(seed)
    spec = load_config("quickstart", ["model.latent_dim=2", "model.encoder.hidden=[8]", "model.decoder.hidden=[16]"])
    vae = VAE.from_config(spec, data_shape=(1, 4, 4), num_classes=0)
    with torch.no_grad():
        for p in vae.decoder.parameters():
            p.mul_(2.5)
    return vae


def simulated(vae: VAE, n: int, seed: int = 1) -> torch.Tensor:
    """Data drawn from the model itself: z ~ p(z), x ~ p(x|z)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        return vae.decode(vae.prior().sample((n,))).sample()


def linear_vae(latent: int = 3, data: int = 7, noise: float = 0.5, seed: int = 0):
    """Probabilistic PCA as a VAE with a random decoder W (data x latent) and a deliberately
    imperfect guide: the exact posterior mean map shifted by 0.3 and the exact marginal
    standard deviations times 1.4. Returns the VAE and its closed form."""
    gen = torch.Generator().manual_seed(seed)
    truth = LinearGaussian(torch.randn(data, latent, generator=gen, dtype=torch.float64),
                           torch.randn(data, generator=gen, dtype=torch.float64) * 0.3, noise)
    spec = load_config("linear_gaussian", [f"model.latent_dim={latent}", f"model.likelihood.sigma={noise}"])
    vae = VAE.from_config(spec, data_shape=(data,), num_classes=0)
    matrix, offset, cov = truth.posterior_map()
    with torch.no_grad():
        vae.decoder.head.weight.copy_(truth.weight)
        vae.decoder.head.bias.copy_(truth.bias)
        vae.encoder.head.weight.zero_()
        vae.encoder.head.weight[:latent] = matrix
        vae.encoder.head.bias[:latent] = offset + 0.3
        vae.encoder.head.bias[latent:] = (1.4 * cov.diagonal().sqrt()).log()
    assert LinearGaussian.describes(vae)
    return vae, truth


# ----------------------------------------------------------------------------- NUTS

def assert_nuts_matches_the_grid(vae, x, num_samples, warmup_steps, min_ess):
    """NUTS moments within 4 Monte Carlo standard errors of the grid posterior's, for
    every point and moment, while the guide's moments are rejected by the same test."""
    grids = grid_posterior(vae, x)
    chains = mcmc_posterior(vae, x, num_samples=num_samples, warmup_steps=warmup_steps, seed=0)
    q = guide_gaussians(vae, x)
    scores = []
    for i, (chain, grid) in enumerate(zip(chains, grids)):
        assert abs(grid.mass_on_grid - 1) < 1e-3  # the grid posterior is normalized by quadrature
        assert chain.divergences == 0 and float(chain.ess.min()) > min_ess
        z = compare_moments(chain.samples, grid.mean, grid.covariance).z_scores
        assert float(z.abs().max()) < 4, z  # 5 moments per point, about standard normal z-scores
        # the same comparison has the power to reject a wrong target: the guide's Gaussian
        wrong = compare_moments(chain.samples, q.loc[i], q.covariance[i]).z_scores
        assert float(wrong.abs().max()) > 6
        scores.append(z)
    return torch.cat(scores)


def test_nuts_moments_match_the_grid_posterior_and_not_the_guide():
    vae = curved_vae()
    assert_nuts_matches_the_grid(vae, simulated(vae, 1), num_samples=400, warmup_steps=200, min_ess=80)


@pytest.mark.slow
def test_nuts_matches_the_grid_posterior_of_a_trained_mnist_vae(mnist_data, tmp_path):
    spec = load_config("quickstart", ["data.train_size=2000", "model.latent_dim=2", "model.encoder.hidden=[64]",
                                      "model.decoder.hidden=[64]", "train.epochs=3", "train.progress=false",
                                      "train.device=cpu"])
    pyro.set_rng_seed(0)
    vae = train(spec, tmp_path).vae
    z = assert_nuts_matches_the_grid(vae, mnist_data.test.x[:4], num_samples=1000, warmup_steps=500, min_ess=200)
    assert float(z.pow(2).mean()) < 2  # about 1 for standard normal z-scores


def test_moment_comparison_scales_its_errors_by_effective_sample_size():
    gen = torch.Generator().manual_seed(0)
    independent = torch.randn(4000, 2, generator=gen, dtype=torch.float64)
    correlated = torch.zeros_like(independent)  # an AR(1) chain with the same N(0, 1) marginals
    for t in range(1, 4000):
        correlated[t] = 0.9 * correlated[t - 1] + math.sqrt(1 - 0.81) * independent[t]
    mean, cov = torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)
    se_independent = compare_moments(independent, mean, cov).std_error[0]
    se_correlated = compare_moments(correlated, mean, cov).std_error[0]
    # the AR(1) chain's ESS is N (1 - 0.9) / (1 + 0.9): standard errors about sqrt(19) = 4.4 times larger
    assert 3.3 < float(se_correlated / se_independent) < 5.5
    assert float(compare_moments(correlated, mean, cov).z_scores.abs().max()) < 4


# ----------------------------------------------------------------------------- q* and the gaps

def test_full_covariance_q_star_recovers_the_exact_linear_gaussian_posterior():
    vae, truth = linear_vae()
    x = simulated(vae, 3)
    qstar = optimal_gaussian(vae, x, family="full", steps=1000)
    mean, cov = truth.posterior(x)
    sd = cov.diagonal().sqrt()
    assert float(((qstar.loc - mean).abs() / sd).max()) < 0.05
    assert float(((qstar.covariance - cov).abs() / (sd[:, None] * sd[None])).max()) < 0.05
    # KL(q* || p(z|x)) = log p(x) - ELBO(q*), in closed form: nearly zero
    kl = truth.log_marginal(x) - truth.elbo(x, qstar.loc, qstar.covariance)
    assert float(kl.max()) < 0.01


def test_diagonal_q_star_is_the_best_diagonal_gaussian_and_the_gaps_match_closed_forms():
    vae, truth = linear_vae()
    x = simulated(vae, 6)
    q = guide_gaussians(vae, x)
    qstar = optimal_gaussian(vae, x, steps=1000)
    mean, cov = truth.posterior(x)
    best_var = 1 / torch.linalg.inv(cov).diagonal()  # the best diagonal Gaussian: mean exact, variances 1 / precision_jj
    assert float(((qstar.loc - mean).abs() / best_var.sqrt()).max()) < 0.05
    assert float((qstar.covariance.diagonal(dim1=-2, dim2=-1) / best_var - 1).abs().max()) < 0.05

    pyro.set_rng_seed(0)
    d = gap_decomposition(vae, x, None, q, qstar, elbo_samples=4000, is_samples=20000, proposal_steps=300)
    exact_lp = truth.log_marginal(x)
    exact_q = truth.elbo(x, q.loc, q.covariance)
    exact_star = truth.elbo(x, qstar.loc, qstar.covariance)
    lp = d.log_marginal.estimate
    assert d.log_marginal.method.startswith("importance sampling")
    assert float((d.log_marginal.khat).max()) < 0.7
    # each estimate within 4 of its standard errors of its closed form (IS: plus its bias, about se^2 / 2)
    assert ((lp.value - exact_lp).abs() < 4 * lp.std_error + lp.std_error ** 2).all()
    assert ((d.elbo_q.value - exact_q).abs() < 4 * d.elbo_q.std_error).all()
    assert ((d.elbo_qstar.value - exact_star).abs() < 4 * d.elbo_qstar.std_error).all()
    assert ((d.amortization_gap.value - (exact_star - exact_q)).abs() < 4 * d.amortization_gap.std_error).all()
    # the decomposition: both gaps non-negative within error, summing to the total
    assert (d.approximation_gap.value > -3 * d.approximation_gap.std_error).all()
    assert (d.amortization_gap.value > 3 * d.amortization_gap.std_error).all()  # the shifted guide is clearly worse
    torch.testing.assert_close(d.approximation_gap.value + d.amortization_gap.value, d.total_gap.value)
    # the diagonal family cannot hold the posterior's correlations: a real approximation gap
    assert (exact_lp - exact_star > 0.01).all()


def test_inspection_above_two_dimensions_gets_log_p_x_against_the_closed_form():
    """The whole inspection on a 3-D latent space (no grid): its log p(x) within four
    standard errors of the closed form, and the memory bound reaching the estimator as a
    bound (a byte count or a size string), not as a number of steps."""
    vae, truth = linear_vae()
    x = simulated(vae, 3)
    for max_memory in ("1GB", 10 ** 9):
        found = inspect_posterior(vae, x, mcmc=None, svi_steps=300, elbo_samples=500, is_samples=4000,
                                  seed=0, max_memory=max_memory)
        assert found.grids is None and found.chains is None
        lp = found.decomposition.log_marginal.estimate
        assert ((lp.value - truth.log_marginal(x)).abs() < 4 * lp.std_error + lp.std_error ** 2).all()


def test_gaps_on_a_nonlinear_2d_model_agree_with_the_guides_own_elbo():
    vae = curved_vae()
    x = simulated(vae, 4, seed=2)
    q = guide_gaussians(vae, x)
    qstar = optimal_gaussian(vae, x, steps=800)
    pyro.set_rng_seed(0)
    d = gap_decomposition(vae, x, None, q, qstar, elbo_samples=2000)
    assert d.log_marginal.method == "quadrature"
    reference = importance_sample(vae, x, num_samples=2000).elbo  # the guide's ELBO from Pyro traces, other draws
    assert ((d.elbo_q.value - reference.value).abs() < 4 * d.elbo_q.std_error.hypot(reference.std_error)).all()
    assert (d.approximation_gap.value > -3 * d.approximation_gap.std_error).all()
    assert (d.amortization_gap.value > -3 * d.amortization_gap.std_error).all()
    torch.testing.assert_close(d.approximation_gap.value + d.amortization_gap.value, d.total_gap.value)
    assert (d.total_gap.value > 1).all()  # an untrained encoder: a large gap, mostly amortization


# ----------------------------------------------------------------------------- modes

def mixture_log_density(centers, weights, sd=0.5, nodes=121):
    axis = torch.linspace(-5, 5, nodes, dtype=torch.float64)
    z = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1)
    parts = [math.log(w) - ((z - torch.tensor(c, dtype=torch.float64)) ** 2).sum(-1) / (2 * sd ** 2)
             for c, w in zip(centers, weights)]
    return torch.logsumexp(torch.stack(parts), 0), axis


def test_modes_count_separated_maxima_with_real_mass():
    two, axis = mixture_log_density([(-2, 0), (2, 1)], [0.7, 0.3])
    modes = find_modes(two)
    assert len(modes) == 2 and is_multimodal(two)
    assert abs(modes[0].mass - 0.7) < 0.01 and abs(modes[1].mass - 0.3) < 0.01
    assert (float(axis[modes[0].row]), float(axis[modes[0].col])) == pytest.approx((-2, 0), abs=0.1)
    one, _ = mixture_log_density([(0, 0)], [1.0])
    assert len(find_modes(one)) == 1 and not is_multimodal(one)
    close, _ = mixture_log_density([(-0.4, 0), (0.4, 0)], [0.5, 0.5])  # overlapping: one broad peak
    assert len(find_modes(close)) == 1
    small, _ = mixture_log_density([(-2, 0), (2, 0)], [0.98, 0.02])  # a separated bump with 2% of the mass
    assert len(find_modes(small)) == 1 and len(find_modes(small, min_mass=0.01)) == 2
    # a shallow dip (two peaks 1.6 sd apart): separated only under a lenient saddle ratio
    shallow, _ = mixture_log_density([(-0.8, 0), (0.8, 0)], [0.5, 0.5])
    assert len(find_modes(shallow)) == 1 and len(find_modes(shallow, saddle_ratio=0.99)) == 2


# ----------------------------------------------------------------------------- the command

def test_points_parse_as_lists_and_ranges():
    assert parse_points("3,7,42") == [3, 7, 42]
    assert parse_points("0-3,9") == [0, 1, 2, 3, 9]
    for bad in ["", "a", "3-1", "1,1", "-2"]:
        with pytest.raises(PyrovaeError, match="--points"):
            parse_points(bad)


def test_posterior_command_writes_figures_numbers_and_report(tmp_path, capsys):
    spec = load_config("quickstart", tiny_overrides(**{"model.latent_dim": 2}))
    pyro.set_rng_seed(0)
    train(spec, tmp_path / "run")
    out = tmp_path / "post"
    code = main(["posterior", str(tmp_path / "run"), "--points", "0,5", "--out", str(out), "--num-samples", "40",
                 "--warmup", "30", "--svi-steps", "50", "--elbo-samples", "200"])
    assert code == 0
    s = json.loads((out / "posterior.json").read_text())
    assert s["points"] == [0, 5] and s["log_marginal_method"] == "quadrature"
    for p in s["per_point"]:
        assert p["approximation_gap"]["value"] + p["amortization_gap"]["value"] == pytest.approx(p["total_gap"]["value"])
        assert len(p["mcmc"]["mean"]) == 2 and "mcmc_vs_grid" in p and p["grid"]["mass_on_grid"] == pytest.approx(1, abs=1e-3)
    report = (out / "report.md").read_text()
    assert "approximation gap" in report and "figures/posterior_point5.png" in report
    assert (out / "figures" / "posterior_point0.png").stat().st_size > 0
    assert not [f for f in out.rglob("*") if ".tmp" in f.name]

    assert main(["posterior", str(tmp_path / "run"), "--points", "20000", "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["posterior", str(tmp_path / "nowhere"), "--points", "1", "--out", str(out)]) == 2
    assert json.loads((out / "posterior.json").read_text())["points"] == [0, 5]  # earlier results kept
