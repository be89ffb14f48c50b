"""The declarative experiment description.

An experiment is one :class:`ExperimentSpec`: dataclasses that load from YAML or JSON,
accept dotted overrides (``model.prior.name=vamp``) and are validated against the
component registries, so a typo is caught before any work starts. Swappable parts are
:class:`ComponentSpec` s: a registry ``name`` plus the options its factory takes.
"""

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import PyrovaeError, did_you_mean, positive_int, seed_value

DEFAULT_GUIDE = "diagonal_normal"
DEFAULT_PRIOR = "standard_normal"
DEFAULT_LATENT = "gaussian"


@dataclass
class ComponentSpec:
    """A registry name and the options passed to its factory.

    In a file the options sit beside the name: ``{name: mog, num_components: 10}``.
    """

    name: str
    options: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, **self.options}


def _component(name: str) -> Any:
    return field(default_factory=lambda: ComponentSpec(name))


@dataclass
class DataSpec:
    """Where the data comes from. ``root`` falls back to ``$PYROVAE_DATA``, then
    ``~/.cache/pyrovae``; ``train_size`` keeps only the first N training points."""

    name: str = "binarized_mnist"
    root: Optional[str] = None
    binarize: str = "none"
    download: bool = False
    train_size: Optional[int] = None
    options: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        plain = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "options"}
        return {**plain, **self.options}


@dataclass
class ModelSpec:
    """The generative model p(z) p(x|z) and the amortized guide q(z|x): the encoder network
    and the ``guide`` family reading its output. With ``data_init`` the decoder starts at
    the training data's mean image. ``latent`` names the latent space's family (gaussian,
    bernoulli, categorical), which sets the prior and the guide wherever they are left at
    the Gaussian defaults (:mod:`pyrovae.components.discrete_latents`)."""

    latent_dim: int = 20
    latent: ComponentSpec = _component(DEFAULT_LATENT)
    conditional: bool = False
    data_init: bool = True
    prior: ComponentSpec = _component(DEFAULT_PRIOR)
    likelihood: ComponentSpec = _component("bernoulli")
    encoder: ComponentSpec = _component("mlp")
    decoder: ComponentSpec = _component("mlp")
    guide: ComponentSpec = _component(DEFAULT_GUIDE)

    def to_dict(self) -> Dict[str, Any]:
        """The fields as a config holds them; the default guide and latent family are left
        out, so configs saved before they were chosen in the config read the same, and so
        are a discrete family's prior and guide where they are the ones it implies (a saved
        config then names the family once, and an override of its options reaches both)."""
        plain = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.latent == ComponentSpec(DEFAULT_LATENT):
            del plain["latent"]
        else:
            implied = implied_by_latent(self.latent)
            for key in ("prior", "guide"):
                if plain[key] == implied[key]:
                    del plain[key]
        if "guide" in plain and self.guide == ComponentSpec(DEFAULT_GUIDE):
            del plain["guide"]
        return plain


def implied_by_latent(latent: ComponentSpec) -> Dict[str, ComponentSpec]:
    """The prior and the guide the latent family ``latent`` stands for (its options resolved)."""
    from .components import GUIDES, LATENTS, PRIORS

    family = LATENTS.build(latent.name, options=latent.options, where="model.latent")
    return {"prior": ComponentSpec(family.prior, PRIORS.resolve_options(family.prior, family.prior_options,
                                                                        "model.prior")),
            "guide": ComponentSpec(family.guide, GUIDES.resolve_options(family.guide, family.guide_options,
                                                                        "model.guide"))}


def _apply_latent_family(model: ModelSpec) -> None:
    """Give the prior and the guide left at the Gaussian defaults those of ``model.latent``."""
    from .components import LATENTS

    model.latent.options = LATENTS.resolve_options(model.latent.name, model.latent.options, "model.latent")
    implied = implied_by_latent(model.latent)
    if model.prior == ComponentSpec(DEFAULT_PRIOR):
        model.prior = implied["prior"]
    if model.guide == ComponentSpec(DEFAULT_GUIDE):
        model.guide = implied["guide"]


@dataclass
class QualitySpec:
    """Sample quality during training (:mod:`pyrovae.sample_quality`): every ``every`` epochs
    (0: never, the default; it costs time) and at the last one, the Fréchet distance,
    precision and recall of ``samples`` samples, in the features of the dataset's classifier
    or, given ``inception`` (a weights file), of Inception v3."""

    every: int = 0
    samples: int = 2000
    inception: Optional[str] = None


