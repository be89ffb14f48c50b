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
from typing import Dict, Optional, Sequence

import pyro
import torch
from pyro.infer import Trace_ELBO
from scipy.stats import norm

from ..evaluation.references import LinearGaussian
from ..inference.surrogates import IWAE

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


def gradient_moments(estimator, vae, args: Sequence, draws: int, seed: int) -> Moments:
    """Mean and variance of ``draws`` gradient draws of ``estimator`` for ``vae``'s parameters
    on the model arguments ``args`` (minibatch, labels, KL weight).

    Sums are kept in place in the gradients' precision, centred on the first draw so that
    the sum of squares measures the spread, not the mean (float32 loses ~1e-7 of the spread
    per draw: far below the draws' own sampling error).
    """
    if draws < 2:
        raise ValueError("need at least two draws for a variance")
    params = list(vae.parameters())
    pyro.set_rng_seed(seed)
    shift = total = squares = delta = None
    seconds = 0.0
    for _ in range(draws):
        started = time.perf_counter()
        grad = flat_gradient(estimator.differentiable_loss(vae.model, vae.guide, *args), params)
        seconds += time.perf_counter() - started
        if shift is None:
            shift, delta = grad, torch.empty_like(grad)
            total, squares = torch.zeros_like(grad), torch.zeros_like(grad)
        torch.sub(grad, shift, out=delta)
        total += delta
        squares.addcmul_(delta, delta)
    mean = total.double() / draws
    var = (squares.double() - draws * mean * mean).clamp_min(0) / (draws - 1)
    return Moments(shift.double() + mean, var, draws, seconds / draws)


# ----------------------------------------------------------------------------- references

def exact_elbo(vae, x: torch.Tensor) -> Optional[torch.Tensor]:
    """The ELBO of ``vae``'s guide summed over ``x``, in closed form and differentiable in
    every parameter, when the model is linear-Gaussian (:class:`~pyrovae.evaluation.references.LinearGaussian`,
    any encoder); else None."""
    if not LinearGaussian.describes(vae):
        return None
    head = vae.decoder.head
    model = LinearGaussian(head.weight.double(), head.bias.double(), float(vae.likelihood.fixed_scale))
    loc, scale = vae.encode(x)
    return model.elbo(x, loc, torch.diag_embed(scale.double().pow(2))).sum()


def reference_gradient(vae, args: Sequence, bound_particles: int, draws: int, seed: int) -> Reference:
    """The expected gradient of the loss of the ELBO (``bound_particles = 1``) or of the
    K-sample bound: exact where :func:`exact_elbo` applies, else :func:`monte_carlo_reference`."""
    exact = exact_elbo(vae, args[0]) if bound_particles == 1 else None
    if exact is not None:
        grad = flat_gradient(-exact, list(vae.parameters())).double()
        return Reference(grad, torch.zeros_like(grad), "exact (linear-Gaussian ELBO)")
    return monte_carlo_reference(vae, args, bound_particles, draws, seed)


def monte_carlo_reference(vae, args: Sequence, bound_particles: int, draws: int, seed: int) -> Reference:
    """The average of ``draws`` pathwise gradient draws from ``seed``: Pyro's Trace_ELBO for the
    ELBO, IWAE-K for the K-sample bound. Draws are taken in vectorized chunks of at most
    ``REFERENCE_CHUNK`` particle-data-points each; the spread of the chunks gives the
    variance of the average, so there are at least ``REFERENCE_MIN_CHUNKS`` of them (with
    fewer, a per-parameter variance from few degrees of freedom puts heavy tails on the
    bias t-statistics of hundreds of thousands of parameters)."""
    params = list(vae.parameters())
    per_draw = bound_particles * args[0].shape[0]
    chunk = max(1, min(REFERENCE_CHUNK // per_draw, draws // REFERENCE_MIN_CHUNKS))
    if bound_particles == 1:
        elbo = Trace_ELBO(num_particles=chunk, vectorize_particles=chunk > 1, max_plate_nesting=1)
        loss, kind = (lambda: elbo.differentiable_loss(vae.model, vae.guide, *args)), "pathwise"
    else:
        iwae = IWAE(bound_particles)
        loss, kind = (lambda: iwae.averaged_loss(vae.model, vae.guide, args, {}, chunk)), f"IWAE-{bound_particles}"
    pyro.set_rng_seed(seed)
    means = torch.stack([flat_gradient(loss(), params) for _ in range(math.ceil(draws / chunk))]).double()
    return Reference(means.mean(0), means.var(0) / means.shape[0],
                     f"{kind} average of {means.shape[0] * chunk} draws")


# ----------------------------------------------------------------------------- summaries

def parameter_groups(vae) -> Dict[str, torch.Tensor]:
    """Indices into the flattened parameter vector: ``all``, each top-level part
    (encoder, decoder, prior) and each layer (a module's own weight and bias)."""
    groups: Dict[str, list] = {"all": []}
    layers: Dict[str, list] = {}
    offset = 0
    for name, p in vae.named_parameters():
        span = list(range(offset, offset + p.numel()))
        offset += p.numel()
        part = name.split(".")[0]
        layer = name.rsplit(".", 1)[0] if "." in name else part
        groups["all"] += span
        groups.setdefault(part, []).extend(span)
        if layer != part:
            layers.setdefault(layer, []).extend(span)
    return {name: torch.tensor(index, dtype=torch.long) for name, index in {**groups, **layers}.items()}


def summarize(moments: Moments, reference: Reference, index: torch.Tensor) -> Dict[str, float]:
    """The laboratory's numbers for one parameter group.

    mean/max variance over parameters, trace of the covariance (sum of variances),
    SNR = mean over parameters of |E g| / sd g, cosine between the mean gradient and the
    reference, the bias t-statistics t_p = (mean_p - ref_p) / sqrt(var_p / N + var(ref_p)),
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
    threshold = float(norm.isf(BIAS_LEVEL / (2 * len(index))))
    trace = var.sum().item()
    return {
        "params": len(index),
        "mean_variance": var.mean().item(),
        "max_variance": var.max().item(),
        "trace": trace,
        "snr": (mean.abs()[moving] / sd[moving]).mean().item() if moving.any() else math.nan,
        "cosine": torch.nn.functional.cosine_similarity(mean, ref, dim=0).item(),
        "mean_t_squared": t[informative].pow(2).mean().item() if informative.any() else 0.0,
        "max_abs_t": t.abs().max().item(),
        "bias_threshold": threshold,
        "biased": int((t.abs() > threshold).sum()),
        "seconds_per_draw": moments.seconds_per_draw,
        "variance_x_seconds": trace * moments.seconds_per_draw,
    }
