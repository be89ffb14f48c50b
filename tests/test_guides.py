"""Guide families (model.guide): the default reproduces the guide written before the registry
existed, draw for draw and gradient for gradient; configs that leave the guide out read and
save as before; a plugin's guide family plugs in; mismatched latent spaces and Gaussian-only
requests are refused in one line."""

import pyro
import pyro.distributions as dist
import pytest
import torch
import yaml
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyrovae import VAE, load_config
from pyrovae.components import GUIDES
from pyrovae.components.guides import support_name
from pyrovae.errors import PyrovaeError
from pyrovae.spec import config_text

SMALL = ["model.latent_dim=3", "model.encoder.hidden=[16]", "model.decoder.hidden=[16]"]


def _vae(*overrides, plugins=()):
    return VAE.from_config(load_config("quickstart", [*SMALL, *overrides], plugins=plugins), (1, 28, 28), 0).double()


def _old_guide(vae):
    """The guide as VAE.guide was written before guide families: N(loc, diag exp(log_scale)^2)."""

    def guide(x, y=None, kl_weight=1.0):
        pyro.module("encoder", vae.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, log_scale = vae.encoder(x, None).unbind(-2)
            with poutine.scale(scale=kl_weight):
                pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    return guide


@pytest.mark.parametrize("loss", [Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1),
                                  TraceMeanField_ELBO()])
def test_the_default_guide_gives_the_old_guides_elbo_and_gradients_exactly(mnist_data, loss):
    vae = _vae()
    x = mnist_data.test.x[:16].double()
    results = []
    for guide in (_old_guide(vae), vae.guide):
        vae.zero_grad()
        pyro.set_rng_seed(11)
        value = loss.loss_and_grads(vae.model, guide, x, None, 0.7)
        results.append((value, [p.grad.clone() for p in vae.parameters()], torch.rand(1)))
    (old, old_grads, old_next), (new, new_grads, new_next) = results
    assert old == new and old > 0
    assert all(torch.equal(a, b) for a, b in zip(old_grads, new_grads))
    assert torch.equal(old_next, new_next)  # the same random numbers were consumed


def test_the_default_guide_creates_the_old_parameters_in_the_old_order():
    pyro.set_rng_seed(3)
    vae = _vae()
    pyro.set_rng_seed(3)
    named = [name for name, _ in _vae("model.guide.name=diagonal_normal").named_parameters()]
    assert named == [name for name, _ in vae.named_parameters()]
    assert not any(name.startswith("guide_family") for name in named)
    assert vae.guide_family.encoder_out_shape == (2, 3)


def test_posterior_encode_and_latent_code_agree_for_the_diagonal_guide(mnist_data):
    vae = _vae()
    x = mnist_data.test.x[:5].double()
    loc, scale = vae.encode(x)
    q = vae.posterior(x)
    assert q.batch_shape == (5,) and q.event_shape == (3,) and q.has_rsample
    assert torch.equal(q.mean, loc) and torch.allclose(q.stddev, scale)
    assert torch.equal(vae.latent_code(x), loc)
    z = torch.randn(4, 5, 3, dtype=torch.float64)
    by_hand = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    assert torch.allclose(q.log_prob(z), by_hand)


def test_a_config_leaving_the_guide_out_saves_as_before_and_another_guide_is_saved():
    spec = load_config("quickstart")
    assert spec.model.guide.name == "diagonal_normal"
    assert "guide" not in yaml.safe_load(config_text(spec))["model"]
    assert load_config(yaml.safe_load(config_text(spec))).model.guide.name == "diagonal_normal"


