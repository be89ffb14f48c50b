"""Plugins: your own Python files or modules that register components.

A config lists them under ``plugins:`` (``plugins: [my_components.py, mypkg.vae_parts]``)
and the command line adds more with ``--plugin`` (repeatable). A plugin is imported once per
process; everything it registers with :func:`pyrovae.register` joins the vocabulary beside
the built-ins, marked with the plugin's path in ``pyrovae list``.

A file is named by a path (relative paths are tried against the working directory, then
against the folder of the config that lists it). Training copies it into the run folder
(``RUN/plugins/``, see :mod:`pyrovae.runs.portable`), whose ``config.yaml`` names the copy, so
``--resume``, ``evaluate``, ``variance``, ``report`` and the rest load it from the folder,
wherever the folder is moved. A module is named by its dotted import path. A file with the
content of a plugin already imported is that plugin (the original and its copy register once).

A plugin that fails to import (an exception, ``sys.exit``, ``KeyboardInterrupt``, a change
of the working directory), or registers a name already taken (by a built-in or another
plugin), is a one-line :class:`~pyrovae.errors.PyrovaeError` naming the file, and leaves
nothing of itself registered.

The sha256 of each plugin's source is taken as it is imported (:func:`plugin_sha256`), so a
run folder can record the code it was trained with (see :mod:`pyrovae.runs.inputs`).
"""

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Iterable, List, Optional, Union

from .digests import file_digest
from .errors import PyrovaeError
from .registry import FAMILIES, family_registry, plugin_code, registering_as

_loaded: dict = {}  # plugin (absolute path or module name) -> module
_sha256: dict = {}  # plugin -> sha256 of the source it was imported from (None if it has no file)


def resolve_plugin(plugin: str, config_dir: Optional[Path] = None, config_dir_first: bool = False) -> str:
    """The absolute path of a plugin file, or the module name of an importable module. A relative
    path is looked up in the working directory, then in ``config_dir`` (the other way round with
    ``config_dir_first``: a run folder's plugin copies); a file not found is replaced by a plugin
    file of the same name loaded before (``--plugin`` naming where a run's plugin moved to)."""
    if not isinstance(plugin, str) or not plugin.strip():
        raise PyrovaeError(f"plugins must be file paths or module names, got {plugin!r}")
    looks_like_file = plugin.endswith(".py") or "/" in plugin or "\\" in plugin
    if not looks_like_file:
        return plugin
    path = Path(plugin).expanduser()
    near_config = [config_dir / path] if config_dir else []
    candidates = [path] if path.is_absolute() else (
        near_config + [Path.cwd() / path] if config_dir_first else [Path.cwd() / path] + near_config)
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate.resolve())
        if candidate.is_dir():
            raise PyrovaeError(f"plugin {plugin} is a folder ({candidate.resolve()}), not a Python file; give a .py "
                               f"file, or a package by its module name (e.g. mypkg.parts) with its parent folder "
                               f"on PYTHONPATH")
    stand_in = [loaded for loaded in _loaded if Path(loaded).is_absolute() and Path(loaded).name == path.name]
    if stand_in:
        return stand_in[0]
    where = " or ".join(str(c.parent) for c in candidates)
    raise PyrovaeError(f"plugin file {plugin} not found (looked in {where}); give its path, or where it is now "
                       f"with --plugin NEW_PATH (plugins=[...] in Python)")


def resolve_plugins(plugins: Union[None, str, Iterable[str]], config_dir: Optional[Path] = None,
                    config_dir_first: bool = False) -> List[str]:
    """``plugins`` (one or a list) resolved by :func:`resolve_plugin`, without repeats."""
    if plugins is None:
        return []
    if isinstance(plugins, str):
        plugins = [plugins]
    if not isinstance(plugins, (list, tuple)):
        raise PyrovaeError(f"plugins must be a list of file paths or module names, got {plugins!r}")
    resolved = []
    for plugin in plugins:
        name = resolve_plugin(plugin, config_dir, config_dir_first)
        if name not in resolved:
            resolved.append(name)
    return resolved


def load_plugins(plugins: Iterable[str], config_dir: Optional[Path] = None,
                 config_dir_first: bool = False) -> List[str]:
    """Import every plugin (a file or a module) not imported yet; return their resolved names.
    A file with the content of one already imported (a run folder's copy of a plugin file) is
    that plugin: its components are registered once."""
    resolved = resolve_plugins(list(plugins), config_dir, config_dir_first)
    for plugin in resolved:
        if plugin in _loaded:
            continue
        twin = _same_content(plugin)
        if twin is not None:
            _loaded[plugin], _sha256[plugin] = _loaded[twin], _sha256[twin]
            continue
        _loaded[plugin] = _import(plugin)
        _sha256[plugin] = _source_sha256(_loaded[plugin])
    return resolved


def _same_content(plugin: str) -> Optional[str]:
    """A loaded plugin file whose source has the sha256 of the file ``plugin``, if any."""
    if not Path(plugin).is_absolute():
        return None
    digest = file_digest(Path(plugin))
    return next((p for p, d in _sha256.items() if d == digest and Path(p).is_absolute()), None)


def plugin_sha256(plugin: str) -> Optional[str]:
    """The sha256 of the source the loaded ``plugin`` was imported from (None for a module
    without a source file)."""
    return _sha256.get(plugin)


def _source_sha256(module) -> Optional[str]:
    source = getattr(module, "__file__", None)
    return file_digest(Path(source)) if source and Path(source).is_file() else None


def forget_plugins() -> None:
    """Unregister every plugin's components and forget the plugins, so that loading them again
    imports them afresh (for a notebook reloading an edited plugin, and for tests)."""
    for plugin in list(_loaded):
        for registry in FAMILIES.values():
            registry.remove_origin(plugin)
        sys.modules.pop(_loaded.pop(plugin).__name__, None)  # a copy's entry shares its original's module
        _sha256.pop(plugin, None)


def _import(plugin: str):
    family_registry("prior")  # register the built-ins first, so a clash is the plugin's
    is_file = Path(plugin).is_absolute()
    expects = "fix it or remove it from plugins"
    try:
        with registering_as(plugin), plugin_code(f"plugin {plugin}", plugin, "to import", expects):
            if not is_file:
                return importlib.import_module(plugin)
            # A module name unique to the file, so two plugins called parts.py do not collide.
            name = f"pyrovae_plugin_{Path(plugin).stem}_{hashlib.sha1(plugin.encode()).hexdigest()[:8]}"
            spec = importlib.util.spec_from_file_location(name, plugin)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
            return module
    except PyrovaeError as exc:
        if str(exc).startswith(f"plugin {plugin} "):
            raise
        raise PyrovaeError(f"plugin {plugin}: {exc}") from None
