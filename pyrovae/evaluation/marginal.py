"""Honest marginal likelihoods: importance-sampled log p(x) per data point, IWAE bounds,
diagnostics of the weights, and exact references to check them against.

For a data point x and K draws z_k ~ q(z|x) from the guide,

    log w_k  = log p(x | z_k) + log p(z_k) - log q(z_k | x)
    log p(x) ~ logsumexp_k log w_k - log K

whose expectation is the IWAE bound IWAE_K, and log p(x) >= IWAE_K >= IWAE_1 = ELBO.

The log-weights come from Pyro traces, never from formulas written per prior or
likelihood: the guide is traced under a plate of importance samples at dim -2, the model
is replayed on the guide's z, and every site's ``log_prob`` (already summed by Pyro over
the site's event dims) keeps the data plate's dim -1. So each data point gets its own
estimate, for any prior, likelihood, network or conditional model. Pyro's ``Importance``
and ``vectorized_importance_weights`` instead sum the log-weights over the data plate,
giving one weight per sample for the whole batch: a much looser estimate of
sum_i log p(x_i) for independent data points.

Samples are drawn in chunks whose memory stays under a bound the caller sets; all of it
runs under ``torch.inference_mode()``, and log-weights are accumulated in float64.

Exact references: :class:`LinearGaussian` (probabilistic PCA: closed-form marginal,
posterior and ELBO) and :func:`quadrature_log_marginal` (a grid over a 1-D or 2-D
latent space).
"""

import contextlib
import functools
import math
import re
from dataclasses import dataclass
from typing import Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.ops.stats import fit_generalized_pareto
from pyro.poutine.util import site_is_subsample
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_leaves, tree_unflatten
from tqdm.auto import tqdm

from ..components.likelihoods import MEAN_ACTIVATIONS, LocScale
from ..components.networks import MLP
from ..components.priors import StandardNormal
from ..errors import PyrovaeError

SAMPLE_PLATE = "importance_samples"  # the particle plate, left of the model's data plate
LATENT_SITE = "z"                    # the latent sample site of VAE.model and VAE.guide
DEFAULT_MAX_MEMORY = "1GB"


class Estimate(NamedTuple):
    """Per-data-point values (float64, shape ``(N,)``) and their Monte Carlo standard
    errors (for quadrature: the error estimate from grid refinement)."""

    value: torch.Tensor
    std_error: torch.Tensor


# ----------------------------------------------------------------------------- memory

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}

# How much one chunk of traces may allocate when the memory bound allows more: longer
# chunks do not run faster (the matrix multiplies reach most of their speed at a few
# thousand rows; benchmarks/evaluation_throughput.py), they only take more memory.
TARGET_CHUNK_BYTES = 64 * 2**20
# The allocation count below cannot see temporaries inside single kernels (for example
# binary_cross_entropy_with_logits); twice the count covers them with room to spare
# (benchmarks/evaluation_throughput.py measures the peak against the bound).
SAFETY_FACTOR = 2.0
# Log-weights of one batch of points are stored (float64) and analysed with a few
# temporaries of the same size.
WEIGHT_COPIES = 4


def parse_memory(text) -> int:
    """Bytes in a size such as ``512MB``, ``2GB`` or ``1.5GiB`` (KB/MB/GB are powers of
    1000, KiB/MiB/GiB powers of 1024; a bare number is bytes)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise PyrovaeError(f"memory bound '{text}' is not a size like 512MB, 2GB or 1.5GiB; "
                           f"give a positive number with one of the units B, KB, MB, GB, KiB, MiB, GiB")
    return int(float(match.group(1)) * _UNITS[unit])


def _as_bytes(max_memory) -> int:
    """A memory bound given as bytes or as a size string."""
    if isinstance(max_memory, int) and not isinstance(max_memory, bool):
        return max_memory
    return parse_memory(max_memory)


def format_bytes(n: float) -> str:
    """``n`` bytes for people: ``512 B``, ``1.5 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