PLUGIN = '''
import pyro.distributions as dist
import pyrovae
from pyrovae.components.guides import Guide


class Laplace(Guide):
    """A diagonal Laplace q(z|x): not a Gaussian."""

    def __init__(self, latent_dim, spread):
        super().__init__(latent_dim)
        self.encoder_out_shape = (2, latent_dim)
        self.spread = spread

    def forward(self, encoding, target=None):
        loc, log_scale = encoding.unbind(-2)
        return dist.Laplace(loc, self.spread * log_scale.exp()).to_event(1)


@pyrovae.register("guide", "laplace")
def laplace(latent_dim, *, spread=1.0):
    """Diagonal Laplace guide."""
    return Laplace(latent_dim, spread)


class Coins(Guide):
    support = dist.constraints.independent(dist.constraints.boolean, 1)
    reparameterized = False

    def __init__(self, latent_dim):
        super().__init__(latent_dim)
        self.encoder_out_shape = (1, latent_dim)

    def forward(self, encoding, target=None):
        return dist.Bernoulli(logits=encoding.squeeze(-2)).to_event(1)


@pyrovae.register("guide", "coins")
def coins(latent_dim):
    """Bernoulli latents."""
    return Coins(latent_dim)
'''


def test_a_plugin_guide_family_trains_and_is_saved_with_its_options(tmp_path, mnist_data):
    plugin = tmp_path / "laplace_guide.py"
    plugin.write_text(PLUGIN)
    spec = load_config("quickstart", [*SMALL, "model.guide.name=laplace", "model.guide.spread=0.5"],
                       plugins=[str(plugin)])
    assert yaml.safe_load(config_text(spec))["model"]["guide"] == {"name": "laplace", "spread": 0.5}
    vae = VAE.from_config(spec, (1, 28, 28), 0).double()
    x = mnist_data.test.x[:8].double()
    q = vae.posterior(x)
    assert isinstance(q.base_dist, dist.Laplace)
    assert torch.allclose(q.base_dist.scale, 0.5 * vae.encoder(x, None)[:, 1].exp())
    assert Trace_ELBO().loss(vae.model, vae.guide, x) > 0
    with pytest.raises(PyrovaeError, match="needs the \\(loc, scale\\) of a diagonal Gaussian guide, and guide "
                                           "'laplace' is not one"):
        vae.encode(x)


def test_a_guide_on_another_latent_space_than_the_prior_is_refused(tmp_path):
    plugin = tmp_path / "coin_guide.py"
    plugin.write_text(PLUGIN)
    with pytest.raises(PyrovaeError, match="prior 'standard_normal' lives on real latents but model.guide: "
                                           "guide 'coins' .* on boolean; choose a guide on the prior's space"):
        _vae("model.guide.name=coins", plugins=[str(plugin)])


def test_the_vamp_prior_refuses_a_guide_that_is_not_a_diagonal_gaussian(tmp_path):
    plugin = tmp_path / "laplace_guide.py"
    plugin.write_text(PLUGIN)
    with pytest.raises(PyrovaeError, match="diagonal Gaussian guide, and guide 'laplace' is not one"):
        _vae("model.guide.name=laplace", "model.prior.name=vamp", "model.prior.num_pseudo_inputs=3",
             plugins=[str(plugin)])


def test_unknown_guides_and_options_are_refused_naming_the_choices():
    with pytest.raises(PyrovaeError, match="unknown guide 'diagonal' .*choose one of: diagonal_normal"):
        load_config("quickstart", ["model.guide.name=diagonal"])
    with pytest.raises(PyrovaeError, match="model.guide: guide 'diagonal_normal' has no option 'flows'"):
        load_config("quickstart", ["model.guide.flows=4"])


def test_support_names_pool_coordinates():
    c = torch.distributions.constraints
    assert support_name(c.real_vector) == support_name(c.independent(c.real, 1)) == "real"
    assert support_name(c.independent(c.boolean, 1)) == "boolean"
    assert support_name(c.integer_interval(0, 9)) != support_name(c.integer_interval(0, 4))
    assert "diagonal_normal" in GUIDES


# ----------------------------------------------------------------------------- the built-in families

def _encoding(vae, n=6, seed=5):
    g = torch.Generator().manual_seed(seed)
    return 0.5 * torch.randn(n, *vae.guide_family.encoder_out_shape, generator=g, dtype=torch.float64)


