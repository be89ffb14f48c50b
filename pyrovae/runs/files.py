"""Atomic files: a run folder never holds a half-written file.

Every file pyrovae writes into a run folder goes through :func:`staged_writes` (or its
one-file form :func:`write_atomic`): the new content is written in full to a temporary
file beside its target, flushed to disk, and only then renamed over the target. An
interruption at any point leaves the old file or the new one, never a mixture. Files
written together (a checkpoint and the metrics it ends) are all staged before the first
rename, so a full disk or a read-only folder, which fail while staging, leave every old
file as it was.

Errors a user can fix (no space, read-only file system, no permission) become one-line
:class:`WriteFailed` errors naming the file; anything else stays a traceback (a bug).
"""

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

from ..errors import PyrovaeError

TEMP_SUFFIX = ".tmp"
_HINTS = {
    errno.ENOSPC: "the disk is full; free some space",
    errno.EDQUOT: "the disk quota is used up; free some space",
    errno.EFBIG: "the file is too large for this file system",
    errno.EROFS: "the file system is read-only; use a writable folder",
    errno.EACCES: "no permission to write there; use a folder you can write to",
    errno.EPERM: "no permission to write there; use a folder you can write to",
}


class WriteFailed(PyrovaeError):
    """A file could not be written for a reason the user can fix (full disk, read-only
    folder, no permission); the file's previous version is untouched."""


def write_failure(exc: OSError, path) -> PyrovaeError:
    """The one-line error for ``exc`` raised while writing ``path``, or ``exc`` itself
    when it is not a fault of the disk or the folder."""
    hint = _HINTS.get(exc.errno)
    if hint is None:
        return exc
    return WriteFailed(f"cannot write {path}: {os.strerror(exc.errno)} ({hint})")


@contextmanager
def translated_write_errors(path) -> Iterator[None]:
    """Turn disk and permission faults inside the block into :class:`WriteFailed`."""
    try:
        yield
    except OSError as exc:
        raise write_failure(exc, path) from None


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_current_umask()  # what open() would give a new file (mkstemp gives 0o600)


def temp_name_prefix(target: Path) -> str:
    """Temporary files for ``target`` are ``.<name>.<random>.tmp`` in the same folder."""
    return f".{target.name}."


def _write_temp(fd: int, data: bytes, target: Path) -> None:
    """Write all of ``data`` to the open temporary file ``fd`` (for ``target``) and flush it
    to disk. One function, so tests can stop a process in the middle of a write."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


class StagedWrites:
    """Files to replace together: :meth:`write` stages each one in full; :meth:`commit`
    renames them all over their targets, in the order they were staged."""

    def __init__(self) -> None:
        self._staged: List[Tuple[str, Path]] = []

    def write(self, path: Union[str, Path], data: Union[bytes, str]) -> None:
        path = Path(path)
        if isinstance(data, str):
            data = data.encode("utf-8")
        with translated_write_errors(path):
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_name_prefix(path), suffix=TEMP_SUFFIX)
            self._staged.append((tmp, path))
            try:
                os.fchmod(fd, FILE_MODE)
                _write_temp(fd, data, path)
            finally:
                os.close(fd)

    def commit(self) -> None:
        while self._staged:
            tmp, path = self._staged[0]
            with translated_write_errors(path):
                os.replace(tmp, path)
            self._staged.pop(0)

    def discard(self) -> None:
        for tmp, _ in self._staged:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        self._staged.clear()


@contextmanager
def staged_writes() -> Iterator[StagedWrites]:
    """Stage files inside the block; they replace their targets when it ends without an
    error, and none of them does if anything fails."""
    group = StagedWrites()
    try:
        yield group
        group.commit()
    finally:
        group.discard()


def write_atomic(path: Union[str, Path], data: Union[bytes, str]) -> Path:
    """Replace ``path`` with ``data`` (bytes, or text written as UTF-8) atomically."""
    with staged_writes() as group:
        group.write(path, data)
    return Path(path)


def make_folder(path: Union[str, Path]) -> Path:
    """``mkdir -p`` with disk and permission faults as one-line errors."""
    path = Path(path)
    with translated_write_errors(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


def check_writable(folder: Union[str, Path]) -> None:
    """Refuse a folder no file can be written into, before any work is done for it."""
    folder = Path(folder)
    with translated_write_errors(folder):
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-check.", suffix=TEMP_SUFFIX)
        os.close(fd)
        os.unlink(tmp)


def remove_stale_temp_files(folder: Union[str, Path], names: Optional[Sequence[str]] = None) -> List[Path]:
    """Delete temporary files that an interrupted process left for the targets ``names``
    (all targets if None) in ``folder`` (call only while no other process writes them)."""
    removed = []
    for name in names or ["*"]:
        for tmp in Path(folder).glob(f".{name}.*{TEMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
