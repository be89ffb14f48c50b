"""Datasets: where their files are looked for, how they are read, and how they are split.

The data root is ``data.root``, else ``$PYROVAE_DATA``, else ``~/.cache/pyrovae``. Files
are read in their publishers' formats. Missing files are downloaded (with checksums)
only when ``data.download`` is true; otherwise the error names the folder searched and
how to get the files. Other data is never substituted.

Every dataset yields float32 tensors shaped ``(N, *data_shape)`` with values in [0, 1]
for images (``(N, channels, height, width)``), plus integer labels where they exist.
"""

import dataclasses
import gzip
import os
import shutil
import struct
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ..digests import file_digest
from ..errors import PyrovaeError
from ..registry import Registry

DATASETS = Registry("dataset")
SPLITS = ("train", "valid", "test")


@dataclass
class Split:
    x: torch.Tensor
    y: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def __repr__(self) -> str:
        labels = "with labels" if self.y is not None else "no labels"
        return f"Split({len(self)} items of shape {tuple(self.x.shape[1:])}, {labels})"


@dataclass
class Dataset:
    """Three splits of one dataset. With dynamic binarization ``train`` holds the grey
    values and each minibatch is binarized afresh (:meth:`training_batch`)."""

    name: str
    data_shape: Tuple[int, ...]
    num_classes: int
    train: Split
    valid: Split
    test: Split
    dynamic_binarization: bool = False
    extras: Dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    class_names: Tuple[str, ...] = ()  # label i's name, where known (legends of figures)

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise PyrovaeError(f"unknown split '{name}'; choose one of: {', '.join(SPLITS)}")
        return getattr(self, name)

    def limited(self, train_size: Optional[int]) -> "Dataset":
        """This dataset with only the first ``train_size`` training points (all if None)."""
        if train_size is None or train_size >= len(self.train):
            return self
        t = self.train
        train = Split(t.x[:train_size], None if t.y is None else t.y[:train_size])
        return dataclasses.replace(self, train=train)

    def training_batch(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(x) if self.dynamic_binarization else x


@dataclass
class Source:
    """What a registered dataset is before it is loaded: its shape, label count and a
    loader ``load(root, download) -> (train, valid, test)``; optionally the labels' names."""

    data_shape: Tuple[int, ...]
    num_classes: int
    load: object
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)
    class_names: Tuple[str, ...] = ()


# ----------------------------------------------------------------------------- file access

def data_root(root: Optional[str]) -> Path:
    return Path(root or os.environ.get("PYROVAE_DATA") or Path.home() / ".cache" / "pyrovae").expanduser()


def download(url: str, target: Path, md5: str) -> Path:
    """Fetch ``url`` to ``target`` through a temporary file, verifying its md5."""
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading {url} -> {target}")
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                shutil.copyfileobj(response, tmp)
        except OSError as exc:
            os.unlink(tmp.name)
            raise PyrovaeError(f"could not download {url}: {exc}; fetch it by hand into {target.parent}") from None
    got = file_digest(Path(tmp.name), "md5")
    if got != md5:
        os.unlink(tmp.name)
        raise PyrovaeError(f"download of {url} has md5 {got}, expected {md5}; try again later")
    os.replace(tmp.name, target)
    return target


def find_file(folders: Sequence[Path], names: Sequence[str]) -> Optional[Path]:
    """The first existing ``folder/name``, trying every name in every folder."""
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def missing(dataset: str, what: str, folders: Sequence[Path], how: str) -> PyrovaeError:
    where = ", ".join(str(f) for f in folders)
    return PyrovaeError(f"{dataset}: {what} not found (looked in {where}); {how}")