class _AllocationCounter(TorchFunctionMode):
    """Counts the bytes of every new tensor storage a torch function returns (views and
    in-place results share an input's storage and are not counted)."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.bytes += t.untyped_storage().nbytes()
        return out


@dataclass(frozen=True)
class Cost:
    """Bytes a traced computation allocates: ``fixed + points * per_point +
    points * samples * per_pair``, measured by :meth:`measure`."""

    fixed: float
    per_point: float
    per_pair: float

    @classmethod
    def measure(cls, run: Callable[[int, int], object]) -> "Cost":
        """Count what ``run(points, samples)`` allocates at three tiny sizes and solve for
        the three terms. Everything the computation allocates is counted as if nothing were
        freed, so the fitted cost errs on the generous side."""
        counts = {}
        for size in [(1, 1), (1, 2), (2, 1)]:
            with _AllocationCounter() as counter:
                run(*size)
            counts[size] = counter.bytes
        per_pair = max(0, counts[1, 2] - counts[1, 1])
        per_point = max(0, counts[2, 1] - counts[1, 1] - per_pair)
        return cls(max(0, counts[1, 1] - per_point - per_pair), per_point, per_pair)

    def bytes(self, points: int, samples: int, stored_per_point: float) -> float:
        """Working memory of one chunk of ``samples`` draws for ``points`` data points, plus
        what is stored per point across chunks."""
        traced = self.fixed + points * self.per_point + points * samples * self.per_pair
        return SAFETY_FACTOR * traced + points * stored_per_point


class ChunkPlan(NamedTuple):
    points: int   # data points per batch
    samples: int  # samples (or grid points) per traced chunk


def plan_chunks(cost: Cost, num_points: int, num_samples: int, max_memory: int,
                stored_per_point: float) -> ChunkPlan:
    """The largest chunks under ``max_memory``, aiming at :data:`TARGET_CHUNK_BYTES`.

    Samples per chunk come first: the guide's encoder runs once per chunk, so long chunks
    of samples for few points waste the least work.
    """
    rows = max(1, int(TARGET_CHUNK_BYTES // max(SAFETY_FACTOR * cost.per_pair, 1)))
    samples = min(num_samples, rows)
    points = min(num_points, max(1, rows // samples))
    while cost.bytes(points, samples, stored_per_point) > max_memory:
        if points > 1:
            points //= 2
        elif samples > 1:
            samples //= 2
        else:
            need = cost.bytes(1, 1, stored_per_point)
            raise PyrovaeError(f"a memory bound of {format_bytes(max_memory)} is too small: one data point "
                               f"with {num_samples} samples needs at least {format_bytes(need)}; "
                               f"raise the memory bound or use fewer samples")
    return ChunkPlan(points, samples)


# ----------------------------------------------------------------------------- Pyro traces

def evaluation_mode(fn):
    """Run ``fn`` under ``torch.inference_mode()``, without Pyro's argument validation (the
    data are checked once up front) and in a private parameter store, so evaluating one VAE
    leaves Pyro's global store as it was."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.inference_mode())
            stack.enter_context(pyro.validation_enabled(False))
            stack.enter_context(pyro.get_param_store().scope())
            return fn(*args, **kwargs)

    return wrapper


def _site_log_probs(trace) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sums of ``log_prob`` over the observed and over the latent sites of a trace, each in
    float64 with the trace's batch shape ``(samples, points)``. Every sample site of the
    VAE lies in the data plate, so nothing here mixes data points."""
    keep = lambda name, site: not site_is_subsample(site)  # noqa: E731
    trace.compute_log_prob(keep)
    observed = latent = 0.0
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and keep(name, site):
            if site["is_observed"]:
                observed = observed + site["log_prob"].double()
            else:
                latent = latent + site["log_prob"].double()
    return observed, latent


def _importance_terms(vae, x, y, num_samples: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``log p(x|z_k)`` and ``log p(z_k) - log q(z_k|x)`` for ``num_samples`` draws from the
    guide per data point: two ``(num_samples, points)`` float64 tensors whose sum is log w."""
    with pyro.plate(SAMPLE_PLATE, num_samples, dim=-2):
        guide = poutine.trace(vae.guide).get_trace(x, y)
        model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x, y)
    log_likelihood, log_prior = _site_log_probs(model)
    _, log_q = _site_log_probs(guide)
    return log_likelihood, log_prior - log_q


