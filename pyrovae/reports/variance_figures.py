"""Figures of the variance laboratory: gradient variance and SNR against training step.

Rows are those of ``variance.csv`` (:func:`pyrovae.lab.variance.result_rows`).
"""

from pathlib import Path
from typing import Dict, List, Sequence

from .plots import pyplot, save_figure

PANELS = [("trace", "gradient variance (trace)"), ("snr", "SNR (mean |E g| / sd g)")]
GROUPS = ("encoder", "decoder")


def variance_curves(rows: Sequence[dict], path: Path) -> Path:
    """Log-variance and SNR against training step, one line per estimator; encoder in the
    left column, decoder in the right. The step axis is logarithmic beyond the first
    snapshot after initialization, so snapshots at epochs 0, 1, 5, 20 spread evenly. With a
    single snapshot there is no step axis: the estimators are the x axis, one point each."""
    if len({int(r["step"]) for r in rows}) == 1:
        return _snapshot_points(rows, path)
    plt = pyplot()
    fig, axes = plt.subplots(len(PANELS), len(GROUPS), figsize=(10, 7), squeeze=False, sharex=True)
    first = min((int(r["step"]) for r in rows if int(r["step"]) > 0), default=1)
    for col, group in enumerate(GROUPS):
        for estimator, points in _series(rows, group).items():
            steps = [p["step"] for p in points]
            for row, (key, _) in enumerate(PANELS):
                axes[row][col].plot(steps, [p[key] for p in points], "o-", label=estimator)
        for row, (_, label) in enumerate(PANELS):
            ax = axes[row][col]
            ax.set_yscale("log")
            ax.set_xscale("symlog", linthresh=first)
            ax.grid(alpha=0.3, which="both")
            if col == 0:
                ax.set_ylabel(label)
        axes[0][col].set_title(group)
        axes[-1][col].set_xlabel("training step")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return save_figure(fig, path)


def _snapshot_points(rows: Sequence[dict], path: Path) -> Path:
    """Variance and SNR of each estimator at the one snapshot, estimators named on the x axis."""
    plt = pyplot()
    fig, axes = plt.subplots(len(PANELS), len(GROUPS), figsize=(10, 7), squeeze=False, sharex=True)
    step = int(rows[0]["step"])
    names = list(dict.fromkeys(r["estimator"] for r in rows))
    for col, group in enumerate(GROUPS):
        series = _series(rows, group)
        for row, (key, label) in enumerate(PANELS):
            ax = axes[row][col]
            for i, name in enumerate(names):
                if name in series:
                    ax.plot([i], [series[name][0][key]], "o", color=f"C{i % 10}")
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
            if col == 0:
                ax.set_ylabel(label)
        axes[0][col].set_title(group)
        bottom = axes[-1][col]
        bottom.set_xticks(range(len(names)), names, rotation=45, ha="right")
        bottom.set_xlabel(f"estimator (all at training step {step})")
    return save_figure(fig, path)


def _series(rows: Sequence[dict], group: str) -> Dict[str, List[dict]]:
    series: Dict[str, List[dict]] = {}
    for row in rows:
        if row["group"] == group:
            series.setdefault(row["estimator"], []).append(row)
    return {name: sorted(points, key=lambda p: p["step"]) for name, points in series.items()}

