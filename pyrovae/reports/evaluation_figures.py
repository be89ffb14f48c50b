"""Figures of an evaluation: the bounds on log p(x) against the number of importance samples."""

from pathlib import Path
from typing import Dict, Sequence

from .plots import pyplot, save_figure


def bounds_vs_k(ks: Sequence[int], means: Sequence[float], errors: Sequence[float],
                references: Dict[str, float], path: Path, title: str = "") -> Path:
    """IWAE_K (mean over data points, error bars: Monte Carlo error of that mean) against
    K on a log axis, with horizontal lines for reference values (ELBOs, an exact log p(x))."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar(ks, means, yerr=errors, fmt="o-", capsize=3, label="IWAE$_K$ (importance sampled)")
    for (label, value), style in zip(references.items(), ["--", ":", "-.", (0, (5, 1))]):
        ax.axhline(value, linestyle=style, color="0.35", label=f"{label}: {value:.2f}")
    ax.set_xscale("log")
    ax.set_xlabel("K (importance samples per data point)")
    ax.set_ylabel("nats per data point")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
