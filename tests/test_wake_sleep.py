"""Wake-sleep and reweighted wake-sleep: gradients against closed forms on the
linear-Gaussian model, training, and the variance laboratory's view of their bias."""

import json
import math

import pyro
import pytest
import torch
from conftest import linear_gaussian_vae, tiny_overrides
from pyro.infer import ReweightedWakeSleep

from pyrovae import VAE, load_config
from pyrovae.errors import PyrovaeError
from pyrovae.evaluation.references import exact_elbo
from pyrovae.inference.estimators import ESTIMATORS, bound_particles
from pyrovae.inference.surrogates import IWAE
from pyrovae.inference.wake_sleep import dream, sleep_log_q
from pyrovae.lab.gradient_stats import flat_gradient
from pyrovae.lab.variance import parse_estimators, run_variance
from pyrovae.training.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

CHUNKS, PER_CHUNK = 40, 250  # 10000 draws: means and their standard errors from the chunks' spread


def expected_sleep_objective(vae) -> torch.Tensor:
    """E_{z ~ p(z), x ~ p(x|z)} log q(z|x) in closed form for the linear-Gaussian model and a
    linear encoder (loc = A x + a, log scale = C x + c): (z - loc, log scale) are jointly
    Gaussian, and E[r^2 exp(-2u)] = exp(-2 mu_u + 2 var_u) ((mu_r - 2 cov_ru)^2 + var_r)
    (tilting a Gaussian by exp(-2u) shifts r's mean by -2 cov(r, u))."""
    w, b = vae.decoder.head.weight.detach().double(), vae.decoder.head.bias.detach().double()
    noise = float(vae.likelihood.fixed_scale)
    d, k = w.shape
    head = vae.encoder.head
    weight, bias = head.weight.double(), head.bias.double()
    a_mat, a_vec, c_mat, c_vec = weight[:k], bias[:k], weight[k:], bias[k:]
    mean_v = torch.cat([torch.zeros(k, dtype=torch.float64), b])
    cov_v = torch.cat([torch.cat([torch.eye(k, dtype=torch.float64), w.T], 1),
                       torch.cat([w, w @ w.T + noise ** 2 * torch.eye(d, dtype=torch.float64)], 1)])
    alpha = torch.cat([torch.eye(k, dtype=torch.float64), -a_mat], 1)  # r = alpha v - a
    gamma = torch.cat([torch.zeros(k, k, dtype=torch.float64), c_mat], 1)  # u = gamma v + c
    mu_r, mu_u = alpha @ mean_v - a_vec, gamma @ mean_v + c_vec
    var_r = ((alpha @ cov_v) * alpha).sum(1)
    var_u = ((gamma @ cov_v) * gamma).sum(1)
    cov_ru = ((alpha @ cov_v) * gamma).sum(1)
    tilted = torch.exp(-2 * mu_u + 2 * var_u) * ((mu_r - 2 * cov_ru) ** 2 + var_r)
    return (-mu_u - 0.5 * math.log(2 * math.pi) - 0.5 * tilted).sum()


def mean_gradient(loss_fn, params):
    """Mean of CHUNKS vectorized averages of PER_CHUNK draws each, and its standard error."""
    grads = torch.stack([flat_gradient(loss_fn(), params) for _ in range(CHUNKS)]).double()
    return grads.mean(0), grads.std(0) / math.sqrt(CHUNKS)


def split(vae, vector):
    """``vector`` over all parameters, as (encoder part, decoder part)."""
    sizes = {name: p.numel() for name, p in vae.named_parameters()}
    enc = sum(n for name, n in sizes.items() if name.startswith("encoder"))
    assert list(sizes)[0].startswith("encoder")
    return vector[:enc], vector[enc:]


@pytest.fixture
def vae_and_batch():
    vae = linear_gaussian_vae(seed=3)
    pyro.set_rng_seed(4)
    x = torch.randn(8, 5) * 1.5 + 0.3
    return vae, (x, None, 1.0)


def test_wake_and_sleep_gradients_equal_their_expectations(vae_and_batch):
    """Classic wake-sleep (K = 1, insomnia 0): the decoder's gradient is the exact ELBO's
    theta-gradient (E_q grad log p(x, z)); the encoder's is batch x grad E_p log q(z|x), the
    sleep objective in closed form, not the ELBO's phi-gradient."""
    vae, args = vae_and_batch
    params = list(vae.parameters())
    estimator = ESTIMATORS.build("wake_sleep")
    pyro.set_rng_seed(0)
    mean, se = mean_gradient(lambda: estimator.averaged_loss(vae.model, vae.guide, args, {}, PER_CHUNK), params)
    elbo_grad = flat_gradient(-exact_elbo(vae, args[0], differentiable=True).sum(), params).double()
    sleep_grad = flat_gradient(-args[0].shape[0] * expected_sleep_objective(vae), params).double()
    (enc_mean, dec_mean), (enc_se, dec_se) = split(vae, mean), split(vae, se)
    dec_t = (dec_mean - split(vae, elbo_grad)[1]) / dec_se
    enc_t = (enc_mean - split(vae, sleep_grad)[0]) / enc_se
    assert dec_t.abs().max() < 4.5 and enc_t.abs().max() < 4.5  # 39 parameters, Bonferroni at ~1e-4
    assert (split(vae, sleep_grad)[1] == 0).all()  # the sleep objective does not move the model
    # the encoder's gradient is not the ELBO's: wake-sleep's phi-update is biased for the bound
    assert ((enc_mean - split(vae, elbo_grad)[0]) / enc_se).abs().max() > 20


