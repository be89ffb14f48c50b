"""Named gradient estimators of the ELBO (and of the K-sample IWAE bound), each a Pyro loss.

An estimator's name is all a config needs (``train.estimator.name``); the training loop
and the variance laboratory build the same object from it, so what is measured is what
is trained with. Every factory takes ``num_particles``: the number of samples of z per
data point, drawn as one vectorized tensor dimension.

Notation: x a data point, z ~ q_phi(z|x) the guide, p_theta(x, z) the model,
log w = log p(x, z) - log q(z|x), f = log w the "learning signal" of the score-function
estimators, K = ``num_particles``. ``pathwise`` and ``analytic_kl`` are Pyro's own ELBOs;
the others are surrogate objectives in :mod:`pyrovae.inference.surrogates` and, for discrete
latents, :mod:`pyrovae.inference.discrete_surrogates` (see docs/estimators.md for the derivations).
Each estimator's ``latent_families`` names the guides it handles (continuous, bernoulli,
categorical; :func:`handles`); given another, it refuses in one line.
"""

from typing import Sequence

from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from ..errors import PyrovaeError, positive_int
from ..registry import Contract, Registry
from .discrete_surrogates import ARM, REBAR, Enumeration, GumbelRelaxation
from .enumeration import MAX_CONFIGURATIONS
from .mcem import MonteCarloEM
from .pathwise import refusing_discrete_guides
from .surrogates import IWAE, VIMCO, AverageBaseline, LeaveOneOut, NeuralBaseline, ScoreFunction, StickingTheLanding
from .wake_sleep import WakeSleep

ESTIMATORS = Registry("estimator", contract=Contract(
    "a Pyro loss: an object with loss(model, guide, *args) and loss_and_grads(model, guide, *args), as Pyro's "
    "ELBOs have", lambda part: callable(getattr(part, "loss", None)) and callable(getattr(part, "loss_and_grads", None))))


def _check_particles(num_particles, minimum: int = 1) -> int:
    return positive_int(num_particles, "estimator option num_particles", minimum)


def _check_beta(beta) -> float:
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not 0 <= beta < 1:
        raise PyrovaeError(f"estimator option baseline_beta must be a number in [0, 1), got {beta!r}")
    return float(beta)


def _check_hidden(hidden) -> Sequence[int]:
    hidden = [hidden] if isinstance(hidden, int) else hidden
    if not isinstance(hidden, (list, tuple)) or not all(isinstance(h, int) and h > 0 for h in hidden):
        raise PyrovaeError(f"estimator option hidden must be a list of positive layer sizes, got {hidden!r}")
    return list(hidden)


def _pyro_particles(num_particles) -> dict:
    # The model's only plate is the data plate; particles become a dimension left of it.
    return {"num_particles": _check_particles(num_particles), "vectorize_particles": num_particles > 1,
            "max_plate_nesting": 1}


@ESTIMATORS.register("pathwise")
def pathwise(*, num_particles=1):
    """Reparameterized Monte Carlo ELBO, Pyro's Trace_ELBO (the paper's SGVB estimator A, eq. 6).

    grad E_q[log p(x, z) - log q(z|x)] ~ (1/K) sum_k grad [log p(x, g(eps_k, x)) - log q(g(eps_k, x)|x)]
    with z = g(eps, x) = mu(x) + sigma(x) * eps, eps ~ N(0, I) (Kingma & Welling 2014).
    """
    return refusing_discrete_guides(Trace_ELBO(**_pyro_particles(num_particles)))


@ESTIMATORS.register("analytic_kl")
def analytic_kl(*, num_particles=1):
    """Analytic KL, Monte Carlo reconstruction: TraceMeanField_ELBO (estimator B, eq. 7-8).

    ELBO = -KL(q(z|x) || p(z)) + E_q[log p(x|z)]; the KL is exact where
    torch registers it (Normal priors) and falls back to sampling otherwise (mixtures).
    """
    return refusing_discrete_guides(TraceMeanField_ELBO(**_pyro_particles(num_particles)))


@ESTIMATORS.register("stl")
def stl(*, num_particles=1):
    """Sticking the landing: the path derivative, q's parameters stopped inside log q.

    grad ~ (1/K) sum_k d/dphi [log p(x, z_k) - log q_{stop(phi)}(z_k|x)], z_k = g(eps_k, x);
    drops the score term grad_phi log q, whose mean is zero, so the variance vanishes when q
    is the exact posterior (Roeder, Wu & Duvenaud 2017).
    """
    return StickingTheLanding(_check_particles(num_particles))


