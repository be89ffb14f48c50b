"""The ``pyrovae`` command.

Every user mistake (a config typo, missing data, a bad checkpoint) is one line on stderr
and exit status 2; tracebacks are kept for bugs.
"""

import argparse
import importlib
import sys
import warnings
from typing import List, Optional

from . import __version__
from .errors import PyrovaeError, PyrovaeWarning
from .runs.inputs import changed_inputs_allowed

# Modules adding a subcommand through ``add_command(subparsers)``.
COMMAND_MODULES: List[str] = [
    "pyrovae.evaluation.evaluate_command",
    "pyrovae.lab.variance",
    "pyrovae.sweeps.command",
    "pyrovae.reports.rebuild",
    "pyrovae.reproduce",
    "pyrovae.evaluation.posterior_command",
]


# Commands that open a trained run folder, and so check its inputs (pyrovae.runs.inputs).
RUN_OPENING_COMMANDS = ("train", "evaluate", "variance", "report", "posterior")


def _list(args) -> None:
    from .components import LIKELIHOODS, NETWORKS, PRIORS
    from .components.datasets import DATASETS
    from .inference.estimators import ESTIMATORS
    from .inference.optim import LR_SCHEDULES, OPTIMIZERS
    from .plugins import load_plugins
    from .spec import builtin_configs
    from .sweeps.engines import ENGINES
    from .sweeps.spec import builtin_sweeps

    load_plugins(args.plugin)
    for title, registry, key in [
        ("priors", PRIORS, "model.prior.name"), ("likelihoods", LIKELIHOODS, "model.likelihood.name"),
        ("networks", NETWORKS, "model.encoder.name / model.decoder.name"), ("datasets", DATASETS, "data.name"),
        ("estimators", ESTIMATORS, "train.estimator.name"), ("optimizers", OPTIMIZERS, "train.optimizer.name"),
        ("lr schedules", LR_SCHEDULES, "train.lr_schedule.name"), ("sweep engines", ENGINES, "pyrovae sweep --engine"),
    ]:
        print(f"{title} ({key}):")
        for entry in registry:
            options = ", ".join(f"{k}={v}" for k, v in entry.options().items())
            origin = "" if entry.origin == "built-in" else f"  (from {entry.origin})"
            print(f"  {entry.name:<22} {entry.description}" + (f"  [options: {options}]" if options else "") + origin)
        print()
    print("built-in configs: " + ", ".join(builtin_configs()))
    print("built-in sweeps: " + ", ".join(builtin_sweeps()))


def _train(args) -> None:
    from .api import train

    run = train(args.config, out=args.out, overrides=args.set, plugins=args.plugin, resume=args.resume,
                quiet=args.quiet)
    print(f"best validation ELBO {run.best_valid_elbo:.2f} nats; report: {run.report}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyrovae", description="Variational autoencoders as Pyro programs (Kingma & Welling, AEVB).")
    parser.add_argument("--version", action="version", version=f"pyrovae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="every prior, likelihood, network, dataset, estimator, optimizer, lr schedule and "
                                    "sweep engine; the built-in configs and sweeps",
                       description="List every registered component name with its options.")
    _add_plugin_option(p)
    p.set_defaults(func=_list)

    p = sub.add_parser("train", help="train a VAE described by a config",
                       description="Train a VAE and write a run folder: config.yaml, checkpoint.pt, "
                                   "metrics.csv, figures/ and report.md.")
    p.add_argument("config", help="a built-in config name (see 'pyrovae list'), a YAML/JSON file, "
                                  "or with --resume a run folder")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.latent_dim=2 (repeatable)")
    p.add_argument("--out", help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in CONFIG (a run folder) or --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    _add_plugin_option(p)
    p.set_defaults(func=_train)

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_command(sub)
    for command in RUN_OPENING_COMMANDS:
        sub.choices[command].add_argument(
            "--allow-changed-inputs", action="store_true",
            help="open a run even if a plugin or data file changed since it was trained (see its inputs.json)")
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """pyrovae's own warnings as one line, like its errors; others as Python shows them."""
    if issubclass(category, PyrovaeWarning):
        print(f"pyrovae: warning: {message}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def _add_plugin_option(p) -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                   help="a Python file or module registering your own components (repeatable); "
                        "recorded in the run folder's config")


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings(), changed_inputs_allowed(getattr(args, "allow_changed_inputs", False)):
            warnings.showwarning = _show_warning
            status = args.func(args)  # a command may return its exit status
    except PyrovaeError as exc:
        print(f"pyrovae: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head and the like
        return 0
    except KeyboardInterrupt:
        print("pyrovae: interrupted; the last checkpoint is kept, continue with --resume", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
