"""Figures of a run: training curves, sample quality by epoch, image grids (grey or colour), the
latent space (2-D, 3-D, or a 2-D PCA projection of more) and the manifold.

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


def quality_curves(rows: Sequence[dict], path: Path) -> Path:
    """Sample quality against epoch (the epochs it was measured at): the Fréchet distance with
    the test split's floor, and precision and recall."""
    rows = [r for r in rows if r.get("frechet") not in (None, "")]
    epochs = [int(r["epoch"]) for r in rows]
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [float(r["frechet"]) for r in rows], "o-", label="samples")
    floors = [float(r["frechet_floor"]) for r in rows if r.get("frechet_floor") not in (None, "")]
    if floors:
        left.axhline(floors[-1], color="grey", ls="--", label="test split (floor)")
    left.set_yscale("log")
    left.set_ylabel("Fréchet distance")
    right.plot(epochs, [float(r["precision"]) for r in rows], "o-", label="precision")
    right.plot(epochs, [float(r["recall"]) for r in rows], "s-", label="recall")
    right.set_ylim(0, 1)
    for ax in (left, right):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("sample quality during training")
    return save_figure(fig, path)


def _as_picture(image: torch.Tensor) -> torch.Tensor:
    """``(C, H, W)`` as matplotlib shows it: ``(H, W)`` grey or ``(H, W, 3)`` colour."""
    return image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)


def image_grid(images: torch.Tensor, path: Path, title: str, ncols: int = 10) -> Path:
    """A grid of images shaped ``(N, C, H, W)`` (grey when C = 1, colour when C = 3), values in [0, 1]."""
    images = images.detach().float().clamp(0, 1).cpu()
    n = images.shape[0]
    nrows = (n + ncols - 1) // ncols
    h, w = images.shape[-2:]
    inches = min(1 / 20, 1.4 / max(h, w))  # per pixel: 20 pixels an inch, at most 1.4 inches an image
    plt = pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * w * inches, nrows * h * inches + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_as_picture(images[i]), cmap="gray", vmin=0, vmax=1)
    fig.suptitle(title)
    return save_figure(fig, path)


def pca_projection(points: torch.Tensor) -> tuple:
    """``points`` ``(N, D)`` projected on their first two principal axes, and the fraction of
    the variance those two axes hold."""
    centred = points.double() - points.double().mean(0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    share = float(singular[:2].square().sum() / singular.square().sum())
    return (centred @ vh[:2].T).float(), share


def latent_scatter(means: torch.Tensor, labels: Optional[torch.Tensor], path: Path,
                   class_names: Sequence[str] = ()) -> Path:
    """Posterior means in the latent space, coloured by label where labels exist, with a legend
    of the classes' names (their numbers where the names are unknown): drawn in 2-D for two
    dimensions, in 3-D for three, and as a PCA projection (saying so) for more."""
    means = means.detach().cpu().float()
    dims = means.shape[1]
    plt = pyplot()
    title = "test set: means of q(z|x)"
    if dims == 3:
        fig = plt.figure(figsize=(6, 5.5))
        ax = fig.add_subplot(projection="3d")
        axes = ["z[0]", "z[1]", "z[2]"]
    else:
        fig, ax = plt.subplots(figsize=(5, 4.5))
        axes = ["z[0]", "z[1]"]
        if dims > 2:
            means, share = pca_projection(means)
            axes = ["first principal axis", "second principal axis"]
            title += f"\nPCA projection of {dims} dimensions to 2 ({share:.0%} of the variance)"
    columns = [means[:, i] for i in range(means.shape[1])]
    if labels is None:
        ax.scatter(*columns, s=3, alpha=0.7)
    else:
        labels = labels.cpu()
        colours = plt.get_cmap("tab10" if int(labels.max()) < 10 else "tab20")
        for k in sorted(set(labels.tolist())):
            chosen = labels == k
            name = class_names[k] if k < len(class_names) else str(k)
            ax.scatter(*(c[chosen] for c in columns), s=3, alpha=0.7, color=colours(k % colours.N), label=name)
        ax.legend(markerscale=4, fontsize="small", loc="center left", bbox_to_anchor=(1.15 if dims == 3 else 1.02, 0.5),
                  title="label")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    if dims == 3:
        ax.set_zlabel(axes[2])
    ax.set_title(title)
    return save_figure(fig, path)


def tile(images: torch.Tensor, ncols: int) -> torch.Tensor:
    """Images ``(N, C, H, W)`` (N a multiple of ``ncols``) laid edge to edge as one picture,
    row by row: ``(rows * H, ncols * W)`` for grey images, ``(rows * H, ncols * W, 3)`` for colour."""
    images = images.detach().float().clamp(0, 1).cpu()
    c, h, w = images.shape[-3:]
    picture = images.reshape(-1, ncols, c, h, w).permute(0, 3, 1, 4, 2).reshape(-1, ncols * w, c)
    return picture[..., 0] if c == 1 else picture


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
