"""The sweep report: ``report.md`` with the results table, the standard errors of the
differences between grid points and a figure; ``results.json`` with every number."""

import json
import math
import statistics
from pathlib import Path

from ..runs.files import write_atomic
from ..sweeps.results import SweepResults, read_results
from .markdown import markdown_table

FIGURE = "figures/sweep_results.png"
RESULTS = "results.json"


def write_sweep_report(sweep_dir) -> Path:
    """Write ``report.md``, ``results.json`` and the figure of the sweep in ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    results = read_results(sweep_dir)
    write_atomic(sweep_dir / RESULTS, json.dumps(results.to_dict(), indent=2) + "\n")
    has_values = any(p.n for p in results.points)
    if has_values:
        results_figure(results, sweep_dir / FIGURE)
    return write_atomic(sweep_dir / "report.md", report_text(results, figure=FIGURE if has_values else None))


def report_text(results: SweepResults, figure=None) -> str:
    spec = results.spec
    done = sum(r.state == "done" for r in results.runs)
    lines = [f"# Sweep `{spec.name}`", "",
             f"{len(results.runs)} runs ({len(results.points)} grid points x {len(spec.seeds)} seeds), {done} done. "
             f"Metric: {results.metric}; mean ± standard deviation over seeds, and the standard error of the mean.", ""]
    if spec.set:
        lines += ["Every run: " + ", ".join(f"`{k}={v}`" for k, v in spec.set.items()) + ".", ""]
    lines += [results_table(results), ""]
    if len(results.points) > 1:
        lines += ["## Differences between grid points", "",
                  "Row minus column: difference of the means ± its standard error "
                  "$\\sqrt{s_a^2/n_a + s_b^2/n_b}$ (runs of different points are independent).", "",
                  differences_table(results), ""]
    gaps = gaps_table(results)
    if gaps:
        lines += ["## Inference gaps", "",
                  "Cremer, Li & Duvenaud's decomposition on the first evaluated points of each run, against the "
                  "evaluation's log p(x); q* is sought in the guide's own family. Mean ± sd over seeds of each "
                  "run's mean over points; k-hat is the median over points of the guide's importance weights' "
                  "Pareto k-hat, ESS their mean normalised effective sample size.", "", gaps, ""]
    if figure:
        lines += [f"![{results.metric} per grid point]({figure})", ""]
    lines += ["Run folders: `runs/<grid point>/seed_<s>/` (each an ordinary `pyrovae train` run folder); "
              "every number: `results.json`."]
    return "\n".join(lines) + "\n"


def _number(x: float, digits: int = 2) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def results_table(results: SweepResults) -> str:
    keys = list(results.spec.grid)
    rows = []
    for p in results.points:
        rows.append([*(f"`{p.point[k]}`" for k in keys), f"{p.n} of {p.runs}",
                     f"{_number(p.mean)} ± {_number(p.sd)}", _number(p.std_error),
                     ", ".join(_number(v) for v in p.values)])
    header = [*keys, "seeds done", "mean ± sd", "s.e. of mean", "per seed"]
    return markdown_table(header, rows)


GAP_COLUMNS = [("log p(x)", lambda g: g["log_marginal"]["mean"]), ("ELBO(q)", lambda g: g["elbo_q"]["mean"]),
               ("ELBO(q*)", lambda g: g["elbo_qstar"]["mean"]),
               ("approximation gap", lambda g: g["approximation_gap"]["mean"]),
               ("amortization gap", lambda g: g["amortization_gap"]["mean"]),
               ("k-hat", lambda g: g["khat_median"]), ("ESS", lambda g: g["ess_mean"])]


def gaps_table(results: SweepResults) -> str:
    """Per grid point, mean ± sd over seeds of each run's gap summary (empty when the sweep's
    evaluation computed none: ``evaluate: {gap_points: N}``)."""
    keys, rows = list(results.spec.grid), []
    for p in results.points:
        found = [r.evaluation["gaps"] for r in results.runs
                 if r.point == p.point and r.evaluation is not None and "gaps" in r.evaluation]
        if found:
            cells = []
            for _, column in GAP_COLUMNS:
                values = [column(g) for g in found]
                sd = statistics.stdev(values) if len(values) > 1 else math.nan
                cells.append(f"{_number(statistics.fmean(values))} ± {_number(sd)}")
            rows.append([*(f"`{p.point[k]}`" for k in keys), str(len(found)), *cells])
    return markdown_table([*keys, "seeds", *(name for name, _ in GAP_COLUMNS)], rows) if rows else ""


def differences_table(results: SweepResults) -> str:
    labels = [p.label for p in results.points]
    rows = []
    for a, label in enumerate(labels):
        cells = []
        for b in range(len(labels)):
            d = results.difference(a, b)
            cells.append("" if a == b else f"{_number(d['difference'])} ± {_number(d['std_error'])}")
        rows.append([f"`{label}`", *cells])
    return markdown_table(["", *(f"`{label}`" for label in labels)], rows)


def results_figure(results: SweepResults, path: Path) -> Path:
    """Each grid point's runs (dots, one per seed) with the mean ± one standard deviation."""
    from .plots import pyplot, save_figure

    plt = pyplot()
    n = len(results.points)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * n + 1.5), 3.6))
    for i, p in enumerate(results.points):
        if not p.n:
            continue
        spread = [i + 0.12 * (j - (p.n - 1) / 2) / max(1, p.n - 1) for j in range(p.n)]
        ax.plot(spread, p.values, "o", color="0.55", markersize=4, zorder=2)
        if p.n > 1:
            ax.errorbar([i + 0.25], [p.mean], yerr=[p.sd], fmt="s", color="C0", capsize=4, zorder=3)
        else:
            ax.plot([i + 0.25], [p.mean], "s", color="C0", zorder=3)
    ax.set_xticks(range(n))
    ax.set_xticklabels([p.label.replace(",", "\n") for p in results.points], fontsize=8)
    ax.set_ylabel(results.metric.split(" (")[0] + " (nats)")
    ax.set_title(f"{results.spec.name}: seeds (dots), mean ± sd (squares)", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)
