"""Digests of files' content: which plugin or data file a run was trained with (SHA-256), and
whether a download arrived whole (the checksum its publisher gives)."""

import hashlib
from pathlib import Path


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of ``path``'s bytes, read in blocks of 1 MiB."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