def test_full_covariance_is_the_gaussian_with_the_encoders_cholesky_factor():
    vae = _vae("model.guide.name=full_covariance")
    e = _encoding(vae)
    q = vae.guide_family(e)
    loc, log_diag, below = e[:, :3], e[:, 3:6], e[:, 6:]
    L = torch.diag_embed(log_diag.exp())
    L[:, 1, 0], L[:, 2, 0], L[:, 2, 1] = below[:, 0], below[:, 1], below[:, 2]
    cov = L @ L.transpose(-1, -2)
    z = torch.randn(7, 6, 3, dtype=torch.float64)
    d = z - loc
    by_hand = (-0.5 * torch.einsum("spi,pij,spj->sp", d, torch.linalg.inv(cov), d)
               - 0.5 * torch.logdet(2 * torch.pi * cov))
    assert torch.allclose(q.log_prob(z), by_hand, atol=1e-10)
    assert torch.equal(vae.guide_family.code(e), loc)


def _flow_map(vae, e):
    """z_0 -> z_K of a flow guide for one encoding row (its parameters fixed), for autograd."""
    family = vae.guide_family

    def push(z0):
        _, transforms = family.parts(e)
        z = z0
        for t in transforms:
            z = t(z)
        return z

    return push


@pytest.mark.parametrize("guide", ["iaf", "planar"])
def test_flow_log_q_is_the_change_of_variables_with_a_jacobian_by_autograd(guide):
    vae = _vae(f"model.guide.name={guide}")
    e = _encoding(vae, n=1)
    q = vae.guide_family(e)
    for _ in range(3):
        z = q.sample()                                   # (1, 3), cached with its base point
        base, transforms = vae.guide_family.parts(e)
        eps = torch.randn(1, 3, dtype=torch.float64)
        z0 = base.base_dist.loc + base.base_dist.scale * eps
        zk, log_q = vae.guide_family.draw(e, eps)
        jacobian = torch.autograd.functional.jacobian(_flow_map(vae, e), z0)[0, :, 0, :]
        by_hand = base.log_prob(z0) - torch.linalg.slogdet(jacobian)[1]
        assert torch.allclose(zk, _flow_map(vae, e)(z0), atol=1e-12)
        assert torch.allclose(log_q, by_hand, atol=1e-9)
        assert q.log_prob(z).shape == (1,)


def test_an_iaf_whose_made_outputs_are_constant_is_the_gaussian_of_the_closed_form():
    """With the MADE's weights zero every step is z <- s z + (1 - s) m with constant (m, s):
    q is N(s_K ... (loc) ..., (s_K ... s_1)^2 scale^2), composed by hand."""
    vae = _vae("model.guide.name=iaf", "model.guide.flows=2")
    with torch.no_grad():
        for step in vae.guide_family.steps:
            for layer in step.nn.layers:
                layer.weight.zero_()
            step.nn.layers[-1].bias.normal_()
    e = _encoding(vae)
    loc, scale = e[:, :3], e[:, 3:6].exp()
    for step, conditioned in zip(vae.guide_family.steps, vae.guide_family.transforms(e[:, 6:])):
        m, logit = step.nn.layers[-1].bias.reshape(2, 3)   # the MADE's (m, log-odds) rows
        s = torch.sigmoid(logit + conditioned.sigmoid_bias)
        loc, scale = s * loc + (1 - s) * m, s * scale
    q = vae.guide_family(e)
    z = torch.randn(9, 6, 3, dtype=torch.float64)      # anywhere, not only the flow's own draws
    assert torch.allclose(q.log_prob(z), torch.distributions.Normal(loc, scale).log_prob(z).sum(-1), atol=1e-9)


