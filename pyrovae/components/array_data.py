"""The ``array`` dataset: your own data from a ``.npy`` or ``.npz`` file or a folder of images.

- ``.npy``: one array, the data.
- ``.npz``: named arrays; ``data.x`` names the data (default ``x``), ``data.y`` the optional
  integer labels (default: none).
- a folder of PNG/JPEG images, read with Pillow; images in sub-folders are labelled by their
  sub-folder's name (in sorted order: 0, 1, ...), images directly in the folder have no labels.
  Grey images give one channel, any colour image makes every image RGB.

Shapes ``(N, D)`` (vectors), ``(N, H, W)`` (grey images, given one channel) and
``(N, C, H, W)`` are accepted. ``uint8`` arrays and image files are divided by 255 (pixel
values in [0, 1]); other numbers are used as they are, and the likelihood checks that it fits
them before training, as for the built-in datasets.

The splits are either drawn from ``path`` by seeded fractions (``valid_fraction``,
``test_fraction``, ``split_seed``) or given as files (``valid_path`` and ``test_path``, with
``path`` the training split). Relative paths are found in the working directory, else in the
data root (``$PYROVAE_DATA``).
"""

import functools
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from ..errors import PyrovaeError
from .datasets import DATASETS, Source, Split, data_root

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


@DATASETS.register("array")
def array(*, path="", x="x", y="", valid_fraction=0.1, test_fraction=0.1, split_seed=0,
          valid_path="", test_path=""):
    """Your own data: a .npy or .npz file or a folder of PNG/JPEG images (labels from sub-folders)."""
    if not path:
        raise PyrovaeError("the array dataset needs data.path: a .npy or .npz file or a folder of images")
    if bool(valid_path) != bool(test_path):
        raise PyrovaeError("give both data.valid_path and data.test_path (explicit splits), or neither "
                           "(splits drawn by data.valid_fraction and data.test_fraction)")
    train = _read(_find(path), x, y)
    if valid_path:
        splits = [train, _read(_find(valid_path), x, y), _read(_find(test_path), x, y)]
        for split, where in zip(splits[1:], (valid_path, test_path)):
            if split.x.shape[1:] != train.x.shape[1:]:
                raise PyrovaeError(f"{where} holds items of shape {tuple(split.x.shape[1:])}, but {path} of "
                                   f"{tuple(train.x.shape[1:])}; the splits must agree")
            if (split.y is None) != (train.y is None):
                raise PyrovaeError(f"{where} and {path} must both have labels or both have none")
    else:
        splits = _split(train, valid_fraction, test_fraction, split_seed, path)
    labels = [s.y for s in splits if s.y is not None]
    num_classes = int(max(int(t.max()) for t in labels)) + 1 if labels else 0
    return Source(tuple(train.x.shape[1:]), num_classes, lambda root, allow_download: splits)


def _find(path: str) -> Path:
    """``path`` itself if absolute, else in the working directory, else in the data root."""
    given = Path(path).expanduser()
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, data_root(None) / given]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    raise PyrovaeError(f"array data {path} not found (looked in {' and '.join(str(c.parent) for c in candidates)}); "
                       f"set data.path to a .npy or .npz file or a folder of images")


def _read(path: Path, x_key: str, y_key: str) -> Split:
    """The data and labels at ``path`` (cached while the file is unchanged)."""
    stat = path.stat()
    return _read_cached(str(path), stat.st_mtime_ns, stat.st_size, x_key, y_key)


@functools.lru_cache(maxsize=4)
def _read_cached(path: str, mtime_ns: int, size: int, x_key: str, y_key: str) -> Split:
    p = Path(path)
    if p.is_dir():
        if y_key:
            raise PyrovaeError(f"{p} is a folder of images: its labels come from sub-folder names; remove data.y")
        x, y = _read_image_folder(p)
    elif p.suffix == ".npy":
        if y_key:
            raise PyrovaeError(f"{p} holds one array, so data.y cannot name labels in it; save an .npz with "
                               f"np.savez(file, x=images, y=labels)")
        x, y = _load_numpy(p), None
    elif p.suffix == ".npz":
        archive = _load_numpy(p)
        names = list(archive.files)
        for key, what in ((x_key, "data.x"), (y_key, "data.y")):
            if key and key not in names:
                raise PyrovaeError(f"{p} has no array '{key}' ({what}); it holds: {', '.join(names) or 'nothing'}")
        x, y = archive[x_key], (archive[y_key] if y_key else None)
    else:
        raise PyrovaeError(f"array data {p} must be a .npy or .npz file or a folder of PNG/JPEG images")
    return Split(_as_data(x, p), None if y is None else _as_labels(y, x.shape[0], p))