@ESTIMATORS.register("score")
def score(*, num_particles=1):
    """REINFORCE for the guide's z, no baseline; the decoder keeps grad log p(x, z).

    grad_phi ~ (1/K) sum_k f_k grad_phi log q(z_k|x), z_k ~ q held fixed
    (Williams 1992; black-box VI, Ranganath et al. 2014); what Pyro's Trace_ELBO does for a
    guide site without rsample.
    """
    return ScoreFunction(_check_particles(num_particles))


@ESTIMATORS.register("score_avg_baseline")
def score_avg_baseline(*, num_particles=1, baseline_beta=0.9):
    """REINFORCE with a moving-average baseline b_t = beta b_{t-1} + (1 - beta) mean f_t.

    grad_phi ~ (1/K) sum_k (f_k - b_{t-1}) grad_phi log q(z_k|x); b_{t-1} does not depend on
    this step's samples, so the estimator is unbiased (Williams 1992; Mnih & Gregor 2014).
    """
    return ScoreFunction(_check_particles(num_particles), AverageBaseline(_check_beta(baseline_beta)))


@ESTIMATORS.register("score_nn_baseline")
def score_nn_baseline(*, num_particles=1, baseline_beta=0.9, hidden=(100,)):
    """REINFORCE with an input-dependent neural baseline b(x) = c + s b_psi(x) (NVIL).

    grad_phi ~ (1/K) sum_k (f_k - b(x)) grad_phi log q(z_k|x); c and s are moving averages of
    the mean of f and of its spread, b_psi a tanh MLP trained with the VAE on
    ((f - b(x)) / s)^2 (Mnih & Gregor 2014).
    """
    return ScoreFunction(_check_particles(num_particles),
                         NeuralBaseline(_check_beta(baseline_beta), _check_hidden(hidden)))


@ESTIMATORS.register("score_loo")
def score_loo(*, num_particles=5):
    """REINFORCE of the ELBO with a leave-one-out baseline over K >= 2 samples.

    grad_phi ~ (1/K) sum_k (f_k - (1/(K-1)) sum_{j != k} f_j) grad_phi log q(z_k|x)
    (Kool, van Hoof & Welling 2019).
    """
    return ScoreFunction(_check_particles(num_particles, 2), LeaveOneOut())


@ESTIMATORS.register("iwae")
def iwae(*, num_particles=5):
    """Pathwise gradient of the importance-weighted bound L_K = log (1/K) sum_k w_k.

    grad L_K = sum_k w~_k grad log w_k(z_k(eps_k)), w~_k = w_k / sum_j w_j
    (Burda, Grosse & Salakhutdinov 2016); K = 1 is the pathwise ELBO.
    """
    return IWAE(_check_particles(num_particles))


@ESTIMATORS.register("iwae_dreg")
def iwae_dreg(*, num_particles=5):
    """Doubly reparameterized IWAE gradient: encoder SNR grows with K.

    grad_phi L_K ~ sum_k w~_k^2 (d log w_k / d z_k)(d z_k / d phi), q's parameters stopped in
    log w; the decoder's gradient is IWAE's (Tucker, Lawson, Gu & Maddison 2019).
    """
    return IWAE(_check_particles(num_particles), doubly_reparameterized=True)


@ESTIMATORS.register("vimco")
def vimco(*, num_particles=5):
    """Score-function gradient of L_K with leave-one-out multi-sample baselines (K >= 2).

    grad_phi L_K ~ sum_k (L_K - L_{-k}) grad log q(z_k|x) - sum_k w~_k grad log q(z_k|x),
    L_{-k} = log (1/K)(sum_{j != k} w_j + exp(mean_{j != k} log w_j)) (Mnih & Rezende 2016).
    Built on its own surrogate: Pyro's RenyiELBO(alpha=0) drops the score term entirely.
    """
    return VIMCO(_check_particles(num_particles, 2))


def _check_insomnia(insomnia) -> float:
    if not isinstance(insomnia, (int, float)) or isinstance(insomnia, bool) or not 0 <= insomnia <= 1:
        raise PyrovaeError(f"estimator option insomnia must be a number in [0, 1], got {insomnia!r}")
    return float(insomnia)


