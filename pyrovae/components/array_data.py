"""The ``array`` dataset: your own data from a ``.npy`` or ``.npz`` file or a folder of images.

- ``.npy``: one array, the data.
- ``.npz``: named arrays; ``data.x`` names the data (default ``x``), ``data.y`` the optional
  integer labels (default: none).
- a folder of PNG/JPEG images, read with Pillow; images in sub-folders are labelled by their
  sub-folder's name (in sorted order: 0, 1, ...), images directly in the folder have no labels.
  Grey images give one channel, any colour image makes every image RGB. Pixels are scaled to
  [0, 1] by their bit depth: 8-bit images (grey, grey with alpha, palette, RGB, RGBA) are
  divided by 255, 16-bit grey images by 65535; images whose scale is unknown (floating-point
  pixels, 32-bit integers beyond 16 bits) are refused.

Shapes ``(N, D)`` (vectors), ``(N, H, W)`` (grey images, given one channel) and
``(N, C, H, W)`` are accepted. With ``scale: auto`` (the default) ``uint8`` arrays are divided
by 255 (pixel values in [0, 1]); with ``scale: none`` every value is kept as it is, so integer
data stay integers (count data, for the ``poisson`` and ``binomial`` likelihoods); other numbers
are used as they are either way, and the likelihood checks that it fits them before
training, as for the built-in datasets. NaN, infinite values and values beyond float32's
range are refused, naming the file and the item's index in it. A ``.npy`` or ``.npz`` file
is read by its content, whatever its suffix says; arrays of Python objects are refused
without unpickling them (unpickling can run code). Labels are class numbers 0, 1, ..., K-1
with K at most :data:`MAX_CLASSES` (the model's one-hot input grows with K).

The splits are either drawn from ``path`` by seeded fractions (``valid_fraction``,
``test_fraction``, ``split_seed``) or given as files (``valid_path`` and ``test_path``, with
``path`` the training split). Relative paths are found in the working directory, else in the
data root (``$PYROVAE_DATA``).
"""

import functools
import zipfile
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from ..errors import PyrovaeError
from .datasets import DATASETS, Source, Split, data_root

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
EIGHT_BIT_GREY_MODES = ("1", "L", "LA", "La")
# Pillow's 16-bit grey modes; older Pillow versions open a 16-bit grey PNG as mode I
SIXTEEN_BIT_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
SIXTEEN_BIT_MAX = 65535
MAX_CLASSES = 10000
NUMPY_MAGIC = (b"\x93NUMPY", b"PK\x03\x04")  # how .npy files and .npz archives (zip files) begin


@DATASETS.register("array")
def array(*, path="", x="x", y="", valid_fraction=0.1, test_fraction=0.1, split_seed=0,
          valid_path="", test_path="", scale="auto"):
    """Your own data: a .npy or .npz file or a folder of PNG/JPEG images (labels from sub-folders);
    scale: auto divides uint8 arrays by 255, none keeps every value (integer counts)."""
    check_scale(scale)
    if not path:
        raise PyrovaeError("the array dataset needs data.path: a .npy or .npz file or a folder of images")
    if bool(valid_path) != bool(test_path):
        raise PyrovaeError("give both data.valid_path and data.test_path (explicit splits), or neither "
                           "(splits drawn by data.valid_fraction and data.test_fraction)")
    train = _read(_find(path), x, y, scale)
    if valid_path:
        splits = [train, _read(_find(valid_path), x, y, scale), _read(_find(test_path), x, y, scale)]
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
    folder = _find(path)
    names = tuple(d.name for d in _class_folders(folder)) if folder.is_dir() and num_classes else ()
    return Source(tuple(train.x.shape[1:]), num_classes, lambda root, allow_download: splits, class_names=names)


