"""``pyrovae evaluate``: honest numbers for a trained run, by one of three methods.

``--method is`` (the default) measures for one split of the run's data, per data point and
then on average: the
importance-sampled log p(x) with its Monte Carlo error, the IWAE bounds for K = 1, 10,
100, ... up to the number of samples, the ELBO from Pyro's pathwise and analytic-KL
estimators, the gap log p(x) - ELBO (the average KL from q(z|x) to the true posterior),
rate and distortion, the effective sample size and Pareto k-hat of the weights, the active
latent units, bits per dimension for non-binary data, and an exact reference where one
exists (closed form for the linear-Gaussian model, quadrature on request for 1-D and 2-D
latent spaces). Points whose Pareto k-hat exceeds 0.7 are counted as unreliable; when
they are more than a tenth of the points, the headline reports no Monte Carlo error, since
the delta-method error then understates the uncertainty. ``--method ais`` estimates log p(x)
per point by annealed importance sampling (:mod:`.ais`); ``--method bdmc`` sandwiches
log p(x) of data simulated from the model between forward and reverse AIS (:mod:`.bdmc`).
Results go to ``evaluation.json`` (one entry per split and method), the "Evaluation"
section of ``report.md`` and, for importance sampling, a figure of the bounds against K.
"""

import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import pyro
import torch

from ..components.datasets import SPLITS, load_data
from ..components.likelihoods import DATA_KINDS
from ..errors import PyrovaeError, did_you_mean
from ..inference.elbo import split_elbo
from ..inference.estimators import ESTIMATORS
from ..reports.markdown import markdown_table, update_section
from ..runs.files import WriteFailed, write_atomic
from ..runs.train import load_run
from .ais import DEFAULT_LEAPFROG, DEFAULT_TARGET_ACCEPT, STARTS, AISResult, annealed_importance_sample, check_settings
from .bdmc import BDMCResult, bidirectional_monte_carlo, simulate
from .blocks import BLOCK_POINTS, sample_in_blocks
from .chunking import DEFAULT_MAX_MEMORY, parse_memory
from .diagnostics import Estimate, active_units
from .importance import ImportanceResult, Proposal
from .references import LinearGaussian, quadrature_log_marginal

