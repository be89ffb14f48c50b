"""One registry mechanism for every swappable part of an experiment, and the public way to add parts.

Priors, likelihoods, networks, datasets, estimators, optimizers and learning-rate schedules
are each a :class:`Registry` of named factories. The names are the declarative vocabulary of
config files; a factory's keyword-only arguments are the options a config may set for it, so
the same signature both builds the part and validates the config.

Your own parts join the same vocabulary through :func:`register`::

    import pyrovae

    @pyrovae.register("prior", "student_t")
    def student_t(latent_dim, *, df=5.0):
        ...

and become usable from a config once the file is listed under ``plugins:`` (or given to
``--plugin``); see :mod:`pyrovae.plugins` and docs/extending.md.
"""

import contextlib
import contextvars
import importlib
import inspect
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional

from .errors import PyrovaeError, did_you_mean

BUILT_IN = "built-in"

# Every registry by family name, filled as the component modules are imported.
FAMILIES: Dict[str, "Registry"] = {}

# The modules whose import registers the built-in parts of each family.
_BUILT_IN_MODULES = ("pyrovae.components", "pyrovae.components.datasets", "pyrovae.inference.estimators",
                     "pyrovae.inference.optim")

# Where the factories being registered come from: "built-in", or the plugin being loaded.
_origin = contextvars.ContextVar("registration_origin", default=BUILT_IN)


class _Required:
    """The default shown for a keyword-only option declared without one: a config must set it."""

    def __repr__(self) -> str:
        return "<required>"


REQUIRED = _Required()


@dataclass(frozen=True)
class Contract:
    """What a family's factory must return: ``description`` for messages, ``holds`` to check it."""

    description: str
    holds: Callable[[Any], bool]


@dataclass(frozen=True)
class Entry:
    """A registered factory with its name, one-line description and origin (``"built-in"``
    or the plugin that registered it)."""

    name: str
    factory: Callable[..., Any]
    description: str
    origin: str = BUILT_IN

    def options(self) -> Dict[str, Any]:
        """The options a config may set: keyword-only parameters and their defaults
        (:data:`REQUIRED` for one declared without a default)."""
        sig = inspect.signature(self.factory)
        return {
            p.name: _shown_default(p.default)
            for p in sig.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }

    @property
    def from_plugin(self) -> bool:
        return self.origin != BUILT_IN


def _shown_default(default: Any) -> Any:
    if default is inspect.Parameter.empty:
        return REQUIRED
    return list(default) if isinstance(default, tuple) else default


NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")  # names of registered parts, as written in configs

