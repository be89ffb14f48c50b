"""Statistics of gradient estimators at frozen parameters: the numerical core of the laboratory.

One *draw* is one call of an estimator's ``differentiable_loss`` on a fixed minibatch and
one backward pass, exactly as a training step computes its gradient. Draws are
independent (fresh particles every time), so their per-parameter mean and variance
describe the estimator at these parameters. All gradients are of the *loss* (the negative
bound), the direction the optimizer follows.

Draws are taken one backward pass at a time: a gradient per draw needs a backward pass per
draw whatever the batching (``torch.func.vmap`` would batch them, but cannot batch the
in-place sampling inside ``torch.distributions``), and on a CPU a draw of a real VAE costs
its matrix products, not Python. Many-draw *averages* (the references) are vectorized as a
particle dimension.
"""

import math
import time
from dataclasses import dataclass
from statistics import NormalDist
from typing import Dict, Optional, Sequence

import pyro
import torch
from pyro.infer import Trace_ELBO

from ..evaluation.references import LinearGaussian, exact_elbo
from ..inference.discrete_particles import guide_family
from ..inference.enumeration import MAX_CONFIGURATIONS, MAX_TUPLES, configurations, enumerate_latents
from ..inference.surrogates import IWAE, VIMCO, LeaveOneOut, ScoreFunction

BIAS_LEVEL = 0.05  # family-wise level of the Bonferroni-corrected bias test, per parameter group
REFERENCE_CHUNK = 20000  # particles x data points per vectorized pass of a Monte Carlo reference
REFERENCE_MIN_CHUNKS = 200  # passes whose spread estimates the reference's variance


@dataclass
class Moments:
    """Per-parameter mean and variance (float64, flattened over all parameters) of the
    gradients of ``draws`` draws, and the wall time of one draw (loss and backward)."""

    mean: torch.Tensor
    var: torch.Tensor
    draws: int
    seconds_per_draw: float


@dataclass
class Reference:
    """The gradient an estimator should average to, with the variance of that value
    (zero when exact) and a description of where it comes from."""

    mean: torch.Tensor
    var: torch.Tensor
    kind: str