@ESTIMATORS.register("wake_sleep")
def wake_sleep(*, num_particles=1, insomnia=0.0):
    """Wake-sleep: theta ascends log p(x, z), z ~ q(z|x); phi ascends log q(z|x) on dreams from p.

    wake:  grad_theta ~ sum_k w~_k grad_theta log p(x, z_k), z_k ~ q(z|x) fixed (w~ = 1 for K = 1);
    sleep: grad_phi ~ grad_phi log q(z|x'), z ~ p(z), x' ~ p(x|z) (Hinton, Dayan, Frey & Neal 1995).
    No bound is ascended: the encoder's gradient is biased. ``insomnia`` > 0 mixes in the
    wake-phi update sum_k w~_k grad log q(z_k|x); K > 1 is reweighted wake-sleep.
    """
    return WakeSleep(_check_particles(num_particles), _check_insomnia(insomnia))


@ESTIMATORS.register("reweighted_wake_sleep")
def reweighted_wake_sleep(*, num_particles=5, insomnia=0.5):
    """Reweighted wake-sleep: K samples of q, self-normalized weights, wake- and sleep-phi mixed.

    grad_theta ~ sum_k w~_k grad_theta log p(x, z_k) (the IWAE_K theta-gradient);
    grad_phi ~ insomnia sum_k w~_k grad_phi log q(z_k|x) + (1 - insomnia) grad_phi log q(z|x'),
    (z, x') ~ p (Bornschein & Bengio 2015).
    """
    return WakeSleep(_check_particles(num_particles), _check_insomnia(insomnia))


@ESTIMATORS.register("mcem")
def mcem(*, hmc_steps=1, num_leapfrog=10, target_accept=0.9, step_size=0.1):
    """Monte Carlo EM: per-point HMC chains on p(z|x) (E-step), then theta ascends log p(x, z).

    z_i <- HMC transitions on p_theta(z | x_i) continuing from z_i's last state (10 leapfrog
    steps, step size adapted toward 90% acceptance), moved on every visit;
    grad_theta log p_theta(x_i, z_i) (Kingma & Welling 2014, Fig. 3). The encoder is fitted to the
    samples (grad_phi log q(z_i | x_i)) for evaluation only.
    """
    for name, value in [("hmc_steps", hmc_steps), ("num_leapfrog", num_leapfrog)]:
        positive_int(value, f"estimator option {name}")
    if not isinstance(target_accept, (int, float)) or not 0 < target_accept < 1:
        raise PyrovaeError(f"estimator option target_accept must be a number in (0, 1), got {target_accept!r}")
    if not isinstance(step_size, (int, float)) or step_size <= 0:
        raise PyrovaeError(f"estimator option step_size must be a positive number, got {step_size!r}")
    return MonteCarloEM(hmc_steps, num_leapfrog, float(target_accept), float(step_size))


@ESTIMATORS.register("nvil")
def nvil(*, num_particles=1, baseline_beta=0.8, hidden=(100,)):
    """Neural variational inference and learning (Mnih & Gregor 2014): score_nn_baseline's
    input-dependent baseline with the paper's settings and its variance normalization.

    grad_phi ~ (1/K) sum_k (f_k - c - s b_psi(x)) / max(1, s) grad_phi log q(z_k|x), c and s^2
    moving averages (decay 0.8) of f's mean and spread, b_psi one tanh layer of 100 units. The
    division rescales phi's step without changing its direction's expectation.
    """
    return ScoreFunction(_check_particles(num_particles),
                         NeuralBaseline(_check_beta(baseline_beta), _check_hidden(hidden)), normalize=True)


@ESTIMATORS.register("arm")
def arm(*, num_particles=1):
    """Augment-REINFORCE-merge for binary latents, two antithetic samples per particle.

    b = 1[u > sigma(-a)], b' = 1[u < sigma(a)], u ~ U(0, 1)^D;
    grad_a ~ (f(b) - f(b')) (u - 1/2), a the guide's logits (Yin & Zhou 2019).
    """
    return ARM(_check_particles(num_particles))


@ESTIMATORS.register("disarm")
def disarm(*, num_particles=1):
    """DisARM for binary latents: ARM's pair with u integrated out where the pair agrees.

    grad_a ~ 1/2 (f(b) - f(b')) (-1)^b' 1[b != b'] sigma(|a|) (Dong, Mnih & Tucker 2020).
    """
    return ARM(_check_particles(num_particles), disarm=True)


