"""A training start that fails before saving anything leaves no run folder behind.

Training takes the folder's lock (``train.lock``) before it builds the model, so a config
or a plugin that fails there (a factory that raises, a part that breaks its contract) would
leave a folder holding only the lock: it looks like a run, and ``--resume`` can do nothing
with it. :func:`nothing_left_on_failure` removes the lock again, and the folder if the
start created it; a folder holding anything else is left exactly as it is.
"""

import contextlib
from pathlib import Path
from typing import Iterator

from .checkpoint import LOCK


@contextlib.contextmanager
def nothing_left_on_failure(run_dir: Path, existed: bool) -> Iterator[None]:
    """Enter while holding ``run_dir``'s lock; if the block fails (however: an error, an
    interrupt) and the folder holds nothing but the lock, remove the lock, and the folder
    unless it ``existed`` before the start."""
    try:
        yield
    except BaseException:
        run_dir = Path(run_dir)
        if [p.name for p in run_dir.iterdir()] == [LOCK]:
            (run_dir / LOCK).unlink()
            if not existed:
                run_dir.rmdir()
        raise
