"""``pyrovae interpolate RUN --points 3,7``: decoded points on the line between the means of
q(z|x) of data points of a split.

With more than two points the path goes through each in turn (3,7,42: from 3 to 7, then from
7 to 42). Writes ``interpolation_<split>.npz`` (``z`` and ``mean``, one row per leg, and the
``points``) and, for images, a PNG with one row per leg from one data point to the next.
"""

from typing import Sequence

import torch

from ..errors import PyrovaeError, positive_int
from .model_outputs import Outputs, arrays_of, condition, open_run, output_folder, printed, split_points, write_grid, write_npz
from .options import add_model_output_options
from .posterior import parse_points


@torch.no_grad()
def interpolate(run_dir, points: Sequence[int], split: str = "test", steps: int = 10, out=None,
                device: str = "auto", plugins: Sequence[str] = ()) -> Outputs:
    """``steps`` latent points from each of ``points`` to the next (both ends included), decoded."""
    if len(points) < 2:
        raise PyrovaeError("--points needs two points or more to interpolate between, e.g. 3,7")
    positive_int(steps, "--steps", minimum=2)
    spec, vae = open_run(run_dir, device, plugins)
    x, labels, _ = split_points(spec, split, points)
    y = condition(vae, labels)
    device = next(vae.parameters()).device
    loc = vae.latent_code(x.to(device), None if y is None else y.to(device))  # the mean of q(z|x), any guide
    t = torch.linspace(0, 1, steps, device=device)[:, None]
    z = torch.stack([(1 - t) * loc[i] + t * loc[i + 1] for i in range(len(points) - 1)])  # (legs, steps, d)
    labels = None if y is None else y[:-1, None].expand(-1, steps).to(device)  # a leg keeps its start's label
    mean = vae.decode_mean(z, labels)
    folder = output_folder(run_dir, out)
    arrays = arrays_of(z=z, mean=mean, points=torch.tensor(list(points)))
    files = [write_npz(folder / f"interpolation_{split}.npz", arrays)]
    files += write_grid(vae, mean.flatten(0, 1), folder / f"interpolation_{split}.png",
                        f"{split} points {', '.join(map(str, points))}: the line between their means of q(z|x)",
                        steps)
    return Outputs(folder, arrays, files)


def _command(args) -> None:
    print(printed(interpolate(args.run, parse_points(args.points), args.split, args.steps, args.out, args.device,
                              args.plugin)))


def add_command(subparsers) -> None:
    """Add ``pyrovae interpolate`` to the command line."""
    p = subparsers.add_parser("interpolate", help="decode the latent line between data points (arrays, PNG)",
                              description="Decode points on the straight line between the means of q(z|x) of data "
                                          "points; writes interpolation_SPLIT.npz (z, mean, points) and for "
                                          "images a PNG, one row per leg.")
    add_model_output_options(p, "interpolation_SPLIT.npz and .png")
    p.add_argument("--points", required=True, help="two or more indices of the split, e.g. 3,7")
    p.add_argument("--split", default="test", help="which data: train, valid, test (default test)")
    p.add_argument("--steps", type=int, default=10, help="decoded points per leg, ends included (default 10)")
    p.set_defaults(func=_command)
