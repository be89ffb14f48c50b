"""``pyrovae encode RUN --split test``: every point of a split to its q(z|x).

Writes ``latents_<split>.npy`` (each point's latent code, one row per point in the split's
order: the mean of q(z|x) for Gaussian, flow and discrete guides alike, see
:meth:`~pyrovae.model.VAE.latent_code`) and ``latents_<split>.npz`` (``code``, ``index``, the
labels ``y`` where the data have them, and for a diagonal Gaussian guide its ``loc`` and
``scale``), for any kind of data and any guide.
"""

from typing import Optional, Sequence

from .model_outputs import (
    Outputs,
    arrays_of,
    condition,
    in_batches,
    open_run,
    output_folder,
    printed,
    split_points,
    write_npy,
    write_npz,
)
from .options import add_model_output_options


def encode(run_dir, split: str = "test", n: Optional[int] = None, out=None, device: str = "auto",
           plugins: Sequence[str] = ()) -> Outputs:
    """The latent codes of the points of ``split`` (all, or the first ``n``), and the guide's
    location and scale where it is a diagonal Gaussian."""
    spec, vae = open_run(run_dir, device, plugins)
    x, labels, index = split_points(spec, split, count=n)
    y = condition(vae, labels)
    code = in_batches(vae.latent_code, x, y, vae)[0]
    loc = scale = None
    if vae.guide_family.gaussian_kind == "diagonal":
        loc, scale = in_batches(lambda xb, yb: vae.encode(xb, yb), x, y, vae)
    folder = output_folder(run_dir, out)
    arrays = arrays_of(code=code, loc=loc, scale=scale, index=index, y=labels)
    files = [write_npy(folder / f"latents_{split}.npy", arrays["code"]),
             write_npz(folder / f"latents_{split}.npz", arrays)]
    return Outputs(folder, arrays, files)


def _command(args) -> None:
    print(printed(encode(args.run, args.split, args.n, args.out, args.device, args.plugin)))


def add_command(subparsers) -> None:
    """Add ``pyrovae encode`` to the command line."""
    p = subparsers.add_parser("encode", help="encode a split to latents: the means of q(z|x) (.npy, .npz)",
                              description="Encode every point of a split; writes latents_SPLIT.npy (the means of "
                                          "q(z|x)) and latents_SPLIT.npz (code, index, labels, and a diagonal "
                                          "Gaussian guide's loc and scale).")
    add_model_output_options(p, "latents_SPLIT.npy and .npz")
    p.add_argument("--split", default="test", help="which data: train, valid, test (default test)")
    p.add_argument("-n", type=int, help="encode the first N points only (default: all)")
    p.set_defaults(func=_command)
