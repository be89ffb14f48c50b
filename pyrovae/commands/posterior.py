"""``pyrovae posterior``: the true posterior beside the guide for chosen data points of a
trained run, written to a folder as figures, ``posterior.json`` and ``report.md``.

That folder is new, empty, or one an earlier ``pyrovae posterior`` wrote: a folder holding
other files (the user's, or a run folder with its own ``report.md``) is refused before any
work, so nothing of the user's is ever replaced.

The numbers come from :func:`pyrovae.evaluation.posterior.inspect_posterior`; this module
loads the run and its data, summarizes and saves them, then has
:mod:`pyrovae.reports.posterior_report` draw the figures and write the report (every file
atomically).
"""

import json
import math
import re
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from ..components.datasets import SPLITS, load_data
from ..errors import PyrovaeError, did_you_mean, seed_value
from ..evaluation.chunking import DEFAULT_MAX_MEMORY, parse_memory
from ..evaluation.posterior import inspect_posterior
from ..plugins import load_plugins
from ..reports.posterior_report import REPORT, RESULTS, write_posterior_report
from ..runs.files import make_folder, write_atomic
from ..runs.folder import check_output_folder
from ..runs.loading import load_run
from .options import add_changed_inputs_option, add_device_option, add_plugin_option


def parse_points(text: str) -> List[int]:
    """Data point indices from ``"3,7,42"`` or ranges ``"0-99"`` (inclusive), or both mixed."""
    points = []
    for part in str(text).split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match or (match.group(2) is not None and int(match.group(2)) < int(match.group(1))):
            raise PyrovaeError(f"--points '{text}' is not a list of indices like 3,7,42 or a range like 0-99")
        first = int(match.group(1))
        points += list(range(first, int(match.group(2) or first) + 1))
    if len(set(points)) != len(points):
        raise PyrovaeError(f"--points '{text}' names a point twice; list each index once")
    return points


# ----------------------------------------------------------------------------- summary

def _mean_with_errors(estimate) -> dict:
    """Mean over points, its standard error over points, and the Monte Carlo error of the mean."""
    v, e = estimate.value, estimate.std_error
    n = v.shape[0]
    return {"mean": float(v.mean()), "std_error_over_points": float(v.std() / math.sqrt(n)) if n > 1 else math.nan,
            "mc_error_of_mean": float(e.pow(2).sum().sqrt() / n)}


def summarize(inspection, points: List[int], split: str) -> dict:
    """The inspection's numbers as plain JSON-ready data: per point, and averaged over points."""
    d = inspection.decomposition
    lp = d.log_marginal
    per_point = []
    for i, index in enumerate(points):
        entry = {"index": index,
                 "log_marginal": {"value": float(lp.estimate.value[i]), "error": float(lp.estimate.std_error[i]),
                                  **({} if lp.khat is None else {"pareto_khat": float(lp.khat[i])})},
                 **{name: {"value": float(getattr(d, name).value[i]), "std_error": float(getattr(d, name).std_error[i])}
                    for name in ("elbo_q", "elbo_qstar", "approximation_gap", "amortization_gap", "total_gap")},
                 "q": {"loc": inspection.q.loc[i].tolist(), "covariance": inspection.q.covariance[i].tolist()},
                 "qstar": {"loc": inspection.qstar.loc[i].tolist(),
                           "covariance": inspection.qstar.covariance[i].tolist()}}
        if inspection.chains is not None:
            c = inspection.chains[i]
            entry["mcmc"] = {"mean": c.samples.mean(0).tolist(), "covariance": c.samples.T.cov().reshape(
                c.samples.shape[1], -1).tolist(), "ess": c.ess.tolist(), "r_hat": c.r_hat.tolist(),
                "divergences": c.divergences, "acceptance_rate": c.acceptance_rate, "step_size": c.step_size,
                "seconds": c.seconds}
        if inspection.grids is not None:
            g = inspection.grids[i]
            entry["grid"] = {"mean": g.mean.tolist(), "covariance": g.covariance.tolist(),
                             "mass_on_grid": g.mass_on_grid, "modes": g.mode_points(), "multimodal": g.multimodal}
        if inspection.comparisons is not None:
            entry["mcmc_vs_grid"] = inspection.comparisons[i].as_dict()
        per_point.append(entry)
    summary = {"split": split, "points": points, "settings": inspection.settings,
               "log_marginal_method": lp.method, "elbo_samples": d.elbo_samples, "seconds": inspection.seconds,
               "mean": {name: _mean_with_errors(getattr(d, name))
                        for name in ("elbo_q", "elbo_qstar", "approximation_gap", "amortization_gap", "total_gap")},
               "per_point": per_point}
    summary["mean"]["log_marginal"] = _mean_with_errors(lp.estimate)
    if lp.khat is not None:
        summary["share_khat_above_0.7"] = float((lp.khat > 0.7).double().mean())
    if inspection.comparisons is not None:
        z = torch.cat([c.z_scores for c in inspection.comparisons])
        summary["mcmc_vs_grid"] = {"moments": int(z.numel()), "max_abs_z": float(z.abs().max()),
                                   "mean_z_squared": float(z.pow(2).mean()),
                                   "share_abs_z_below_2": float((z.abs() < 2).double().mean())}
    if inspection.grids is not None:
        summary["multimodal_points"] = [index for index, g in zip(points, inspection.grids) if g.multimodal]
    return summary