def _log_joint(vae, x, y, z) -> torch.Tensor:
    """``log p(x, z)`` at given latent points ``z`` of shape ``(S, points, latent_dim)``:
    the model's trace conditioned on z, shape ``(S, points)``, float64."""
    with pyro.plate(SAMPLE_PLATE, z.shape[0], dim=-2):
        model = poutine.trace(poutine.condition(vae.model, data={LATENT_SITE: z})).get_trace(x, y)
    log_likelihood, log_prior = _site_log_probs(model)
    return log_likelihood + log_prior


def _prepare(vae, x, y):
    """``x`` (and ``y``) on the VAE's device and in its dtype, checked against the model."""
    param = next(vae.parameters())
    x = x.to(device=param.device, dtype=param.dtype)
    if x.shape[0] == 0:
        raise PyrovaeError("there are no data points to evaluate; pass at least one")
    vae.check_data(x)
    if vae.num_classes and y is None:
        raise PyrovaeError("this is a conditional VAE: pass the labels y as well")
    y = y.to(param.device) if y is not None and vae.num_classes else None
    return x, y


def _rows(t: Optional[torch.Tensor], start: int, stop: int) -> Optional[torch.Tensor]:
    """Rows ``start:stop`` of an optional tensor (the labels of unconditional models are None)."""
    return None if t is None else t[start:stop]


def _first_repeated(t: Optional[torch.Tensor], n: int) -> Optional[torch.Tensor]:
    """The first row of an optional tensor repeated ``n`` times (a view): probe inputs."""
    return None if t is None else t[:1].expand(n, *t.shape[1:])


def _collect(n: int, batches, bar=None):
    """Concatenate the per-point results of successive batches (pytrees of tensors whose
    first dim is the batch's points, or None) into one tensor per leaf, allocated at the
    first batch.

    Keeping every batch's small tensors until the end would pin fragments of the heap
    between the chunks' large temporaries, and the process's memory would grow with
    the number of batches."""
    buffers, spec, start = None, None, 0
    for summary in batches:
        leaves, spec = tree_flatten(summary)
        if buffers is None:
            buffers = [None if t is None else t.new_empty((n, *t.shape[1:])) for t in leaves]
        stop = start + next(t for t in leaves if t is not None).shape[0]
        for buffer, t in zip(buffers, leaves):
            if buffer is not None:
                buffer[start:stop] = t
        if bar is not None:
            bar.update(stop - start)
        start = stop
    return tree_unflatten(buffers, spec)


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PyrovaeError(f"{what} must be a positive integer, got {value!r}")
    return value


# ----------------------------------------------------------------------------- weights