@pytest.mark.parametrize("guide", ["diagonal_normal", "full_covariance", "iaf", "planar"])
def test_sampling_and_log_q_agree_the_importance_identity(guide):
    """E_q[g(z) / q(z)] = 1 for any density g: it holds only if log q is the density of the
    draws. g is a Gaussian slightly narrower than q (so the ratio has finite variance); the
    mean of 20000 ratios must be 1 within 4 standard errors."""
    vae = _vae(f"model.guide.name={guide}")
    e = _encoding(vae, n=4)
    torch.manual_seed(0)
    q = vae.guide_family(e)
    z = q.sample((20000,))
    log_q = q.log_prob(z)
    mean, cov = z.mean(0), torch.einsum("spi,spj->pij", z - z.mean(0), z - z.mean(0)) / z.shape[0]
    g = torch.distributions.MultivariateNormal(mean, covariance_matrix=0.8 * cov)
    ratio = (g.log_prob(z) - log_q).exp()
    z_score = (ratio.mean(0) - 1) / (ratio.std(0) / ratio.shape[0] ** 0.5)
    assert z_score.abs().max() < 4, z_score


def test_a_planar_guide_scores_only_its_own_draws_in_one_line():
    vae = _vae("model.guide.name=planar")
    q = vae.guide_family(_encoding(vae))
    z = q.sample()
    assert q.log_prob(z).shape == (6,)
    with pytest.raises(PyrovaeError, match="guide 'planar' has log q\\(z\\|x\\) only at its own draws"):
        q.log_prob(z.clone())


def test_flows_refuse_a_one_dimensional_latent_space():
    with pytest.raises(PyrovaeError, match="guide 'iaf' needs model.latent_dim >= 2"):
        VAE.from_config(load_config("quickstart", ["model.latent_dim=1", "model.guide.name=iaf"]), (1, 28, 28), 0)


def test_the_refined_guide_climbs_the_exact_elbo_of_the_linear_gaussian_vae():
    """On probabilistic PCA the ELBO of a diagonal q is known in closed form: the refined q
    must be better than its starting point, the encoder's, for every point."""
    from pyrovae.evaluation.references import LinearGaussian

    spec = load_config("linear_gaussian", ["model.guide.name=refined", "model.guide.steps=30",
                                           "model.guide.lr=0.1", "model.guide.particles=16"])
    pyro.set_rng_seed(0)
    vae = VAE.from_config(spec, (5,), 0).double()
    x = torch.randn(8, 5, dtype=torch.float64)
    model = LinearGaussian.from_vae(vae)
    e = vae.encoding(x)
    start = model.elbo(x, e[:, 0], torch.diag_embed(e[:, 1].exp() ** 2))
    q = vae.posterior(x)
    refined = model.elbo(x, q.mean, torch.diag_embed(q.variance))
    assert (refined > start + 0.05).all(), (refined - start)
    assert (refined <= model.log_marginal(x) + 1e-9).all()


def test_the_refined_guides_gradient_reaches_the_encoder_through_the_refined_parameters(mnist_data):
    vae = _vae("model.guide.name=refined", "model.guide.steps=2")
    x = mnist_data.test.x[:4].double()
    e = vae.encoding(x)
    q = vae.guide_family(e, vae.log_joint_of(x))
    (grad,) = torch.autograd.grad(q.mean.sum() + q.stddev.log().sum(), e)
    assert torch.allclose(grad, torch.ones_like(grad))  # d(refined)/d(encoding) is the identity


# ----------------------------------------------------------------------------- estimators and evaluation

def test_stl_stops_the_flows_own_weights_inside_log_q(mnist_data):
    """STL and DReG score draws under a copy of q with phi's tensors detached: for the iaf
    that copy holds the MADE's weights too, so they get no gradient through log q."""
    from pyro.distributions.util import detach

    vae = _vae("model.guide.name=iaf")
    x = mnist_data.test.x[:4].double()
    q = vae.posterior(x)
    z = q.rsample().detach()                 # a fixed point: only the density's own parameters could reach it
    stopped, live = detach(q).log_prob(z), q.log_prob(z)
    assert torch.allclose(stopped, live)
    assert not stopped.requires_grad
    weights = list(vae.guide_family.parameters())
    assert all(g.abs().sum() > 0 for g in torch.autograd.grad(live.sum(), weights))