def check_out_folder(out_dir: Path) -> None:
    """Refuse an ``--out`` that is a file (or lies under one) or a folder holding files that
    ``pyrovae posterior`` did not write; a new folder, an empty one or an earlier output
    folder of this command are fine."""
    check_output_folder(out_dir, _earlier_output, "pyrovae posterior", f"the figures, {RESULTS} and {REPORT}")


def _earlier_output(folder: Path) -> bool:
    """Whether ``folder`` holds the ``posterior.json`` of an earlier inspection."""
    try:
        results = json.loads((folder / RESULTS).read_text())
    except (OSError, ValueError):  # missing, unreadable or not JSON (UnicodeDecodeError is a ValueError)
        return False
    return isinstance(results, dict) and {"run", "per_point"} <= results.keys()


def inspect_run(run_dir, points: List[int], out_dir, split: str = "test", mcmc: Optional[str] = "nuts",
                num_samples: int = 1000, warmup_steps: int = 500, svi_steps: int = 2000, elbo_samples: int = 1000,
                is_samples: int = 5000, seed: int = 0, max_memory=DEFAULT_MAX_MEMORY, device: str = "auto",
                plugins: Sequence[str] = ()) -> dict:
    """Inspect the posterior of the run in ``run_dir`` at data points ``points`` of ``split`` (with
    extra ``plugins`` loaded first); write figures, ``posterior.json`` and ``report.md`` into
    ``out_dir``; return the summary."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not run_dir.is_dir():
        raise PyrovaeError(f"no run folder {run_dir}; train one with 'pyrovae train CONFIG --out {run_dir}'")
    if split not in SPLITS:
        raise PyrovaeError(f"unknown split '{split}'{did_you_mean(split, SPLITS)}; choose one of: {', '.join(SPLITS)}")
    if not points:
        raise PyrovaeError("no points chosen; pass --points like 3,7,42")
    seed_value(seed, "--seed")
    check_out_folder(out_dir)
    max_memory = parse_memory(max_memory)
    load_plugins(plugins)
    spec, vae = load_run(run_dir, device)
    data = load_data(spec.data)
    part = data.split(split)
    if max(points) >= part.x.shape[0]:
        raise PyrovaeError(f"point {max(points)} does not exist: the {split} split has {part.x.shape[0]} points "
                           f"(indices 0 to {part.x.shape[0] - 1})")
    index = torch.tensor(points)
    x = part.x[index]
    if split == "train":  # dynamically binarized data: one seeded binarization
        x = data.training_batch(x)
    y = part.y[index] if vae.num_classes else None
    make_folder(out_dir)
    inspection = inspect_posterior(vae, x, y, mcmc=mcmc, num_samples=num_samples, warmup_steps=warmup_steps,
                                   svi_steps=svi_steps, elbo_samples=elbo_samples, is_samples=is_samples, seed=seed,
                                   max_memory=max_memory)
    summary = {"run": str(run_dir), **summarize(inspection, points, split)}
    write_atomic(out_dir / RESULTS, json.dumps(summary, indent=2) + "\n")  # the numbers first: drawing may fail
    write_posterior_report(out_dir, summary, inspection, x, str(run_dir))
    return summary


def _command(args) -> None:
    mcmc = None if args.mcmc == "none" else args.mcmc
    summary = inspect_run(args.run, parse_points(args.points), args.out, split=args.split, mcmc=mcmc,
                          num_samples=args.num_samples, warmup_steps=args.warmup, svi_steps=args.svi_steps,
                          elbo_samples=args.elbo_samples, is_samples=args.is_samples, seed=args.seed,
                          max_memory=args.max_memory, device=args.device, plugins=args.plugin)
    m = summary["mean"]
    print(f"{len(summary['points'])} points: approximation gap {m['approximation_gap']['mean']:.3f} ± "
          f"{m['approximation_gap']['std_error_over_points']:.3f}, amortization gap "
          f"{m['amortization_gap']['mean']:.3f} ± {m['amortization_gap']['std_error_over_points']:.3f} nats")
    print(f"wrote {Path(args.out) / RESULTS}, {Path(args.out) / REPORT} and figures")


def add_command(subparsers) -> None:
    """Add ``pyrovae posterior`` to the command line."""
    p = subparsers.add_parser(
        "posterior", help="p(z|x) beside q(z|x) for chosen points: NUTS, grid, optimized q*, inference gaps",
        description="For chosen data points of a trained run: samples of the true posterior p(z|x) by NUTS with "
                    "the decoder fixed, the grid posterior (2-D latents), the guide's q(z|x), a per-point optimized "
                    "Gaussian q*(z|x), and the approximation and amortization gaps (Cremer, Li & Duvenaud 2018). "
                    "Writes figures, posterior.json and report.md into --out.")
    p.add_argument("run", help="a run folder written by 'pyrovae train'")
    p.add_argument("--points", required=True, help="data point indices, e.g. 3,7,42 or 0-99")
    p.add_argument("--out", required=True, help="folder for the figures, posterior.json and report.md: a new or "
                                                 "empty folder, or one an earlier 'pyrovae posterior' wrote")
    p.add_argument("--split", default="test", help=f"which data: {', '.join(SPLITS)} (default test)")
    p.add_argument("--mcmc", default="nuts", choices=["nuts", "hmc", "none"],
                   help="posterior sampler, or none to skip sampling (default nuts)")
    p.add_argument("--num-samples", type=int, default=1000, metavar="S", help="MCMC samples per point (default 1000)")
    p.add_argument("--warmup", type=int, default=500, metavar="W", help="MCMC warm-up steps per point (default 500)")
    p.add_argument("--svi-steps", type=int, default=2000, metavar="T",
                   help="optimization steps for q* (default 2000)")
    p.add_argument("--elbo-samples", type=int, default=1000, metavar="L",
                   help="draws per point for each ELBO (default 1000)")
    p.add_argument("--is-samples", type=int, default=5000, metavar="K",
                   help="importance samples for log p(x) above 2 latent dimensions (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--max-memory", default=DEFAULT_MAX_MEMORY, metavar="SIZE",
                   help=f"bound on the working memory, e.g. 512MB (default {DEFAULT_MAX_MEMORY})")
    add_device_option(p)
    add_plugin_option(p)
    add_changed_inputs_option(p)
    p.set_defaults(func=_command)