def in_memory_arrays(data, labels=None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Data given in memory as NumPy arrays ``(x, y)`` (``y`` None without labels): a tensor or an
    array (labels in ``labels``), a pair ``(x, y)``, a torch ``Dataset`` whose items are ``x`` or
    ``(x, y)`` (all read once), or a ``DataLoader`` (its dataset). Values keep their dtype, so the
    ``array`` dataset treats them as it treats a file (``uint8`` scaled to [0, 1] by default)."""
    import torch.utils.data as tud

    if isinstance(data, tud.DataLoader):
        data = data.dataset
    if isinstance(data, (tuple, list)) and len(data) == 2 and labels is None:
        data, labels = data
    if isinstance(data, tud.Dataset) and not torch.is_tensor(data):
        data, found = _dataset_items(data)
        labels = found if labels is None else labels
    x = _numpy(data, "data")
    y = None if labels is None else _numpy(labels, "labels")
    return x, y


def _dataset_items(dataset) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Every item of a map-style torch ``Dataset``, stacked: the data and (if items are pairs) labels."""
    try:
        items = [dataset[i] for i in range(len(dataset))]
    except TypeError:
        raise PyrovaeError("the dataset has no length or no indexing (an IterableDataset); give a map-style "
                           "torch Dataset, a tensor or an array") from None
    if not items:
        raise PyrovaeError("the dataset is empty; give at least three items (training, validation and test)")
    pairs = isinstance(items[0], (tuple, list))
    x = torch.stack([torch.as_tensor(item[0] if pairs else item) for item in items])
    y = torch.as_tensor([int(item[1]) for item in items]) if pairs and len(items[0]) > 1 else None
    return x, y


def _numpy(value, what: str) -> np.ndarray:
    """A tensor or array-like as a NumPy array; anything else is a one-line error."""
    if torch.is_tensor(value):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise PyrovaeError(f"the {what} must be a torch tensor, a NumPy array, a torch Dataset or a DataLoader, got "
                       f"a {type(value).__name__}")


def _find(path: str) -> Path:
    """``path`` itself if absolute, else in the working directory, else in the data root."""
    given = Path(path).expanduser()
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, data_root(None) / given]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    raise PyrovaeError(f"array data {path} not found (looked in {' and '.join(str(c.parent) for c in candidates)}); "
                       f"set data.path to a .npy or .npz file or a folder of images")


SCALES = ("auto", "none")


def check_scale(scale: str) -> str:
    """``data.scale`` if it is one of :data:`SCALES`."""
    if scale not in SCALES:
        raise PyrovaeError(f"data.scale must be auto (uint8 divided by 255) or none (values kept), got {scale!r}")
    return scale


def read_items(path, scale: str = "auto") -> Split:
    """The items of a ``.npy``/``.npz`` file (its ``x``, and its ``y`` as labels where it has one)
    or a folder of images, read as ``data.path`` is (with ``data.scale``): data to give a trained
    model."""
    found = _find(str(path))
    has_labels = found.is_file() and zipfile.is_zipfile(found) and "y.npy" in zipfile.ZipFile(found).namelist()
    return _read(found, "x", "y" if has_labels else "", check_scale(scale))


def _read(path: Path, x_key: str, y_key: str, scale: str) -> Split:
    """The data and labels at ``path`` (cached while the file is unchanged)."""
    stat = path.stat()
    return _read_cached(str(path), stat.st_mtime_ns, stat.st_size, x_key, y_key, scale)


@functools.lru_cache(maxsize=4)
def _read_cached(path: str, mtime_ns: int, size: int, x_key: str, y_key: str, scale: str) -> Split:
    p = Path(path)
    if p.is_dir():
        if y_key:
            raise PyrovaeError(f"{p} is a folder of images: its labels come from sub-folder names; remove data.y")
        if scale == "none":
            raise PyrovaeError(f"{p} is a folder of images, whose pixels are scaled by their bit depth; data.scale=none "
                               f"keeps the values of .npy/.npz files (save the images' values with np.save)")
        x, y = _read_image_folder(p)
    elif p.suffix in (".npy", ".npz"):
        x, y = _load_numpy(p, x_key, y_key)
    else:
        raise PyrovaeError(f"array data {p} must be a .npy or .npz file or a folder of PNG/JPEG images")
    return Split(_as_data(x, p, scale), None if y is None else _as_labels(y, x.shape[0], p))


