"""``pyrovae evaluate``: honest numbers for a trained run, by one of three methods.

``--method is`` (the default) measures for one split of the run's data, per data point and
then on average: the
importance-sampled log p(x) with its Monte Carlo error, the IWAE bounds for K = 1, 10,
100, ... up to the number of samples, the ELBO from Pyro's pathwise and analytic-KL
estimators, the gap log p(x) - ELBO (the average KL from q(z|x) to the true posterior),
rate and distortion, the effective sample size and Pareto k-hat of the weights, the active
latent units, bits per dimension for non-binary data, and an exact reference where one
exists (closed form for the linear-Gaussian model, quadrature on request for 1-D and 2-D
latent spaces, a sum over every configuration of a small discrete one). Points whose
Pareto k-hat exceeds 0.7 are counted as unreliable; when they are more than a tenth of the
points, the headline reports no Monte Carlo error, since the delta-method error then
understates the uncertainty. ``--method ais`` estimates log p(x)
per point by annealed importance sampling (:mod:`.ais`); ``--method bdmc`` sandwiches
log p(x) of data simulated from the model between forward and reverse AIS (:mod:`.bdmc`).
Results go to ``evaluation.json`` (one entry per split and method, each recording the epoch
and SHA-256 of the checkpoint it evaluated, see :mod:`pyrovae.runs.evaluations`) and the
per-point estimates, Monte Carlo errors, ESS and k-hat to a CSV file beside it that the entry
names (``per_point_file``); the
"Evaluation" section of ``report.md`` (which shows only evaluations of the checkpoint the
folder holds now) and the figure of the bounds against K are the evaluation report's
(:mod:`pyrovae.reports.evaluation_report`), which ``pyrovae evaluate``
(:mod:`pyrovae.commands.evaluate`) writes next.
"""

import json
import math
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import pyro
import torch

from ..components.datasets import SPLITS, load_data
from ..components.likelihoods import DATA_KINDS
from ..errors import PyrovaeError, did_you_mean, seed_value, warn
from ..inference.elbo import split_elbo
from ..inference.estimators import ESTIMATORS
from ..runs.checkpoint import current_checkpoint
from ..runs.csvlog import csv_text
from ..runs.evaluations import (
    ELBO_ESTIMATORS,
    EVALUATION,
    entry_name,
    evaluation_lock,
    per_point_name,
    read_evaluations,
)
from ..runs.files import WriteFailed, staged_writes
from ..runs.loading import load_run_and_checkpoint
from .ais import DEFAULT_LEAPFROG, DEFAULT_TARGET_ACCEPT, AISResult, annealed_importance_sample, check_settings
from .bdmc import BDMCResult, bidirectional_monte_carlo, simulate
from .blocks import BLOCK_POINTS, sample_in_blocks
from .chunking import DEFAULT_MAX_MEMORY, parse_memory
from .diagnostics import Estimate, active_units
from .discrete import enumerable, exact_log_marginal
from .importance import ImportanceResult, Proposal
from .posterior import LogMarginal, gap_summary, guide_gaussians
from .references import LinearGaussian, quadrature_log_marginal

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016
METHODS = ("is", "ais", "bdmc")
UNRELIABLE_KHAT = 0.7            # Pareto k-hat above which a point's weights are unreliable (Vehtari et al.)
LARGE_UNRELIABLE_SHARE = 0.1     # above this share of unreliable points the headline gives no Monte Carlo error