@dataclass
class TrainSpec:
    """The SVI loop. ``kl_warmup_epochs`` ramps the KL weight linearly from a small
    positive value to 1; ``early_stopping_patience`` stops after that many epochs after
    warm-up without a better validation ELBO (``None``: never); ``lr_schedule`` scales the
    optimizer's ``lr`` by epoch; ``compile`` records the step (model, guide, loss and
    gradient) once per minibatch shape and compiles it (see :mod:`pyrovae.inference.compiled`);
    ``jit``, the switch of the Pyro JIT it replaced, is kept so that configs and run folders
    naming it load, and ``true`` compiles as ``compile`` does; ``log: tensorboard`` also
    logs to TensorBoard (beside metrics.csv, which is always written)."""

    epochs: int = 10
    batch_size: int = 100
    optimizer: ComponentSpec = _component("adam")
    lr_schedule: ComponentSpec = _component("constant")
    estimator: ComponentSpec = _component("pathwise")
    kl_warmup_epochs: float = 0.0
    early_stopping_patience: Optional[int] = None
    device: str = "auto"
    jit: bool = False
    compile: bool = False
    progress: bool = True
    log: Optional[str] = None
    quality: QualitySpec = field(default_factory=QualitySpec)

    def to_dict(self) -> Dict[str, Any]:
        """The fields, ``quality`` only when it is switched on (so configs without it read as before)."""
        plain = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if plain["quality"] == QualitySpec():
            del plain["quality"]
        return plain


@dataclass
class ExperimentSpec:
    """A whole experiment: reproducible from this and nothing else. ``plugins`` are files or
    modules registering components the config uses (see :mod:`pyrovae.plugins`)."""

    name: str = "experiment"
    seed: int = 0
    plugins: List[str] = field(default_factory=list)
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)

    def to_dict(self) -> Dict[str, Any]:
        return _to_plain(self)


# ----------------------------------------------------------------------------- loading

BINARIZE_CHOICES = ("none", "static", "dynamic")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
STRING_CHOICES = {"data.binarize": BINARIZE_CHOICES, "train.device": DEVICE_CHOICES}
LOG_CHOICES = ("tensorboard",)  # extra training logs beside metrics.csv
_OPEN_OPTIONS = (ComponentSpec, DataSpec)  # classes whose unknown keys are options


def builtin_configs() -> List[str]:
    """Names of the configs shipped with the package."""
    folder = resources.files("pyrovae") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_config_path(source: Union[str, Path]) -> Path:
    """A config file from a path, a run folder (its ``config.yaml``) or a built-in name."""
    path = Path(source)
    if path.is_dir():
        path = path / "config.yaml"
        if not path.is_file():
            raise PyrovaeError(f"{source} is a folder without config.yaml; give a run folder or a config file")
        return path
    if path.is_file():
        return path
    if path.suffix == "" and str(source) in builtin_configs():
        return Path(str(resources.files("pyrovae") / "configs" / f"{source}.yaml"))
    names = builtin_configs()
    raise PyrovaeError(
        f"no config file or built-in config '{source}'{did_you_mean(str(source), names)}; "
        f"built-in configs: {', '.join(names)}"
    )


def load_config(source: Union[str, Path, Dict[str, Any]] = "quickstart",
                overrides: Sequence[str] = (), plugins: Sequence[str] = (),
                mapping_dir: Optional[Path] = None) -> ExperimentSpec:
    """Load a config (file, run folder, built-in name or dict), apply ``key=value``
    overrides, load its plugins and ``plugins`` (recorded in the spec by absolute path), and
    validate it against the registries. Relative paths in a config file are the file's folder's;
    in a dict, ``mapping_dir``'s (default: the working directory; a sweep passes its file's
    folder). In a run folder's config, relative paths (its plugin copies, data kept in the
    folder) are the folder's own: found there first, wherever the folder lies
    (:mod:`pyrovae.runs.portable`)."""
    from .plugins import load_plugins

    config_dir, run_folder = None, not isinstance(source, dict) and Path(source).is_dir()
    if isinstance(source, dict):
        raw, config_dir = source, mapping_dir
    else:
        path = resolve_config_path(source)
        config_dir = path.parent
        try:
            text = path.read_text()
            raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise PyrovaeError(f"cannot read config {path}: {str(exc).splitlines()[0]}") from None
        raw = raw or {}
        if not isinstance(raw, dict):
            raise PyrovaeError(f"config {path} must be a mapping of keys to values")
    spec = _build(ExperimentSpec, raw, "")
    apply_overrides(spec, overrides)
    # the extra plugins first: one may stand in for a moved plugin file of the same name
    load_plugins(plugins, config_dir)
    spec.plugins = load_plugins([*spec.plugins, *plugins], config_dir, run_folder)
    _resolve_data_paths(spec.data, config_dir, run_folder)
    validate(spec)
    return spec


def config_text(spec: ExperimentSpec) -> str:
    """The resolved config as the YAML a run folder keeps (``load_config`` reads it back)."""
    return yaml.safe_dump(spec.to_dict(), sort_keys=False)