def log_mean_exp(log_w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Over the last dim of K log-weights: the estimate log (1/K) sum_k w_k, its standard
    error and the normalised effective sample size ESS / K.

    With ESS = (sum w)^2 / sum w^2, the delta method gives the standard error of the log of
    the mean weight as sqrt((K / ESS - 1) / (K - 1)) (the relative standard error of the
    mean weight, from the unbiased sample variance). It is NaN for K = 1.
    """
    k = log_w.shape[-1]
    if k == 1:  # one weight: the estimate is its log, with no error to estimate
        return log_w[..., 0], torch.full_like(log_w[..., 0], math.nan), torch.ones_like(log_w[..., 0])
    total = torch.logsumexp(log_w, -1)
    ess = (2 * total - torch.logsumexp(2 * log_w, -1)).exp()
    std_error = ((k / ess - 1).clamp_min(0) / (k - 1)).sqrt()
    return total - math.log(k), std_error, ess / k


def normalized_ess(log_w: torch.Tensor) -> torch.Tensor:
    """Effective sample size of importance weights over the last dim, divided by their
    number: 1 when all weights are equal, 1/K when one weight dominates."""
    return log_mean_exp(log_w)[2]


def iwae_from_groups(log_w: torch.Tensor, k: int) -> Estimate:
    """IWAE_k per row from K log-weights: the mean of log (1/k) sum w over the K // k
    disjoint groups of k draws (an unbiased estimate of the bound), with its standard
    error over groups, or the delta-method error when there is one group."""
    groups = log_w.shape[-1] // k
    value, std_error, _ = log_mean_exp(log_w[..., :groups * k].unflatten(-1, (groups, k)))
    if groups == 1:
        return Estimate(value[..., 0], std_error[..., 0])
    return Estimate(value.mean(-1), value.std(-1) / math.sqrt(groups))


def pareto_khat(log_w: torch.Tensor) -> torch.Tensor:
    """Pareto k-hat of each row's importance weights (PSIS; Vehtari et al.), computed as
    Pyro's ``psis_diagnostic`` does for one set of weights: a generalized Pareto fit
    (Pyro's ``fit_generalized_pareto``) to the largest min(0.2 K, 3 sqrt K) weights.
    Below 0.5 the weights are well behaved, above 0.7 the estimate is unreliable. NaN
    where fewer than 10 weights fall in the tail (K below about 50)."""
    k = log_w.shape[-1]
    tail = math.ceil(min(0.2 * k, 3 * math.sqrt(k)))
    khat = torch.full(log_w.shape[:-1], math.nan, dtype=torch.float64)
    if tail < 10:
        return khat
    top = log_w.detach().double().cpu().topk(tail + 1, dim=-1).values
    top = top - top[..., :1]
    cutoff = top[..., -1].clamp_min(math.log(1e-15))
    for index in range(top.shape[0]):
        row = top[index]
        above = row[row > cutoff[index]]
        if above.numel() >= 10:
            khat[index] = fit_generalized_pareto(above.exp() - cutoff[index].exp())[0]
    return khat


# ----------------------------------------------------------------------------- importance sampling

@dataclass
class ImportanceResult:
    """What K importance samples per data point say, per data point (float64, ``(N,)``).

    ``iwae[k]`` holds IWAE_k estimated from K // k disjoint groups of the same draws, so
    ``iwae[1]`` is the K-sample ELBO estimate and ``iwae[K]`` equals ``log_marginal``.
    """

    num_samples: int
    log_marginal: Estimate           # logsumexp_k log w_k - log K
    elbo: Estimate                   # mean_k log w_k
    iwae: Dict[int, Estimate]
    log_likelihood: torch.Tensor     # mean_k log p(x | z_k): minus the distortion
    kl: torch.Tensor                 # mean_k log q(z_k|x) - log p(z_k): the rate
    ess: torch.Tensor                # normalised effective sample size, in (0, 1]
    khat: Optional[torch.Tensor]     # Pareto k-hat of the weights (NaN where too few)


def _summarize_batch(log_w, log_likelihood, kl, bounds, khat) -> dict:
    estimate, std_error, ess = log_mean_exp(log_w)
    return {"log_marginal": Estimate(estimate, std_error),
            "elbo": iwae_from_groups(log_w, 1),
            "iwae": {k: iwae_from_groups(log_w, k) for k in bounds},
            "log_likelihood": log_likelihood, "kl": kl, "ess": ess,
            "khat": pareto_khat(log_w).to(log_w.device) if khat else None}


@evaluation_mode
def importance_sample(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, num_samples: int = 5000,
                      bounds: Sequence[int] = (), max_memory=DEFAULT_MAX_MEMORY, khat: bool = False,
                      progress: bool = False) -> ImportanceResult:
    """Importance-sample log p(x) (log p(x|y) for a conditional VAE) for every row of ``x``
    with ``num_samples`` draws from the guide, plus IWAE_k for each k in ``bounds``, the
    ELBO, rate, distortion, ESS and (with ``khat``) Pareto k-hat, all per data point.

    Chunks of samples and batches of points are sized so that the working memory stays
    under ``max_memory`` (bytes, or a string such as ``"2GB"``).
    """
    num_samples = _positive_int(num_samples, "the number of samples")
    for k in bounds:
        if _positive_int(k, "an IWAE bound's K") > num_samples:
            raise PyrovaeError(f"IWAE_{k} needs at least {k} samples, got {num_samples}; "
                               f"raise the number of samples")
    x, y = _prepare(vae, x, y)
    n = x.shape[0]
    cost = Cost.measure(lambda p, s: _importance_terms(vae, _first_repeated(x, p), _first_repeated(y, p), s))
    plan = plan_chunks(cost, n, num_samples, _as_bytes(max_memory), WEIGHT_COPIES * 8 * num_samples)

    def batches():
        for start in range(0, n, plan.points):
            xb, yb = x[start:start + plan.points], _rows(y, start, start + plan.points)
            log_w = torch.empty(xb.shape[0], num_samples, dtype=torch.float64, device=x.device)
            log_likelihood = torch.zeros(xb.shape[0], dtype=torch.float64, device=x.device)
            kl = torch.zeros_like(log_likelihood)
            for s in range(0, num_samples, plan.samples):
                lik, ratio = _importance_terms(vae, xb, yb, min(plan.samples, num_samples - s))
                log_w[:, s:s + lik.shape[0]] = (lik + ratio).T
                log_likelihood += lik.sum(0)
                kl -= ratio.sum(0)
            yield _summarize_batch(log_w, log_likelihood / num_samples, kl / num_samples, bounds, khat)

    with tqdm(total=n, desc="importance sampling", unit="point", disable=not progress, leave=False) as bar:
        merged = _collect(n, batches(), bar)
    return ImportanceResult(num_samples=num_samples, **merged)


def log_marginal(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, num_samples: int = 5000,
                 max_memory=DEFAULT_MAX_MEMORY) -> Estimate:
    """Importance-sampled log p(x) for every row of ``x``, with its Monte Carlo standard
    error (delta method; the estimate is biased low by about half its squared error)."""
    return importance_sample(vae, x, y, num_samples, max_memory=max_memory).log_marginal


def iwae_bound(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, k: int = 50,
               num_samples: Optional[int] = None, max_memory=DEFAULT_MAX_MEMORY) -> Estimate:
    """IWAE_k per row of ``x``, estimated from ``num_samples`` (default ``k``) draws split
    into groups of ``k``, with its standard error."""
    num_samples = k if num_samples is None else num_samples
    return importance_sample(vae, x, y, num_samples, bounds=[k], max_memory=max_memory).iwae[k]


@torch.inference_mode()
def active_units(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, threshold: float = 0.01,
                 batch_size: int = 1000) -> Tuple[int, torch.Tensor]:
    """Latent dimensions the data use (Burda et al. 2016): the number whose guide mean
    E_q[z_j | x] varies over the data with variance above ``threshold``, and the variances."""
    x, y = _prepare(vae, x, y)
    means = torch.cat([vae.encode(x[i:i + batch_size], _rows(y, i, i + batch_size))[0]
                       for i in range(0, x.shape[0], batch_size)])
    variances = means.double().var(0, unbiased=False)
    return int((variances > threshold).sum()), variances


# ----------------------------------------------------------------------------- closed form

@dataclass
class LinearGaussian:
    """z ~ N(0, I_L), x = W z + b + eps, eps ~ N(0, s^2 I_D): probabilistic PCA, whose
    marginal, posterior and ELBO have closed forms (all in float64).

    A VAE with a linear decoder (``mlp`` with ``hidden: []``), the ``gaussian_fixed``
    likelihood with ``mean_activation: identity`` and the standard normal prior is exactly
    this model, with W and b its decoder's weight and bias and s its likelihood's sigma.
    """

    weight: torch.Tensor  # W, (D, L)
    bias: torch.Tensor    # b, (D,)
    noise: float          # s, the noise standard deviation

    @staticmethod
    def describes(vae) -> bool:
        """Whether ``vae`` is this model: a linear decoder, a fixed-variance Gaussian
        likelihood with identity mean, the standard normal prior, no conditioning."""
        lik = vae.likelihood
        linear = isinstance(vae.decoder, MLP) and len(vae.decoder.body) == 0 and not vae.num_classes
        gaussian = (isinstance(lik, LocScale) and lik.family is dist.Normal and lik.fixed_scale is not None
                    and lik.loc_fn is MEAN_ACTIVATIONS["identity"])
        return linear and gaussian and isinstance(vae.prior, StandardNormal)

    @classmethod
    def from_vae(cls, vae) -> "LinearGaussian":
        if not cls.describes(vae):
            raise PyrovaeError("the closed form needs the linear-Gaussian VAE of the linear_gaussian config "
                               "(decoder mlp with hidden: [], likelihood gaussian_fixed with mean_activation: "
                               "identity, prior standard_normal); for a 1-D or 2-D latent space use quadrature")
        head = vae.decoder.head
        return cls(head.weight.detach().double(), head.bias.detach().double(), float(vae.likelihood.fixed_scale))

    @classmethod
    def from_extras(cls, extras: Dict[str, torch.Tensor]) -> "LinearGaussian":
        """The true model behind the ``linear_gaussian`` dataset (its ``Dataset.extras``)."""
        return cls(extras["weight"].double(), extras["bias"].double(), float(extras["noise"]))

    @property
    def latent_dim(self) -> int:
        return self.weight.shape[1]

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1).to(self.weight)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log N(x; b, W W^T + s^2 I) per row of ``x``."""
        d = self.weight.shape[0]
        cov = self.weight @ self.weight.T + self.noise ** 2 * torch.eye(d, dtype=torch.float64)
        return dist.MultivariateNormal(self.bias, covariance_matrix=cov).log_prob(self._flat(x))

    def posterior_map(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(A, c, Sigma)`` with p(z|x) = N(A x + c, Sigma): Sigma = (I + W^T W / s^2)^-1,
        A = Sigma W^T / s^2, c = -A b."""
        precision = torch.eye(self.latent_dim, dtype=torch.float64) + self.weight.T @ self.weight / self.noise ** 2
        cov = torch.linalg.inv(precision)
        matrix = cov @ self.weight.T / self.noise ** 2
        return matrix, -matrix @ self.bias, cov

    def posterior(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(N, L)`` and covariance ``(L, L)`` of p(z|x) for every row of ``x``."""
        matrix, offset, cov = self.posterior_map()
        return self._flat(x) @ matrix.T + offset, cov

    def elbo(self, x: torch.Tensor, loc: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        """The ELBO for q(z|x) = N(loc, cov) per row (``cov`` is ``(L, L)`` or ``(N, L, L)``):

        log N(x; W m + b, s^2 I) - tr(W^T W S) / (2 s^2) - (m^T m + tr S) / 2 + log|S| / 2 + L / 2,

        which equals log p(x) - KL(q || p(z|x)).
        """
        x, loc, cov = self._flat(x), loc.to(self.weight), cov.to(self.weight)
        fit = dist.Normal(loc @ self.weight.T + self.bias, self.noise).log_prob(x).sum(-1)
        spread = (self.weight.T @ self.weight * cov).sum((-2, -1)) / (2 * self.noise ** 2)
        trace = cov.diagonal(dim1=-2, dim2=-1).sum(-1)
        return fit - spread - ((loc ** 2).sum(-1) + trace) / 2 + torch.logdet(cov) / 2 + self.latent_dim / 2


def exact_log_marginal(vae, x: torch.Tensor) -> torch.Tensor:
    """The closed-form log p(x) of a linear-Gaussian VAE per row of ``x`` (float64)."""
    return LinearGaussian.from_vae(vae).log_marginal(x)


@torch.inference_mode()
def exact_elbo(vae, x: torch.Tensor) -> torch.Tensor:
    """The closed-form ELBO of a linear-Gaussian VAE's own guide per row of ``x``."""
    model = LinearGaussian.from_vae(vae)
    loc, scale = vae.encode(x.to(next(vae.parameters())))
    return model.elbo(x, loc, torch.diag_embed(scale.double() ** 2))


def exact_posterior(vae, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of the exact posterior p(z|x) of a linear-Gaussian VAE."""
    return LinearGaussian.from_vae(vae).posterior(x)


# ----------------------------------------------------------------------------- quadrature

LOCATE_NODES = 201     # nodes per axis of the grid that looks for the posterior
LOCATE_DEPTH = 30.0    # nats below the highest node that still count as posterior mass
PRIOR_SAMPLES = 10000  # prior draws whose range spans the search box
EDGE_TOLERANCE = 1e-9  # largest share of the integral allowed on the box's boundary
MAX_ROUNDS = 3         # grid refinements and widenings after the first grid


def _on_grid(vae, x, y, center, half, nodes: int, max_memory: int, reduce) -> Tuple[torch.Tensor, ...]:
    """Evaluate log p(x, z) on ``nodes`` evenly spaced nodes per axis spanning each point's
    box center +- half (in chunks under the memory bound), and ``reduce(log_f, unit, c, h)``
    each batch's ``(grid, points)`` values to per-point tensors. ``unit`` holds the nodes in
    [-1, 1]^dim."""
    dim = center.shape[-1]
    axis = torch.linspace(-1, 1, nodes, dtype=torch.float64, device=center.device)
    unit = torch.cartesian_prod(*[axis] * dim).reshape(-1, dim)
    grid_size, dtype = unit.shape[0], x.dtype
    cost = Cost.measure(lambda p, s: _log_joint(vae, _first_repeated(x, p), _first_repeated(y, p),
                                                center.new_zeros(s, p, dim, dtype=dtype)))
    plan = plan_chunks(cost, x.shape[0], grid_size, max_memory, WEIGHT_COPIES * 8 * grid_size)

    def batches():
        for start in range(0, x.shape[0], plan.points):
            stop = start + plan.points
            c, h = center[start:stop], half[start:stop]
            log_f = torch.cat([_log_joint(vae, x[start:stop], _rows(y, start, stop),
                                          (c + h * unit[g:g + plan.samples, None]).to(dtype))
                               for g in range(0, grid_size, plan.samples)])
            yield reduce(log_f, unit, c, h)

    return _collect(x.shape[0], batches())


def _posterior_box(log_f, unit, center, half):
    """The box around every node within LOCATE_DEPTH nats of the highest one, grown by
    one node spacing on each side: where the posterior's mass is."""
    keep = (log_f > log_f.amax(0) - LOCATE_DEPTH)[..., None]
    z = center + half * unit[:, None]
    spacing = 2 * half / (LOCATE_NODES - 1)
    lower = torch.where(keep, z, math.inf).amin(0) - spacing
    upper = torch.where(keep, z, -math.inf).amax(0) + spacing
    return (lower + upper) / 2, (upper - lower) / 2


def _trapezoid(n: int):
    """Trapezoidal rule on 2n + 1 nodes per axis, with a second, coarser value from every
    other node (n + 1 nodes) at no extra cost. For an integrand that vanishes at the box's
    boundary the rule converges faster than any power of the node spacing. Returns a reducer
    giving per point the fine and coarse log integrals and the share of the integral on the
    boundary (large when the box cuts off posterior mass)."""

    def reduce(log_f, unit, center, half):
        dim = unit.shape[-1]
        log_half_weight = (unit.abs() == 1).sum(-1) * math.log(0.5)  # weight 1/2 at an axis' ends
        coarse = ((unit + 1) * n).round().remainder(2).eq(0).all(-1)  # every other node, per axis
        weighted = log_f + log_half_weight[:, None]
        total = torch.logsumexp(weighted, 0)
        log_cell = (half / n).log().sum(-1)  # the fine grid's cell volume
        edge = torch.logsumexp(weighted[(unit.abs() == 1).any(-1)], 0) - total
        return (total + log_cell, torch.logsumexp(weighted[coarse], 0) + log_cell + dim * math.log(2), edge.exp())

    return reduce


def locate_posterior(vae, x: torch.Tensor, y: Optional[torch.Tensor], width: float, max_memory: int):
    """Center and half-widths ``(N, dim)`` of a box around each point's posterior mass:
    log p(x, z) is evaluated on a grid spanning the range of many prior draws and +-
    ``width`` guide standard deviations around the guide's mean, and the box holds every
    node within 30 nats of the highest (so a posterior mode the guide misses is still
    found). ``x`` and ``y`` are already prepared; runs in evaluation mode."""
    loc, scale = (t.double() for t in vae.encode(x, y))
    prior_draws = vae.prior().sample((PRIOR_SAMPLES,)).double()
    lower = torch.minimum(loc - width * scale, prior_draws.amin(0))
    upper = torch.maximum(loc + width * scale, prior_draws.amax(0))
    return _on_grid(vae, x, y, (lower + upper) / 2, (upper - lower) / 2, LOCATE_NODES, max_memory, _posterior_box)


@evaluation_mode
def quadrature_log_marginal(vae, x: torch.Tensor, y: Optional[torch.Tensor] = None, points_per_axis: int = 32,
                            width: float = 8.0, tolerance: float = 1e-3,
                            max_memory=DEFAULT_MAX_MEMORY) -> Estimate:
    """log p(x) per row of ``x`` by numerical integration over a 1-D or 2-D latent space.

    First the posterior is located: log p(x, z) is evaluated on a grid spanning the range
    of many prior draws and +- ``width`` guide standard deviations around the guide's mean,
    and the integration box is placed around every node within 30 nats of the highest
    (so a posterior mode the guide misses is still found). Then the box is integrated with
    the trapezoidal rule on 2n + 1 nodes per axis (n = ``points_per_axis``). The error
    estimate is the difference from the rule on every other node (the error of the coarser
    grid: a generous bound for the finer one) plus the share of the integral on the box's
    boundary. Where that share exceeds a tiny tolerance the box is doubled, where the two
    grids differ by more than ``tolerance`` nats the grid is refined; at most three times.
    """
    if vae.latent_dim not in (1, 2):
        raise PyrovaeError(f"quadrature integrates 1-D or 2-D latent spaces; this VAE has {vae.latent_dim} "
                           f"latent dimensions, use importance sampling (log_marginal)")
    x, y = _prepare(vae, x, y)
    max_memory = _as_bytes(max_memory)
    center, half = locate_posterior(vae, x, y, width, max_memory)
    value = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    error = torch.empty_like(value)
    todo = torch.arange(x.shape[0], device=x.device)
    for round_ in range(MAX_ROUNDS + 1):
        n = points_per_axis * 2 ** round_
        fine, coarse, edge = _on_grid(vae, x[todo], None if y is None else y[todo], center[todo], half[todo],
                                      2 * n + 1, max_memory, _trapezoid(n))
        value[todo], error[todo] = fine, (fine - coarse).abs() + edge
        widen = edge > EDGE_TOLERANCE
        half[todo[widen]] *= 2
        todo = todo[widen | ((fine - coarse).abs() > tolerance)]
        if todo.numel() == 0:
            break
    return Estimate(value, error)