def read_bytes(path: Path) -> bytes:
    """The content of ``path``, decompressed if it ends in ``.gz``; a truncated or corrupt
    gzip file is a one-line error."""
    try:
        if path.suffix != ".gz":
            return path.read_bytes()
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise PyrovaeError(f"{path} is a damaged gzip file ({str(exc) or type(exc).__name__}); "
                           f"delete it and fetch it again") from None
    except OSError as exc:
        raise PyrovaeError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format), gzipped or not, as a uint8 array."""
    raw = read_bytes(path)
    if len(raw) < 4:
        raise PyrovaeError(f"{path} is not an IDX file (only {len(raw)} bytes); delete it and fetch it again")
    magic, = struct.unpack(">I", raw[:4])
    dtype_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if magic >> 16 != 0 or dtype_code != 0x08 or ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise PyrovaeError(f"{path} is not an IDX file of unsigned bytes (wrong header); "
                           f"delete it and fetch it again")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise PyrovaeError(f"{path} is truncated ({data.size} of {int(np.prod(shape))} values); fetch it again")
    return data.reshape(shape)


def read_amat(path: Path, width: int = 784) -> np.ndarray:
    """A binarized-MNIST ``.amat`` text file: one line of ``width`` space-separated 0/1
    values per image. Every line is checked: a line with too few or too many values, or a
    value other than 0 or 1 (a NaN, a grey level), is an error naming the line."""
    chars = np.frombuffer(read_bytes(path), dtype=np.uint8)
    images = _canonical_amat(chars, width)
    if images is not None:
        return images
    if chars.size == 0:
        raise PyrovaeError(f"{path} is empty (no images); delete it and fetch it again")
    lines = np.frombuffer(b"\n", dtype=np.uint8)
    if chars[-1] != lines[0]:
        chars = np.concatenate([chars, lines])  # a last line without its newline
    digit = (chars == ord("0")) | (chars == ord("1"))
    blank = (chars == ord(" ")) | (chars == ord("\t")) | (chars == ord("\r")) | (chars == lines[0])
    if not (digit | blank).all():
        bad = int(np.argmin(digit | blank))
        line = int(np.count_nonzero(chars[:bad] == lines[0])) + 1
        raise PyrovaeError(f"{path} line {line} holds something other than 0 and 1 values (a NaN or a grey "
                           f"level); it is not a binarized MNIST file: delete it and fetch it again")
    # values are single digits separated by blanks: a value starts where a digit follows a blank
    starts = digit & np.concatenate([[True], blank[:-1]])
    if np.count_nonzero(starts) != np.count_nonzero(digit):
        raise PyrovaeError(f"{path} holds values other than 0 and 1; delete it and fetch it again")
    line_starts = np.concatenate([[0], np.flatnonzero(chars == lines[0])[:-1] + 1])
    per_line = np.add.reduceat(starts.view(np.uint8), line_starts, dtype=np.int64)
    per_line = per_line[per_line > 0]  # empty lines carry no image
    wrong = np.flatnonzero(per_line != width)
    if per_line.size == 0 or wrong.size:
        detail = (f"image {int(wrong[0]) + 1} has {int(per_line[wrong[0]])} values" if wrong.size else "no images")
        raise PyrovaeError(f"{path} is not a binarized MNIST file ({detail}, every line needs {width}); "
                           f"delete it and fetch it again")
    return chars[digit].reshape(-1, width) - ord("0")


def _canonical_amat(chars: np.ndarray, width: int) -> Optional[np.ndarray]:
    """The images of an ``.amat`` file in the publishers' exact layout (``width`` digits
    separated by single spaces, one newline per image), checked on strided views without
    a pass per character; None for any other content (checked line by line instead)."""
    if chars.size == 0 or chars.size % (2 * width):
        return None
    grid = chars.reshape(-1, 2 * width)
    separators = grid[:, 1::2]
    if not ((separators[:, :-1] == ord(" ")).all() and (separators[:, -1] == ord("\n")).all()):
        return None
    digits = grid[:, 0::2] - np.uint8(ord("0"))
    return digits if bool((digits <= 1).all()) else None


# ----------------------------------------------------------------------------- datasets

LAROCHELLE = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{}.amat"
LAROCHELLE_MD5 = {"train": "db28b1a6ae0fe70cbd3da91acf46e477",
                  "valid": "bf37822a04e94123630de6a7dfd9c9ef",
                  "test": "14e41ae11040adba6ab8cb291eda0dd8"}


@DATASETS.register("binarized_mnist")
def binarized_mnist():
    """Static binarized MNIST (Larochelle & Murray 2011): 50000/10000/10000, no labels."""

    def load(root: Path, allow_download: bool):
        folder = root / "binarized_mnist"
        splits = []
        for split in SPLITS:
            stem = f"binarized_mnist_{split}.amat"
            path = find_file([folder], [stem, stem + ".gz"])
            if path is None and allow_download:
                path = download(LAROCHELLE.format(split), folder / stem, LAROCHELLE_MD5[split])
            if path is None:
                raise missing("binarized_mnist", f"{stem}[.gz]", [folder],
                              "set data.root or PYROVAE_DATA to a folder holding binarized_mnist/, "
                              "or set data.download=true")
            images = torch.from_numpy(read_amat(path)).float().reshape(-1, 1, 28, 28)
            splits.append(Split(images))
        return splits

    return Source((1, 28, 28), 0, load)


def _idx_dataset(name: str, folders_of, torchvision_class: str, class_names: Tuple[str, ...]):
    """MNIST-layout data: 60000 training images (the last 10000 become validation)
    and 10000 test images, with labels; downloads through torchvision."""

    def load(root: Path, allow_download: bool):
        folders = folders_of(root)
        files = {}
        for part in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            path = find_file(folders, [part, part + ".gz"])
            if path is None and allow_download:
                import torchvision.datasets as tvd

                getattr(tvd, torchvision_class)(str(root), train=part.startswith("train"), download=True)
                path = find_file(folders, [part, part + ".gz"])
            if path is None:
                raise missing(name, f"{part}[.gz]", folders,
                              "set data.root or PYROVAE_DATA to a folder holding them, or set data.download=true")
            files[part] = read_idx(path)
        images = torch.from_numpy(files["train-images-idx3-ubyte"].copy()).float().div_(255).unsqueeze(1)
        labels = torch.from_numpy(files["train-labels-idx1-ubyte"].astype(np.int64))
        test_x = torch.from_numpy(files["t10k-images-idx3-ubyte"].copy()).float().div_(255).unsqueeze(1)
        test_y = torch.from_numpy(files["t10k-labels-idx1-ubyte"].astype(np.int64))
        return [Split(images[:-10000], labels[:-10000]), Split(images[-10000:], labels[-10000:]),
                Split(test_x, test_y)]

    return Source((1, 28, 28), 10, load, class_names=class_names)


@DATASETS.register("mnist")
def mnist():
    """Grey MNIST digits with labels (50000/10000/10000); binarize with data.binarize."""
    return _idx_dataset("mnist", lambda root: [root / "mnist", root / "MNIST" / "raw", root / "mnist_test"],
                        "MNIST", tuple(str(d) for d in range(10)))


FASHION_SYSTEM_FOLDER = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


@DATASETS.register("fashion_mnist")
def fashion_mnist():
    """Fashion-MNIST grey 28 x 28 clothing images with labels (50000/10000/10000)."""
    return _idx_dataset("fashion_mnist",
                        lambda root: [root / "fashion_mnist", root / "FashionMNIST" / "raw", FASHION_SYSTEM_FOLDER],
                        "FashionMNIST", FASHION_CLASSES)


FREY_URL = "https://cs.nyu.edu/~roweis/data/frey_rawface.mat"
FREY_MD5 = "b13037f5443cf1bcea69ab96ee6a4dec"
FREY_HELD_OUT = 200  # images in each of the validation and test splits


@DATASETS.register("frey_faces")
def frey_faces():
    """Frey Faces: 1965 grey 28 x 20 faces, fixed split 1565/200/200, pixel values k/255."""

    def load(root: Path, allow_download: bool):
        from scipy.io import loadmat

        folder = root / "frey_faces"
        path = find_file([folder], ["frey_rawface.mat"])
        if path is None and allow_download:
            path = download(FREY_URL, folder / "frey_rawface.mat", FREY_MD5)
        if path is None:
            raise missing("frey_faces", "frey_rawface.mat", [folder],
                          "set data.root or PYROVAE_DATA to a folder holding frey_faces/, or set data.download=true")
        try:
            faces = np.asarray(loadmat(str(path))["ff"], dtype=np.float32)
        except Exception as exc:  # scipy raises several types for corrupt files
            raise PyrovaeError(f"cannot read {path} ({exc}); delete it and fetch it again") from None
        if faces.ndim != 2 or faces.shape[0] != 28 * 20:
            raise PyrovaeError(f"{path} holds an array of shape {faces.shape}, not 560-pixel faces in columns; "
                               f"delete it and fetch it again")
        images = torch.from_numpy(faces.T.astype(np.float32) / 255).reshape(-1, 1, 28, 20)
        order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))
        images = images[order]
        n = FREY_HELD_OUT
        return [Split(images[2 * n:]), Split(images[:n]), Split(images[n:2 * n])]

    return Source((1, 28, 20), 0, load)


@DATASETS.register("linear_gaussian")
def linear_gaussian(*, num_points=3000, data_dim=5, latent_dim=2, noise=0.5, data_seed=0):
    """Synthetic x = W z + b + noise with known W, b, sigma, for closed-form checks."""
    gen = torch.Generator().manual_seed(data_seed)
    weight = torch.randn(data_dim, latent_dim, generator=gen)
    bias = torch.randn(data_dim, generator=gen)
    truth = {"weight": weight, "bias": bias, "noise": torch.tensor(float(noise))}

    def load(root: Path, allow_download: bool):
        z = torch.randn(num_points, latent_dim, generator=gen)
        x = z @ weight.T + bias + noise * torch.randn(num_points, data_dim, generator=gen)
        n_held = num_points // 10
        return [Split(x[2 * n_held:]), Split(x[:n_held]), Split(x[n_held:2 * n_held])]

    return Source((data_dim,), 0, load, truth)


# ----------------------------------------------------------------------------- entry points

def data_info(spec) -> Tuple[Tuple[int, ...], int]:
    """``(data_shape, num_classes)`` of the dataset a :class:`DataSpec` names, without loading."""
    source = DATASETS.build(spec.name, options=spec.options, where="data")
    return source.data_shape, source.num_classes


def load_data(spec) -> Dataset:
    """Load the splits a :class:`~pyrovae.spec.DataSpec` describes, binarized as asked."""
    source: Source = DATASETS.build(spec.name, options=spec.options, where="data")
    train, valid, test = source.load(data_root(spec.root), spec.download)
    dynamic = spec.binarize == "dynamic"
    if spec.binarize != "none":
        gen = torch.Generator().manual_seed(0)  # the same static binarization in every run
        _check_unit_interval(spec.name, train.x)
        valid, test = (Split(torch.bernoulli(s.x, generator=gen), s.y) for s in (valid, test))
        if not dynamic:
            train = Split(torch.bernoulli(train.x, generator=gen), train.y)
    for name, split in zip(SPLITS, (train, valid, test)):
        _check_finite(spec.name, name, split.x)
    dataset = Dataset(spec.name, source.data_shape, source.num_classes, train, valid, test, dynamic, source.extras,
                      tuple(source.class_names))
    return dataset.limited(spec.train_size)


def _check_finite(name: str, split: str, x: torch.Tensor) -> None:
    """Refuse NaN or infinite values (a damaged file) before they reach training."""
    bad = ~torch.isfinite(x)
    if bad.any():
        item = int(bad.reshape(x.shape[0], -1).any(1).nonzero()[0])
        raise PyrovaeError(f"the {split} split of '{name}' holds NaN or infinite values (first in item {item}, "
                           f"{int(bad.sum())} in all); the data files are damaged: fetch them again")


def _check_unit_interval(name: str, x: torch.Tensor) -> None:
    if x.min() < 0 or x.max() > 1:
        raise PyrovaeError(f"data.binarize needs values in [0, 1], but '{name}' ranges over "
                           f"[{float(x.min()):.3g}, {float(x.max()):.3g}]; set data.binarize=none")