def _resolve_data_paths(data: DataSpec, config_dir: Optional[Path], config_dir_first: bool = False) -> None:
    """Make data options named ``path`` or ``*_path`` absolute where the file is found relative
    to the working directory or the config's folder (that first with ``config_dir_first``: a run
    folder's own files), so the run folder's config finds it from anywhere (paths not found
    there are left for the dataset to look up, e.g. in the data root)."""
    for key, value in data.options.items():
        if (key == "path" or key.endswith("_path")) and isinstance(value, str) and value:
            given = Path(value).expanduser()
            bases = [config_dir, Path.cwd()] if config_dir_first else [Path.cwd(), config_dir]
            for base in ([] if given.is_absolute() else bases):
                if base is not None and (base / given).exists():
                    data.options[key] = str((base / given).resolve())
                    break


def override_text(value: Any) -> str:
    """A value as the text of a ``key=value`` override (parsed back as YAML), on one line."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def differing_keys(a: Any, b: Any, prefix: str = ""):
    """``(dotted key, value in a, value in b)`` for every leaf where two config mappings
    (``to_dict()``) differ, in ``a``'s key order, then keys only ``b`` has."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            yield from differing_keys(a.get(key), b.get(key), f"{prefix}{key}.")
    elif a != b:
        yield prefix.rstrip("."), a, b


def apply_overrides(spec: ExperimentSpec, overrides: Sequence[str]) -> None:
    """Apply ``a.b.c=value`` overrides in place; values are parsed as YAML.

    Setting a component's ``name`` resets its options to the new component's defaults,
    so ``model.prior.name=mog`` does not inherit the old prior's options. Name overrides
    are applied first so options given beside them stick.
    """
    parsed = [parse_override(item) for item in overrides]
    parsed.sort(key=lambda kv: not kv[0].endswith(".name"))
    for key, value in parsed:
        _set_dotted(spec, key, value)


def parse_override(item: str, option: str = "override") -> Tuple[str, Any]:
    """``KEY=VALUE`` as ``(key, value)``, the value read as YAML (text that is not YAML stays
    text): how every command reads ``--set`` and its kin; ``option`` names the flag in errors."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise PyrovaeError(f"{option} '{item}' is not of the form key=value (e.g. model.latent_dim=2)")
    try:
        return key.strip(), yaml.safe_load(text)
    except yaml.YAMLError:
        return key.strip(), text


def _set_dotted(spec: Any, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node, path = spec, ""
    for part in parents:
        path = f"{path}.{part}" if path else part
        if not dataclasses.is_dataclass(node) or part not in _field_types(type(node)):
            _unknown_key(type(node), part, path)
        node = getattr(node, part)
        if not dataclasses.is_dataclass(node):
            raise PyrovaeError(f"override '{key}': '{path}' is a value, not a section")
    full = f"{path}.{leaf}" if path else leaf
    types = _field_types(type(node))
    if leaf in types and leaf != "options":
        if isinstance(node, ComponentSpec) and leaf == "name" and value != node.name:
            node.options = {}
        setattr(node, leaf, _coerce(value, types[leaf], full))
    elif isinstance(node, _OPEN_OPTIONS):
        node.options[leaf] = value
    else:
        _unknown_key(type(node), leaf, full)


def _unknown_key(cls, key: str, path: str):
    valid = [k for k in _field_types(cls) if k != "options"] if dataclasses.is_dataclass(cls) else []
    raise PyrovaeError(f"unknown config key '{path}'{_did_you_mean_path(path, key, valid)}; "
                       f"valid keys here: {', '.join(valid)}")


def _did_you_mean_path(path: str, key: str, valid) -> str:
    """Like :func:`did_you_mean`, but naming the full dotted key."""
    parent = path[: -len(key)]
    return did_you_mean(key, valid).replace("'", f"'{parent}", 1) if did_you_mean(key, valid) else ""


def _field_types(cls) -> Dict[str, Any]:
    return get_type_hints(cls)


def _build(cls, raw: Any, path: str):
    """Build dataclass ``cls`` from a mapping, type-checking each field."""
    if cls is ComponentSpec and isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise PyrovaeError(f"config section '{path or 'top level'}' must be a mapping, got {raw!r}")
    types = _field_types(cls)
    kwargs, options = {}, {}
    for key, value in raw.items():
        full = f"{path}.{key}" if path else str(key)
        if key in types and key != "options":
            kwargs[key] = _coerce(value, types[key], full)
        elif cls in _OPEN_OPTIONS:
            options[key] = value
        else:
            _unknown_key(cls, str(key), full)
    if cls is ComponentSpec and "name" not in kwargs:
        raise PyrovaeError(f"config section '{path}' needs a 'name'")
    obj = cls(**kwargs)
    obj_options = getattr(obj, "options", None)
    if obj_options is not None:
        obj_options.update(options)
    return obj


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """Check ``value`` against the type hint ``hint``, converting where unambiguous."""
    origin = get_origin(hint)
    if origin is Union:  # Optional[...]
        if value is None:
            return None
        hint = next(a for a in get_args(hint) if a is not type(None))
        origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and re.fullmatch(r"[-+]?[0-9.]+(e[-+]?[0-9]+)?", value.strip(), re.I):
            number = _float_or_none(value)
        if number is not None and math.isfinite(number):
            return number
        raise PyrovaeError(f"config key '{path}' must be a finite number, got {value!r}")
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if path in STRING_CHOICES:
            raise PyrovaeError(f"config key '{path}' must be one of {', '.join(STRING_CHOICES[path])}, got {value!r}"
                               f"{_yaml_hint(value)}")
        raise PyrovaeError(f"config key '{path}' must be a string, got {value!r}{_yaml_hint(value)}")
    elif origin is dict or hint is dict:
        if isinstance(value, dict):
            return value
    elif origin is list:
        if isinstance(value, list):
            return value
        if isinstance(value, str):
            return [value]
    else:
        return value
    name = getattr(hint, "__name__", str(hint))
    raise PyrovaeError(f"config key '{path}' must be {name}, got {value!r}{_yaml_hint(value)}")


def _yaml_hint(value: Any) -> str:
    """Why a word became a boolean: YAML reads unquoted yes/no/on/off/true/false as one."""
    if isinstance(value, bool):
        return " (YAML reads unquoted yes, no, on, off as true or false; quote the word)"
    return ""


def _float_or_none(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:  # "1.2.3" matches the pattern but is no number
        return None


def _to_plain(obj: Any) -> Any:
    if hasattr(obj, "to_dict") and not isinstance(obj, ExperimentSpec):
        return {k: _to_plain(v) for k, v in obj.to_dict().items()}
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- validation

def component_registries() -> List[Tuple[str, Any]]:
    """Each swappable part's config key (``model.prior``) and the registry its names come from."""
    from .components import GUIDES, LIKELIHOODS, NETWORKS, PRIORS
    from .inference.estimators import ESTIMATORS
    from .inference.optim import LR_SCHEDULES, OPTIMIZERS

    return [("model.prior", PRIORS), ("model.likelihood", LIKELIHOODS), ("model.encoder", NETWORKS),
            ("model.decoder", NETWORKS), ("model.guide", GUIDES), ("train.optimizer", OPTIMIZERS),
            ("train.lr_schedule", LR_SCHEDULES), ("train.estimator", ESTIMATORS)]


