"""Atomic file writes for run and sweep folders: write a temporary file in the same folder,
then rename it over the target, so a reader or an interruption never sees half a file."""

import json
import os
import tempfile
from pathlib import Path


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json_atomic(path, value) -> Path:
    """Write ``value`` as indented JSON to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(value, indent=2) + "\n")