@pytest.mark.parametrize("estimator,message", [
    ("stl", "guide 'planar' has log q\\(z\\|x\\) only at its own draws"),
    ("score", "score-function estimators handle Normal guide sites, not FlowDistribution"),
])
def test_estimators_a_guide_cannot_serve_refuse_in_one_line(mnist_data, estimator, message):
    from pyrovae.inference.estimators import ESTIMATORS

    vae = _vae("model.guide.name=planar")
    loss = ESTIMATORS.build(estimator)
    with pytest.raises(PyrovaeError, match=message):
        loss.loss_and_grads(vae.model, vae.guide, mnist_data.test.x[:4].double())


@pytest.mark.slow
@pytest.mark.parametrize("guide", ["full_covariance", "iaf", "refined"])
def test_ais_from_any_guide_brackets_the_exact_log_marginal_of_the_linear_gaussian_vae(guide):
    """AIS from any guide's start density estimates the closed-form log p(x): within 4 of
    its standard errors (over chains) of it, for every point (an untrained guide)."""
    from pyrovae.evaluation.ais import annealed_importance_sample
    from pyrovae.evaluation.references import exact_log_marginal

    pyro.set_rng_seed(0)
    vae = VAE.from_config(load_config("linear_gaussian", [f"model.guide.name={guide}"]), (5,), 0).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    result = annealed_importance_sample(vae, x, steps=200, chains=8, seed=1)
    exact = exact_log_marginal(vae, x)
    error = result.log_marginal.value - exact
    assert (error.abs() < 4 * result.log_marginal.std_error).all(), (error, result.log_marginal.std_error)


@pytest.mark.slow
def test_the_gap_decomposition_seeks_q_star_in_the_flows_family(mnist_data):
    from pyrovae.evaluation.posterior import FlowMembers, gap_decomposition, guide_gaussians, optimal_in_family

    vae = _vae("model.guide.name=iaf")
    x = mnist_data.test.x[:3].double()
    q = guide_gaussians(vae, x)
    assert isinstance(q, FlowMembers)
    qstar = optimal_in_family(vae, x, steps=300, init=q)
    d = gap_decomposition(vae, x, None, q, qstar, elbo_samples=400, is_samples=2000, proposal_steps=300)
    # an untrained encoder is far from each point's best member of its own family
    assert (d.amortization_gap.value > 3 * d.amortization_gap.std_error).all()
    assert torch.allclose(d.total_gap.value, d.approximation_gap.value + d.amortization_gap.value)


def test_the_sweep_report_tables_each_guides_gaps_over_seeds():
    from pyrovae.reports.sweep_report import gaps_table
    from pyrovae.sweeps import load_sweep
    from pyrovae.sweeps.results import PointSummary, RunResult, SweepResults, results_from_dict

    spec = load_sweep("guides_gaps")
    assert spec.evaluate["gap_points"] == 20 and spec.evaluate["method"] == "ais"

    def gaps(amortization):
        value = {"mean": -100.0, "std_error": 0.1}
        return {"gaps": {"log_marginal": value, "elbo_q": value, "elbo_qstar": value,
                         "approximation_gap": {"mean": 1.0, "std_error": 0.1},
                         "amortization_gap": {"mean": amortization, "std_error": 0.1},
                         "khat_median": 0.5, "ess_mean": 0.2}}

    points = list(spec.points())
    runs = [RunResult("a", points[0], s, "done", -100.0, evaluation=gaps(a)) for s, a in enumerate([2.0, 4.0])]
    runs.append(RunResult("b", points[1], 0, "running"))
    results = SweepResults(spec, "m", runs, [PointSummary("a", points[0], [-100.0, -100.0], [0, 1], 2),
                                             PointSummary("b", points[1], [], [], 1)])
    table = gaps_table(results).splitlines()
    assert len(table) == 3  # header, rule, one guide with finished runs
    assert "`diagonal_normal` | 2 | -100.00 ± 0.00" in table[2] and "| 3.00 ± 1.41 |" in table[2]
    # results.json keeps each run's gaps: the docs draw the same table from committed results
    assert gaps_table(results_from_dict(spec, results.to_dict())) == gaps_table(results)
