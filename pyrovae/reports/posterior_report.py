"""The report of ``pyrovae posterior``: a figure per inspected point (the grid posterior
or pairwise marginals beside q and q*, with the MCMC samples) and ``report.md`` with the
inference gaps, from the summary the command saves in ``posterior.json``."""

from pathlib import Path
from typing import List

from ..runs.files import write_atomic

RESULTS = "posterior.json"
REPORT = "report.md"
MAX_FIGURES = 8       # points drawn (the first ones chosen); the numbers cover every point
PAIRWISE_DIMS = 4     # latent dimensions in a pairwise-marginals figure above 2-D


def write_posterior_report(out_dir: Path, summary: dict, inspection, x, run_dir: str) -> Path:
    """Draw the figures of ``inspection`` (of the data ``x``) and write ``out_dir/report.md``."""
    figures = _figures(inspection, x, summary["points"], out_dir)
    return write_atomic(out_dir / REPORT, report_text(summary, figures, run_dir))


def report_text(s: dict, figures: List[str], run_dir: str) -> str:
    """A short markdown report of the summary."""
    m = s["mean"]

    def row(name, key):
        e = m[key]
        return f"| {name} | {e['mean']:.3f} | {e['std_error_over_points']:.3f} | {e['mc_error_of_mean']:.3g} |"

    lines = [f"# Posterior inspection of {run_dir}", "",
             f"{len(s['points'])} points of the {s['split']} split; log p(x) by {s['log_marginal_method']}; "
             f"ELBOs from {s['elbo_samples']} draws (common random numbers for q and q*).", "",
             "| quantity (nats, mean over points) | mean | standard error over points | Monte Carlo error of the mean |",
             "|---|---|---|---|",
             row("log p(x)", "log_marginal"), row("ELBO(q), amortized guide", "elbo_q"),
             row("ELBO(q*), optimized Gaussian", "elbo_qstar"),
             row("approximation gap log p(x) - ELBO(q*)", "approximation_gap"),
             row("amortization gap ELBO(q*) - ELBO(q)", "amortization_gap"),
             row("total gap log p(x) - ELBO(q)", "total_gap"), ""]
    if "share_khat_above_0.7" in s:
        lines += [f"Share of points whose importance weights have Pareto k-hat above 0.7 (unreliable log p(x)): "
                  f"{s['share_khat_above_0.7']:.2f}.", ""]
    if "mcmc_vs_grid" in s:
        c = s["mcmc_vs_grid"]
        lines += [f"MCMC against the grid posterior: {c['moments']} moments (means, variances, covariances), "
                  f"z-scores from effective sample sizes: max |z| = {c['max_abs_z']:.2f}, mean z^2 = "
                  f"{c['mean_z_squared']:.2f}, share |z| < 2 = {c['share_abs_z_below_2']:.2f}.", ""]
    if "multimodal_points" in s:
        multi = s["multimodal_points"]
        lines += [f"Multimodal posteriors (at least two separated modes holding 5% of the mass each): "
                  f"{', '.join(map(str, multi)) if multi else 'none'}.", ""]
    lines += ["Wall times (seconds): " + ", ".join(f"{k} {v:.1f}" for k, v in s["seconds"].items()) + ".", ""]
    lines += [f"![posterior]({f})" for f in figures]
    lines += ["", f"All numbers, per point: `{RESULTS}`."]
    return "\n".join(lines) + "\n"


def _figures(inspection, x, points: List[int], out_dir: Path) -> List[str]:
    """The posterior figures of the first :data:`MAX_FIGURES` points; their paths in ``out_dir``."""
    from . import posterior_figures  # matplotlib, loaded only to draw

    names = []
    q, qstar = inspection.q, inspection.qstar
    sampler = str(inspection.settings["mcmc"]).upper()
    for i, index in enumerate(points[:MAX_FIGURES]):
        path = out_dir / "figures" / f"posterior_point{index}.png"
        samples = None if inspection.chains is None else inspection.chains[i].samples
        title = (f"point {index}: approximation gap {inspection.decomposition.approximation_gap.value[i]:.2f}, "
                 f"amortization gap {inspection.decomposition.amortization_gap.value[i]:.2f} nats")
        if inspection.grids is not None:
            posterior_figures.posterior_2d(inspection.grids[i], q.loc[i], q.covariance[i], qstar.loc[i],
                                           qstar.covariance[i], samples, path, title, image=x[i], sampler=sampler)
        elif samples is not None:
            dims = samples.var(0).argsort()[:PAIRWISE_DIMS].sort().values.tolist()  # the best-determined dims
            posterior_figures.pairwise_marginals(samples, q.loc[i], q.covariance[i], qstar.loc[i],
                                                 qstar.covariance[i], dims, path, title, sampler=sampler)
        else:
            continue
        names.append(str(path.relative_to(out_dir)))
    return names
