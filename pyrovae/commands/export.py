"""``pyrovae export RUN``: the trained encoder and decoder as TorchScript, for use without pyrovae.

Writes into ``--out`` (default ``RUN/export``):

- ``encoder.pt``: ``x`` of shape ``(N, *data_shape)`` (and for a conditional model the integer
  labels ``y``, ``(N,)``) to the location and scale of q(z|x), each ``(N, latent_dim)``:
  what ``vae.encode`` returns;
- ``decoder.pt``: ``z`` of shape ``(N, latent_dim)`` (and ``y``) to the mean of p(x|z),
  ``(N, *data_shape)``: what ``vae.decode_mean`` returns;
- ``model.json``: the shapes, the prior and likelihood (names and options), the checkpoint the
  weights come from, and how to load the two files.

Both load with ``torch.jit.load`` alone. They are traced from the best-validation
parameters on the CPU; each is checked on a batch of another size against the model it
came from, so a network whose computation tracing cannot capture is refused, not exported
wrong. Every file is written atomically.
"""

import io
import json
import warnings
from pathlib import Path
from typing import Sequence

import pyro
import torch
from torch import nn

from ..errors import PyrovaeError
from ..runs.checkpoint import current_checkpoint
from ..runs.files import make_folder, write_atomic
from .model_outputs import open_run
from .options import add_changed_inputs_option, add_plugin_option

EXPORT = "export"
FORMAT = 1
TRACE_BATCH, CHECK_BATCH = 3, 5
TOLERANCE = 1e-5


class _Traced(nn.Module):
    """One of the model's maps, ``function(first, y)``, as a module holding ``network``'s
    parameters; ``y`` is given only to conditional models."""

    def __init__(self, network: nn.Module, function):
        super().__init__()
        self.network = network
        self.function = function

    def forward(self, first: torch.Tensor, *y: torch.Tensor):
        return self.function(first, y[0] if y else None)


def export(run_dir, out=None, plugins: Sequence[str] = ()) -> Path:
    """Export the run in ``run_dir`` into ``out`` (default ``RUN/export``); return the folder."""
    spec, vae = open_run(run_dir, "cpu", plugins)
    folder = make_folder(Path(out) if out is not None else Path(run_dir) / EXPORT)
    generator = torch.Generator().manual_seed(0)
    labels = (lambda n: torch.randint(vae.num_classes, (n,), generator=generator)) if vae.num_classes else None

    def example(n):  # inputs of both maps: data-shaped and latent-shaped, plus labels
        y = (labels(n),) if labels else ()
        return (torch.rand(n, *vae.data_shape, generator=generator), *y), (torch.randn(n, vae.latent_dim), *y)

    maps = {"encoder": _Traced(vae.encoder, vae.encode), "decoder": _Traced(vae.decoder, vae.decode_mean)}
    traced_inputs, check_inputs = example(TRACE_BATCH), example(CHECK_BATCH)
    files = {}
    for i, (name, module) in enumerate(maps.items()):
        files[f"{name}.pt"] = _traced_bytes(name, module, traced_inputs[i], check_inputs[i])
    for name, data in files.items():
        write_atomic(folder / name, data)
    write_atomic(folder / "model.json", json.dumps(_description(spec, vae, run_dir), indent=2) + "\n")
    return folder


@torch.no_grad()
def _traced_bytes(name: str, module: nn.Module, inputs: tuple, check: tuple) -> bytes:
    """``module`` traced with ``inputs`` and saved, after checking it against ``module`` on ``check``."""
    with warnings.catch_warnings(), pyro.validation_enabled(False):
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated in newer torch, still loads
        try:
            traced = torch.jit.trace(module, inputs, check_trace=False)
        except Exception as exc:  # tracing fails in many ways for code it cannot follow
            raise PyrovaeError(f"the {name} cannot be traced to TorchScript ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}); export needs networks "
                               f"without data-dependent Python control flow") from None
        expected, got = _tensors(module(*check)), _tensors(traced(*check))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    if any(e.shape != g.shape or not torch.allclose(e, g, rtol=TOLERANCE, atol=TOLERANCE)
           for e, g in zip(expected, got)):
        raise PyrovaeError(f"the traced {name} differs from the model on a batch of another size: the network "
                           f"fixes its batch size or branches on its input, which tracing cannot capture")
    return buffer.getvalue()


def _tensors(output) -> tuple:
    return output if isinstance(output, tuple) else (output,)


def _description(spec, vae, run_dir) -> dict:
    conditional = bool(vae.num_classes)
    label = ", y" if conditional else ""
    return {
        "format": FORMAT,
        "config": spec.name,
        "checkpoint": current_checkpoint(run_dir),
        "data_shape": list(vae.data_shape),
        "latent_dim": vae.latent_dim,
        "num_classes": vae.num_classes,
        "dtype": "float32",
        "prior": {"name": vae.prior_name, **spec.model.prior.options},
        "likelihood": spec.model.likelihood.to_dict(),
        "encoder": {"file": "encoder.pt", "network": spec.model.encoder.to_dict(),
                    "call": f"loc, scale = encoder(x{label})",
                    "inputs": "x: (N, *data_shape) float32" + (", y: (N,) int64 labels" if conditional else ""),
                    "outputs": "loc, scale of q(z|x), each (N, latent_dim)"},
        "decoder": {"file": "decoder.pt", "network": spec.model.decoder.to_dict(),
                    "call": f"mean = decoder(z{label})",
                    "inputs": "z: (N, latent_dim) float32" + (", y: (N,) int64 labels" if conditional else ""),
                    "outputs": "the mean of p(x|z), (N, *data_shape)"},
        "load": "import torch; encoder = torch.jit.load('encoder.pt'); decoder = torch.jit.load('decoder.pt')",
    }


def _command(args) -> None:
    folder = export(args.run, args.out, args.plugin)
    print(f"wrote {folder / 'encoder.pt'}, {folder / 'decoder.pt'} and {folder / 'model.json'} "
          f"(load with torch.jit.load, no pyrovae needed)")


def add_command(subparsers) -> None:
    """Add ``pyrovae export`` to the command line."""
    p = subparsers.add_parser("export", help="the trained encoder and decoder as TorchScript, loadable without pyrovae",
                              description="Write encoder.pt (x to loc, scale of q(z|x)) and decoder.pt (z to the mean "
                                          "of p(x|z)) as TorchScript, and model.json describing them.")
    p.add_argument("run", help="a run folder written by 'pyrovae train'")
    p.add_argument("--out", help="folder for the export (default RUN/export)")
    add_plugin_option(p)
    add_changed_inputs_option(p)
    p.set_defaults(func=_command)
