"""What the course's chapter scripts share: their command line, the data, trained models
cached between chapters, and how figures and numbers are written for the site.

Every chapter script takes ``--out`` (where its figures and ``numbers.md`` go), ``--cache``
(where trained models and the parsed data are kept, so chapters that use the same model
train it once) and ``--quick`` (its smallest settings: seconds, for the tests). The docs
build runs each script without ``--quick`` (``docs_tools/site_hooks.py``).
"""

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyro
import torch

from pyrovae.components.datasets import Dataset, Split, data_root, find_file, load_data, read_idx
from pyrovae.errors import PyrovaeError
from pyrovae.reports.markdown import markdown_table
from pyrovae.reports.plots import pyplot, save_figure
from pyrovae.runs.loading import load_run
from pyrovae.spec import load_config
from pyrovae.training.train import train

plt = pyplot()  # the scripts draw their own figures
DEFAULT_CACHE = Path(".cache") / "course" / "models"
LABELLED_SPLIT = (8000, 1000, 1000)  # train / valid / test from MNIST's official 10000 test digits


def arguments(doc: str, out: str) -> argparse.Namespace:
    """Parse the shared options; set one torch thread and a fixed seed."""
    parser = argparse.ArgumentParser(description=doc.strip().split("\n")[0])
    parser.add_argument("--out", default=f"runs/course/{out}", help="folder for the figures and numbers.md")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="folder for trained models and parsed data")
    parser.add_argument("--quick", action="store_true", help="smallest settings (seconds): what the tests run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pyro.set_rng_seed(0)
    args.out, args.cache = Path(args.out), Path(args.cache)
    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    return args


@contextmanager
def locked(path: Path):
    """Hold an exclusive lock on ``path`` (two chapters built at once wait for each other)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _atomic_save(obj, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def binarized_mnist(cache: Path) -> Dataset:
    """Static binarized MNIST, parsed once and kept in the cache as bytes."""
    spec = load_config("quickstart").data
    path = cache / "binarized_mnist.pt"
    with locked(cache / "binarized_mnist.lock"):
        if not path.is_file():
            data = load_data(spec)
            _atomic_save({s: getattr(data, s).x.to(torch.uint8) for s in ("train", "valid", "test")}, path)
    parts = torch.load(path)
    return Dataset("binarized_mnist", (1, 28, 28), 0, *(Split(parts[s].float()) for s in ("train", "valid", "test")))


def labelled_digits(cache: Path, binarize: bool = False, labels: bool = True) -> Dataset:
    """MNIST digits: the official test split's 10000 grey images, divided 8000 / 1000 / 1000
    (the MNIST training images are not in the offline data folder), with their labels for a
    conditional VAE (``labels``). With ``binarize`` each pixel is drawn once as
    Bernoulli(grey value), with a fixed seed."""
    path = cache / "labelled_digits.pt"
    with locked(cache / "labelled_digits.lock"):
        if not path.is_file():
            root = data_root(None)
            folders = [root / "mnist_test", root / "mnist", root / "MNIST" / "raw"]
            files = {}
            for part in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
                found = find_file(folders, [part, part + ".gz"])
                if found is None:
                    raise PyrovaeError(f"{part}[.gz] not found in {', '.join(map(str, folders))}; "
                                       f"set PYROVAE_DATA to the data folder")
                files[part] = read_idx(found)
            _atomic_save({"x": torch.from_numpy(files["t10k-images-idx3-ubyte"].copy()),
                          "y": torch.from_numpy(files["t10k-labels-idx1-ubyte"].astype(np.int64))}, path)
    parts = torch.load(path)
    x, y = parts["x"].float().div(255).unsqueeze(1), parts["y"]
    if binarize:
        x = torch.bernoulli(x, generator=torch.Generator().manual_seed(0))
    a, b, _ = LABELLED_SPLIT
    splits = [Split(x[:a], y[:a]), Split(x[a:a + b], y[a:a + b]), Split(x[a + b:], y[a + b:])]
    if not labels:
        splits = [Split(split.x) for split in splits]
    return Dataset("mnist" if labels else "mnist_test_digits", (1, 28, 28), 10 if labels else 0, *splits)


def trained(config: str, overrides, data: Dataset, cache: Path):
    """The VAE of ``config`` with ``overrides`` trained on ``data``: from the cache when a
    chapter already trained it (same settings), else trained now and cached."""
    labelled = ["data.name=mnist"] if data.num_classes else []  # the dataset the labels come from
    spec = load_config(config, list(overrides) + labelled + ["train.progress=false", "train.device=cpu"])
    key = hashlib.sha256(json.dumps([config, sorted(overrides), data.name, len(data.train)]).encode()).hexdigest()[:12]
    folder = cache / f"{spec.name}-{key}"
    with locked(cache / f"{spec.name}-{key}.lock"):
        if not (folder / "done").is_file():
            if folder.exists():
                shutil.rmtree(folder)  # an interrupted run: start again
            train(spec, folder, data=data)
            (folder / "done").write_text("trained\n")
    spec, vae = load_run(folder)
    metrics = (folder / "metrics.csv").read_text().strip().splitlines()
    return spec, vae, metrics


def save(fig, out: Path, name: str) -> Path:
    """Write ``fig`` as ``out/name.png``."""
    return save_figure(fig, out / f"{name}.png")


def write_numbers(out: Path, name: str, text: str) -> None:
    """A Markdown snippet of measured values, ``out/name.md``, that the chapter page includes."""
    (out / f"{name}.md").write_text(text.strip() + "\n")


__all__ = ["arguments", "binarized_mnist", "labelled_digits", "trained", "save", "write_numbers", "markdown_table",
           "plt"]