class EvaluationNotSaved(WriteFailed):
    """The evaluation finished but its results could not be written; ``summary`` holds them."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


def bound_sizes(num_samples: int) -> List[int]:
    """K = 1, 10, 100, ... below ``num_samples``, then ``num_samples`` itself."""
    sizes = [10 ** i for i in range(int(math.log10(num_samples)) + 1) if 10 ** i < num_samples]
    return sizes + [num_samples]


def evaluate_run(run_dir, split: str = "test", num_samples: int = 5000, max_memory=DEFAULT_MAX_MEMORY,
                 max_points: Optional[int] = None, seed: int = 0, elbo_particles: int = 10,
                 quadrature: bool = False, device: str = "auto", progress: bool = False, method: str = "is",
                 steps: int = 1000, chains: int = 16, leapfrog: int = DEFAULT_LEAPFROG, ais_start: str = "guide",
                 simulated: int = 100, proposal_scale: float = 1.0, proposal_df: Optional[float] = None,
                 sampler: Optional[Callable[..., ImportanceResult]] = None, gap_points: int = 0) -> dict:
    """Evaluate the run in ``run_dir`` on ``split`` (for ``bdmc``: on ``simulated`` points
    simulated from the model) with ``method``; save and return the summary.

    Importance sampling goes in blocks of points, each point with draws seeded from ``seed``
    and its index in the split (:mod:`.blocks`), in this process, or by ``sampler`` when one
    is given: :class:`pyrovae.sweeps.split_evaluation.SplitSampler` shares the blocks out
    over a sweep engine's workers, with the same per-point results. It is called with the
    keywords ``run_dir``, ``split``, ``indices``, ``num_samples``, ``bounds``,
    ``max_memory``, ``proposal`` and ``seed``.

    With ``gap_points`` > 0 (importance sampling or AIS) the summary also holds the inference
    gaps of the first ``gap_points`` evaluated points against this evaluation's log p(x),
    q* sought in the guide's own family (:func:`.posterior.gap_summary`)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PyrovaeError(f"no run folder {run_dir}; train one with 'pyrovae train CONFIG --out {run_dir}'")
    if split not in SPLITS:
        raise PyrovaeError(f"unknown split '{split}'{did_you_mean(split, SPLITS)}; choose one of: {', '.join(SPLITS)}")
    if method not in METHODS:
        raise PyrovaeError(f"unknown method '{method}'{did_you_mean(method, METHODS)}; choose one of: {', '.join(METHODS)}")
    if not isinstance(gap_points, int) or gap_points < 0:
        raise PyrovaeError(f"--gap-points must be 0 (no gap decomposition) or a positive integer, got {gap_points}")
    if gap_points and method == "bdmc":
        raise PyrovaeError("--gap-points needs the evaluated points' log p(x), which --method bdmc does not estimate "
                           "(it brackets data simulated from the model); use --method is or ais")
    read_evaluations(run_dir)  # a damaged file is refused before the work, not after
    max_bytes = parse_memory(max_memory)
    for value, flag in [(num_samples, "--num-samples"), (max_points, "--max-points"),
                        (elbo_particles, "--elbo-particles"), (simulated, "--simulated")]:
        if value is not None and value < 1:
            raise PyrovaeError(f"{flag} must be a positive integer, got {value}")
    seed_value(seed, "--seed")
    proposal = Proposal(proposal_scale, proposal_df)
    if method != "is":
        check_settings(steps, chains, leapfrog, ais_start, DEFAULT_TARGET_ACCEPT)

    spec, vae, checkpoint = load_run_and_checkpoint(run_dir, device)
    on_cpu = next(vae.parameters()).device.type == "cpu"
    pyro.set_rng_seed(seed)
    x, y, subset = _split_data(spec, vae, split, simulated if method == "bdmc" else max_points, seed)
    if gap_points:
        check_gap_points(vae, x, y, gap_points, subset)
    started = time.perf_counter()
    common = {"method": method, "split": "simulated" if method == "bdmc" else split, "max_memory_bytes": max_bytes,
              "seed": seed, "checkpoint": checkpoint}
    if sampler is not None and (method != "is" or split == "train" or not on_cpu):
        raise PyrovaeError("evaluation split over workers covers importance sampling (--method is) of the valid and "
                           "test splits on CPU; leave out --workers and --engine for this one")
    if method == "is":
        indices = subset.get("indices", range(x.shape[0]))  # a point's draws depend on its index in the split
        bounds = bound_sizes(num_samples)
        if sampler is None:
            result = sample_in_blocks(vae, x, y, indices, num_samples, bounds, max_bytes, proposal, seed,
                                      progress=progress)
        else:
            result = sampler(run_dir=run_dir, split=split, indices=list(indices), num_samples=num_samples,
                             bounds=bounds, max_memory=max_bytes, proposal=proposal, seed=seed)
        summary = {**common, "subset": subset, "block_points": BLOCK_POINTS,
                   **_importance_evaluation(vae, x, y, result, elbo_particles, quadrature, max_bytes, proposal)}
        per_point = _importance_per_point(indices, result)
    elif method == "ais":
        indices = subset.get("indices", range(x.shape[0]))  # a point's draws depend on its index in the split
        result = annealed_importance_sample(vae, x, y, steps, chains, leapfrog, ais_start, seed=seed,
                                            indices=indices, max_memory=max_bytes, progress=progress)
        summary = {**common, "num_points": x.shape[0], "subset": subset, **_ais_summary(result),
                   "reference": _reference(vae, x, y, result.log_marginal, quadrature, max_bytes, "ais")}
        per_point = {"index": list(indices), "log_marginal": result.log_marginal.value,
                     "mc_error": result.log_marginal.std_error, "ess": result.ess, "spread": result.spread,
                     "accept_rate": result.accept_rate}
    else:
        result = bidirectional_monte_carlo(vae, simulated, steps, chains, leapfrog, ais_start, seed=seed, y=y,
                                           max_memory=max_bytes, progress=progress)
        summary = {**common, "num_points": simulated, **_bdmc_summary(vae, result, seed, y)}
        per_point = {"point": range(simulated), "lower": result.lower.value, "lower_mc_error": result.lower.std_error,
                     "upper": result.upper.value, "upper_mc_error": result.upper.std_error, "gap": result.gap}
    if gap_points:
        n = gap_points
        estimate = Estimate(*(t[:n] for t in result.log_marginal))
        summary["gaps"] = gap_summary(vae, x[:n], None if y is None else y[:n],
                                      LogMarginal(estimate, f"{method} (this evaluation)", None),
                                      seed=seed, max_memory=max_bytes)
    summary["seconds"] = time.perf_counter() - started
    summary["per_point_file"] = per_point_name(summary)
    try:
        _save(run_dir, summary, per_point)
    except WriteFailed as exc:
        raise EvaluationNotSaved(f"{exc}; the results are kept in memory (the command line prints them)",
                                 summary) from None
    if current_checkpoint(run_dir) != checkpoint:
        warn(f"the checkpoint in {run_dir} was replaced while it was evaluated (training goes on there): these "
             f"results are of epoch {checkpoint['epoch']}, and report.md says so; evaluate again once training "
             f"has finished")
    return summary