def _load_numpy(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise PyrovaeError(f"cannot read {path} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                           f"save it with np.save or np.savez") from None


def _as_data(x: np.ndarray, path: Path) -> torch.Tensor:
    """Data as float32 ``(N, D)`` or ``(N, C, H, W)``; uint8 divided by 255."""
    if x.dtype.kind not in "biuf":
        raise PyrovaeError(f"{path}: the data must be numbers, got dtype {x.dtype}")
    if x.ndim not in (2, 3, 4) or x.shape[0] == 0:
        raise PyrovaeError(f"{path}: the data have shape {x.shape}; give (N, D), (N, H, W) or (N, C, H, W)")
    t = torch.from_numpy(np.ascontiguousarray(x)).float()
    if x.dtype == np.uint8:
        t = t / 255
    return t.unsqueeze(1) if x.ndim == 3 else t


def _as_labels(y: np.ndarray, n: int, path: Path) -> torch.Tensor:
    if y.ndim != 1 or y.shape[0] != n:
        raise PyrovaeError(f"{path}: labels of shape {y.shape} do not match {n} data items; give one label per item")
    if y.dtype.kind not in "iu" or (y < 0).any():
        raise PyrovaeError(f"{path}: labels must be integers 0, 1, 2, ..., got dtype {y.dtype}"
                           f"{' with negative values' if y.dtype.kind in 'iu' else ''}")
    return torch.from_numpy(y.astype(np.int64))


def _read_image_folder(folder: Path) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Images directly in ``folder`` (no labels), or in its sub-folders (labelled by them)."""
    from PIL import Image

    def images_in(d: Path):
        return sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)

    classes = sorted(d for d in folder.iterdir() if d.is_dir() and images_in(d))
    loose = images_in(folder)
    if classes and loose:
        raise PyrovaeError(f"{folder} holds images both directly and in sub-folders; put every image in a "
                           f"sub-folder named by its label, or none")
    files = [(f, i) for i, d in enumerate(classes) for f in images_in(d)] if classes else [(f, 0) for f in loose]
    if not files:
        raise PyrovaeError(f"{folder} holds no PNG or JPEG images (directly or in sub-folders)")
    opened = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                im.load()
                opened.append(im.copy())
        except OSError as exc:
            raise PyrovaeError(f"cannot read image {f} ({exc}); remove or replace it") from None
    grey = all(im.mode in GREY_MODES for im in opened)
    arrays = [np.asarray(im.convert("L" if grey else "RGB")) for im in opened]
    for (f, _), a in zip(files, arrays):
        if a.shape != arrays[0].shape:
            raise PyrovaeError(f"images in {folder} differ in size ({files[0][0].name} is {arrays[0].shape[:2]}, "
                               f"{f.name} is {a.shape[:2]}); resize them to one size")
    x = np.stack(arrays)
    x = x if grey else x.transpose(0, 3, 1, 2)
    y = np.array([label for _, label in files], dtype=np.int64) if classes else None
    return x, y


def _split(data: Split, valid_fraction: float, test_fraction: float, seed: int, path: str):
    """Train, validation and test splits of ``data`` drawn by a permutation seeded with ``seed``."""
    n = len(data)
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise PyrovaeError(f"data.valid_fraction and data.test_fraction must be in (0, 1) with a sum below 1, "
                           f"got {valid_fraction} and {test_fraction}")
    n_valid, n_test = round(valid_fraction * n), round(test_fraction * n)
    if min(n_valid, n_test, n - n_valid - n_test) < 1:
        raise PyrovaeError(f"{path} holds {n} items, too few for a training, validation and test split of "
                           f"at least one each; give more data or other fractions")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = (order[n_valid + n_test:], order[:n_valid], order[n_valid:n_valid + n_test])
    return [Split(data.x[idx], None if data.y is None else data.y[idx]) for idx in parts]

