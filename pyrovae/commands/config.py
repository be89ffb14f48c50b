"""``pyrovae config SOURCE [--set KEY=VALUE] [--plugin F]``: print the resolved config, a dry run.

``SOURCE`` is what ``pyrovae train`` takes (a built-in name, a YAML/JSON file, or a run
folder). The config is loaded, overridden and validated exactly as training would, nothing is
trained or written, and every key is printed, each component with all its options; a value
that differs from its default carries the default in a comment (``lr: 0.0005  # default
0.001``). The printed YAML is a complete config: ``pyrovae train`` takes it as it is.
"""

from typing import Any, Dict, Sequence

import yaml

from ..components.datasets import DATASETS
from ..spec import ComponentSpec, DataSpec, ExperimentSpec, ModelSpec, TrainSpec, component_registries, load_config, override_text
from .options import add_plugin_option


def resolved_config(source, overrides: Sequence[str] = (), plugins: Sequence[str] = ()) -> str:
    """The config ``source`` with ``overrides`` and ``plugins``, resolved and validated, as
    commented YAML."""
    spec = load_config(source, overrides, plugins)
    text = yaml.dump(spec.to_dict(), Dumper=_InlineLists, sort_keys=False, default_flow_style=False, width=1000)
    return "\n".join(_commented(text.splitlines(), _defaults(spec))) + "\n"


class _InlineLists(yaml.SafeDumper):
    """Mappings in block style (a key a line), lists inline (``hidden: [400]``)."""


_InlineLists.add_representer(list, lambda dumper, data: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", data, flow_style=True))


def _defaults(spec: ExperimentSpec) -> Dict[str, Any]:
    """The default of every key of ``spec`` by dotted path: the dataclasses' defaults, and for each
    component (and the dataset) the defaults of the options of the one ``spec`` names."""
    defaults = {}
    for section, cls in (("", ExperimentSpec), ("data.", DataSpec), ("model.", ModelSpec), ("train.", TrainSpec)):
        for key, value in vars(cls()).items():
            if isinstance(value, ComponentSpec):
                defaults[f"{section}{key}.name"] = value.name
            elif not isinstance(value, (DataSpec, ModelSpec, TrainSpec, dict)):
                defaults[f"{section}{key}"] = value
    for key, value in DATASETS.get(spec.data.name).options().items():
        defaults[f"data.{key}"] = value
    for where, registry in component_registries():
        section, part = where.split(".")
        for key, value in registry.get(getattr(getattr(spec, section), part).name).options().items():
            defaults[f"{where}.{key}"] = value
    return defaults


def _commented(lines, defaults: Dict[str, Any]):
    """YAML ``lines`` (block style, leaves inline) with ``# default X`` after each leaf whose value
    differs from its default."""
    path = []
    for line in lines:
        indent = (len(line) - len(line.lstrip(" "))) // 2
        key, _, text = line.strip().partition(":")
        path = path[:indent] + [key]
        dotted = ".".join(path)
        if text.strip() and dotted in defaults:
            value, default = yaml.safe_load(text), defaults[dotted]
            default = list(default) if isinstance(default, tuple) else default
            if value != default and str(default) != "<required>":
                line += f"  # default {override_text(default)}"
        yield line


def _command(args) -> None:
    print(resolved_config(args.source, args.set, args.plugin), end="")


def add_command(subparsers) -> None:
    """Add ``pyrovae config`` to the command line."""
    p = subparsers.add_parser("config", help="print the resolved config with every option (a dry run)",
                              description="Load, override and validate a config as 'pyrovae train' would, and print "
                                          "it with every key and option; values that differ from their defaults "
                                          "name the default in a comment. Nothing is trained or written.")
    p.add_argument("source", help="a built-in config name, a YAML/JSON file, or a run folder")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.latent_dim=2 (repeatable)")
    add_plugin_option(p)
    p.set_defaults(func=_command)
