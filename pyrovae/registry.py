"""One registry mechanism for every swappable part of an experiment.

Priors, likelihoods, networks, datasets and estimators are each a :class:`Registry` of
named factories. The names are the declarative vocabulary of config files; a factory's
keyword arguments are the options a config may set for it, so the same signature both
builds the part and validates the config.
"""

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional

from .errors import PyrovaeError, did_you_mean


@dataclass(frozen=True)
class Entry:
    """A registered factory with its name and one-line description."""

    name: str
    factory: Callable[..., Any]
    description: str

    def options(self) -> Dict[str, Any]:
        """The options a config may set: keyword-only parameters and their defaults."""
        sig = inspect.signature(self.factory)
        return {
            p.name: list(p.default) if isinstance(p.default, tuple) else p.default
            for p in sig.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }


class Registry:
    """Named factories of one kind of component (``kind`` is used in error messages).

    Factories take their *context* (shapes, sizes the experiment fixes) as positional
    arguments and their user-settable options as keyword-only arguments.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Entry] = {}

    def register(self, name: str, description: Optional[str] = None):
        """Decorator adding a factory under ``name``; the description defaults to the
        first line of the factory's docstring."""

        def add(factory):
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            doc = description or (inspect.getdoc(factory) or "").split("\n")[0]
            self._entries[name] = Entry(name, factory, doc)
            return factory

        return add

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def names(self):
        return list(self._entries)

    def get(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name lists the valid ones and the nearest."""
        try:
            return self._entries[name]
        except KeyError:
            raise PyrovaeError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; "
                f"choose one of: {', '.join(self._entries)}"
            ) from None

    def check_options(self, name: str, options: Dict[str, Any], where: str) -> None:
        """Refuse options that ``name``'s factory does not take, naming the valid ones."""
        valid = self.get(name).options()
        for key in options:
            if key not in valid:
                listed = ", ".join(valid) if valid else "none"
                raise PyrovaeError(
                    f"{where}: {self.kind} '{name}' has no option '{key}'"
                    f"{did_you_mean(str(key), valid)}; its options are: {listed}"
                )

    def resolve_options(self, name: str, options: Dict[str, Any], where: str) -> Dict[str, Any]:
        """All of ``name``'s options: the given ones over the defaults, each checked to be of
        its default's type (:func:`like_default`)."""
        self.check_options(name, options, where)
        resolved = self.get(name).options()
        for key, value in options.items():
            resolved[key] = like_default(resolved[key], value, f"{where}.{key}")
        return resolved

    def build(self, name: str, *context, options: Optional[Dict[str, Any]] = None,
              where: str = ""):
        """Validate ``options`` and call the factory with the context and options."""
        options = dict(options or {})
        self.check_options(name, options, where or self.kind)
        return self.get(name).factory(*context, **options)


def like_default(default: Any, value: Any, where: str) -> Any:
    """``value`` checked against the type of the option's ``default``, so a wrong value is a
    one-line error here rather than a traceback from deep inside a factory: a float default
    takes a finite number (also written as text, like YAML's ``1e-3``), an int default an
    integer, a bool default true or false, a string default a string, and a list default a
    list whose items are like its first item (integers in such lists are sizes: positive).
    A ``None`` default takes anything."""
    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise PyrovaeError(f"{where} must be true or false, got {value!r}")
    if isinstance(default, float):
        number = _number(value)
        if number is None or not math.isfinite(number):
            raise PyrovaeError(f"{where} must be a finite number, got {value!r}")
        return number
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise PyrovaeError(f"{where} must be an integer, got {value!r}")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise PyrovaeError(f"{where} must be a string, got {value!r} (quote it if YAML read it as another type)")
    if isinstance(default, (list, tuple)):
        example = list(default)
        if not isinstance(value, (list, tuple)):
            raise PyrovaeError(f"{where} must be a list like {example}, got {value!r}")
        if not default:
            return list(value)
        items = [like_default(default[0], item, where) for item in value]
        if isinstance(default[0], int) and not isinstance(default[0], bool) and any(i < 1 for i in items):
            raise PyrovaeError(f"{where} must be a list of positive sizes like {example}, got {value!r}")
        return items
    return value


def _number(value: Any) -> Optional[float]:
    """``value`` as a float if it is a number or text that reads as one, else None."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None
