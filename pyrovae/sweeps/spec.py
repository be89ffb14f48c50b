"""The sweep description: a base config, a grid of dotted overrides, seeds, and how each run
is evaluated.

```yaml
name: priors
base: quickstart                 # a built-in config, a config file (relative to this file) or a mapping
set: {train.epochs: 3}           # overrides every run shares (optional)
grid:                            # the Cartesian product of these values, in this order
  model.prior.name: [standard_normal, mog, vamp]
when:                            # optional: overrides that go with one value of a grid key
  model.prior.name=vamp: {train.optimizer.lr: 0.0005}
seeds: [0, 1, 2]                 # or a count: 3 means 0, 1, 2
evaluate: {split: test, num_samples: 1000, max_points: 1000}   # `pyrovae evaluate` options; false: no evaluation
curve: {every: 10, num_samples: 500, points: 1000}              # optional: test log p(x) every 10 epochs
```

Every run's config is built and validated (against the registries, as ``pyrovae train``
does) when the sweep is loaded, so a typo in any grid value is one line before any work
starts. ``when`` ties settings to a grid value (a step size chosen per training method, say)
without multiplying the grid. A sweep folder stores the spec with its base config written out in full, so the
folder alone is enough to resume it.
"""

import inspect
import itertools
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import yaml

from ..errors import PyrovaeError, did_you_mean, positive_int
from ..spec import ExperimentSpec, differing_keys, load_config, override_text, parse_override

SWEEP_KEYS = ("name", "base", "set", "grid", "when", "seeds", "evaluate", "curve")
CURVE_KEYS = {"every": 10, "num_samples": 500, "points": 1000}
DEFAULT_EVALUATE = {"split": "test", "num_samples": 1000}
# `pyrovae evaluate` options a sweep may set; the run folder, device and progress bar are the sweep's.
_NOT_EVALUATE_OPTIONS = ("run_dir", "device", "progress")
SWEEP_METHODS = ("is", "ais")  # evaluation methods whose log p(x) of the runs' split a sweep compares


def evaluate_options() -> Dict[str, Any]:
    """The options of ``evaluate_run`` a sweep's ``evaluate`` section may set, with their defaults."""
    from ..evaluation.evaluate import evaluate_run

    return {p.name: p.default for p in inspect.signature(evaluate_run).parameters.values()
            if p.name not in _NOT_EVALUATE_OPTIONS}


@dataclass(frozen=True)
class RunPlan:
    """One run of a sweep: a grid point, a seed, its folder (relative to the sweep folder)
    and its resolved config."""

    folder: str
    point: Dict[str, Any]
    seed: int
    config: Dict[str, Any] = field(repr=False)


@dataclass
class SweepSpec:
    """A validated sweep (see the module docstring for the file format)."""

    name: str
    base: Dict[str, Any]
    set: Dict[str, Any]
    grid: Dict[str, List[Any]]
    seeds: List[int]
    evaluate: Optional[Dict[str, Any]]
    curve: Optional[Dict[str, int]]
    when: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        record = {"name": self.name, "base": self.base, "set": self.set, "grid": self.grid, "seeds": self.seeds,
                  "evaluate": self.evaluate if self.evaluate is not None else False, "curve": self.curve}
        if self.when:  # only when used, so folders of sweeps without it compare equal to their specs
            record["when"] = self.when
        return record

    def points(self) -> List[Dict[str, Any]]:
        """The grid points in order: the product of the grid's values, last key fastest."""
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]

    def runs(self) -> List[RunPlan]:
        """Every run, grid point by grid point, seeds innermost; each config validated."""
        labels = _labels(list(self.grid))
        plans = []
        for point in self.points():
            folder = ",".join(f"{labels[k]}={_value_text(v)}" for k, v in point.items()) or "base"
            for seed in self.seeds:
                plans.append(RunPlan(f"{folder}/seed_{seed}", point, seed, self.run_config(point, seed).to_dict()))
        return plans

    def run_config(self, point: Dict[str, Any], seed: int) -> ExperimentSpec:
        tied = {}
        for condition, settings in self.when.items():
            key, value = when_condition(condition)
            if override_text(point.get(key)) == override_text(value):
                tied.update(settings)
        overrides = [f"{k}={override_text(v)}" for k, v in {**self.set, **tied, **point}.items()] + [f"seed={seed}"]
        where = ", ".join(f"{k}={_value_text(v)}" for k, v in point.items()) or "the base config"
        try:
            spec = load_config(self.base, overrides)
        except PyrovaeError as exc:
            raise PyrovaeError(f"sweep '{self.name}', {where}: {exc}") from None
        spec.train.progress = False
        return spec


