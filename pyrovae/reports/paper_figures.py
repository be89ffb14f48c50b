"""The figures of Kingma & Welling (2014): Fig. 2 and 3 drawn from curves (plain data, read
from run folders by :func:`bound_curve` and :func:`marginal_curve`, or from committed results,
:mod:`.paper_results`), Fig. 4 and 5 from trained models.

- Fig. 2: the lower bound (nats per data point) of AEVB and of wake-sleep against the number
  of training points evaluated, on a log axis, train and held-out; one panel per data set
  and latent size.
- Fig. 3: the estimated marginal likelihood log p(x) against training points evaluated, one
  panel per training-set size, one curve per training method.
- Fig. 4: the learned 2-D manifold: decoded means over a lattice of latent points at prior
  quantiles, the z values on the axes, tiles without gaps.
- Fig. 5: random samples (means of p(x|z), z from the prior) for several latent sizes.

"Training points evaluated" is epochs x training-set size: the metrics file counts epochs
and steps, and the training set's size comes from the run's config and data
(:func:`training_points`).
"""

import csv
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..errors import PyrovaeError

# How each training method is drawn in every figure.
METHOD_STYLE = {"pathwise": ("AEVB", "tab:red"), "wake_sleep": ("wake-sleep", "tab:blue"),
                "reweighted_wake_sleep": ("reweighted wake-sleep", "tab:cyan"), "mcem": ("MCEM", "tab:green")}
MANIFOLD_TILES = 15  # tiles per side of Fig. 4's lattice
SAMPLES_PER_MODEL = 100  # Fig. 5


def method_label(name: str) -> Tuple[str, str]:
    """Legend label and colour of a training method (estimator name)."""
    return METHOD_STYLE.get(name, (name, "tab:gray"))


_TRAIN_SIZES: Dict[str, int] = {}  # data spec (as JSON) -> training points, loaded once per process


def training_points(spec, epochs: Sequence[int]) -> List[int]:
    """Training points evaluated after each of ``epochs`` full epochs: epoch x the number of
    training points the run's data spec yields (each epoch visits every point once)."""
    from ..components.datasets import load_data

    key = json.dumps(spec.data.to_dict(), sort_keys=True, default=str)
    if key not in _TRAIN_SIZES:
        _TRAIN_SIZES[key] = load_data(spec.data).limited(spec.data.train_size).train.x.shape[0]
    return [int(e) * _TRAIN_SIZES[key] for e in epochs]


