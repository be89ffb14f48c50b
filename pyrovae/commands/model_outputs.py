"""What the commands that use a trained model share (``sample``, ``reconstruct``, ``encode``,
``interpolate``): opening the run, choosing points of a split, and writing the results.

Each of them writes into ``--out`` (default ``RUN/outputs``) arrays for every kind of data
(``.npz`` archives of named arrays, and ``.npy`` where one array is the result) and, for
image data, a PNG grid; every file is written atomically (:mod:`pyrovae.runs.files`). Their
Python forms return an :class:`Outputs`: the arrays by name and the files written.
"""

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..components.datasets import SPLITS, load_data
from ..errors import PyrovaeError, did_you_mean
from ..plugins import load_plugins
from ..runs.files import make_folder, write_atomic
from ..runs.loading import load_run

OUTPUTS = "outputs"  # the default folder inside the run
BATCH = 1000  # points passed through the networks at a time


@dataclass
class Outputs:
    """What a command using the model computed: ``arrays`` by name (NumPy) and the ``files``
    it wrote into ``folder``; ``outputs["loc"]`` reads an array."""

    folder: Path
    arrays: Dict[str, np.ndarray] = field(repr=False)
    files: List[Path] = field(default_factory=list)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in self.arrays.items())
        return f"Outputs('{self.folder}': {shapes}; files {', '.join(p.name for p in self.files)})"


def open_run(run_dir, device: str = "auto", plugins: Sequence[str] = ()):
    """The spec and trained VAE (best-validation parameters, in eval mode) of ``run_dir``,
    with extra ``plugins`` loaded first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PyrovaeError(f"no run folder {run_dir}; train one with 'pyrovae train CONFIG --out {run_dir}'")
    load_plugins(list(plugins))
    return load_run(run_dir, device)


def output_folder(run_dir, out) -> Path:
    """``out``, or ``RUN/outputs``, made if needed."""
    return make_folder(Path(out) if out is not None else Path(run_dir) / OUTPUTS)


def split_points(spec, split: str, points: Optional[Sequence[int]] = None,
                 count: Optional[int] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """The data ``x``, labels ``y`` (None where the data have none) and indices of the
    ``points`` of ``split`` (all of them, or the first ``count``); a training split that is
    dynamically binarized gives one seeded binarization."""
    if split not in SPLITS:
        raise PyrovaeError(f"unknown split '{split}'{did_you_mean(split, SPLITS)}; choose one of: {', '.join(SPLITS)}")
    data = load_data(spec.data)
    part = data.split(split)
    n = len(part)
    if points is not None:
        if not points:
            raise PyrovaeError("no points chosen; give indices like 3,7,42")
        if max(points) >= n:
            raise PyrovaeError(f"point {max(points)} does not exist: the {split} split has {n} points "
                               f"(indices 0 to {n - 1})")
        index = torch.tensor(list(points))
    else:
        if count is not None and count < 1:
            raise PyrovaeError(f"-n must be a positive integer, got {count}")
        index = torch.arange(n if count is None else min(count, n))
    x = part.x[index]
    if split == "train":
        x = data.training_batch(x)
    return x, None if part.y is None else part.y[index], index


def condition(vae, labels: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``labels`` where the model is conditional on them, else None."""
    return labels if vae.num_classes else None


def device_of(vae) -> torch.device:
    return next(vae.parameters()).device


@torch.no_grad()
def in_batches(function, x: torch.Tensor, y: Optional[torch.Tensor], vae) -> List[torch.Tensor]:
    """``function(x, y)`` (returning a tensor or a tuple of them) over batches of ``x`` on
    the model's device, concatenated on the CPU."""
    device = device_of(vae)
    parts = []
    for start in range(0, x.shape[0], BATCH):
        xb = x[start:start + BATCH].to(device)
        yb = None if y is None else y[start:start + BATCH].to(device)
        out = function(xb, yb)
        parts.append([t.cpu() for t in (out if isinstance(out, tuple) else (out,))])
    return [torch.cat(column) for column in zip(*parts)]


def arrays_of(**tensors) -> Dict[str, np.ndarray]:
    """Tensors (or None, left out) as NumPy arrays by name."""
    return {k: v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v)
            for k, v in tensors.items() if v is not None}


def write_npz(path: Path, arrays: Dict[str, np.ndarray]) -> Path:
    """An ``.npz`` archive of ``arrays``, written atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return write_atomic(path, buffer.getvalue())


def write_npy(path: Path, array: np.ndarray) -> Path:
    """One array as ``.npy``, written atomically."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return write_atomic(path, buffer.getvalue())


def is_image(vae) -> bool:
    """Whether the model's data are images ``(C, H, W)`` (pictures are drawn only for them)."""
    return len(vae.data_shape) == 3


def write_grid(vae, images: torch.Tensor, path: Path, title: str, ncols: int) -> List[Path]:
    """A PNG grid of ``images`` for image data (none for other data)."""
    if not is_image(vae):
        return []
    from ..reports.plots import image_grid

    return [image_grid(images.cpu(), path, title, ncols=ncols)]


def printed(outputs: Outputs) -> str:
    """The line the command line prints: what was written where."""
    return f"wrote {', '.join(str(p) for p in outputs.files)}"