def _check_positive(value, what: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise PyrovaeError(f"estimator option {what} must be a positive number, got {value!r}")
    return float(value)


@ESTIMATORS.register("rebar")
def rebar(*, num_particles=1, eta=1.0, temperature=0.5):
    """REBAR for binary latents: REINFORCE with the relaxed f as a control variate, unbiased.

    grad_a ~ (f(b) - c(z~)) grad_a log q(b) + grad_a c(z) - grad_a c(z~), z = a + logit(u),
    b = H(z), z~ ~ p(z | b), c(z) = eta f(sigma(z / lambda)); eta and lambda (from ``eta``,
    ``temperature``) learn to minimise the variance (Tucker, Mnih, Maddison, Lawson &
    Sohl-Dickstein 2017).
    """
    return REBAR(_check_particles(num_particles), _check_positive(eta, "eta"),
                 _check_positive(temperature, "temperature"))


@ESTIMATORS.register("relax")
def relax(*, num_particles=1, eta=1.0, temperature=0.5, hidden=(50,)):
    """RELAX for binary latents: REBAR's estimator with a learned control variate.

    c(z) = eta f(sigma(z / lambda)) + r_psi(sigma(z / lambda)), r_psi a tanh MLP of ``hidden``
    units starting at zero; eta, lambda, psi learn to minimise the variance (Grathwohl, Choi,
    Wu, Roeder & Duvenaud 2018).
    """
    return REBAR(_check_particles(num_particles), _check_positive(eta, "eta"),
                 _check_positive(temperature, "temperature"), _check_hidden(hidden))


def _gumbel(num_particles, temperature, anneal_rate, min_temperature, straight_through):
    temperature = _check_positive(temperature, "temperature")
    min_temperature = _check_positive(min_temperature, "min_temperature")
    if not isinstance(anneal_rate, (int, float)) or isinstance(anneal_rate, bool) or anneal_rate < 0:
        raise PyrovaeError(f"estimator option anneal_rate must be a number >= 0, got {anneal_rate!r}")
    return GumbelRelaxation(_check_particles(num_particles), temperature, float(anneal_rate), min_temperature,
                            straight_through)


@ESTIMATORS.register("gumbel_softmax")
def gumbel_softmax(*, num_particles=1, temperature=1.0, anneal_rate=0.0, min_temperature=0.5):
    """Gumbel-softmax / Concrete relaxation: the pathwise gradient of f at a relaxed sample (biased).

    z~ = sigma((a + logit(u)) / tau) for binary latents, softmax((a + g) / tau) per categorical
    group; grad ~ grad f(z~(a)), f continued to relaxed values; tau = max(min_temperature,
    temperature exp(-anneal_rate t)) after t steps (Jang, Gu & Poole 2017; Maddison, Mnih & Teh 2017).
    """
    return _gumbel(num_particles, temperature, anneal_rate, min_temperature, False)


@ESTIMATORS.register("gumbel_st")
def gumbel_st(*, num_particles=1, temperature=1.0, anneal_rate=0.0, min_temperature=0.5):
    """Straight-through Gumbel: f at the exact sample H(z~ - 1/2) (argmax per group), differentiated
    as if at z~ (biased at every temperature; Jang, Gu & Poole 2017); options as gumbel_softmax's.
    """
    return _gumbel(num_particles, temperature, anneal_rate, min_temperature, True)


@ESTIMATORS.register("enum")
def enum(*, max_configurations=MAX_CONFIGURATIONS):
    """Exact ELBO by enumeration of every latent configuration (2^D binary, K^G categorical).

    ELBO(x) = sum_j q(z_j|x) [log p(x, z_j) - log q(z_j|x)], its gradient exact; refused above
    ``max_configurations``.
    """
    return Enumeration(positive_int(max_configurations, "estimator option max_configurations"))


def handles(loss, family: str) -> bool:
    """Whether estimator ``loss`` handles a guide of latent ``family`` (continuous, bernoulli,
    categorical); Pyro losses from plugins are taken to handle continuous guides only."""
    return family in getattr(loss, "latent_families", ("continuous",))


def build_estimator(spec):
    """The Pyro loss for a :class:`~pyrovae.spec.ComponentSpec` naming an estimator."""
    return ESTIMATORS.build(spec.name, options=spec.options, where="train.estimator")


def bound_particles(loss) -> int:
    """The K of the bound whose gradient ``loss`` estimates (without bias, except for the
    encoder's gradient of the wake-sleep estimators): 1 for the ELBO, K for the multi-sample
    bound of ``iwae``, ``iwae_dreg``, ``vimco`` and wake-sleep with K particles."""
    return getattr(loss, "bound_particles", 1)


def estimator_state(loss) -> dict:
    """The estimator's own state for a checkpoint (empty for stateless ones, Pyro's ELBOs)."""
    return loss.state_dict() if hasattr(loss, "state_dict") else {}


def load_estimator_state(loss, state: dict) -> None:
    """Restore what :func:`estimator_state` returned."""
    if state and hasattr(loss, "load_state_dict"):
        loss.load_state_dict(state)