def _load_numpy(path: Path, x_key: str, y_key: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """The data and labels in the numpy file ``path``, told apart by its content rather
    than its suffix: an ``.npy`` file holds the data alone, an ``.npz`` archive names them."""
    try:
        with open(path, "rb") as f:
            if not f.read(6).startswith(NUMPY_MAGIC):  # np.load would try to unpickle it
                raise PyrovaeError(f"cannot read {path} (neither an .npy file nor an .npz archive); "
                                   f"save it with np.save or np.savez")
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            if y_key:
                raise PyrovaeError(f"{path} holds one array, so data.y cannot name labels in it; save an .npz "
                                   f"with np.savez(file, x=images, y=labels)")
            return loaded, None
        with loaded:
            names = list(loaded.files)
            for key, what in ((x_key, "data.x"), (y_key, "data.y")):
                if key and key not in names:
                    raise PyrovaeError(f"{path} has no array '{key}' ({what}); it holds: {', '.join(names) or 'nothing'}")
            return loaded[x_key], (loaded[y_key] if y_key else None)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: Exception) -> PyrovaeError:
    """The one-line error for a numpy file ``np.load`` could not read."""
    if "allow_pickle" in str(exc):
        return PyrovaeError(f"{path} holds Python objects (an array of dtype object), which pyrovae does not unpickle "
                            f"(unpickling can run code); save numbers, e.g. np.save(file, np.asarray(data, float))")
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return PyrovaeError(f"cannot read {path} ({reason}); save it with np.save or np.savez")


def _as_data(x: np.ndarray, path: Path, scale: str) -> torch.Tensor:
    """Data as float32 ``(N, D)`` or ``(N, C, H, W)``; uint8 divided by 255 unless ``scale`` is none."""
    if x.dtype.kind not in "biuf":
        raise PyrovaeError(f"{path}: the data must be numbers, got dtype {x.dtype}")
    if x.ndim not in (2, 3, 4) or x.shape[0] == 0:
        raise PyrovaeError(f"{path}: the data have shape {x.shape}; give (N, D), (N, H, W) or (N, C, H, W)")
    _check_float32_values(x, path)
    t = torch.from_numpy(np.ascontiguousarray(x)).float()
    if x.dtype == np.uint8 and scale == "auto":
        t = t / 255
    return t.unsqueeze(1) if x.ndim == 3 else t


def _check_float32_values(x: np.ndarray, path: Path) -> None:
    """Refuse NaN and infinite values, and values float32 (what pyrovae computes in) would
    turn into infinities, naming the first such item by its index in the file ``path``."""
    if x.dtype.kind != "f":
        return  # every integer up to 64 bits is finite in float32
    items = x.reshape(x.shape[0], -1)
    _refuse_items(~np.isfinite(items).all(1), path, "holds NaN or infinite values", "replace or remove them")
    if x.dtype.itemsize > 4:
        limit = np.finfo(np.float32).max
        _refuse_items((np.abs(items) > limit).any(1), path, f"holds values beyond ±{limit:.3g}, the range of "
                      f"float32 that pyrovae computes in", "rescale the data")


def _refuse_items(bad: np.ndarray, path: Path, what: str, remedy: str) -> None:
    """An error naming the first item of ``path`` flagged in ``bad`` (one flag per item), if any."""
    if bad.any():
        count = int(bad.sum())
        raise PyrovaeError(f"item {int(bad.argmax())} of {path} {what} ({count} item{'s' * (count > 1)}); "
                           f"{remedy}")


