"""A run's model, built or loaded: the device a config names, the VAE training starts from,
the VAE a run folder's checkpoint holds, and what training returns.

These sit below every engine and report: training builds its VAE here, evaluation, the
laboratory and the reports load theirs here, and a report reads a :class:`TrainResult`
without importing the training loop.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pyro
import torch

from ..components import NETWORKS
from ..components.datasets import Dataset
from ..errors import PyrovaeError
from ..model import VAE
from ..spec import ExperimentSpec, load_config
from .checkpoint import CHECKPOINT, read_checkpoint
from .inputs import check_inputs_unchanged


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` (``cpu``, ``cuda``, ``cuda:N`` or ``auto``) stands for here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PyrovaeError(f"train.device={name} but no CUDA device is available; set train.device=cpu")
    return torch.device(name)


@dataclass
class TrainResult:
    """What training returns; printed without the model and the data (no tensors)."""

    vae: VAE = field(repr=False)
    data: Dataset = field(repr=False)
    out_dir: Path
    epochs_done: int
    best_valid_elbo: float
    stopped_early: bool
    report: Optional[Path] = None  # report.md, once written


def build_vae(spec: ExperimentSpec, data: Dataset) -> VAE:
    """The VAE training starts from: seeded with ``spec.seed``, its decoder started at the
    training data's mean when ``model.data_init`` is set, on ``train.device``; a conditional
    one whose encoder ignores the label is refused (:func:`check_encoder_uses_label`)."""
    pyro.set_rng_seed(spec.seed)
    vae = VAE.from_config(spec, data.data_shape, data.num_classes)
    if vae.num_classes:
        check_encoder_uses_label(vae, data.train.x[:CONDITION_CHECK_POINTS])
    if spec.model.data_init:
        vae.initialize_from_data(data.train.x)
    return vae.to(resolve_device(spec.train.device))


CONDITION_CHECK_POINTS = 8  # training points the encoder is run on with two labellings


@torch.no_grad()
def check_encoder_uses_label(vae: VAE, x: torch.Tensor) -> None:
    """Refuse a conditional VAE whose encoder gives the same q(z|x) whatever the label: with
    ``model.conditional`` the label is meant to enter both networks, and an encoder that drops
    its condition would train a model other than the config says, silently. The encoder runs
    on ``x`` with every point labelled once 0 and once 1 (draws no random numbers)."""
    zeros = torch.zeros(x.shape[0], dtype=torch.long)
    first, second = vae.encoder(x, vae.condition(zeros)), vae.encoder(x, vae.condition(zeros + 1))
    if torch.equal(first, second):
        raise PyrovaeError(f"model.conditional is set but model.encoder {NETWORKS.label(vae.encoder_name)} ignores "
                           f"the label (its output does not change with it); use an encoder that takes its condition "
                           f"(cond, e.g. mlp or conv) or set model.conditional=false")


def load_run(run_dir, device: str = "cpu", best: bool = True):
    """The spec and trained VAE of a run folder (the best-validation parameters by default)."""
    spec, vae, _ = load_run_and_checkpoint(run_dir, device, best)
    return spec, vae


def load_run_and_checkpoint(run_dir, device: str = "cpu", best: bool = True):
    """:func:`load_run`'s spec and VAE, and which checkpoint they came from (its epoch and
    hash, see :func:`~pyrovae.runs.checkpoint.read_checkpoint`), as evaluations record it."""
    run_dir = Path(run_dir)
    spec = load_config(run_dir)
    check_inputs_unchanged(run_dir, spec)
    state, checkpoint = read_checkpoint(run_dir / CHECKPOINT)
    vae = VAE.from_config(spec)
    weights = state["best_model"] if best and state.get("best_model") is not None else state["model"]
    try:
        vae.load_state_dict(weights)
    except RuntimeError:
        raise PyrovaeError(f"checkpoint in {run_dir} does not match its config.yaml; "
                           f"was config.yaml edited after training?") from None
    return spec, vae.to(resolve_device(device)).eval(), checkpoint