EVALUATION = "evaluation.json"
SECTION = "Evaluation"
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016
ELBO_ESTIMATORS = {"pathwise": "Trace_ELBO", "analytic_kl": "TraceMeanField_ELBO"}
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
                 quadrature: bool = False, device: str = "cpu", progress: bool = False, method: str = "is",
                 steps: int = 1000, chains: int = 16, leapfrog: int = DEFAULT_LEAPFROG, ais_start: str = "guide",
                 simulated: int = 100, proposal_scale: float = 1.0, proposal_df: Optional[float] = None,
                 sampler: Optional[Callable[..., ImportanceResult]] = None) -> dict:
    """Evaluate the run in ``run_dir`` on ``split`` (for ``bdmc``: on ``simulated`` points
    simulated from the model) with ``method``; save and return the summary.

    Importance sampling goes in blocks of points, each point with draws seeded from ``seed``
    and its index in the split (:mod:`.blocks`), in this process, or by ``sampler`` when one
    is given: :class:`pyrovae.sweeps.split_evaluation.SplitSampler` shares the blocks out
    over a sweep engine's workers, with the same per-point results. It is called with the
    keywords ``run_dir``, ``split``, ``indices``, ``num_samples``, ``bounds``,
    ``max_memory``, ``proposal`` and ``seed``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PyrovaeError(f"no run folder {run_dir}; train one with 'pyrovae train CONFIG --out {run_dir}'")
    if split not in SPLITS:
        raise PyrovaeError(f"unknown split '{split}'{did_you_mean(split, SPLITS)}; choose one of: {', '.join(SPLITS)}")
    if method not in METHODS:
        raise PyrovaeError(f"unknown method '{method}'{did_you_mean(method, METHODS)}; choose one of: {', '.join(METHODS)}")
    read_evaluations(run_dir)  # a damaged file is refused before the work, not after
    max_bytes = parse_memory(max_memory)
    for value, flag in [(num_samples, "--num-samples"), (max_points, "--max-points"),
                        (elbo_particles, "--elbo-particles"), (simulated, "--simulated")]:
        if value is not None and value < 1:
            raise PyrovaeError(f"{flag} must be a positive integer, got {value}")
    proposal = Proposal(proposal_scale, proposal_df)
    if method != "is":
        check_settings(steps, chains, leapfrog, ais_start, DEFAULT_TARGET_ACCEPT)

    spec, vae = load_run(run_dir, device)
    pyro.set_rng_seed(seed)
    x, y, subset = _split_data(spec, vae, split, simulated if method == "bdmc" else max_points, seed)
    started = time.perf_counter()
    common = {"method": method, "split": "simulated" if method == "bdmc" else split, "max_memory_bytes": max_bytes,
              "seed": seed}
    if sampler is not None and (method != "is" or split == "train" or device != "cpu"):
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
    elif method == "ais":
        indices = subset.get("indices", range(x.shape[0]))  # a point's draws depend on its index in the split
        result = annealed_importance_sample(vae, x, y, steps, chains, leapfrog, ais_start, seed=seed,
                                            indices=indices, max_memory=max_bytes, progress=progress)
        summary = {**common, "num_points": x.shape[0], "subset": subset, **_ais_summary(result),
                   "reference": _reference(vae, x, y, result.log_marginal, quadrature, max_bytes, "ais")}
    else:
        result = bidirectional_monte_carlo(vae, simulated, steps, chains, leapfrog, ais_start, seed=seed, y=y,
                                           max_memory=max_bytes, progress=progress)
        summary = {**common, "num_points": simulated, **_bdmc_summary(vae, result, seed, y)}
    summary["seconds"] = time.perf_counter() - started
    try:
        _save(run_dir, summary)
    except WriteFailed as exc:
        raise EvaluationNotSaved(f"{exc}; the results are kept in memory (the command line prints them)",
                                 summary) from None
    return summary


def entry_name(summary: dict) -> str:
    """The key of a summary in evaluation.json: the split for importance sampling, the split
    and the method otherwise."""
    return summary["split"] if summary.get("method", "is") == "is" else f"{summary['split']} ({summary['method']})"


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


def points_phrase(s: dict) -> str:
    """Which points were evaluated, in words: ``all 10000 points`` or ``2000 of 10000 points
    chosen at random (seed 0; their indices are in evaluation.json)``."""
    subset = s.get("subset") or {"chosen": "all", "of": s["num_points"]}
    if subset["chosen"] == "all":
        return f"all {subset['of']} points"
    return (f"{s['num_points']} of {subset['of']} points chosen at random (seed {subset['seed']}; "
            f"their indices are in {EVALUATION})")


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
    training computes them (the same registry entries), with ``particles`` samples each."""
    param = next(vae.parameters())
    x, y = x.to(param), None if y is None else y.to(param.device)
    with pyro.get_param_store().scope():
        return {name: split_elbo(vae, x, y, loss=ESTIMATORS.build(name, options={"num_particles": particles}),
                                 batch_size=max(1, 1000 // particles))
                for name in ELBO_ESTIMATORS}


def bits_per_dim(log_px: float, vae, x: torch.Tensor) -> Tuple[Optional[float], str]:
    """Bits per dimension for non-binary data, and the formula used."""
    d = vae.num_pixels
    if vae.likelihood.data_kind == "binary":
        return None, "not reported for binary data (nats per image are the convention)"
    if vae.likelihood.data_kind == "8bit":
        return -log_px / (d * math.log(2)), "-log2 p(x) / D, a probability over 256 levels per dimension"
    if DATA_KINDS["8bit"][0](x):
        return ((-log_px + d * math.log(255)) / (d * math.log(2)),
                "(-log p(x) + D ln 255) / (D ln 2): the density of pixel values 0..255 (x = value / 255)")
    return -log_px / (d * math.log(2)), "-log2 p(x) / D of a density (can be negative)"


def _reference(vae, x, y, estimate: Estimate, quadrature: bool, max_memory: int, method: str) -> Optional[dict]:
    """The exact log p(x) where mathematics gives one, compared point by point with the
    estimate of ``method``."""
    if LinearGaussian.describes(vae):
        name = "closed form"
        exact = LinearGaussian.from_vae(vae).log_marginal(x).to(estimate.value)
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


# ----------------------------------------------------------------------------- output

def summary_rows(s: dict) -> List[Tuple[str, str]]:
    """The summary as (quantity, value) rows, for the terminal and for report.md."""
    rows = {"is": _importance_rows, "ais": _ais_rows, "bdmc": _bdmc_rows}[s.get("method", "is")](s)
    rows.append(("seconds", f"{s['seconds']:.1f}"))
    return rows


def _importance_rows(s: dict) -> List[Tuple[str, str]]:
    lp, ess, units = s["log_marginal"], s["ess"], s["active_units"]
    bad = s["unreliable"]
    rows = [(f"log p(x), importance sampled (K = {s['num_samples']})", f"{lp['mean']:.3f} ± {lp['std_error']:.3f}"),
            (f"unreliable points (Pareto k-hat > {bad['khat_above']})",
             f"{bad['count']} of {s['num_points']} ({100 * bad['share']:.0f}%)")]
    if lp["mc_error_trusted"]:
        rows.append(("Monte Carlo error per point (mean) / of the mean",
                     f"{lp['mc_error_mean']:.3g} / {lp['mc_error_of_mean']:.3g}"))
    else:
        rows.append(("Monte Carlo error", "not known: the weights of too many points have infinite variance, so the "
                                          "delta-method error understates it; use --method ais"))
    if s.get("proposal", "the guide q(z|x)") != "the guide q(z|x)":
        rows.append(("proposal", s["proposal"]))
    rows += [(f"IWAE_{b['k']}", f"{b['mean']:.3f}") for b in s["iwae"]]
    rows += [(f"ELBO, {name} ({loss}, {s['elbo']['particles']} particles)", f"{s['elbo'][name]:.3f}")
             for name, loss in ELBO_ESTIMATORS.items()]
    rows += [("gap log p(x) - ELBO (mean KL to the posterior)", f"{s['gap']['mean']:.3f} ± {s['gap']['std_error']:.3f}"),
             ("rate KL(q(z|x) || p(z))", f"{s['rate']:.3f}"),
             ("distortion -E_q log p(x|z)", f"{s['distortion']:.3f}"),
             ("ESS / K: mean, median, min", f"{ess['mean']:.3f}, {ess['median']:.3f}, {ess['min']:.3g}")]
    if s["pareto_khat"] is not None:
        k = s["pareto_khat"]
        rows.append(("Pareto k-hat: mean, max, share > 0.7", f"{k['mean']:.3f}, {k['max']:.3f}, {k['share_above_0.7']:.3f}"))
    rows.append((f"active units (variance of E_q[z_j] > {units['threshold']})", f"{units['count']} of {units['latent_dim']}"))
    if s["bits_per_dim"] is not None:
        rows.append(("bits per dimension", f"{s['bits_per_dim']:.4f}"))
    return rows + _reference_rows(s, "importance sampled", "is")


def _ais_rows(s: dict) -> List[Tuple[str, str]]:
    lp = s["log_marginal"]
    rows = [(f"log p(x), AIS ({s['steps']} steps, {s['chains']} chains from the {s['start']})",
             f"{lp['mean']:.3f} ± {lp['std_error']:.3f}"),
            ("Monte Carlo error of the mean (over chains)", f"{lp['mc_error_of_mean']:.3g}"),
            ("spread of the chains' log-weights: mean, max", f"{s['spread']['mean']:.3f}, {s['spread']['max']:.3f}"),
            ("ESS / chains: mean, min", f"{s['ess']['mean']:.3f}, {s['ess']['min']:.3f}"),
            (f"HMC acceptance ({s['leapfrog']} leapfrog steps, target {s['target_accept']})", f"{s['accept_rate']:.3f}")]
    return rows + _reference_rows(s, "AIS", "ais")


def _bdmc_rows(s: dict) -> List[Tuple[str, str]]:
    lower, upper, gap = s["lower"], s["upper"], s["gap"]
    rows = [(f"lower bound: forward AIS ({s['steps']} steps, {s['chains']} chains)",
             f"{lower['mean']:.3f} (Monte Carlo error {lower['mc_error_of_mean']:.3g})"),
            ("upper bound: reverse AIS from the simulating z",
             f"{upper['mean']:.3f} (Monte Carlo error {upper['mc_error_of_mean']:.3g})"),
            ("gap per point: mean ± standard error, median, max",
             f"{gap['mean']:.3f} ± {gap['std_error']:.3f}, {gap['median']:.3f}, {gap['max']:.3f}"),
            ("HMC acceptance, forward / reverse",
             f"{s['accept_rate']['forward']:.3f} / {s['accept_rate']['reverse']:.3f}")]
    if s["reference"] is not None:
        ref = s["reference"]
        rows += [(f"log p(x), {ref['method']}", f"{ref['mean']:.3f}"),
                 ("share of points bracketed (within 3 standard errors)", f"{ref['share_bracketed']:.3f}")]
    return rows


def _reference_rows(s: dict, what: str, method: str) -> List[Tuple[str, str]]:
    ref = s["reference"]
    if ref is None:
        return []
    diff = ref[f"{method}_minus_reference"]
    return [(f"log p(x), {ref['method']}", f"{ref['mean']:.3f}"),
            (f"{what} - {ref['method']}: mean ± Monte Carlo error, mean |.|",
             f"{diff['mean']:.3g} ± {diff['std_error_of_mean']:.2g}, {diff['mean_abs']:.3g}")]


def _heading(s: dict) -> str:
    method = s.get("method", "is")
    if method == "is":
        return f"{s['split']} split: {points_phrase(s)}, importance sampling, K = {s['num_samples']}"
    if method == "ais":
        return f"{s['split']} split: {points_phrase(s)}, AIS, {s['steps']} steps"
    return f"{s['num_points']} points simulated from the model: BDMC, {s['steps']} steps"


def draw_figure(run_dir: Path, s: dict) -> Path:
    """``figures/bounds_vs_k_<split>.png``: the IWAE bounds of one summary against K."""
    from ..reports import evaluation_figures  # matplotlib, loaded only to draw

    references = {f"ELBO ({name})": s["elbo"][name] for name in ELBO_ESTIMATORS}
    if s["reference"] is not None:
        references[f"log p(x), {s['reference']['method']}"] = s["reference"]["mean"]
    return evaluation_figures.bounds_vs_k([b["k"] for b in s["iwae"]], [b["mean"] for b in s["iwae"]],
                                           [b["mc_error_of_mean"] for b in s["iwae"]], references,
                                           run_dir / "figures" / f"bounds_vs_k_{s['split']}.png",
                                           f"{s['split']} split, {s['num_points']} points")


def read_evaluations(run_dir: Path) -> dict:
    """The summaries in ``run_dir/evaluation.json`` by split (none if it does not exist)."""
    path = Path(run_dir) / EVALUATION
    try:
        everything = json.loads(path.read_text()) if path.exists() else {}
    except (ValueError, UnicodeDecodeError):
        raise PyrovaeError(f"{path} is not valid JSON; delete it and evaluate again") from None
    if not isinstance(everything, dict):
        raise PyrovaeError(f"{path} is not an evaluation file (a mapping of splits); delete it and evaluate again")
    return everything


def _save(run_dir: Path, summary: dict) -> None:
    """Add ``summary`` to evaluation.json (keeping other splits), atomically, then draw its
    figure and rewrite the report's Evaluation section from everything evaluated so far."""
    everything = read_evaluations(run_dir)
    everything[entry_name(summary)] = summary
    write_atomic(run_dir / EVALUATION, json.dumps(everything, indent=2) + "\n")
    if summary.get("method", "is") == "is":
        draw_figure(run_dir, summary)
    write_report(run_dir, everything)


def write_report(run_dir: Path, everything: dict) -> Path:
    """The report's Evaluation section from the summaries ``everything`` (by split and method)."""
    parts = []
    for s in everything.values():
        part = f"### {_heading(s)}\n\n{markdown_table(['quantity', 'value'], _escape_pipes(summary_rows(s)))}"
        if s.get("method", "is") == "is":
            part += f"\n\n![bounds against K](figures/bounds_vs_k_{s['split']}.png)"
        parts.append(part)
    return update_section(run_dir, SECTION,
                          "Importance sampling keeps one estimate per data point; ± is the standard error over "
                          "data points, the Monte Carlo error is that of the sampling itself, trusted only where the "
                          "weights' Pareto k-hat stays below 0.7. log p(x) >= IWAE_K >= ELBO. AIS anneals HMC chains "
                          "from the guide to the posterior; BDMC brackets log p(x) of simulated data between forward "
                          f"and reverse AIS. Full numbers: `{EVALUATION}`.\n\n" + "\n\n".join(parts))


def _escape_pipes(rows):
    """Rows safe inside a markdown table (q(z|x) would otherwise split a cell)."""
    return [[cell.replace("|", "\\|") for cell in row] for row in rows]


def print_summary(s: dict) -> None:
    rows = summary_rows(s)
    width = max(len(name) for name, _ in rows)
    print(f"{_heading(s)}; nats per data point:")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


# ----------------------------------------------------------------------------- command line

def _command(args) -> None:
    sampler = None
    if any(value is not None for value in (args.engine, args.workers, args.address, args.threads)):
        from ..sweeps.split_evaluation import SplitSampler  # the engines of 'pyrovae sweep'

        sampler = SplitSampler(args.engine or "local", args.workers, args.address, args.threads)
    try:
        summary = evaluate_run(args.run, split=args.split, num_samples=args.num_samples, max_memory=args.max_memory,
                               max_points=args.max_points, seed=args.seed, elbo_particles=args.elbo_particles,
                               quadrature=args.quadrature, device=args.device,
                               progress=not args.quiet and sys.stderr.isatty(),  # no bar in a log file
                               method=args.method, steps=args.steps, chains=args.chains, leapfrog=args.leapfrog,
                               ais_start=args.ais_start, simulated=args.simulated,
                               proposal_scale=args.proposal_scale, proposal_df=args.proposal_df, sampler=sampler)
    except EvaluationNotSaved as exc:  # nothing computed is lost: print all of it, then the error
        print_summary(exc.summary)
        print("full results (evaluation.json could not be written):")
        print(json.dumps(exc.summary, indent=2))
        raise
    print_summary(summary)
    print(f"saved {Path(args.run) / EVALUATION} and the {SECTION} section of {Path(args.run) / 'report.md'}")


def add_command(subparsers) -> None:
    """Add ``pyrovae evaluate`` to the command line."""
    p = subparsers.add_parser(
        "evaluate", help="log p(x) of a trained run: importance sampling, AIS or BDMC bounds",
        description="Estimate log p(x) per data point by importance sampling from the guide (with IWAE bounds, "
                    "ELBOs, rate, distortion, ESS, Pareto k-hat and active units), by annealed importance sampling, "
                    "or bracket it between BDMC's bounds on simulated data; writes evaluation.json and the "
                    "Evaluation section of report.md.")
    p.add_argument("run", help="a run folder written by 'pyrovae train'")
    p.add_argument("--method", default="is", choices=METHODS,
                   help="is: importance sampling (default); ais: annealed importance sampling; "
                        "bdmc: forward and reverse AIS on data simulated from the model")
    p.add_argument("--num-samples", type=int, default=5000, metavar="K",
                   help="importance samples per data point (default 5000)")
    p.add_argument("--split", default="test", help=f"which data: {', '.join(SPLITS)} (default test)")
    p.add_argument("--max-memory", default=DEFAULT_MAX_MEMORY, metavar="SIZE",
                   help=f"bound on the working memory, e.g. 512MB or 2GB (default {DEFAULT_MAX_MEMORY})")
    p.add_argument("--max-points", type=int, metavar="N",
                   help="evaluate N points of the split chosen at random with --seed (default: all)")
    p.add_argument("--quadrature", action="store_true",
                   help="also integrate log p(x) on a latent grid (1-D and 2-D latent spaces)")
    p.add_argument("--elbo-particles", type=int, default=10, metavar="L",
                   help="samples per point for the Pyro ELBO estimators (default 10)")
    p.add_argument("--proposal-scale", type=float, default=1.0, metavar="C",
                   help="importance sampling from the guide with its scale times C (default 1: the guide)")
    p.add_argument("--proposal-df", type=float, metavar="NU",
                   help="importance sampling from a Student-t with NU degrees of freedom around the guide")
    p.add_argument("--steps", type=int, default=1000, help="AIS and BDMC: annealing steps (default 1000)")
    p.add_argument("--chains", type=int, default=16, help="AIS and BDMC: chains per data point (default 16)")
    p.add_argument("--leapfrog", type=int, default=DEFAULT_LEAPFROG,
                   help=f"AIS and BDMC: leapfrog steps per HMC transition (default {DEFAULT_LEAPFROG})")
    p.add_argument("--ais-start", default="guide", choices=STARTS,
                   help="AIS and BDMC: anneal from the guide q(z|x) (default) or from the prior")
    p.add_argument("--simulated", type=int, default=100, metavar="N",
                   help="BDMC: number of data points simulated from the model (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    parallel = p.add_argument_group("data-parallel importance sampling (the engines of 'pyrovae sweep'; the same "
                                     "results as one process for the same seed and threads per worker)")
    parallel.add_argument("--engine", help="local (worker processes here) or ray; default local when --workers is given")
    parallel.add_argument("--workers", type=int, metavar="N", help="blocks of points sampled at a time "
                                                                  "(default: the cores or the cluster's CPUs)")
    parallel.add_argument("--threads", type=int, metavar="T", help="torch threads per worker (default: cores / "
                                                                  "workers locally, 1 on Ray)")
    parallel.add_argument("--address", metavar="ADDR", help="the Ray cluster (auto: the one 'ray start' made here)")
    p.set_defaults(func=_command)
