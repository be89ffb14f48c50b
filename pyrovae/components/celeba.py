"""The ``celeba`` dataset: CelebA in its publisher's layout, or any folder of face images.

The publisher's files (Liu et al. 2015, the aligned and cropped images):

- ``img_align_celeba/*.jpg``: 178 x 218 aligned faces (or ``Img/img_align_celeba/``);
- ``list_eval_partition.txt``: one line ``000001.jpg 0`` per image, 0/1/2 for the training,
  validation and test split (or under ``Eval/``);
- ``list_attr_celeba.txt``: the image count, the 40 attribute names, then one line of +1/-1
  values per image (or under ``Anno/``); read only when ``label_attribute`` names one, which
  then labels each image (class 0: without the attribute, 1: with it).

``data.path`` is that folder (default: ``celeba/`` in the data root). Every image is centre-cropped
to a ``crop`` x ``crop`` square (148, the common 64 x 64 protocol for CelebA's 178 x 218 images;
the largest centred square when an image is smaller) and resized to ``size`` x ``size`` with
Pillow's bilinear filter (antialiased when shrinking); pixels stay 8-bit values k/255.

A folder without ``list_eval_partition.txt`` is read as any folder of face images: every PNG or
JPEG in it or its sub-folders, in sorted order, split by seeded fractions (``valid_fraction``,
``test_fraction``, ``split_seed``). Images are read in colour (``channels: 3``) or grey (``channels: 1``).
``max_images`` (0: all) keeps the first N images of each split: the whole of CelebA at 64 x 64 is
about 10 GB as float32. CelebA cannot be downloaded automatically (its publisher serves it from
a file-sharing site); fetch it by hand.
"""

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import PyrovaeError, positive_int
from .datasets import DATASETS, Source, Split

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PARTITION = "list_eval_partition.txt"
ATTRIBUTES = "list_attr_celeba.txt"
IMAGES = "img_align_celeba"


@DATASETS.register("celeba")
def celeba(*, path="", size=64, crop=148, channels=3, max_images=0, label_attribute="", valid_fraction=0.1,
           test_fraction=0.1, split_seed=0):
    """CelebA (publisher's layout: img_align_celeba/, list_eval_partition.txt) or any folder of
    face images, centre-cropped and resized to size x size."""
    positive_int(size, "data.size")
    positive_int(crop, "data.crop")
    positive_int(max_images, "data.max_images", minimum=0)
    if channels not in (1, 3):
        raise PyrovaeError(f"data.channels must be 3 (colour) or 1 (grey), got {channels!r}")
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise PyrovaeError(f"data.valid_fraction and data.test_fraction must be in (0, 1) with a sum below 1, "
                           f"got {valid_fraction} and {test_fraction}")
    options = dict(size=size, crop=crop, channels=channels, max_images=max_images, label_attribute=label_attribute,
                   fractions=(valid_fraction, test_fraction), split_seed=split_seed)
    names = (f"without {label_attribute}", label_attribute) if label_attribute else ()
    return Source((channels, size, size), 2 if label_attribute else 0,
                  lambda root, allow_download: load_faces(_folder(path, root), **options), class_names=names)


def _folder(path: str, root: Path) -> Path:
    folder = Path(path).expanduser() if path else root / "celeba"
    if not folder.is_absolute() and not folder.exists():
        folder = root / folder
    if not folder.is_dir():
        raise PyrovaeError(f"celeba: no folder {folder}; set data.path to the folder holding img_align_celeba/ and "
                           f"list_eval_partition.txt (fetched by hand from CelebA's site), or to any folder of "
                           f"face images")
    return folder


def _find(folder: Path, name: str, subfolders: Sequence[str]) -> Optional[Path]:
    for candidate in [folder / name, *(folder / s / name for s in subfolders)]:
        if candidate.exists():
            return candidate
    return None