def check_gap_points(vae, x: torch.Tensor, y: Optional[torch.Tensor], gap_points: int, subset: dict) -> None:
    """Refuse, before the evaluation's work, a gap decomposition of more points than are
    evaluated, or of a model whose guide has no q* to fit (discrete latents, or a guide
    family that is neither Gaussian nor a flow): :func:`.posterior.guide_gaussians` is
    tried on one point."""
    if gap_points > x.shape[0]:
        chosen = "chosen by --max-points" if subset["chosen"] == "random" else "of the whole split"
        raise PyrovaeError(f"--gap-points {gap_points} is more than the {x.shape[0]} points evaluated ({chosen}); "
                           f"choose at most {x.shape[0]}")
    vae.require_continuous_latents("--gap-points (q*, the best member of the guide's family, by SVI)",
                                   "pyrovae evaluate without --gap-points")
    guide_gaussians(vae, x[:1], None if y is None else y[:1])


def _importance_per_point(indices, result: ImportanceResult) -> dict:
    """The columns of the per-point file of importance sampling: each point's index in the
    split, log p(x) and its Monte Carlo error, the ELBO, the IWAE bounds, rate, distortion, ESS
    and Pareto k-hat."""
    columns = {"index": list(indices), "log_marginal": result.log_marginal.value,
               "mc_error": result.log_marginal.std_error, "elbo": result.elbo.value,
               **{f"iwae_{k}": b.value for k, b in result.iwae.items()},
               "rate": result.kl, "distortion": -result.log_likelihood, "ess": result.ess}
    if result.khat is not None:
        columns["pareto_khat"] = result.khat
    return columns


def _importance_evaluation(vae, x, y, result: ImportanceResult, elbo_particles, quadrature, max_bytes, proposal) -> dict:
    """The summary of the importance-sampling ``result`` of ``x``, with the Pyro ELBOs, the
    active units, bits per dimension and an exact reference where one exists."""
    summary = {"num_points": x.shape[0], "num_samples": result.num_samples, "proposal": proposal.describe(),
               **_importance_summary(result)}
    summary["elbo"] = {**_pyro_elbos(vae, x, y, elbo_particles), "particles": elbo_particles,
                       "importance_samples": summary["iwae"][0]["mean"]}
    count, variances = active_units(vae, x, y, ACTIVE_UNIT_THRESHOLD)
    summary["active_units"] = {"count": count, "latent_dim": vae.latent_dim, "threshold": ACTIVE_UNIT_THRESHOLD,
                               "variances": variances.tolist()}
    summary["bits_per_dim"], summary["bits_per_dim_formula"] = bits_per_dim(summary["log_marginal"]["mean"], vae, x)
    summary["reference"] = _reference(vae, x, y, result.log_marginal, quadrature, max_bytes, "is")
    return summary