def test_reweighted_wake_gradient_is_the_iwae_theta_gradient(vae_and_batch):
    """With K particles the wake update sum_k w~_k grad log p(x, z_k) averages to the
    decoder-gradient of the K-sample bound IWAE_K."""
    vae, args = vae_and_batch
    params = list(vae.parameters())
    rws, iwae = ESTIMATORS.build("reweighted_wake_sleep", options={"num_particles": 4}), IWAE(4)
    assert bound_particles(rws) == 4
    pyro.set_rng_seed(1)
    ws_mean, ws_se = mean_gradient(lambda: rws.averaged_loss(vae.model, vae.guide, args, {}, PER_CHUNK), params)
    iw_mean, iw_se = mean_gradient(lambda: iwae.averaged_loss(vae.model, vae.guide, args, {}, PER_CHUNK), params)
    t = (split(vae, ws_mean)[1] - split(vae, iw_mean)[1]) / (split(vae, ws_se)[1] ** 2 + split(vae, iw_se)[1] ** 2).sqrt()
    assert t.abs().max() < 4.5


def test_loss_value_is_the_bound_at_the_wake_particles(vae_and_batch):
    """The loss a training step reports is minus the ELBO (K = 1), whose expectation is the
    closed-form ELBO."""
    vae, args = vae_and_batch
    estimator = ESTIMATORS.build("wake_sleep")
    pyro.set_rng_seed(2)
    with torch.no_grad():
        values = torch.stack([-estimator.averaged_loss(vae.model, vae.guide, args, {}, 200) for _ in range(20)])
    exact = exact_elbo(vae, args[0]).sum().item()
    assert abs(values.mean().item() - exact) < 5 * values.std().item() / math.sqrt(20) + 1e-6


def test_pyro_reweighted_wake_sleep_cannot_train_the_vae():
    """Why pyrovae has its own surrogate: Pyro 1.9.2's ``ReweightedWakeSleep`` refuses one
    particle (the classic algorithm), and its sleep phase calls the guide with an
    ``observations=`` keyword (and the guide's own arguments), which ``VAE.guide`` does not take."""
    vae = linear_gaussian_vae()
    with pytest.raises(AssertionError, match="more than one particle"):
        ReweightedWakeSleep(num_particles=1, insomnia=0.0, max_plate_nesting=1)
    rws = ReweightedWakeSleep(num_particles=2, insomnia=0.0, max_plate_nesting=1)
    with pytest.raises(TypeError, match="observations"):
        rws.loss(vae.model, vae.guide, torch.randn(4, 5), None, 1.0)


def test_options_are_checked():
    with pytest.raises(PyrovaeError, match="insomnia"):
        ESTIMATORS.build("wake_sleep", options={"insomnia": 1.5})
    with pytest.raises(PyrovaeError, match="num_particles"):
        ESTIMATORS.build("reweighted_wake_sleep", options={"num_particles": 0})


def test_training_improves_the_bound(tmp_path):
    """Wake-sleep fits the linear-Gaussian data: the validation ELBO climbs by many nats."""
    spec = load_config("linear_gaussian", ["train.estimator.name=wake_sleep", "train.epochs=6",
                                            "train.progress=false", "train.device=cpu"])
    train(spec, tmp_path / "ws")
    rows = (tmp_path / "ws" / "metrics.csv").read_text().splitlines()[1:]
    valid = [float(r.split(",")[5]) for r in rows]
    assert valid[-1] > valid[0] + 5, valid


def test_sleep_phase_scores_each_dream_with_its_own_label():
    """Usable with every config: for a conditional VAE the dreams (draws x K x batch) are
    scored under the guide with their data point's label, in the order they were dreamt."""
    spec = load_config("quickstart", ["model.latent_dim=2", "model.conditional=true", "model.encoder.hidden=[8]",
                                      "model.decoder.hidden=[8]"])
    vae = VAE.from_config(spec, data_shape=(1, 4, 4), num_classes=3)
    x, y = torch.bernoulli(torch.full((5, 1, 4, 4), 0.4)), torch.tensor([0, 1, 2, 1, 0])
    args = (x, y, 1.0)
    pyro.set_rng_seed(7)
    latents, dreamt = dream(vae.model, args, {}, 2, 3)
    pyro.set_rng_seed(7)
    log_q = sleep_log_q(vae.model, vae.guide, args, {}, 2, 3)
    loc, scale = vae.encode(dreamt, y.expand(2, 3, 5))
    by_hand = torch.distributions.Normal(loc, scale).log_prob(latents["z"]).sum(-1)
    assert log_q.shape == (2, 3, 5)
    torch.testing.assert_close(log_q, by_hand)


def test_trains_on_mnist(tmp_path, mnist_data):
    """Reweighted wake-sleep trains the paper's kind of model on real data."""
    spec = load_config("mnist_aevb", tiny_overrides(**{"train.estimator.name": "reweighted_wake_sleep",
                                                       "train.epochs": 2}))
    result = train(spec, tmp_path / "rws", data=mnist_data)
    rows = (tmp_path / "rws" / "metrics.csv").read_text().splitlines()[1:]
    assert math.isfinite(result.best_valid_elbo) and len(rows) == 2


def test_variance_laboratory_sees_the_biased_encoder(tmp_path):
    """``pyrovae variance CONFIG --estimators wake_sleep``: against the exact ELBO gradient the
    decoder's draws are unbiased (mean t^2 near 1) and the encoder's are not."""
    out, _ = run_variance("linear_gaussian", parse_estimators("wake_sleep"), draws=300, out=tmp_path / "v",
                          batch_size=50, progress=False)
    groups = json.loads((out / "variance.json").read_text())["snapshots"][0]["estimators"]["wake_sleep"]["groups"]
    assert groups["decoder"]["mean_t_squared"] < 2.0
    assert groups["encoder"]["mean_t_squared"] > 20.0
