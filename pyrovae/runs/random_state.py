"""The random state of a training run: what a checkpoint saves and restores, and a private
stream for draws that are no part of training.

Training's draws (minibatch noise, the validation ELBO's samples) come from torch's global
generators, whose state the checkpoint saves after each epoch; a resumed run restores it
and draws on exactly as an uninterrupted run would. Anything else that samples during or
after training (TensorBoard's ELBO terms and image grids, the report's figures) draws
inside :func:`private_random`, so switching it on or off changes no parameter and no metric,
and its own pictures are the same in every run with the same seed.
"""

from contextlib import contextmanager
from typing import Iterator

import torch


def _cuda(device: torch.device) -> list:
    return [device] if device.type == "cuda" else []


def random_state(device: torch.device) -> dict:
    """The global random state training draws from, as a checkpoint keeps it."""
    return {"rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def restore_random_state(state: dict, device: torch.device) -> None:
    """Set the global random state saved by :func:`random_state` (a CPU checkpoint resumed
    on a GPU keeps the GPU's own state)."""
    torch.set_rng_state(state["rng"])
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)


@contextmanager
def private_random(seed: int, device: torch.device) -> Iterator[None]:
    """Draws inside the block come from a stream started at ``seed``; afterwards the global
    random state on the CPU and on ``device`` is what it was before the block."""
    with torch.random.fork_rng(devices=_cuda(torch.device(device))):
        torch.manual_seed(seed)
        yield