def spec_differences(stored: Dict[str, Any], wanted: Dict[str, Any], shown: int = 3) -> str:
    """What differs between two sweeps' ``to_dict()``, as ``key: A there, B here`` for the first
    ``shown`` dotted keys (the base config and overrides compared key by key)."""
    found = list(differing_keys(stored, wanted))
    text = "; ".join(f"{key}: {override_text(a)} there, {override_text(b)} here" for key, a, b in found[:shown])
    return text + (f"; and {len(found) - shown} more" if len(found) > shown else "")


def builtin_sweeps() -> List[str]:
    """Names of the sweeps shipped with the package."""
    folder = resources.files("pyrovae") / "sweeps" / "builtin"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_sweep_path(source: Union[str, Path]) -> Path:
    """A sweep file from a path or a built-in sweep name."""
    path = Path(source)
    if path.is_file():
        return path
    names = builtin_sweeps()
    if path.suffix == "" and str(source) in names:
        return Path(str(resources.files("pyrovae") / "sweeps" / "builtin" / f"{source}.yaml"))
    raise PyrovaeError(f"no sweep file or built-in sweep '{source}'{did_you_mean(str(source), names)}; "
                       f"built-in sweeps: {', '.join(names)}")


def load_sweep(source: Union[str, Path, Dict[str, Any]]) -> SweepSpec:
    """Load and validate a sweep from a file, a built-in name or a mapping."""
    if isinstance(source, dict):
        raw, folder, default_name = source, Path.cwd(), "sweep"
    else:
        path = resolve_sweep_path(source)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PyrovaeError(f"cannot read sweep {path}: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise PyrovaeError(f"sweep {path} must be a mapping with keys {', '.join(SWEEP_KEYS)}")
        folder, default_name = path.parent, path.stem
    for key in raw:
        if key not in SWEEP_KEYS:
            raise PyrovaeError(f"unknown sweep key '{key}'{did_you_mean(str(key), SWEEP_KEYS)}; "
                               f"valid keys: {', '.join(SWEEP_KEYS)}")
    if "base" not in raw:
        raise PyrovaeError("a sweep needs a 'base': a built-in config name, a config file or a mapping")
    name = str(raw.get("name") or default_name)
    spec = SweepSpec(name=name, base=_base_config(raw["base"], folder), set=_mapping(raw.get("set"), "set"),
                     grid=_grid(raw.get("grid")), seeds=_seeds(raw.get("seeds", [0])),
                     evaluate=_evaluate(raw.get("evaluate", DEFAULT_EVALUATE)), curve=_curve(raw.get("curve")))
    spec.when = _when(raw.get("when"), spec.grid)
    spec.runs()  # builds and validates every run's config
    return spec


def _base_config(base: Any, folder: Path) -> Dict[str, Any]:
    """The base config written out in full (validated), so a sweep folder needs nothing else."""
    if isinstance(base, dict):  # its relative paths (plugins, data) are the sweep file's, as a base file's are
        return load_config(base, mapping_dir=folder).to_dict()
    if not isinstance(base, str):
        raise PyrovaeError(f"sweep 'base' must be a config name, a file or a mapping, got {base!r}")
    relative = folder / base
    return load_config(relative if relative.is_file() else base).to_dict()


def _mapping(value: Any, key: str) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PyrovaeError(f"sweep '{key}' must be a mapping of dotted config keys to values, "
                           f"e.g. {{train.epochs: 3}}")
    return {str(k): v for k, v in value.items()}


def _grid(value: Any) -> Dict[str, List[Any]]:
    grid = _mapping(value, "grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise PyrovaeError(f"sweep grid '{key}' must be a non-empty list of values, e.g. {key}: [a, b]")
        if len({override_text(v) for v in values}) != len(values):
            raise PyrovaeError(f"sweep grid '{key}' lists a value twice; list each value once")
    return grid


def when_condition(condition: str) -> tuple:
    """``KEY=VALUE`` of a ``when`` entry as (key, value read as YAML), as ``--set`` reads it."""
    return parse_override(condition, "sweep when")


def _when(value: Any, grid: Dict[str, List[Any]]) -> Dict[str, Dict[str, Any]]:
    """``when`` entries checked: each names a grid key and one of its values."""
    when = _mapping(value, "when")
    for condition, settings in when.items():
        key, wanted = when_condition(condition) if "=" in condition else (condition, None)
        if "=" not in condition or key not in grid:
            raise PyrovaeError(f"sweep when '{condition}' must be GRIDKEY=VALUE with a key of the grid "
                               f"({', '.join(grid) or 'the grid is empty'}), e.g. {{{next(iter(grid), 'key')}=value: {{...}}}}")
        if override_text(wanted) not in {override_text(v) for v in grid[key]}:
            raise PyrovaeError(f"sweep when '{condition}': {wanted!r} is not a value of grid key {key} "
                               f"({', '.join(map(str, grid[key]))})")
        when[condition] = _mapping(settings, f"when {condition}")
    return when


def _seeds(value: Any) -> List[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise PyrovaeError(f"sweep 'seeds' as a count must be positive, got {value}")
        return list(range(value))
    if (not isinstance(value, list) or not value
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)):
        raise PyrovaeError(f"sweep 'seeds' must be a list of non-negative integers or a count, got {value!r}")
    if len(set(value)) != len(value):
        raise PyrovaeError(f"sweep 'seeds' lists a seed twice: {value}")
    return list(value)


def _evaluate(value: Any) -> Optional[Dict[str, Any]]:
    if value is False or value is None:
        return None
    options = _mapping(value, "evaluate")
    valid = evaluate_options()
    for key in options:
        if key not in valid:
            raise PyrovaeError(f"sweep evaluate has no option '{key}'{did_you_mean(key, valid)}; "
                               f"its options are: {', '.join(valid)}")
    resolved = {**valid, **options}
    if resolved["method"] not in SWEEP_METHODS:
        raise PyrovaeError(f"sweep evaluate.method must be one of {', '.join(SWEEP_METHODS)}, got "
                           f"{resolved['method']!r} (bdmc bounds log p(x) of data simulated from the model, "
                           f"not of the runs' split: run pyrovae evaluate --method bdmc on a run folder)")
    for key in ("num_samples", "elbo_particles", "steps", "chains"):
        positive_int(resolved[key], f"sweep evaluate.{key}")
    if resolved["max_points"] is not None:
        positive_int(resolved["max_points"], "sweep evaluate.max_points")
    return resolved


def _curve(value: Any) -> Optional[Dict[str, int]]:
    if value is None or value is False:
        return None
    options = _mapping(value, "curve")
    for key, number in options.items():
        if key not in CURVE_KEYS:
            raise PyrovaeError(f"sweep curve has no option '{key}'{did_you_mean(key, CURVE_KEYS)}; "
                               f"its options are: {', '.join(CURVE_KEYS)}")
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise PyrovaeError(f"sweep curve.{key} must be a positive integer, got {number!r}")
    return {**CURVE_KEYS, **options}


def _labels(keys: List[str]) -> Dict[str, str]:
    """Short names for grid keys in folder names: the last part of the key (the part before
    ``.name`` for a component), the full key where two short names would collide."""
    def short(key: str) -> str:
        parts = key.split(".")
        return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]

    shorts = [short(k) for k in keys]
    return {k: s if shorts.count(s) == 1 else k for k, s in zip(keys, shorts)}


def _value_text(value: Any) -> str:
    """A value as part of a folder name: lists joined by '-', other characters made safe."""
    text = "-".join(map(str, value)) if isinstance(value, list) else str(value)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)
