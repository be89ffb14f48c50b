"""What a run was trained from, by content: the sha256 of every plugin and data file.

A run folder's ``config.yaml`` names its plugins and data files by path; a file edited in
place after training would silently change what ``evaluate``, ``--resume``, ``report`` and
``variance`` compute (the same weights under an edited prior give another log p(x)). So training
writes ``inputs.json`` beside the config: the sha256 of each plugin's source as it was
imported and of each data file or folder named by a data option ``path`` or ``*_path`` (the
``array`` dataset's). Opening the run compares them with the files as they are now and
refuses a change in one line naming the file, unless changed inputs are allowed
(``--allow-changed-inputs``, or :func:`changed_inputs_allowed` in Python); then it warns.
A run trained before ``inputs.json`` existed opens unchecked.
"""

import contextlib
import contextvars
import hashlib
import json
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from ..components.datasets import data_root
from ..digests import file_digest
from ..errors import PyrovaeError, warn
from ..plugins import plugin_sha256
from .portable import plugin_copies, run_key

INPUTS = "inputs.json"

_allowed = contextvars.ContextVar("changed_inputs_allowed", default=False)


def changed_inputs_are_allowed() -> bool:
    """Whether the caller allowed changed inputs (to hand on to worker processes, whose context
    does not inherit it)."""
    return _allowed.get()


@contextlib.contextmanager
def changed_inputs_allowed(allowed: bool = True) -> Iterator[None]:
    """Inside the block, a run whose inputs changed since training opens with a warning."""
    token = _allowed.set(allowed)
    try:
        yield
    finally:
        _allowed.reset(token)


def inputs_text(spec, run_dir) -> str:
    """``inputs.json``'s content for a run of ``spec`` in ``run_dir`` (its plugins loaded, its data
    present): files inside the run folder (plugin copies, data kept there) by their names in it."""
    return json.dumps({"sha256": {"plugins": _plugin_hashes(spec, run_dir), "data": _data_hashes(spec, run_dir)}},
                      indent=2) + "\n"


def check_inputs_unchanged(run_dir, spec) -> None:
    """Compare the run's recorded inputs with the files now: refuse (or, where allowed, warn
    about) a plugin or data file whose content changed. Files gone are left to the commands
    that need them, which say so."""
    recorded = _recorded(Path(run_dir))
    if recorded is None:
        return
    now = {"plugins": _plugin_hashes(spec, run_dir), "data": _data_hashes(spec, run_dir)}
    changed = [(kind, path) for kind in ("plugins", "data") for path, digest in recorded.get(kind, {}).items()
               if now[kind].get(path, digest) != digest]
    if not changed:
        return
    kind, path = changed[0]
    what = f"{'plugin' if kind == 'plugins' else 'data file'} {Path(run_dir) / path}"  # a name in the run: in full
    more = f" (and {len(changed) - 1} more input{'s' if len(changed) > 2 else ''})" if len(changed) > 1 else ""
    if _allowed.get():
        warn(f"{what}{more} changed since {run_dir} was trained; using it as it is now, as "
             f"--allow-changed-inputs asks")
        return
    raise PyrovaeError(f"{what}{more} changed since {run_dir} was trained (its sha256 is recorded in {INPUTS}), so "
                       f"results would not be the trained run's; restore the file, or train a new run, or repeat "
                       f"the command with --allow-changed-inputs to use it as it is now")


def _recorded(run_dir: Path) -> Optional[Dict[str, Dict[str, str]]]:
    path = run_dir / INPUTS
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise PyrovaeError(f"{path} is damaged; delete it to open the run without checking its inputs") from None


def _plugin_hashes(spec, run_dir) -> Dict[str, str]:
    """Each plugin's sha256 by the name of its copy in the run folder (modules by their name)."""
    copies = plugin_copies(spec, run_dir)
    hashes = {copies.get(plugin, plugin): plugin_sha256(plugin) for plugin in spec.plugins}
    return {plugin: digest for plugin, digest in hashes.items() if digest is not None}


def _data_hashes(spec, run_dir) -> Dict[str, str]:
    hashes = {}
    for path in _data_paths(spec.data):
        hashes[run_key(path, run_dir)] = folder_sha256(path) if path.is_dir() else file_digest(path)
    return hashes


def _data_paths(data) -> List[Path]:
    """The files and folders named by the data options ``path`` and ``*_path`` (as the
    ``array`` dataset finds them: absolute, or in the working directory or the data root)."""
    found = []
    for key, value in data.options.items():
        if (key == "path" or key.endswith("_path")) and isinstance(value, str) and value:
            given = Path(value).expanduser()
            for candidate in ([given] if given.is_absolute() else [Path.cwd() / given, data_root(data.root) / given]):
                if candidate.exists():
                    found.append(candidate.resolve())
                    break
    return found


def folder_sha256(folder: Path) -> str:
    """One sha256 for a folder's files: their relative paths and contents, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_digest(path)}\n".encode())
    return digest.hexdigest()
