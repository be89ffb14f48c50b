"""Figures of posterior inspection: p(z|x) beside q(z|x) and q*(z|x) for one data point.

In 2-D, the grid posterior's highest-density regions as filled contours, the two
Gaussians as 1- and 2-standard-deviation ellipses, MCMC samples as dots and the separated
modes as crosses. Above 2-D, pairwise marginals of the MCMC samples for a few latent
dimensions with the Gaussians' marginals over them. Every function writes one PNG.
"""

import math
from pathlib import Path
from typing import Optional, Sequence

import torch

from .plots import pyplot, save_figure

MASS_LEVELS = (0.99, 0.9, 0.5)  # highest-density regions drawn as filled contours
SAMPLES_SHOWN = 600             # MCMC samples drawn as dots (evenly thinned)
Q_STYLE = {"color": "tab:red", "linestyle": "--", "label": "q(z|x), amortized guide"}
QSTAR_STYLE = {"color": "tab:blue", "linestyle": "-", "label": "q*(z|x), optimized Gaussian"}


def _thinned(samples: torch.Tensor) -> torch.Tensor:
    step = max(1, samples.shape[0] // SAMPLES_SHOWN)
    return samples[::step].cpu()


def _ellipse(ax, loc, cov, radius: float, style: dict, label: bool) -> None:
    """The ``radius``-standard-deviation ellipse of N(loc, cov) in 2-D."""
    values, vectors = torch.linalg.eigh(cov.double().cpu())
    angle = torch.linspace(0, 2 * math.pi, 200, dtype=torch.float64)
    circle = torch.stack([angle.cos(), angle.sin()], -1) * values.clamp_min(0).sqrt() * radius
    points = circle @ vectors.T + loc.double().cpu()
    ax.plot(points[:, 0], points[:, 1], color=style["color"], linestyle=style["linestyle"], linewidth=1.4,
            label=style["label"] if label else None)


def _density_levels(log_density: torch.Tensor, log_weight: torch.Tensor) -> list:
    """Density values whose superlevel sets hold the masses in :data:`MASS_LEVELS`."""
    density, mass = log_density.flatten().exp(), (log_density + log_weight).flatten().exp()
    order = density.argsort(descending=True)
    cumulative = mass[order].cumsum(0) / mass.sum()
    levels = [float(density[order][min(int(torch.searchsorted(cumulative, torch.tensor(m, dtype=cumulative.dtype))),
                                       order.numel() - 1)]) for m in MASS_LEVELS]
    return sorted(set(levels))


def _image_inset(ax, image: Optional[torch.Tensor]) -> None:
    if image is None or image.dim() != 3 or image.shape[0] not in (1, 3):
        return
    inset = ax.inset_axes([0.78, 0.78, 0.2, 0.2])
    inset.imshow(image.detach().float().clamp(0, 1).cpu().permute(1, 2, 0).squeeze(-1), cmap="gray", vmin=0, vmax=1)
    inset.set_xticks([])
    inset.set_yticks([])


def _zoom(ax, grid, gaussians) -> None:
    """Axes limits around the grid posterior's 99.9% region and the Gaussians' 2.5-sd boxes."""
    levels_mass = (grid.log_density + grid.log_weight).flatten()
    order = grid.log_density.flatten().argsort(descending=True)
    cumulative = (levels_mass[order] - torch.logsumexp(levels_mass, 0)).exp().cumsum(0)
    inside = order[: int((cumulative < 0.999).sum()) + 1]
    cols = grid.log_density.shape[1]
    z1, z2 = grid.z1.cpu()[inside // cols], grid.z2.cpu()[inside % cols]
    lows = [torch.stack([z1.min(), z2.min()])] + [loc.cpu() - 2.5 * cov.cpu().diagonal().sqrt() for loc, cov in gaussians]
    highs = [torch.stack([z1.max(), z2.max()])] + [loc.cpu() + 2.5 * cov.cpu().diagonal().sqrt() for loc, cov in gaussians]
    low, high = torch.stack(lows).amin(0), torch.stack(highs).amax(0)
    pad = 0.08 * (high - low)
    ax.set_xlim(float(low[0] - pad[0]), float(high[0] + pad[0]))
    ax.set_ylim(float(low[1] - pad[1]), float(high[1] + pad[1]))


def posterior_2d(grid, q_loc, q_cov, qstar_loc, qstar_cov, samples: Optional[torch.Tensor], path: Path, title: str,
                 image: Optional[torch.Tensor] = None, sampler: str = "NUTS") -> Path:
    """Contours of the grid posterior with the q and q* ellipses and MCMC samples."""
    fig, ax = pyplot().subplots(figsize=(5.6, 5))
    levels = _density_levels(grid.log_density, grid.log_weight)
    density = grid.log_density.exp().T.cpu()  # rows of the image are z2
    ax.contourf(grid.z1.cpu(), grid.z2.cpu(), density, levels=levels + [float(density.max()) * 1.0001],
                         cmap="Greys", alpha=0.55)
    ax.contour(grid.z1.cpu(), grid.z2.cpu(), density, levels=levels, colors="k", linewidths=0.6)
    if samples is not None:
        shown = _thinned(samples)
        ax.scatter(shown[:, 0], shown[:, 1], s=3, color="tab:green", alpha=0.5, label=f"{sampler} samples of p(z|x)")
    for loc, cov, style in [(q_loc, q_cov, Q_STYLE), (qstar_loc, qstar_cov, QSTAR_STYLE)]:
        for radius in (1, 2):
            _ellipse(ax, loc, cov, radius, style, label=radius == 1)
    for mode in grid.mode_points():
        ax.plot(*mode["z"], marker="x", color="k", markersize=8, linestyle="none")
    ax.plot([], [], color="grey", linewidth=6, alpha=0.5,
            label="p(z|x) on the grid: " + ", ".join(f"{m:.0%}" for m in sorted(MASS_LEVELS)) + " regions")
    _image_inset(ax, image)
    _zoom(ax, grid, [(q_loc, q_cov), (qstar_loc, qstar_cov)])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.2)
    return save_figure(fig, path)


def pairwise_marginals(samples: torch.Tensor, q_loc, q_cov, qstar_loc, qstar_cov, dims: Sequence[int],
                       path: Path, title: str, sampler: str = "NUTS") -> Path:
    """A corner plot over latent dimensions ``dims``: MCMC samples of p(z|x) (histograms on
    the diagonal, dots below it) with the 1- and 2-sd ellipses and marginal densities of
    q and q*."""
    dims = list(dims)
    k = len(dims)
    fig, axes = pyplot().subplots(k, k, figsize=(2.1 * k + 0.6, 2.1 * k + 0.4), squeeze=False)
    samples = samples.double().cpu()
    shown = _thinned(samples)
    gaussians = [(q_loc.double().cpu(), q_cov.double().cpu(), Q_STYLE),
                 (qstar_loc.double().cpu(), qstar_cov.double().cpu(), QSTAR_STYLE)]
    for r, i in enumerate(dims):
        for c, j in enumerate(dims):
            ax = axes[r, c]
            if c > r:
                ax.axis("off")
                continue
            if r == c:
                ax.hist(samples[:, i], bins=40, density=True, color="tab:green", alpha=0.45,
                        label=f"{sampler} samples of p(z|x)")
                lo, hi = ax.get_xlim()
                grid = torch.linspace(lo, hi, 200, dtype=torch.float64)
                for loc, cov, style in gaussians:
                    sd = cov[i, i].sqrt()
                    pdf = torch.exp(-0.5 * ((grid - loc[i]) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
                    ax.plot(grid, pdf, color=style["color"], linestyle=style["linestyle"], label=style["label"])
                ax.set_yticks([])
            else:
                ax.scatter(shown[:, j], shown[:, i], s=2, color="tab:green", alpha=0.4)
                for loc, cov, style in gaussians:
                    sub = cov[[j, i]][:, [j, i]]
                    for radius in (1, 2):
                        _ellipse(ax, loc[[j, i]], sub, radius, style, label=False)
            if r == k - 1:
                ax.set_xlabel(f"$z_{{{j + 1}}}$")
            if c == 0 and r > 0:
                ax.set_ylabel(f"$z_{{{i + 1}}}$")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if k > 1:  # in the empty upper-right panel
        axes[0, k - 1].legend(handles, labels, loc="center", fontsize=8, frameon=False)
    else:
        fig.legend(handles, labels, loc="upper right", fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
