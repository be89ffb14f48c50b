"""Checkpoints: atomic writes, safe loads, clear errors, one writer per run folder.

A checkpoint is a plain dictionary of tensors, numbers and strings, written to a
temporary file and renamed over the old one, so an interruption never leaves a
half-written file, and readable with ``torch.load(..., weights_only=True)``.
"""

import fcntl
import hashlib
import io
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import torch

from ..errors import PyrovaeError
from .files import translated_write_errors, write_atomic

CHECKPOINT = "checkpoint.pt"
LOCK = "train.lock"
FORMAT_VERSION = 1


@contextmanager
def exclusive_run(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock: a second process training into the same folder would
    interleave epochs and overwrite the other's checkpoints. The operating system drops
    the lock when the holder exits, however it exits."""
    with translated_write_errors(Path(run_dir) / LOCK):
        handle = open(Path(run_dir) / LOCK, "w")
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PyrovaeError(f"another process is training in {run_dir}; wait for it to finish "
                               f"or stop it before training there") from None
        yield


def checkpoint_bytes(state: Dict[str, Any]) -> bytes:
    """``state`` serialized as a checkpoint file's content (to be written atomically)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **state}, buffer)
    return buffer.getvalue()


def save_checkpoint(state: Dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` atomically (write a temporary file, then rename)."""
    write_atomic(path, checkpoint_bytes(state))


def load_checkpoint(path: Path, map_location="cpu") -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing anything else."""
    return read_checkpoint(path, map_location)[0]


def read_checkpoint(path: Path, map_location="cpu") -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """A checkpoint (as :func:`load_checkpoint`) and which one it is: ``{"epoch": epochs it
    had trained, "sha256": hash of the very bytes it was read from}``. Evaluations record
    this, so a report can tell whether they are of the checkpoint the folder holds now (the
    file is read once: a training process replacing it meanwhile cannot pair one file's
    parameters with another's hash)."""
    path = _checkpoint_file(path)
    if not path.is_file():
        raise PyrovaeError(f"no checkpoint at {path}; train first with 'pyrovae train CONFIG --out {path.parent}'")
    try:
        data = path.read_bytes()
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise PyrovaeError(f"checkpoint {path} is unreadable ({type(exc).__name__}); "
                           f"restore it from a backup or delete it and train again") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION or "model" not in state:
        raise PyrovaeError(f"{path} is not a pyrovae checkpoint (format {FORMAT_VERSION}); "
                           f"delete it and train again")
    return state, {"epoch": state.get("epoch"), "sha256": hashlib.sha256(data).hexdigest()}


def current_checkpoint(run_dir: Path) -> Optional[Dict[str, Any]]:
    """``{"epoch", "sha256"}`` of the checkpoint ``run_dir`` holds now, or None without one."""
    path = _checkpoint_file(run_dir)
    return read_checkpoint(path)[1] if path.is_file() else None


def _checkpoint_file(path: Path) -> Path:
    """``path`` itself, or the checkpoint inside it when it is a run folder."""
    path = Path(path)
    return path / CHECKPOINT if path.is_dir() else path
