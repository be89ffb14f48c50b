"""Plugins: your own Python files or modules that register components.

A config lists them under ``plugins:`` (``plugins: [my_components.py, mypkg.vae_parts]``)
and the command line adds more with ``--plugin`` (repeatable). A plugin is imported once per
process; everything it registers with :func:`pyrovae.register` joins the vocabulary beside
the built-ins, marked with the plugin's path in ``pyrovae list``.

A file is named by a path (relative paths are tried against the working directory, then
against the folder of the config that lists it) and recorded in the run folder's
``config.yaml`` by its absolute path, so ``--resume``, ``evaluate``, ``variance`` and
``report`` load it again from anywhere. A module is named by its dotted import path.

A plugin that fails to import, or registers a name already taken (by a built-in or another
plugin), is a one-line :class:`~pyrovae.errors.PyrovaeError` naming the file, and leaves
nothing of itself registered.
"""

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Iterable, List, Optional, Union

from .errors import PyrovaeError
from .registry import FAMILIES, family_registry, registering_as

_loaded: dict = {}  # plugin (absolute path or module name) -> module


def resolve_plugin(plugin: str, config_dir: Optional[Path] = None) -> str:
    """The absolute path of a plugin file, or the module name of an importable module."""
    if not isinstance(plugin, str) or not plugin.strip():
        raise PyrovaeError(f"plugins must be file paths or module names, got {plugin!r}")
    looks_like_file = plugin.endswith(".py") or "/" in plugin or "\\" in plugin
    if not looks_like_file:
        return plugin
    path = Path(plugin).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path] + ([config_dir / path] if config_dir else [])
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate.resolve())
    where = " or ".join(str(c.parent) for c in candidates)
    raise PyrovaeError(f"plugin file {plugin} not found (looked in {where}); give its path")


def resolve_plugins(plugins: Union[None, str, Iterable[str]], config_dir: Optional[Path] = None) -> List[str]:
    """``plugins`` (one or a list) resolved by :func:`resolve_plugin`, without repeats."""
    if plugins is None:
        return []
    if isinstance(plugins, str):
        plugins = [plugins]
    if not isinstance(plugins, (list, tuple)):
        raise PyrovaeError(f"plugins must be a list of file paths or module names, got {plugins!r}")
    resolved = []
    for plugin in plugins:
        name = resolve_plugin(plugin, config_dir)
        if name not in resolved:
            resolved.append(name)
    return resolved


def load_plugins(plugins: Iterable[str], config_dir: Optional[Path] = None) -> List[str]:
    """Import every plugin (a file or a module) not imported yet; return their resolved names."""
    resolved = resolve_plugins(list(plugins), config_dir)
    for plugin in resolved:
        if plugin not in _loaded:
            _loaded[plugin] = _import(plugin)
    return resolved


def forget_plugins() -> None:
    """Unregister every plugin's components and forget the plugins, so that loading them again
    imports them afresh (for a notebook reloading an edited plugin, and for tests)."""
    for plugin in list(_loaded):
        for registry in FAMILIES.values():
            registry.remove_origin(plugin)
        sys.modules.pop(_loaded.pop(plugin).__name__, None)


def _import(plugin: str):
    family_registry("prior")  # register the built-ins first, so a clash is the plugin's
    is_file = Path(plugin).is_absolute()
    try:
        with registering_as(plugin):
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
        raise PyrovaeError(f"plugin {plugin}: {exc}") from None
    except Exception as exc:
        where = _line_in(exc, plugin) if is_file else ""
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise PyrovaeError(f"plugin {plugin} failed to import{where}: {type(exc).__name__}"
                           f"{': ' + detail if detail else ''}; fix it or remove it from plugins") from None


def _line_in(exc: BaseException, path: str) -> str:
    """`` (line N)``: the last line of ``path`` in the exception's traceback, if any."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" (line {exc.lineno})"
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" (line {line})" if line else ""