def _split_data(spec, vae, split: str, max_points: Optional[int], seed: int):
    """The points of ``split`` to evaluate (and their labels for a conditional VAE): all of
    them, or ``max_points`` chosen at random with ``seed`` (the first points of a split can
    differ from the rest: MNIST's first 5000 test digits are the cleaner half). Also the
    record of the choice: the split's size, the seed and the indices, in increasing order."""
    data = load_data(spec.data)
    part = data.split(split)
    n = len(part)
    if max_points is None or max_points >= n:
        index, subset = torch.arange(n), {"of": n, "chosen": "all"}
    else:
        index = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_points].sort().values
        subset = {"of": n, "chosen": "random", "seed": seed, "indices": index.tolist()}
    x = part.x[index]
    if split == "train":  # dynamically binarized data: one seeded binarization
        x = data.training_batch(x)
    y = part.y[index] if vae.num_classes else None
    return x, y, subset


def _mean_and_error(t: torch.Tensor) -> dict:
    """Mean over data points and its standard error over data points."""
    n = t.shape[0]
    return {"mean": float(t.mean()), "std_error": float(t.std() / math.sqrt(n)) if n > 1 else math.nan}


def _mc_error_of_mean(std_errors: torch.Tensor) -> float:
    """Monte Carlo error of a mean of independent per-point estimates."""
    return float(std_errors.pow(2).sum().sqrt() / std_errors.shape[0])


def _importance_summary(result: ImportanceResult) -> dict:
    lp = result.log_marginal
    khat = result.khat[~result.khat.isnan()]
    unreliable = result.khat > UNRELIABLE_KHAT
    share = float(unreliable.double().mean())
    return {
        "log_marginal": {**_mean_and_error(lp.value), "mc_error_mean": float(lp.std_error.mean()),
                         "mc_error_of_mean": _mc_error_of_mean(lp.std_error),
                         "mc_error_trusted": share <= LARGE_UNRELIABLE_SHARE},
        "unreliable": {"khat_above": UNRELIABLE_KHAT, "count": int(unreliable.sum()), "share": share,
                       "points": unreliable.nonzero().flatten().tolist()},
        "iwae": [{"k": k, **_mean_and_error(b.value), "mc_error_of_mean": _mc_error_of_mean(b.std_error)}
                 for k, b in result.iwae.items()],
        "gap": _mean_and_error(lp.value - result.elbo.value),
        "rate": float(result.kl.mean()),
        "distortion": float(-result.log_likelihood.mean()),
        "ess": {"mean": float(result.ess.mean()), "median": float(result.ess.median()), "min": float(result.ess.min())},
        "pareto_khat": None if khat.numel() == 0 else {
            "mean": float(khat.mean()), "max": float(khat.max()),
            "share_above_0.5": float((khat > 0.5).double().mean()), "share_above_0.7": float((khat > 0.7).double().mean())},
    }


def _ais_summary(result: AISResult) -> dict:
    lp = result.log_marginal
    return {"steps": result.steps, "chains": result.chains, "leapfrog": result.leapfrog, "start": result.start,
            "target_accept": DEFAULT_TARGET_ACCEPT,
            "log_marginal": {**_mean_and_error(lp.value), "mc_error_of_mean": _mc_error_of_mean(lp.std_error)},
            "spread": {"mean": float(result.spread.mean()), "max": float(result.spread.max())},
            "ess": {"mean": float(result.ess.mean()), "min": float(result.ess.min())},
            "accept_rate": float(result.accept_rate.mean()),
            "per_point": {"log_marginal": lp.value.tolist(), "std_error": lp.std_error.tolist()}}


def _bdmc_summary(vae, result: BDMCResult, seed: int, y) -> dict:
    """Both bounds and the gap, and where the model has a closed form, log p(x) itself."""
    forward = result.forward
    summary = {"steps": forward.steps, "chains": forward.chains, "leapfrog": forward.leapfrog, "start": forward.start,
               "lower": {"mean": float(result.lower.value.mean()), "mc_error_of_mean": _mc_error_of_mean(result.lower.std_error)},
               "upper": {"mean": float(result.upper.value.mean()), "mc_error_of_mean": _mc_error_of_mean(result.upper.std_error)},
               "gap": {**_mean_and_error(result.gap), "median": float(result.gap.median()), "max": float(result.gap.max())},
               "accept_rate": {"forward": float(forward.accept_rate.mean()),
                               "reverse": float(result.reverse.accept_rate.mean())},
               "per_point": {"lower": result.lower.value.tolist(), "upper": result.upper.value.tolist()},
               "reference": None}
    if LinearGaussian.describes(vae):
        x, _ = simulate(vae, result.gap.shape[0], seed, y)
        exact = LinearGaussian.from_vae(vae).log_marginal(x)
        summary["reference"] = {"method": "closed form", "mean": float(exact.mean()),
                                "share_bracketed": float(((result.lower.value <= exact + 3 * result.lower.std_error)
                                                          & (exact <= result.upper.value + 3 * result.upper.std_error))
                                                         .double().mean())}
    return summary