def read_csv(path: Path) -> List[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def bound_curve(run_dir: Path) -> Optional[dict]:
    """A run's Fig. 2 curve: epochs, training points, train and held-out (validation) bound and
    training seconds so far, per epoch, and the best held-out bound with its training points
    (kept when a recorded curve is thinned); None for a run without a finished epoch."""
    from ..spec import load_config

    run_dir = Path(run_dir)
    if not (run_dir / "metrics.csv").is_file():
        return None
    rows = read_csv(run_dir / "metrics.csv")
    if not rows:
        return None
    spec = load_config(run_dir)
    epochs = [int(r["epoch"]) for r in rows]
    points, heldout = training_points(spec, epochs), [float(r["valid_elbo"]) for r in rows]
    best = max(range(len(heldout)), key=heldout.__getitem__)
    return {"epochs": epochs, "points": points, "train": [float(r["train_elbo"]) for r in rows], "heldout": heldout,
            "seconds": [float(r["seconds"]) for r in rows], "best_heldout": heldout[best], "best_heldout_points": points[best]}


def marginal_curve(run_dir: Path, filename: str = "curve.csv") -> Optional[dict]:
    """A run's Fig. 3 curve: epochs, training points and estimated test log p(x) with its standard error."""
    from ..spec import load_config

    path = Path(run_dir) / filename
    if not path.is_file():
        return None
    rows = read_csv(path)
    if not rows:
        return None
    spec = load_config(run_dir)
    epochs = [int(float(r["epoch"])) for r in rows]  # curve.csv may write epochs as 2.0
    return {"epochs": epochs, "points": training_points(spec, epochs), "test": [float(r["test_log_px"]) for r in rows],
            "std_error": [float(r["std_error"]) for r in rows], "seconds": [float(r["train_seconds"]) for r in rows]}


def _panel_axes(n: int, title: str, width: float = 3.6, height: float = 3.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows + 0.5), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.suptitle(title)
    return fig, list(axes.flat[:n])


def _save(fig, path: Path) -> Path:
    """Lay the panels out and write the figure, at its own size, atomically (:func:`.plots.save_figure`)."""
    from .plots import save_figure

    fig.tight_layout()
    return save_figure(fig, path, crop=False)


ERROR_BAR_STANDARD_ERRORS = 1  # Fig. 3's error bars: the estimate plus and minus one standard error


def figure_2(panels: Dict[str, Dict[str, dict]], path: Path) -> Path:
    """Fig. 2 (see :func:`draw_figure_2`), written to ``path``."""
    return _save(draw_figure_2(panels), path)


def draw_figure_2(panels: Dict[str, Dict[str, dict]]):
    """Fig. 2 as a matplotlib figure: ``panels`` maps a panel title (``MNIST, N_z = 3``) to
    ``{method: bound_curve}``; train bounds dashed, held-out solid, x axis log-scaled."""
    if not panels:
        raise PyrovaeError("no finished epochs to draw yet; run the experiment (or let it run longer) first")
    fig, axes = _panel_axes(len(panels), "Lower bound against training points evaluated (Kingma & Welling Fig. 2)")
    for ax, (title, curves) in zip(axes, panels.items()):
        for method, curve in curves.items():
            label, colour = method_label(method)
            ax.plot(curve["points"], curve["train"], "--", color=colour, label=f"{label} train")
            ax.plot(curve["points"], curve["heldout"], "-", color=colour, label=f"{label} held-out")
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("training points evaluated")
        ax.set_ylabel("lower bound (nats per point)")
        ax.grid(alpha=0.3, which="both")
        _fit_every_curve(ax, curves)
    axes[0].legend(fontsize=7)
    return fig


def _fit_every_curve(ax, curves: Dict[str, dict]) -> None:
    """Set the y range to hold every point of every curve, with a margin. The one exception
    is a train curve's first point, the running mean over the first epoch: it averages the
    bounds of a model from its initialization on and can lie far below everything else
    (-16422 nats for AEVB with N_z = 200 on MNIST, whose held-out bound after that epoch is
    -315). Where holding it would more than double the panel's height it is drawn on the
    lower edge instead, with its value written beside it."""
    rest = [v for c in curves.values() for v in c["heldout"] + c["train"][1:]]
    floor = min(rest) - (max(rest) - min(rest))
    shown = rest + [c["train"][0] for c in curves.values() if c["train"][0] >= floor]
    pad = 0.05 * (max(shown) - min(shown)) + 1.0
    low, high = min(shown) - pad, max(shown) + pad
    ax.set_ylim(low, high)
    for method, curve in curves.items():
        if curve["train"][0] < low:
            colour = method_label(method)[1]
            ax.plot(curve["points"][0], low, "v", color=colour, clip_on=False)
            ax.annotate(f"{curve['train'][0]:.0f}", (curve["points"][0], low), textcoords="offset points",
                        xytext=(4, 3), fontsize=6, color=colour)


def figure_3(panels: Dict[str, Dict[str, dict]], path: Path) -> Path:
    """Fig. 3 (see :func:`draw_figure_3`), written to ``path``."""
    return _save(draw_figure_3(panels), path)


def draw_figure_3(panels: Dict[str, Dict[str, dict]]):
    """Fig. 3 as a matplotlib figure: ``panels`` maps a title (``N_train = 1000``) to
    ``{method: marginal_curve}``; error bars of ``ERROR_BAR_STANDARD_ERRORS`` standard
    errors either side (none where the standard error is not finite)."""
    if not panels:
        raise PyrovaeError("no marginal-likelihood estimates to draw yet; run the experiment longer first")
    from matplotlib.ticker import NullFormatter

    fig, axes = _panel_axes(len(panels), "Estimated test log p(x) against training points (Kingma & Welling Fig. 3)",
                            width=4.2)
    for ax, (title, curves) in zip(axes, panels.items()):
        for method, curve in curves.items():
            label, colour = method_label(method)
            bars = [ERROR_BAR_STANDARD_ERRORS * s if math.isfinite(s) else 0 for s in curve["std_error"]]
            ax.errorbar(curve["points"], curve["test"], yerr=bars, fmt="o-", ms=3, color=colour, label=f"{label} test")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap on a short range
        ax.set_title(title)
        ax.set_xlabel("training points evaluated")
        ax.set_ylabel(f"log-likelihood (nats per point, $\\pm$ {ERROR_BAR_STANDARD_ERRORS} s.e.)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return fig


def manifold_lattice(tiles: int = MANIFOLD_TILES, low: float = 0.05, high: float = 0.95) -> torch.Tensor:
    """The latent values of Fig. 4's axes: N(0, 1) quantiles evenly spaced in probability, so
    each tile covers an equal share of the prior (the paper's 'linearly spaced coordinates on
    the unit square transformed through the inverse CDF of the Gaussian')."""
    return torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(low, high, tiles))


@torch.no_grad()
def manifold_image(vae, tiles: int = MANIFOLD_TILES) -> Tuple[torch.Tensor, torch.Tensor]:
    """One image of the decoded means over the ``tiles x tiles`` lattice, tiles touching
    (z_1 grows to the right, z_2 upwards), and the lattice's coordinates."""
    if vae.latent_dim != 2:
        raise PyrovaeError(f"a 2-D manifold needs a model with latent_dim 2, this one has {vae.latent_dim}")
    coords = manifold_lattice(tiles)
    z1, z2 = torch.meshgrid(coords, coords.flip(0), indexing="xy")  # row 0 is the top: the largest z_2
    device = next(vae.parameters()).device
    images = vae.decode_mean(torch.stack([z1, z2], -1).reshape(-1, 2).to(device)).cpu().float()
    return tile(images, tiles), coords


def tile(images: torch.Tensor, cols: int) -> torch.Tensor:
    """Images ``(N, C, H, W)`` (grey: C = 1) as one ``(rows * H, cols * W)`` array, no gaps."""
    n, _, h, w = images.shape
    rows = math.ceil(n / cols)
    canvas = torch.zeros(rows * h, cols * w)
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = images[i, 0]
    return canvas


def figure_4(models: Dict[str, object], path: Path, tiles: int = MANIFOLD_TILES) -> Path:
    """Fig. 4: ``models`` maps a title to a trained VAE with a 2-D latent space."""
    fig, axes = _panel_axes(len(models), "Learned 2-D manifolds (Kingma & Welling Fig. 4)", width=7.0, height=7.5)
    for ax, (title, vae) in zip(axes, models.items()):
        canvas, coords = manifold_image(vae, tiles)
        h, w = canvas.shape[0] / tiles, canvas.shape[1] / tiles
        ax.imshow(canvas.clamp(0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        every = max(1, tiles // 5)
        picks = list(range(0, tiles, every))
        ax.set_xticks([(i + 0.5) * w - 0.5 for i in picks], [f"{coords[i]:.2f}" for i in picks])
        ax.set_yticks([(i + 0.5) * h - 0.5 for i in picks], [f"{coords.flip(0)[i]:.2f}" for i in picks])
        ax.set_xlabel("$z_1$")
        ax.set_ylabel("$z_2$")
        ax.set_title(title)
    return _save(fig, path)


@torch.no_grad()
def figure_5(models: Dict[str, object], path: Path, num: int = SAMPLES_PER_MODEL, seed: int = 0) -> Path:
    """Fig. 5: ``models`` maps a title (``N_z = 5``) to a trained VAE; ``num`` samples each."""
    import pyro

    fig, axes = _panel_axes(len(models), "Random samples from learned models (Kingma & Welling Fig. 5)",
                            width=4.0, height=4.2)
    cols = math.isqrt(num)
    for ax, (title, vae) in zip(axes, models.items()):
        pyro.set_rng_seed(seed)
        canvas = tile(vae.sample(num).cpu().float(), cols)
        ax.imshow(canvas.clamp(0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    return _save(fig, path)
