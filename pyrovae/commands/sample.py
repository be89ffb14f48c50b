"""``pyrovae sample RUN -n 64``: draw z from the prior and decode it to the means of p(x|z).

Writes ``samples.npz`` (``z`` and ``mean``, and the labels ``y`` of a conditional model, which
cycle through the classes unless ``--label`` fixes one) and, for images, ``samples.png``. The
draws come from a stream seeded with ``--seed``: the same seed gives the same samples.
"""

from typing import Optional, Sequence

import torch

from ..errors import PyrovaeError, positive_int, seed_value
from ..runs.random_state import private_random
from .model_outputs import Outputs, arrays_of, device_of, open_run, output_folder, printed, write_grid, write_npz
from .options import add_model_output_options

GRID_COLUMNS = 8


@torch.no_grad()
def sample(run_dir, n: int = 64, seed: int = 0, label: Optional[int] = None, out=None, device: str = "auto",
           plugins: Sequence[str] = ()) -> Outputs:
    """``n`` draws from the prior of the run in ``run_dir`` and their decoded means."""
    positive_int(n, "-n")
    seed_value(seed, "--seed")
    _, vae = open_run(run_dir, device, plugins)
    y = None
    if vae.num_classes:
        if label is not None and not 0 <= label < vae.num_classes:
            raise PyrovaeError(f"--label {label} is not a class of this model (0 to {vae.num_classes - 1})")
        y = torch.full((n,), label) if label is not None else torch.arange(n) % vae.num_classes
        y = y.to(device_of(vae))
    elif label is not None:
        raise PyrovaeError("--label needs a conditional model (model.conditional: true); leave it out")
    with private_random(seed, device_of(vae)):
        z = vae.prior().sample((n,))
        mean = vae.decode_mean(z, y)
    folder = output_folder(run_dir, out)
    arrays = arrays_of(z=z, mean=mean, y=y)
    files = [write_npz(folder / "samples.npz", arrays)]
    files += write_grid(vae, mean, folder / "samples.png", f"{n} means of p(x|z), z from the prior (seed {seed})",
                        GRID_COLUMNS)
    return Outputs(folder, arrays, files)


def _command(args) -> None:
    print(printed(sample(args.run, args.n, args.seed, args.label, args.out, args.device, args.plugin)))


def add_command(subparsers) -> None:
    """Add ``pyrovae sample`` to the command line."""
    p = subparsers.add_parser("sample", help="draw from the prior of a trained run and decode (arrays, PNG grid)",
                              description="Draw z from the prior and decode it to the mean of p(x|z); writes "
                                          "samples.npz (z, mean, labels) and for images samples.png.")
    add_model_output_options(p, "samples.npz and samples.png")
    p.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--label", type=int, help="a conditional model's class for every sample (default: each in turn)")
    p.set_defaults(func=_command)