def flat_gradient(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """d loss / d params as one vector (zeros for parameters the loss does not use)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])


class RunningMoments:
    """Per-element mean and variance of a stream of equally shaped vectors in constant memory.

    Sums are kept in place (in ``dtype``, default the vectors' own precision), centred on
    the first vector so that the sum of squares measures the spread, not the mean (float32
    loses ~1e-7 of the spread per vector: far below the sampling error of the variance)."""

    def __init__(self, dtype: Optional[torch.dtype] = None):
        self.dtype = dtype
        self.count = 0
        self.shift = self.total = self.squares = self.delta = None

    def add(self, vector: torch.Tensor) -> None:
        vector = vector if self.dtype is None else vector.to(self.dtype)
        if self.shift is None:
            self.shift, self.delta = vector, torch.empty_like(vector)
            self.total, self.squares = torch.zeros_like(vector), torch.zeros_like(vector)
        torch.sub(vector, self.shift, out=self.delta)
        self.total += self.delta
        self.squares.addcmul_(self.delta, self.delta)
        self.count += 1

    def mean_and_variance(self):
        """Mean and unbiased variance, float64."""
        mean = self.total.double() / self.count
        var = (self.squares.double() - self.count * mean * mean).clamp_min(0) / (self.count - 1)
        return self.shift.double() + mean, var


def gradient_moments(estimator, vae, args: Sequence, draws: int, seed: int) -> Moments:
    """Mean and variance of ``draws`` gradient draws of ``estimator`` for ``vae``'s parameters
    on the model arguments ``args`` (minibatch, labels, KL weight), in the memory of a few
    gradients whatever the number of draws (:class:`RunningMoments`)."""
    if draws < 2:
        raise ValueError("need at least two draws for a variance")
    params = list(vae.parameters())
    pyro.set_rng_seed(seed)
    moments = RunningMoments()
    seconds = 0.0
    for _ in range(draws):
        started = time.perf_counter()
        grad = flat_gradient(estimator.differentiable_loss(vae.model, vae.guide, *args), params)
        seconds += time.perf_counter() - started
        moments.add(grad)
    return Moments(*moments.mean_and_variance(), draws, seconds / draws)


def chunked_moments(estimator, vae, args: Sequence, chunks: int, per_chunk: int, seed: int) -> Moments:
    """Mean and single-draw variance of ``chunks x per_chunk`` draws, each chunk's ``per_chunk``
    draws averaged in one vectorized pass (``averaged_loss`` of a :class:`ParticleELBO`): the
    variance of a draw is estimated as ``per_chunk`` times the variance of the chunk means, so
    ``var / draws`` is the variance of the overall mean, as for :func:`gradient_moments`. Many
    draws of a small model cost a few passes; the variance has ``chunks - 1`` degrees of freedom."""
    if chunks < 2:
        raise ValueError("need at least two chunks for a variance")
    params = list(vae.parameters())
    pyro.set_rng_seed(seed)
    moments = RunningMoments(torch.float64)
    seconds = 0.0
    for _ in range(chunks):
        started = time.perf_counter()
        grad = flat_gradient(estimator.averaged_loss(vae.model, vae.guide, args, {}, per_chunk), params)
        seconds += time.perf_counter() - started
        moments.add(grad)
    mean, var = moments.mean_and_variance()
    return Moments(mean, var * per_chunk, chunks * per_chunk, seconds / (chunks * per_chunk))


# ----------------------------------------------------------------------------- references

def reference_gradient(vae, args: Sequence, bound_particles: int, draws: int, seed: int) -> Reference:
    """The expected gradient of the loss of the ELBO (``bound_particles = 1``) or of the
    K-sample bound: exact for a discrete guide with a small latent space (:func:`enumeration_reference`)
    and for the ELBO of a linear-Gaussian model (:func:`~pyrovae.evaluation.references.exact_elbo`),
    else :func:`monte_carlo_reference`."""
    family, fn = guide_family(vae.model, vae.guide, args)
    discrete = family in ("bernoulli", "categorical")
    if discrete and configurations(fn) <= MAX_CONFIGURATIONS and configurations(fn) ** bound_particles <= MAX_TUPLES:
        return enumeration_reference(vae, args, bound_particles)
    if not discrete and bound_particles == 1 and LinearGaussian.describes(vae):
        exact = exact_elbo(vae, args[0], differentiable=True).sum()
        grad = flat_gradient(-exact, list(vae.parameters())).double()
        return Reference(grad, torch.zeros_like(grad), "exact (linear-Gaussian ELBO)")
    return monte_carlo_reference(vae, args, bound_particles, draws, seed, discrete=discrete)


def enumeration_reference(vae, args: Sequence, bound_particles: int) -> Reference:
    """The exact gradient of the loss of the ELBO or of the K-sample bound of a discrete model
    with a small latent space, by enumeration (:mod:`pyrovae.inference.enumeration`)."""
    enumerated = enumerate_latents(vae.model, vae.guide, args)
    bound = enumerated.elbo if bound_particles == 1 else enumerated.iwae_bound(bound_particles)
    grad = flat_gradient(-bound.sum(), list(vae.parameters())).double()
    what = "ELBO" if bound_particles == 1 else f"IWAE-{bound_particles}"
    return Reference(grad, torch.zeros_like(grad),
                     f"exact ({what} by enumeration of {enumerated.log_w.shape[0]} configurations)")


def monte_carlo_reference(vae, args: Sequence, bound_particles: int, draws: int, seed: int,
                          discrete: bool = False) -> Reference:
    """The average of ``draws`` pathwise gradient draws from ``seed``: Pyro's Trace_ELBO for the
    ELBO, IWAE-K for the K-sample bound; for a ``discrete`` guide (no pathwise gradient) the
    score function with the chunk's other draws as leave-one-out baseline for the ELBO, VIMCO for
    the K-sample bound, both unbiased. Draws are taken in vectorized chunks of at most
    ``REFERENCE_CHUNK`` particle-data-points each; the spread of the chunks gives the
    variance of the average, so there are at least ``REFERENCE_MIN_CHUNKS`` of them (with
    fewer, a per-parameter variance from few degrees of freedom puts heavy tails on the
    bias t-statistics of hundreds of thousands of parameters)."""
    params = list(vae.parameters())
    per_draw = bound_particles * args[0].shape[0]
    chunk = max(1, min(REFERENCE_CHUNK // per_draw, draws // REFERENCE_MIN_CHUNKS))
    if discrete and bound_particles == 1:
        loo = ScoreFunction(max(chunk, 2), LeaveOneOut())
        loss, kind = (lambda: loo.differentiable_loss(vae.model, vae.guide, *args)), "score-function (leave-one-out)"
        chunk = max(chunk, 2)
    elif discrete:
        vimco = VIMCO(bound_particles)
        loss, kind = (lambda: vimco.averaged_loss(vae.model, vae.guide, args, {}, chunk)), f"VIMCO-{bound_particles}"
    elif bound_particles == 1:
        elbo = Trace_ELBO(num_particles=chunk, vectorize_particles=chunk > 1, max_plate_nesting=1)
        loss, kind = (lambda: elbo.differentiable_loss(vae.model, vae.guide, *args)), "pathwise"
    else:
        iwae = IWAE(bound_particles)
        loss, kind = (lambda: iwae.averaged_loss(vae.model, vae.guide, args, {}, chunk)), f"IWAE-{bound_particles}"
    pyro.set_rng_seed(seed)
    chunks = RunningMoments(torch.float64)  # not a stack of every chunk's gradient: memory stays flat
    for _ in range(math.ceil(draws / chunk)):
        chunks.add(flat_gradient(loss(), params))
    mean, var = chunks.mean_and_variance()
    return Reference(mean, var / chunks.count, f"{kind} average of {chunks.count * chunk} draws")


# ----------------------------------------------------------------------------- summaries

def parameter_groups(vae) -> Dict[str, torch.Tensor]:
    """Indices into the flattened parameter vector: ``all``, each top-level part
    (encoder, decoder, prior) and each layer (a module's own weight and bias)."""
    groups: Dict[str, list] = {"all": []}
    layers: Dict[str, list] = {}
    offset = 0
    for name, p in vae.named_parameters():
        span = torch.arange(offset, offset + p.numel())
        offset += p.numel()
        part = name.split(".")[0]
        layer = name.rsplit(".", 1)[0] if "." in name else part
        groups["all"].append(span)
        groups.setdefault(part, []).append(span)
        if layer != part:
            layers.setdefault(layer, []).append(span)
    return {name: torch.cat(spans) for name, spans in {**groups, **layers}.items()}


def summarize(moments: Moments, reference: Reference, index: torch.Tensor) -> Dict[str, float]:
    """The laboratory's numbers for one parameter group.

    mean/max variance over parameters, trace of the covariance (sum of variances),
    SNR = mean over parameters of |E g| / sd g, cosine between the mean gradient and the
    reference, the relative bias |mean - ref| / |ref| with the value an unbiased estimator's would
    have from the noise of the draws and reference alone (``relative_noise``), the bias
    t-statistics t_p = (mean_p - ref_p) / sqrt(var_p / N + var(ref_p)),
    and cost: seconds per draw and variance x seconds (the trace a unit of compute buys).

    Of the t-statistics it reports the mean of t^2 over parameters with any gradient, about 1
    for an unbiased estimator whatever the shape of its draws and larger with a bias; and the
    largest |t| with the number of parameters above the Bonferroni threshold. With hundreds
    of thousands of parameters that threshold sits ~5 standard errors out, where the normal
    approximation of a mean of skewed draws is poor: a few unbiased parameters cross it.
    """
    mean, var = moments.mean[index], moments.var[index]
    ref, ref_var = reference.mean[index], reference.var[index]
    sd = var.sqrt()
    moving = sd > 0
    se = (var / moments.draws + ref_var).sqrt()
    diff = mean - ref
    t = torch.where(se > 0, diff / se.clamp_min(1e-300), torch.where(diff == 0, 0.0, math.inf))
    informative = (se > 0) | (diff != 0)  # not a parameter the minibatch leaves without gradient
    threshold = -NormalDist().inv_cdf(BIAS_LEVEL / (2 * len(index)))
    trace = var.sum().item()
    return {
        "params": len(index),
        "mean_variance": var.mean().item(),
        "max_variance": var.max().item(),
        "trace": trace,
        "snr": (mean.abs()[moving] / sd[moving]).mean().item() if moving.any() else math.nan,
        "cosine": torch.nn.functional.cosine_similarity(mean, ref, dim=0).item(),
        "relative_bias": (diff.norm() / ref.norm()).item() if ref.norm() > 0 else math.nan,
        "relative_noise": (se.pow(2).sum().sqrt() / ref.norm()).item() if ref.norm() > 0 else math.nan,
        "mean_t_squared": t[informative].pow(2).mean().item() if informative.any() else 0.0,
        "max_abs_t": t.abs().max().item(),
        "bias_threshold": threshold,
        "biased": int((t.abs() > threshold).sum()),
        "seconds_per_draw": moments.seconds_per_draw,
        "variance_x_seconds": trace * moments.seconds_per_draw,
    }
