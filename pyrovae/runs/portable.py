"""Portable run folders: a run folder carries its plugin files and names its own files by
relative paths, so it can be moved (to another folder or machine) and opened there.

Training copies every plugin *file* the run uses into ``RUN/plugins/`` (byte for byte; its
sha256 goes into ``inputs.json``), and the run's ``config.yaml`` names the copies, and any data
file kept inside the run folder (``data.npz`` of data given in memory), relative to the folder.
:func:`pyrovae.spec.load_config` resolves those against the run folder, so every command loads
the copies, wherever the folder now lies. A plugin given by module name is recorded by that
name and must be importable where the run is opened.
"""

import dataclasses
import hashlib
from pathlib import Path
from typing import Dict

from ..spec import ExperimentSpec

PLUGINS = "plugins"  # the folder in a run that holds its plugin files


def is_file_plugin(plugin: str) -> bool:
    """Whether a resolved plugin is a file (an absolute path) rather than a module name."""
    return Path(plugin).is_absolute()


def plugin_copies(spec: ExperimentSpec, run_dir: Path) -> Dict[str, str]:
    """Each plugin file of ``spec`` -> its name inside ``run_dir`` (``plugins/parts.py``); a copy
    already inside the folder keeps its name, two files of one name are told apart by hash."""
    run_dir = Path(run_dir).resolve()
    names, taken = {}, set()
    for plugin in filter(is_file_plugin, spec.plugins):
        inside = _inside(Path(plugin), run_dir)
        if inside is not None:
            names[plugin] = inside
            taken.add(inside)
    for plugin in filter(is_file_plugin, spec.plugins):
        if plugin in names:
            continue
        path = Path(plugin)
        name = f"{PLUGINS}/{path.name}"
        if name in taken:
            name = f"{PLUGINS}/{path.stem}_{hashlib.sha256(plugin.encode()).hexdigest()[:8]}{path.suffix}"
        names[plugin] = name
        taken.add(name)
    return names


def relative_spec(spec: ExperimentSpec, run_dir: Path, copies: Dict[str, str]) -> ExperimentSpec:
    """``spec`` as the run folder's config records it: plugin files by their copies' names, data
    files inside the folder relative to it."""
    data = dataclasses.replace(spec.data, options=dict(spec.data.options))
    for key, value in data.options.items():
        if (key == "path" or key.endswith("_path")) and isinstance(value, str) and value:
            inside = _inside(Path(value), Path(run_dir).resolve())
            if inside is not None:
                data.options[key] = inside
    plugins = [copies.get(plugin, plugin) for plugin in spec.plugins]
    return dataclasses.replace(spec, plugins=plugins, data=data)


def run_key(path, run_dir) -> str:
    """How ``inputs.json`` names a file: relative to the run folder if inside it, else absolute."""
    inside = _inside(Path(path), Path(run_dir).resolve()) if run_dir is not None else None
    return inside if inside is not None else str(path)


def _inside(path: Path, run_dir: Path):
    """``path`` relative to ``run_dir`` (POSIX) if it lies inside it, else None."""
    if not path.is_absolute():
        return None
    try:
        return path.resolve().relative_to(run_dir).as_posix()
    except ValueError:
        return None
