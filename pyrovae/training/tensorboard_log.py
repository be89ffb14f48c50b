"""Optional TensorBoard logging of a training run (``train.log: tensorboard``).

Beside ``metrics.csv`` the run folder then holds ``tensorboard/`` with, per epoch: the train
and validation ELBO, the validation ELBO's two terms (the reconstruction term
E_q[log p(x|z)] and the rate KL(q(z|x) || p(z)), one-sample estimates on a fixed validation
batch), the KL weight and the learning rate; for image data also grids of reconstructions
and of prior samples. Open it with ``tensorboard --logdir RUN/tensorboard``.

Its estimates and images draw from a private stream started at the run's seed
(:func:`pyrovae.runs.random_state.private_random`), never from the random state training
goes on with: a run logged to TensorBoard trains exactly as one without the log, and
resumes exactly, and every epoch's sample grid shows the same prior draws.

The ``tensorboard`` package is optional (``pip install 'pyrovae[tensorboard]'``).
"""

from pathlib import Path
from typing import Optional

import torch

from ..errors import PyrovaeError
from ..runs.random_state import private_random

FOLDER = "tensorboard"
TERM_BATCH = 500  # validation points the ELBO's terms are estimated on
GRID_IMAGES = 16


def open_log(log: Optional[str], out_dir: Path, seed: int):
    """A :class:`TensorBoardLog` for ``train.log: tensorboard`` drawing from ``seed``, else None."""
    if log is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise PyrovaeError("train.log=tensorboard needs the tensorboard package: pip install 'pyrovae[tensorboard]' "
                           "(or pip install tensorboard), or remove train.log") from None
    return TensorBoardLog(SummaryWriter(log_dir=str(Path(out_dir) / FOLDER)), seed)


class TensorBoardLog:
    """Writes one epoch's scalars and images to a ``SummaryWriter``, drawing from ``seed``."""

    def __init__(self, writer, seed: int):
        self.writer = writer
        self.seed = seed

    def epoch(self, epoch: int, step: int, row: dict, vae, data) -> None:
        """Log the metrics ``row`` of ``epoch`` (as written to metrics.csv) at global step ``step``;
        the global random state is left as it was."""
        for key in ("train_elbo", "valid_elbo", "kl_weight", "lr"):
            self.writer.add_scalar(key, float(row[key]), step)
        device = next(vae.parameters()).device
        with torch.no_grad(), private_random(self.seed, device):
            self._draws(step, vae, data, device)
        self.writer.flush()

    def _draws(self, step: int, vae, data, device) -> None:
        """The validation ELBO's two terms and, for images, the grids: everything that samples."""
        w = self.writer
        x = data.valid.x[:TERM_BATCH].to(device)
        y = data.valid.y[:TERM_BATCH].to(device) if vae.num_classes else None
        reconstruction, rate = elbo_terms(vae, x, y)
        w.add_scalar("valid_reconstruction", reconstruction, step)
        w.add_scalar("valid_rate", rate, step)
        if len(vae.data_shape) == 3:
            from torchvision.utils import make_grid

            shown = x[:GRID_IMAGES // 2]
            pairs = torch.stack([shown, vae.reconstruct(shown, None if y is None else y[:len(shown)])
                                 .reshape_as(shown)], 1).flatten(0, 1)
            w.add_image("reconstructions", make_grid(pairs.clamp(0, 1).cpu(), nrow=GRID_IMAGES // 2), step)
            y_samples = torch.arange(GRID_IMAGES, device=device) % vae.num_classes if vae.num_classes else None
            samples = vae.sample(GRID_IMAGES, y_samples).reshape(GRID_IMAGES, *vae.data_shape)
            w.add_image("samples", make_grid(samples.clamp(0, 1).cpu(), nrow=GRID_IMAGES // 2), step)

    def close(self) -> None:
        self.writer.close()


def elbo_terms(vae, x: torch.Tensor, y=None):
    """One-sample estimates of E_q[log p(x|z)] and KL(q(z|x) || p(z)), averaged over ``x``
    (the ELBO is their difference)."""
    q = vae.posterior(x, y)
    z = q.sample()
    rate = q.log_prob(z) - vae.prior().log_prob(z)
    reconstruction = vae.decode(z, y).log_prob(x)
    return float(reconstruction.mean()), float(rate.mean())
