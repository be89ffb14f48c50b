"""``pyrovae list``: every registered component with its options, the built-in configs and sweeps."""

from ..components import GUIDES, LATENTS, LIKELIHOODS, NETWORKS, PRIORS
from ..components.datasets import DATASETS
from ..inference.estimators import ESTIMATORS
from ..inference.optim import LR_SCHEDULES, OPTIMIZERS
from ..plugins import load_plugins
from ..spec import builtin_configs
from ..sweeps.engines import ENGINES
from ..sweeps.spec import builtin_sweeps
from .options import add_plugin_option

REGISTRIES = [
    ("priors", PRIORS, "model.prior.name"), ("likelihoods", LIKELIHOODS, "model.likelihood.name"),
    ("networks", NETWORKS, "model.encoder.name / model.decoder.name"), ("guides", GUIDES, "model.guide.name"),
    ("latent families", LATENTS, "model.latent.name"),
    ("datasets", DATASETS, "data.name"),
    ("estimators", ESTIMATORS, "train.estimator.name"), ("optimizers", OPTIMIZERS, "train.optimizer.name"),
    ("lr schedules", LR_SCHEDULES, "train.lr_schedule.name"), ("sweep engines", ENGINES, "pyrovae sweep --engine"),
]


def _command(args) -> None:
    load_plugins(args.plugin)
    for title, registry, key in REGISTRIES:
        print(f"{title} ({key}):")
        for entry in registry:
            options = ", ".join(f"{k}={v}" for k, v in entry.options().items())
            origin = "" if entry.origin == "built-in" else f"  (from {entry.origin})"
            print(f"  {entry.name:<22} {entry.description}" + (f"  [options: {options}]" if options else "") + origin)
        print()
    print("built-in configs: " + ", ".join(builtin_configs()))
    print("built-in sweeps: " + ", ".join(builtin_sweeps()))


def add_command(subparsers) -> None:
    """Add ``pyrovae list`` to the command line."""
    p = subparsers.add_parser("list", help="every prior, likelihood, network, dataset, estimator, optimizer, "
                                           "lr schedule and sweep engine; the built-in configs and sweeps",
                              description="List every registered component name with its options.")
    add_plugin_option(p)
    p.set_defaults(func=_command)