def _as_labels(y: np.ndarray, n: int, path: Path) -> torch.Tensor:
    if y.ndim != 1 or y.shape[0] != n:
        raise PyrovaeError(f"{path}: labels of shape {y.shape} do not match {n} data items; give one label per item")
    if y.dtype.kind not in "iu" or (y < 0).any():
        raise PyrovaeError(f"{path}: labels must be integers 0, 1, 2, ..., got dtype {y.dtype}"
                           f"{' with negative values' if y.dtype.kind in 'iu' else ''}")
    if (y >= MAX_CLASSES).any():  # before the model sizes a one-hot input by the largest label
        item = int((y >= MAX_CLASSES).argmax())
        raise PyrovaeError(f"label {int(y[item])} of item {item} in {path} is not a class number: pyrovae takes at "
                           f"most {MAX_CLASSES} classes, numbered 0, 1, ..., K-1; number the classes from 0")
    return torch.from_numpy(y.astype(np.int64))


def _images_in(folder: Path) -> list:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(folder: Path) -> list:
    """The sub-folders of ``folder`` holding images: the classes 0, 1, ... in this order."""
    return sorted(d for d in folder.iterdir() if d.is_dir() and _images_in(d))


def _read_image_folder(folder: Path) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Images directly in ``folder`` (no labels), or in its sub-folders (labelled by them)."""
    classes = _class_folders(folder)
    loose = _images_in(folder)
    if classes and loose:
        raise PyrovaeError(f"{folder} holds images both directly and in sub-folders; put every image in a "
                           f"sub-folder named by its label, or none")
    files = [(f, i) for i, d in enumerate(classes) for f in _images_in(d)] if classes else [(f, 0) for f in loose]
    if not files:
        raise PyrovaeError(f"{folder} holds no PNG or JPEG images (directly or in sub-folders)")
    pixels = [_image_pixels(f) for f, _ in files]
    grey = all(a.ndim == 2 for a in pixels)
    if not grey:  # any colour image makes every image RGB
        pixels = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in pixels]
    for (f, _), a in zip(files, pixels):
        if a.shape != pixels[0].shape:
            raise PyrovaeError(f"images in {folder} differ in size ({files[0][0].name} is {pixels[0].shape[:2]}, "
                               f"{f.name} is {a.shape[:2]}); resize them to one size")
    x = np.stack(pixels)
    x = x if grey else x.transpose(0, 3, 1, 2)
    y = np.array([label for _, label in files], dtype=np.int64) if classes else None
    return x, y


def _image_pixels(path: Path) -> np.ndarray:
    """The pixels of the image file ``path`` as float32 in [0, 1], scaled by its bit depth:
    ``(H, W)`` for grey images, ``(H, W, 3)`` for colour ones (alpha channels dropped)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in EIGHT_BIT_GREY_MODES:
                return np.asarray(im.convert("L"), dtype=np.float32) / 255
            if im.mode in SIXTEEN_BIT_GREY_MODES:
                return _sixteen_bit(np.asarray(im), path, im.mode)
            if im.mode == "F":
                raise PyrovaeError(f"image {path} holds floating-point pixels (mode F) whose range is unknown; "
                                   f"save it as an 8- or 16-bit PNG, or give the data as a .npy file")
            return np.asarray(im.convert("RGB"), dtype=np.float32) / 255
    except (OSError, ValueError) as exc:  # Pillow raises ValueError for modes it cannot convert
        raise PyrovaeError(f"cannot read image {path} ({exc}); remove or replace it") from None


def _sixteen_bit(values: np.ndarray, path: Path, mode: str) -> np.ndarray:
    """16-bit grey ``values`` divided by 65535; integers outside 16 bits have no known scale."""
    if values.min() < 0 or values.max() > SIXTEEN_BIT_MAX:
        raise PyrovaeError(f"image {path} holds integers (mode {mode}) outside 0 to {SIXTEEN_BIT_MAX}, so their "
                           f"scale is unknown; save it as an 8- or 16-bit PNG, or give the data as a .npy file")
    return values.astype(np.float32) / SIXTEEN_BIT_MAX


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

