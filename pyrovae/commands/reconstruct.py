"""``pyrovae reconstruct RUN --split test``: data and their reconstructions E[x | z = mu(x)].

The data are points of a split (the first ``-n``, or ``--points``) or the items of a file
(``--input``: a ``.npy``/``.npz`` file or a folder of images, read as the ``array`` dataset
reads them). Writes ``reconstructions_<split or input name>.npz`` (``x``, ``reconstruction``,
``index``) and, for images, a PNG of data and reconstructions in alternating rows.
"""

import math
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..components.array_data import read_items
from ..errors import PyrovaeError
from .model_outputs import (
    Outputs,
    arrays_of,
    condition,
    in_batches,
    open_run,
    output_folder,
    printed,
    split_points,
    write_grid,
    write_npz,
)
from .options import add_model_output_options
from .posterior import parse_points

GRID_COLUMNS = 8


def reconstruct(run_dir, split: str = "test", n: int = 64, points: Optional[Sequence[int]] = None,
                input_file=None, out=None, device: str = "auto", plugins: Sequence[str] = ()) -> Outputs:
    """Reconstructions of points of ``split`` (or of the items of the file ``input_file``)."""
    spec, vae = open_run(run_dir, device, plugins)
    if input_file is not None:
        items = read_items(input_file, spec.data.options.get("scale", "auto"))
        x, index, name = items.x, torch.arange(items.x.shape[0]), Path(input_file).stem
        y = None if not vae.num_classes else items.y
        if vae.num_classes and y is None:
            raise PyrovaeError(f"this is a conditional model: {input_file} must hold labels too (an .npz with x and y, "
                               f"or a folder of images in sub-folders by label)")
        vae.check_data(x, str(input_file))
    else:
        x, labels, index = split_points(spec, split, points, None if points is not None else n)
        y = condition(vae, labels)
        name = split
    reconstruction, = in_batches(lambda xb, yb: vae.reconstruct(xb, yb), x, y, vae)
    folder = output_folder(run_dir, out)
    arrays = arrays_of(x=x, reconstruction=reconstruction, index=index, y=y)
    files = [write_npz(folder / f"reconstructions_{name}.npz", arrays)]
    shown = x[:4 * GRID_COLUMNS]
    files += write_grid(vae, alternating_rows(shown, reconstruction[:len(shown)], GRID_COLUMNS),
                        folder / f"reconstructions_{name}.png",
                        "data (odd rows) and their reconstructions (even rows)", GRID_COLUMNS)
    return Outputs(folder, arrays, files)


def alternating_rows(x: torch.Tensor, reconstruction: torch.Tensor, ncols: int) -> torch.Tensor:
    """Rows of ``ncols`` data items, each followed by the row of their reconstructions."""
    rows = []
    for start in range(0, x.shape[0], ncols):
        rows += [x[start:start + ncols], reconstruction[start:start + ncols]]
        if rows[-1].shape[0] < ncols:  # a short last row: pad both with blanks (NaN)
            pad = ncols - rows[-1].shape[0]
            rows[-2:] = [torch.cat([r, torch.full((pad, *r.shape[1:]), math.nan)]) for r in rows[-2:]]
    return torch.cat(rows)


def _command(args) -> None:
    points = parse_points(args.points) if args.points else None
    print(printed(reconstruct(args.run, args.split, args.n, points, args.input, args.out, args.device,
                              args.plugin)))


def add_command(subparsers) -> None:
    """Add ``pyrovae reconstruct`` to the command line."""
    p = subparsers.add_parser("reconstruct", help="reconstruct data of a split or a file with a trained run",
                              description="Encode data to the mean of q(z|x) and decode it to the mean of p(x|z); "
                                          "writes reconstructions_NAME.npz (x, reconstruction, index) and for "
                                          "images a PNG of data and reconstructions.")
    add_model_output_options(p, "reconstructions_NAME.npz and .png")
    p.add_argument("--split", default="test", help="which data: train, valid, test (default test)")
    p.add_argument("-n", type=int, default=64, help="reconstruct the first N points of the split (default 64)")
    p.add_argument("--points", help="these points of the split instead, e.g. 3,7,42 or 0-99")
    p.add_argument("--input", metavar="FILE", help="reconstruct the items of a .npy/.npz file or a folder of images")
    p.set_defaults(func=_command)
