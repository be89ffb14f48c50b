"""``pyrovae train``: resolve the config, train (:mod:`pyrovae.training.train`), then draw the
figures and the Training section of the report (:mod:`pyrovae.reports.training`)."""

import dataclasses
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from ..components.array_data import in_memory_arrays
from ..components.datasets import Dataset
from ..errors import PyrovaeError
from ..reports.training import write_training_report
from ..runs.files import make_folder
from ..runs.folder import check_new_run_folder, load_resume_config
from ..runs.loading import TrainResult
from ..spec import ExperimentSpec, load_config, validate
from ..training.train import train as train_loop
from .model_outputs import write_npz
from .options import add_changed_inputs_option, add_plugin_option

DATA = "data.npz"  # data given in memory, kept in the run folder

ConfigSource = Union[str, Path, Dict[str, Any], ExperimentSpec]


def resolve_run(config: ConfigSource, out=None, overrides: Sequence[str] = (), plugins: Sequence[str] = (),
                resume: bool = False, quiet: bool = False) -> Tuple[ExperimentSpec, Path]:
    """The spec and run folder of ``config`` (a built-in name, a YAML/JSON file, a dict or an
    :class:`~pyrovae.spec.ExperimentSpec`; with ``resume`` a run folder) with ``overrides`` and
    ``plugins``; the folder is ``out``, by default ``runs/<config name>``, made absolute before
    any plugin runs."""
    if isinstance(config, ExperimentSpec):
        config = config.to_dict()
    here = Path.cwd()  # the run folder is found from here, whatever the plugins do
    if resume:
        if isinstance(config, dict):
            raise PyrovaeError("resume=True needs a run folder as config (or out=RUN)")
        folder = here / (out or config)
        spec = load_resume_config(folder, overrides, plugins)
    else:
        spec = load_config(config, overrides, plugins)
        folder = here / (out or Path("runs") / spec.name)
    if quiet:
        spec.train.progress = False
    return spec, folder


def keep_data(spec: ExperimentSpec, folder: Path, data, labels=None) -> ExperimentSpec:
    """``spec`` made to train on ``data`` given in memory (a tensor or array with ``labels``, a
    pair, a torch Dataset or a DataLoader, see
    :func:`~pyrovae.components.array_data.in_memory_arrays`): the data are saved as ``data.npz``
    in the new run folder and the config's data become the ``array`` dataset of that file (with
    the config's own ``array`` options, such as the split fractions, where it has them), so that
    ``--resume``, ``evaluate`` and ``report`` work from the folder alone."""
    x, y = in_memory_arrays(data, labels)
    check_new_run_folder(folder)
    make_folder(folder)
    write_npz(folder / DATA, {"x": x} if y is None else {"x": x, "y": y})
    options = {k: v for k, v in spec.data.options.items() if k not in ("valid_path", "test_path")} \
        if spec.data.name == "array" else {}
    options.update(path=str(folder / DATA), x="x", y="" if y is None else "y")
    spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, name="array", options=options))
    validate(spec)
    return spec


def train(spec: ExperimentSpec, folder: Path, resume: bool = False, data: Optional[Dataset] = None) -> TrainResult:
    """Train ``spec`` into ``folder`` (continuing it with ``resume``; ``data``: the dataset
    already loaded, if it is), then write its figures and the Training section of its report."""
    result = train_loop(spec, folder, resume=resume, data=data)
    try:
        result.report = write_training_report(result, spec)
    except PyrovaeError as exc:  # a full disk, a damaged evaluation.json: the training is not lost
        raise type(exc)(f"{exc}; training finished and its checkpoint is kept: write the report "
                        f"later with 'pyrovae report {result.out_dir}'") from None
    return result


def _command(args) -> None:
    spec, folder = resolve_run(args.config, args.out, args.set, args.plugin, args.resume, args.quiet)
    result = train(spec, folder, resume=args.resume)
    print(f"best validation ELBO {result.best_valid_elbo:.2f} nats; report: {result.report}")


def add_command(subparsers) -> None:
    """Add ``pyrovae train`` to the command line."""
    p = subparsers.add_parser("train", help="train a VAE described by a config",
                              description="Train a VAE and write a run folder: config.yaml, checkpoint.pt, "
                                          "metrics.csv, figures/ and report.md.")
    p.add_argument("config", help="a built-in config name (see 'pyrovae list'), a YAML/JSON file, "
                                  "or with --resume a run folder")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.latent_dim=2 (repeatable)")
    p.add_argument("--out", help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in CONFIG (a run folder) or --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    add_plugin_option(p)
    add_changed_inputs_option(p)
    p.set_defaults(func=_command)