def _image_files(folder: Path) -> List[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise PyrovaeError(f"celeba: {folder} holds no JPEG or PNG images (in it or its sub-folders)")
    return files


def read_partition(path: Path) -> Dict[str, int]:
    """``list_eval_partition.txt``: image file name to split number (0 train, 1 valid, 2 test)."""
    split = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise PyrovaeError(f"{path} line {number} is not 'IMAGE.jpg 0|1|2'; fetch the file again")
        split[parts[0]] = int(parts[1])
    return split


def read_attributes(path: Path) -> Tuple[List[str], Dict[str, np.ndarray]]:
    """``list_attr_celeba.txt``: the attribute names and each image's +1/-1 values."""
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        raise PyrovaeError(f"{path} is too short for CelebA's attribute file (count, names, rows); fetch it again")
    names = lines[1].split()
    values = {}
    for number, line in enumerate(lines[2:], 3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1 or any(v not in ("1", "-1") for v in parts[1:]):
            raise PyrovaeError(f"{path} line {number} does not hold {len(names)} values of +1 or -1; fetch it again")
        values[parts[0]] = np.array([int(v) for v in parts[1:]], dtype=np.int64)
    return names, values


def face_pixels(path: Path, size: int, crop: int, channels: int) -> np.ndarray:
    """The image at ``path`` centre-cropped to ``crop`` x ``crop`` (at most its shorter side),
    resized to ``size`` x ``size``, as uint8 ``(channels, size, size)``."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            w, h = im.size
            side = min(crop, w, h)
            left, top = (w - side) // 2, (h - side) // 2
            im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
            pixels = np.asarray(im, dtype=np.uint8)
    except OSError as exc:
        raise PyrovaeError(f"cannot read image {path} ({exc}); remove or replace it") from None
    return pixels.transpose(2, 0, 1) if channels == 3 else pixels[None]


def load_faces(folder: Path, size: int, crop: int, channels: int, max_images: int, label_attribute: str,
               fractions: Tuple[float, float], split_seed: int) -> List[Split]:
    """The training, validation and test splits of the face images in ``folder``."""
    images = _find(folder, IMAGES, ["Img"])
    partition = _find(folder, PARTITION, ["Eval"])
    if images is not None and partition is not None:
        split_of = read_partition(partition)
        files = [[images / name for name, s in split_of.items() if s == k] for k in range(3)]
    else:
        files = _drawn_splits(_image_files(folder), fractions, split_seed, folder)
    if max_images:
        files = [f[:max_images] for f in files]
    labels = _labels(folder, label_attribute, files)
    splits = []
    for k, part in enumerate(files):
        missing = [f for f in part if not f.is_file()]
        if missing:
            raise PyrovaeError(f"celeba: {missing[0]} (listed in {PARTITION}) is missing, {len(missing)} in all; "
                               f"fetch the images again")
        if not part:
            raise PyrovaeError(f"celeba: the {('training', 'validation', 'test')[k]} split of {folder} is empty; "
                               f"give more images")
        x = np.stack([face_pixels(f, size, crop, channels) for f in part])
        splits.append(Split(torch.from_numpy(x).float().div_(255), None if labels is None else labels[k]))
    return splits


def _drawn_splits(files: List[Path], fractions: Tuple[float, float], seed: int, folder: Path) -> List[List[Path]]:
    n = len(files)
    n_valid, n_test = round(fractions[0] * n), round(fractions[1] * n)
    if min(n_valid, n_test, n - n_valid - n_test) < 1:
        raise PyrovaeError(f"celeba: {folder} holds {n} images, too few for a training, validation and test split "
                           f"of at least one each; give more images or other fractions")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    parts = (order[n_valid + n_test:], order[:n_valid], order[n_valid:n_valid + n_test])
    return [[files[i] for i in part] for part in parts]


def _labels(folder: Path, attribute: str, files: List[List[Path]]) -> Optional[List[torch.Tensor]]:
    """Each split's labels from ``attribute`` (1 where an image has it), or None without one."""
    if not attribute:
        return None
    path = _find(folder, ATTRIBUTES, ["Anno"])
    if path is None:
        raise PyrovaeError(f"celeba: data.label_attribute={attribute} needs {ATTRIBUTES} in {folder} (or Anno/); "
                           f"fetch it, or remove data.label_attribute")
    names, values = read_attributes(path)
    if attribute not in names:
        raise PyrovaeError(f"celeba: no attribute '{attribute}' in {path}; choose one of: {', '.join(names)}")
    column = names.index(attribute)
    try:
        return [torch.tensor([int(values[f.name][column] > 0) for f in part], dtype=torch.int64) for part in files]
    except KeyError as exc:
        raise PyrovaeError(f"celeba: {path} has no line for image {exc.args[0]}; fetch it again") from None