def _pyro_elbos(vae, x, y, particles: int) -> dict:
    """Mean ELBO per data point from the pathwise and analytic-KL estimators, exactly as
    training computes them (the same registry entries), with ``particles`` samples each. For
    discrete latents, which the pathwise estimators refuse to train, Pyro's own classes of the
    same names give the bound's value (a value needs no pathwise gradient)."""
    param = next(vae.parameters())
    x, y = x.to(param), None if y is None else y.to(param.device)

    def loss(name):
        if not vae.discrete_latents:
            return ESTIMATORS.build(name, options={"num_particles": particles})
        return getattr(pyro.infer, ELBO_ESTIMATORS[name])(num_particles=particles, vectorize_particles=particles > 1,
                                                          max_plate_nesting=1)

    with pyro.get_param_store().scope():
        return {name: split_elbo(vae, x, y, loss=loss(name), batch_size=max(1, 1000 // particles))
                for name in ELBO_ESTIMATORS}


def bits_per_dim(log_px: float, vae, x: torch.Tensor) -> Tuple[Optional[float], str]:
    """Bits per dimension for non-binary data, and the formula used."""
    d = vae.num_pixels
    if vae.likelihood.data_kind == "binary":
        return None, "not reported for binary data (nats per image are the convention)"
    if vae.likelihood.data_kind == "8bit":
        return -log_px / (d * math.log(2)), "-log2 p(x) / D, a probability over 256 levels per dimension"
    if vae.likelihood.data_kind == "count":
        return -log_px / (d * math.log(2)), "-log2 p(x) / D, a probability of integer counts per dimension"
    if DATA_KINDS["8bit"][0](x):
        return ((-log_px + d * math.log(255)) / (d * math.log(2)),
                "(-log p(x) + D ln 255) / (D ln 2): the density of pixel values 0..255 (x = value / 255)")
    return -log_px / (d * math.log(2)), "-log2 p(x) / D of a density (can be negative)"


def _reference(vae, x, y, estimate: Estimate, quadrature: bool, max_memory: int, method: str) -> Optional[dict]:
    """The exact log p(x) where mathematics gives one (the linear-Gaussian closed form, a sum
    over a small discrete latent space, quadrature on request), compared point by point with
    the estimate of ``method``."""
    if LinearGaussian.describes(vae):
        name = "closed form"
        exact = LinearGaussian.from_vae(vae).log_marginal(x).to(estimate.value)
        error = torch.zeros_like(exact)
    elif enumerable(vae):
        name = "enumeration"
        exact = exact_log_marginal(vae, x, y, max_memory=max_memory).to(estimate.value)
        error = torch.zeros_like(exact)
    elif quadrature:
        name = "quadrature"
        exact, error = quadrature_log_marginal(vae, x, y, max_memory=max_memory)
    else:
        return None
    diff = estimate.value - exact
    return {"method": name, "mean": float(exact.mean()), "error_estimate_max": float(error.max()),
            f"{method}_minus_reference": {"mean": float(diff.mean()), "mean_abs": float(diff.abs().mean()),
                                          "max_abs": float(diff.abs().max()),
                                          "std_error_of_mean": _mc_error_of_mean(estimate.std_error)},
            "share_within_3_std_errors": float((diff.abs() <= 3 * estimate.std_error + error).double().mean())}


# ----------------------------------------------------------------------------- saving

def _save(run_dir: Path, summary: dict, per_point: dict) -> None:
    """Add ``summary`` to evaluation.json (keeping other splits and methods) and write its
    per-point ``columns`` beside it as CSV, both atomically and together, one evaluation at a
    time (:func:`~pyrovae.runs.evaluations.evaluation_lock`)."""
    columns = list(per_point)
    values = [v.tolist() if torch.is_tensor(v) else list(v) for v in per_point.values()]
    rows = [dict(zip(columns, row)) for row in zip(*values)]
    with evaluation_lock(run_dir), staged_writes() as files:
        everything = read_evaluations(run_dir)
        everything[entry_name(summary)] = summary
        files.write(run_dir / summary["per_point_file"], csv_text(columns, rows))
        files.write(run_dir / EVALUATION, json.dumps(everything, indent=2) + "\n")