class Registry:
    """Named factories of one family of components (``kind`` names it in messages).

    A factory takes the *inputs* pyrovae gives its family (shapes and sizes the experiment
    fixes: ``inputs``), by name, and declares only those it needs; its keyword-only
    arguments are the user-settable options, with defaults.
    """

    def __init__(self, kind: str, inputs: tuple = (), contract: Optional[Contract] = None):
        self.kind = kind
        self.inputs = tuple(inputs)
        self.contract = contract
        self._entries: Dict[str, Entry] = {}
        FAMILIES[kind.replace(" ", "_")] = self

    def register(self, name: str, description: Optional[str] = None):
        """Decorator adding a factory under ``name``; the description defaults to the
        first paragraph of the factory's docstring. A name is registered once."""

        def add(factory):
            if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
                raise PyrovaeError(f"{self.kind} name {name!r} must start with a letter and hold only "
                                   f"letters, digits, _ and -")
            if name in self._entries:
                raise PyrovaeError(f"{self.kind} '{name}' is already registered "
                                   f"({self._entries[name].origin}); choose another name")
            doc = description or first_paragraph(inspect.getdoc(factory) or "")
            self._entries[name] = Entry(name, factory, doc, _origin.get())
            return factory

        return add

    def remove_origin(self, origin: str) -> None:
        """Forget every entry registered by ``origin`` (a plugin that failed half-way)."""
        self._entries = {k: e for k, e in self._entries.items() if e.origin != origin}

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def names(self):
        return list(self._entries)

    def label(self, name: str) -> str:
        """``prior 'student_t' (from plugin /home/me/parts.py)``: the part as messages name it."""
        entry = self.get(name)
        return f"{self.kind} '{name}'" + (f" (from plugin {entry.origin})" if entry.from_plugin else "")

    def get(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name lists the valid ones and the nearest."""
        try:
            return self._entries[name]
        except KeyError:
            raise PyrovaeError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; "
                f"choose one of: {', '.join(self._entries)} (or load a plugin that registers it)"
            ) from None

    def check_options(self, name: str, options: Dict[str, Any], where: str) -> None:
        """Refuse options that ``name``'s factory does not take, naming the valid ones."""
        valid = self.get(name).options()
        for key in options:
            if key not in valid:
                listed = ", ".join(valid) if valid else "none"
                raise PyrovaeError(
                    f"{where}: {self.label(name)} has no option '{key}'"
                    f"{did_you_mean(str(key), valid)}; its options are: {listed}"
                )

    def resolve_options(self, name: str, options: Dict[str, Any], where: str) -> Dict[str, Any]:
        """All of ``name``'s options: the given ones over the defaults, each checked to be of
        its default's type (:func:`like_default`)."""
        self.check_options(name, options, where)
        resolved = self.get(name).options()
        for key, value in options.items():
            resolved[key] = like_default(resolved[key], value, f"{where}.{key}")
        missing = [key for key, value in resolved.items() if value is REQUIRED]
        if missing:
            raise PyrovaeError(f"{where}: {self.label(name)} needs the option '{missing[0]}', which has no default; "
                               f"set it, e.g. {where}.{missing[0]}=VALUE (or give it a default in the factory)")
        return resolved

    def build(self, name: str, inputs: Optional[Dict[str, Any]] = None,
              options: Optional[Dict[str, Any]] = None, where: str = ""):
        """Check ``options`` and call the factory with the inputs it declares and the options."""
        where = where or self.kind
        entry = self.get(name)
        options = self.resolve_options(name, dict(options or {}), where)
        arguments = {**self._inputs_for(entry, dict(inputs or {}), where), **options}
        expects = f"its factory must return {self.contract.description}" if self.contract else ""
        with plugin_code(f"{where}: {self.label(name)}", entry.origin, "when built", expects or "fix it"):
            part = entry.factory(**arguments)
        if self.contract is not None and not self.contract.holds(part):
            raise PyrovaeError(f"{where}: {self.label(name)} returned {_shown(part)}; {expects}")
        return part

    def _inputs_for(self, entry: Entry, inputs: Dict[str, Any], where: str) -> Dict[str, Any]:
        """The subset of ``inputs`` that ``entry``'s factory declares (all of them if it takes
        ``**kwargs``); a required parameter pyrovae does not give is a one-line error."""
        params = [p for p in inspect.signature(entry.factory).parameters.values()
                  if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return inputs
        chosen = {}
        for p in params:
            if p.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if p.name in inputs and p.kind is not inspect.Parameter.POSITIONAL_ONLY:
                chosen[p.name] = inputs[p.name]
            elif p.default is inspect.Parameter.empty:
                given = ", ".join(self.inputs) or "none"
                raise PyrovaeError(f"{where}: {self.label(entry.name)} takes an input "
                                   f"'{p.name}' that pyrovae does not give; {self.kind} inputs are: {given} "
                                   f"(make '{p.name}' keyword-only to turn it into an option)")
        return chosen


def first_paragraph(doc: str) -> str:
    """The first paragraph of a docstring as one line: what ``pyrovae list`` shows of a part,
    whole sentences however the docstring wraps them."""
    return " ".join(doc.split("\n\n")[0].split())


def like_default(default: Any, value: Any, where: str) -> Any:
    """``value`` checked against the type of the option's ``default``, so a wrong value is a
    one-line error here rather than a traceback from deep inside a factory: a float default
    takes a finite number (also written as text, like YAML's ``1e-3``), an int default an
    integer, a bool default true or false, a string default a string, and a list default a
    list whose items are like its first item (integers in such lists are sizes: positive).
    A ``None`` default, and a :data:`REQUIRED` option, take anything."""
    if default is None or default is REQUIRED:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise PyrovaeError(f"{where} must be true or false, got {_brief(value)}")
    if isinstance(default, float):
        number = _number(value)
        if number is None or not math.isfinite(number):
            raise PyrovaeError(f"{where} must be a finite number, got {_brief(value)}")
        return number
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise PyrovaeError(f"{where} must be an integer, got {_brief(value)}")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise PyrovaeError(f"{where} must be a string, got {_brief(value)} (quote it if YAML read it as another type)")
    if isinstance(default, (list, tuple)):
        example = list(default)
        if not isinstance(value, (list, tuple)):
            raise PyrovaeError(f"{where} must be a list like {example}, got {_brief(value)}")
        if not default:
            return list(value)
        items = [like_default(default[0], item, where) for item in value]
        if isinstance(default[0], int) and not isinstance(default[0], bool) and any(i < 1 for i in items):
            raise PyrovaeError(f"{where} must be a list of positive sizes like {example}, got {_brief(value)}")
        return items
    return value


def _brief(value: Any) -> str:
    """``value`` as a message quotes it: its repr when short, else its type (and shape), so that
    a tensor given as an option is one short line, not the whole tensor."""
    text = repr(value)
    if len(text) <= 80 and "\n" not in text:
        return text
    shape = getattr(value, "shape", None)
    return f"a {type(value).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")


def _shown(value: Any) -> str:
    """A returned value as a message shows it: ``42 (int)``, ``a Tensor``, ``None``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return f"{value!r} ({type(value).__name__})" if value is not None else "None"
    return f"a {type(value).__name__}"


def _number(value: Any) -> Optional[float]:
    """``value`` as a float if it is a number or text that reads as one, else None."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


# ----------------------------------------------------------------------------- the public API

def register(family: str, name: str, description: Optional[str] = None):
    """Decorator adding your own component to a family's vocabulary under ``name``.

    ``family`` is one of ``prior``, ``likelihood``, ``network``, ``guide``, ``dataset``, ``estimator``,
    ``optimizer``, ``lr_schedule``. The decorated factory (a function or a class) is called
    with the *inputs* the family gives, by name (declare only those you need), and with its
    keyword-only arguments as the options a config may set (one without a default is required:
    a config that leaves it out is refused, naming it). Option values are checked against
    each default's type (float, int, bool, str); check ranges yourself and raise
    :class:`pyrovae.PyrovaeError` with a message saying what to do. The first paragraph of the
    docstring is what ``pyrovae list`` shows. What each family's factory must return:

    - ``prior``, inputs ``latent_dim``, ``encode``, ``data_shape``: an ``nn.Module`` whose call
      (no arguments) returns a Pyro distribution with batch shape ``()`` and event shape
      ``(latent_dim,)``; keep tensors in buffers or parameters so they follow the device.
      ``encode(x)`` is the guide's (loc, scale) (None for a conditional VAE; refused for a guide
      other than the diagonal Gaussian).
    - ``likelihood``, no inputs: a :class:`pyrovae.Likelihood` with ``num_params`` (decoder
      outputs per data element), ``data_kind`` (the data it fits), ``distribution(*params)``,
      ``mean(*params)`` and ``raw_location(mean)`` (see :class:`pyrovae.Likelihood`).
    - ``network``, inputs ``in_shape``, ``out_shape``, ``cond_dim``: an ``nn.Module`` mapping
      ``(..., *in_shape)`` (and a condition ``(..., cond_dim)`` or None) to
      ``(..., *out_shape)``; the encoder's ``out_shape`` is the guide family's
      ``encoder_out_shape`` (``(2, latent_dim)``, loc and log scale, for the default guide), the
      decoder's ``(num_params, *data_shape)``. A decoder used with ``model.data_init`` needs
      ``set_output_bias(index, value)``.
    - ``guide``, input ``latent_dim``: a :class:`pyrovae.components.guides.Guide` (an
      ``nn.Module`` with ``encoder_out_shape``, ``support``, ``reparameterized``,
      ``gaussian_kind`` and ``code``) whose call ``(encoding, target=None)`` maps the
      encoder's output to q(z|x), a distribution with event shape ``(latent_dim,)``.
    - ``latent``, no inputs: a :class:`pyrovae.components.discrete_latents.LatentFamily` naming
      the prior and the guide (with their options) that ``model.latent`` stands for.
    - ``dataset``, no inputs: a :class:`pyrovae.components.datasets.Source`.
    - ``estimator``, no inputs: a Pyro loss (an ELBO object with ``loss`` and
      ``loss_and_grads``).
    - ``optimizer``, no inputs: a ``pyro.optim`` optimizer; ``lr_schedule``, input
      ``train_epochs`` (the run's ``train.epochs``): a function of the epoch returning a factor
      on the learning rate.

    What a factory returns, and what its part computes on the first training batch, is checked
    against this contract (:mod:`pyrovae.training.first_batch`); a part that breaks it, or plugin
    code that raises, exits or changes the working directory, is a one-line error naming the
    part and its plugin. A name already registered (a built-in or another plugin's) is refused.
    """
    return family_registry(family).register(name, description)


def family_registry(family: str) -> Registry:
    """The registry of ``family``, with its built-in parts registered."""
    for module in _BUILT_IN_MODULES:
        importlib.import_module(module)
    if family not in FAMILIES:
        raise PyrovaeError(f"unknown component family '{family}'{did_you_mean(family, FAMILIES)}; "
                           f"choose one of: {', '.join(FAMILIES)}")
    return FAMILIES[family]


# ----------------------------------------------------------------------------- running plugin code

@contextlib.contextmanager
def plugin_code(what: str, origin: str, during: str, expects: str = "fix it"):
    """Run code of ``origin`` (a plugin; built-in code runs unguarded, its failures are bugs).

    An exception, ``SystemExit`` or ``KeyboardInterrupt`` it raises becomes a one-line
    :class:`PyrovaeError`: ``{what} failed {during} (line N): {exception}; {expects}``, naming
    the part and its plugin, the plugin's line and what the contract asks; a plugin's own
    PyrovaeError passes unchanged. A plugin that changes the working directory is refused
    and the directory put back, since relative paths (a run folder's among them) would
    silently point elsewhere."""
    if origin == BUILT_IN:
        yield
        return
    cwd = os.getcwd()
    try:
        yield
    except PyrovaeError:
        raise
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        if not isinstance(exc, Exception):
            expects += "; to stop, a plugin raises pyrovae.PyrovaeError with a message saying what to change"
        raise PyrovaeError(f"{what} failed {during}{line_in(exc, origin)}: {type(exc).__name__}"
                           f"{': ' + detail if detail else ''}; {expects}") from None
    finally:
        moved_to = os.getcwd()
        os.chdir(cwd)
    if moved_to != cwd:
        raise PyrovaeError(f"{what} changed the working directory to {moved_to}; a plugin must leave it as it is "
                           f"(open files by absolute path instead)")


def line_in(exc: BaseException, path: str) -> str:
    """`` (line N)``: the last line of the file ``path`` in the exception's traceback, if any."""
    if isinstance(exc, SyntaxError) and exc.lineno and exc.filename == path:
        return f" (line {exc.lineno})"
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" (line {line})" if line else ""


@contextlib.contextmanager
def registering_as(origin: str):
    """Record ``origin`` on everything registered inside the block; on an error, forget it all."""
    token = _origin.set(origin)
    try:
        yield
    except BaseException:
        for registry in FAMILIES.values():
            registry.remove_origin(origin)
        raise
    finally:
        _origin.reset(token)
