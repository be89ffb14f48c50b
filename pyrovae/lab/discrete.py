"""The estimator laboratory on discrete latents: a small sigmoid belief net whose gradient is exact.

:func:`small_discrete_model` builds a one-layer sigmoid belief net
(:class:`~pyrovae.inference.sigmoid_belief_net.SigmoidBeliefNet`) on real data small enough to
enumerate: static binarized MNIST digits max-pooled to 7 x 7 pixels, with 6 binary latents
(64 configurations) or 2 groups of 4 classes (16). Its ELBO, its K-sample bounds and their
gradients are exact by enumeration, so :func:`bias_table` can test every estimator's mean
gradient against the true one and measure the relaxations' bias, and :func:`run_discrete_variance`
runs the variance laboratory (variance, SNR, cosine, bias, cost) on it, written as
``pyrovae variance`` writes its results.
"""

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import pyro
import torch
from torch.nn import functional as F

from ..components.datasets import load_data
from ..inference.estimators import bound_particles
from ..inference.sigmoid_belief_net import SigmoidBeliefNet
from ..spec import load_config
from .gradient_stats import chunked_moments, parameter_groups, reference_gradient, summarize
from .variance import ADAPT_STEPS, EstimatorChoice, measure_batches, write_results

POOL = 4  # 28 x 28 -> 7 x 7
POOL_PIXELS = (28 // POOL) ** 2
FAMILIES = {"bernoulli": {"latent_dim": 6, "groups": None}, "categorical": {"latent_dim": 8, "groups": 2}}


def pooled_mnist(count: int, start: int = 0) -> torch.Tensor:
    """``count`` static binarized MNIST training digits from ``start``, max-pooled to 7 x 7 binary
    pixels (a pixel is on where any of its 4 x 4 block is), flattened to 49 values."""
    x = load_data(load_config("quickstart").data).train.x[start:start + count]
    return F.max_pool2d(x, POOL).flatten(1)


def small_discrete_model(family: str = "bernoulli", batch: int = 10, seed: int = 0,
                         hidden: Sequence[int] = ()) -> Tuple[SigmoidBeliefNet, tuple, List[tuple]]:
    """A sigmoid belief net with ``family`` latents at its initialization from ``seed``, the model
    arguments of one minibatch of ``batch`` pooled digits, and those of five more (for fitting
    baselines)."""
    pyro.set_rng_seed(seed)
    model = SigmoidBeliefNet((POOL_PIXELS,), hidden=hidden, **FAMILIES[family])
    x = pooled_mnist(6 * batch)
    return model, (x[:batch], None, 1.0), [(x[i:i + batch], None, 1.0) for i in range(batch, 6 * batch, batch)]


def bias_table(model, args: Sequence, others: Sequence[Sequence], choices: Sequence[EstimatorChoice],
               chunks: int, per_chunk: int, seed: int) -> Dict[str, dict]:
    """Per estimator, against the exact gradient of the bound it estimates: the summaries of
    :func:`~pyrovae.lab.gradient_stats.summarize` for all parameters and per part, from
    ``chunks x per_chunk`` draws (:func:`~pyrovae.lab.gradient_stats.chunked_moments`), with the
    t-statistics per parameter (``t``) and the estimator's final state. Baselines are fitted on
    ``others`` first, as the laboratory does."""
    groups = parameter_groups(model)
    results = {}
    with pyro.validation_enabled(False):
        for choice in choices:
            estimator = choice.build()
            k = bound_particles(estimator)
            reference = reference_gradient(model, args, k, 0, seed)
            if hasattr(estimator, "adapt"):
                estimator.adapt(model.model, model.guide, others, ADAPT_STEPS)
            moments = chunked_moments(estimator, model, args, chunks, per_chunk, seed)
            se = (moments.var / moments.draws + reference.var).sqrt()
            t = torch.where(se > 0, (moments.mean - reference.mean) / se.clamp_min(1e-300), torch.zeros_like(se))
            results[choice.label] = {"estimator": estimator, "moments": moments, "reference": reference, "t": t,
                                     "groups": {name: summarize(moments, reference, index)
                                                for name, index in groups.items()}}
    return results


def run_discrete_variance(out, choices: Sequence[EstimatorChoice], family: str = "bernoulli", draws: int = 1000,
                          batch: int = 10, seed: int = 0, reference_draws: int = 20000) -> Tuple[Path, dict]:
    """The variance laboratory on :func:`small_discrete_model` (at initialization): ``variance.json``
    and ``variance.csv`` in ``out`` (:func:`pyrovae.reports.variance_report.write_variance_report`
    draws the figure and the report from them), references exact by enumeration (a K-sample bound
    whose J^K tuples are too many: ``reference_draws`` draws of VIMCO)."""
    model, args, others = small_discrete_model(family, batch, seed)
    estimators = measure_batches(model, args, others, choices, draws, seed, reference_draws, log=lambda *_: None)
    results = {"source": f"small_discrete_model({family!r})",
               "settings": {"draws": draws, "batch_size": batch, "seed": seed, "reference_draws": reference_draws},
               "snapshots": [{"epoch": 0, "step": 0, "estimators": estimators}]}
    out = Path(out)
    write_results(out, results)
    return out, results