def validate(spec: ExperimentSpec) -> None:
    """Check every value the registries and the loop will rely on, and fill in each
    component's default options so the saved config says everything; raise PyrovaeError."""
    from .components.datasets import DATASETS

    spec.data.options = DATASETS.resolve_options(spec.data.name, spec.data.options, "data")
    _apply_latent_family(spec.model)
    for where, registry in component_registries():
        section, part = where.split(".")
        component = getattr(getattr(spec, section), part)
        component.options = registry.resolve_options(component.name, component.options, where)
    if spec.data.binarize not in BINARIZE_CHOICES:
        raise PyrovaeError(f"data.binarize must be one of {', '.join(BINARIZE_CHOICES)}, "
                           f"got '{spec.data.binarize}'{did_you_mean(spec.data.binarize, BINARIZE_CHOICES)}")
    positive_int(spec.model.latent_dim, "model.latent_dim")
    positive_int(spec.train.batch_size, "train.batch_size")
    positive_int(spec.train.epochs, "train.epochs")
    seed_value(spec.seed, "seed")
    lr = spec.train.optimizer.options.get("lr")
    if lr is not None and not lr >= 0:
        raise PyrovaeError(f"train.optimizer.lr must be a number >= 0 (e.g. 1e-3), got {lr}")
    if spec.train.kl_warmup_epochs < 0:
        raise PyrovaeError(f"train.kl_warmup_epochs must be >= 0, got {spec.train.kl_warmup_epochs}")
    if spec.train.early_stopping_patience is not None:
        positive_int(spec.train.early_stopping_patience, "train.early_stopping_patience")
    if spec.data.train_size is not None:
        positive_int(spec.data.train_size, "data.train_size")
    positive_int(spec.train.quality.every, "train.quality.every", minimum=0)
    positive_int(spec.train.quality.samples, "train.quality.samples", minimum=2)
    if spec.train.log is not None and spec.train.log not in LOG_CHOICES:
        raise PyrovaeError(f"train.log must be one of {', '.join(LOG_CHOICES)} (or left out), got "
                           f"'{spec.train.log}'{did_you_mean(spec.train.log, LOG_CHOICES)}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", spec.train.device):
        raise PyrovaeError(f"train.device must be auto, cpu, cuda or cuda:N, got '{spec.train.device}'")


