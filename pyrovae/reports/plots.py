"""Figures of a run: training curves, image grids, the 2-D latent space and manifold.

Every function writes one PNG and returns its path. Matplotlib runs headless (Agg) and is
imported on first use, so that importing pyrovae (and ``pyrovae --help``) stays cheap.
"""

import io
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..runs.files import make_folder, write_atomic


def pyplot():
    """``matplotlib.pyplot`` with the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, crop: bool = True) -> Path:
    """Render ``fig`` and write it to ``path`` atomically (a figure is complete or absent);
    ``crop`` trims the margins (``crop=False`` keeps the figure's own size)."""
    plt = pyplot()
    path = Path(path)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight" if crop else None)
    finally:
        plt.close(fig)
    make_folder(path.parent)
    return write_atomic(path, buffer.getvalue())


def training_curves(rows: Sequence[dict], path: Path) -> Path:
    """Train and validation ELBO (nats per data point) against epoch."""
    epochs = [int(r["epoch"]) for r in rows]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(epochs, [float(r["train_elbo"]) for r in rows], "o-", label="train (running, during epoch)")
    ax.plot(epochs, [float(r["valid_elbo"]) for r in rows], "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats per data point)")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def image_grid(images: torch.Tensor, path: Path, title: str, ncols: int = 10) -> Path:
    """A grid of images shaped ``(N, C, H, W)`` (grey when C = 1), values in [0, 1]."""
    images = images.detach().float().clamp(0, 1).cpu()
    n = images.shape[0]
    nrows = (n + ncols - 1) // ncols
    h, w = images.shape[-2:]
    plt = pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * w / 20, nrows * h / 20 + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].permute(1, 2, 0).squeeze(-1), cmap="gray", vmin=0, vmax=1)
    fig.suptitle(title)
    return save_figure(fig, path)


def latent_scatter(means: torch.Tensor, labels: Optional[torch.Tensor], path: Path) -> Path:
    """Posterior means of a 2-D latent space, coloured by label where labels exist."""
    means = means.detach().cpu()
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    if labels is None:
        ax.scatter(means[:, 0], means[:, 1], s=3, alpha=0.7)
    else:
        points = ax.scatter(means[:, 0], means[:, 1], c=labels.cpu(), cmap="tab10", s=3, alpha=0.7)
        fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title("test set: means of q(z|x)")
    return save_figure(fig, path)


def tile(images: torch.Tensor, ncols: int) -> torch.Tensor:
    """Images ``(N, C, H, W)`` (N a multiple of ``ncols``) laid edge to edge as one
    ``(rows * H, ncols * W)`` grey picture, row by row."""
    images = images.detach().float().clamp(0, 1).cpu()[:, 0]
    h, w = images.shape[-2:]
    return images.reshape(-1, ncols, h, w).permute(0, 2, 1, 3).reshape(-1, ncols * w)


def manifold(images: torch.Tensor, coords: torch.Tensor, path: Path, title: str = "decoded manifold") -> Path:
    """The decoded images of a lattice of latent points (paper Fig. 4), tiled without gaps.

    ``images`` are ordered row by row for z = (coords[j], coords.flip(0)[i]): z[0] grows to
    the right, z[1] upwards; the axes carry those z values at the tiles' centres."""
    coords = coords.detach().cpu()
    grid = coords.numel()
    picture = tile(images, grid)
    fig, ax = pyplot().subplots(figsize=(6, 6))
    ax.imshow(picture, cmap="gray", vmin=0, vmax=1)
    h, w = images.shape[-2:]
    ax.set_xticks([(j + 0.5) * w - 0.5 for j in range(grid)], [f"{round(v, 2) + 0.0:.2f}" for v in coords.tolist()], rotation=90)
    ax.set_yticks([(i + 0.5) * h - 0.5 for i in range(grid)], [f"{round(v, 2) + 0.0:.2f}" for v in coords.flip(0).tolist()])
    ax.set_xlabel("z[0] (latent units)")
    ax.set_ylabel("z[1] (latent units)")
    ax.set_title(title)
    return save_figure(fig, path)
