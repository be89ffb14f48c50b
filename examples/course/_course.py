"""What the course's chapter scripts share: their command line, the data, trained models
cached between chapters, and how figures and numbers are written for the site.

Every chapter script takes ``--out`` (where its figures and ``numbers.md`` go), ``--cache``
(where trained models and the parsed data are kept, so chapters that use the same model
train it once; by default the site build's, :func:`model_cache`) and ``--quick`` (its smallest
settings: seconds, for the tests; also set by ``PYROVAE_COURSE_QUICK=1``, so a notebook
kernel's own arguments do not matter). The docs build runs each script without ``--quick``
(``docs_tools/site_hooks.py``).

A chapter's prose says what its figures show; :class:`Claims` asserts each such statement
at the settings the script ran at. At full settings a false claim fails the script (and so
the build); in a quick build a claim marked ``full_only`` is replaced on the page by a note
that these settings do not show it. Figures of a quick run carry a visible mark
(:func:`finish`).
"""

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import textwrap
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
LABELLED_SPLIT = (8000, 1000, 1000)  # train / valid / test from MNIST's official 10000 test digits


def model_cache(quick: bool) -> Path:
    """Where a chapter keeps its trained models when no ``--cache`` is given: where the site
    build keeps them (``docs_tools/site_hooks.py``), ``models/`` in ``$PYROVAE_COURSE_CACHE``
    (default ``.cache/course``), in its ``quick/`` at quick settings. A script or notebook run
    after a build loads the models the build trained instead of training them again."""
    base = Path(os.environ.get("PYROVAE_COURSE_CACHE", Path(".cache") / "course"))
    return (base / "quick" if quick else base) / "models"


def arguments(doc: str, out: str) -> argparse.Namespace:
    """Parse the shared options; set one torch thread and a fixed seed."""
    parser = argparse.ArgumentParser(description=doc.strip().split("\n")[0])
    parser.add_argument("--out", default=f"runs/course/{out}", help="folder for the figures and numbers.md")
    parser.add_argument("--cache", help="folder for trained models and parsed data (default: the site build's, "
                        ".cache/course/models, .cache/course/quick/models with --quick)")
    parser.add_argument("--quick", action="store_true", help="smallest settings (seconds): what the tests run")
    args, _ = parser.parse_known_args()  # a notebook kernel adds its own (-f kernel.json)
    args.quick = args.quick or os.environ.get("PYROVAE_COURSE_QUICK", "") not in ("", "0")
    torch.set_num_threads(1)
    pyro.set_rng_seed(0)
    args.out, args.cache = Path(args.out), Path(args.cache) if args.cache else model_cache(args.quick)
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


QUICK_MARK = "QUICK BUILD: smallest settings, not what the text describes"
QUICK_KEY = "pyrovae-course-build"  # the PNG text chunk that says how a figure was made


def mark_quick(path: Path) -> None:
    """Stamp a figure made at quick settings: a red band across its top and a PNG text
    chunk ``pyrovae-course-build: quick`` (what the site's tests look for)."""
    from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

    image = Image.open(path).convert("RGB")
    band = max(24, image.height // 22)
    font = ImageFont.load_default(size=int(band * 0.62))
    marked = Image.new("RGB", (image.width, image.height + band), "white")
    marked.paste(image, (0, band))
    draw = ImageDraw.Draw(marked)
    draw.rectangle([0, 0, image.width, band - 1], fill=(200, 30, 30))
    draw.text((8, band // 2), QUICK_MARK, fill="white", font=font, anchor="lm")
    info = PngImagePlugin.PngInfo()
    info.add_text(QUICK_KEY, "quick")
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    marked.save(tmp, pnginfo=info)
    os.replace(tmp, path)


class Claims:
    """What a chapter's figures and prose claim, checked at the settings the script runs at.

    ``check(name, holds, text, measured, full_only, general)`` writes ``claim_<name>.md``: the claim's
    ``text`` when it holds; when it does not hold in a quick run and is ``full_only``, a note
    that these settings do not show it (with what was measured); otherwise the script fails.
    Every claim is also listed in ``claims.json`` beside the figures."""

    def __init__(self, args):
        self.out, self.quick, self.checked = args.out, args.quick, []

    def check(self, name: str, holds: bool, text: str, measured: str, full_only: bool = False,
              general: str = "") -> bool:
        """Assert one claim; ``general`` words it without this run's numbers, for the note
        a quick build shows in its place."""
        holds = bool(holds)
        self.checked.append({"name": name, "text": text, "measured": measured, "holds": holds, "full_only": full_only})
        if holds:
            write_numbers(self.out, f"claim_{name}", text)
        elif self.quick and full_only:
            note = (f"The full build asserts: *{' '.join((general or text).split())}* At this quick build's smallest "
                    f"settings it does not hold ({measured}), so the figures and numbers here do not show it.")
            warning = '!!! warning "Not shown at the quick build\'s settings"\n' + textwrap.indent(
                textwrap.fill(note, 96), "    ")
            (self.out / f"claim_{name}.md").write_text(f"\n{warning}\n\n")  # a block of its own, even mid-paragraph
        else:
            raise AssertionError(f"claim {name!r} does not hold at these settings ({measured}): {text.strip()}")
        return holds


def finish(args, claims: "Claims | None" = None) -> None:
    """End a chapter's run: write its claims' list, and mark every figure of a quick run."""
    checked = claims.checked if claims else []
    (args.out / "claims.json").write_text(json.dumps(checked, indent=1) + "\n")
    if args.quick:
        for path in sorted(args.out.glob("*.png")):
            mark_quick(path)


__all__ = ["arguments", "model_cache", "binarized_mnist", "labelled_digits", "trained", "save", "write_numbers", "markdown_table",
           "plt", "Claims", "finish", "mark_quick"]
