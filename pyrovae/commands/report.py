"""``pyrovae report RUN``: (re)write a run folder's figures and ``report.md`` from its files.

A run stopped while its figures or report were being written (or trained by a version
that wrote none) gets them here. Before drawing (:mod:`pyrovae.reports.rebuild`), the folder
is made consistent under its training lock: ``metrics.csv`` rewritten from the checkpoint's
history if an interruption left them apart, temporary files of interrupted writes removed.
"""

from pathlib import Path
from typing import Sequence

from ..errors import PyrovaeError
from ..lab.variance import VARIANCE
from ..plugins import load_plugins
from ..reports.markdown import REPORT
from ..reports.rebuild import rebuild_report
from ..runs.checkpoint import CHECKPOINT, exclusive_run
from ..runs.evaluations import evaluation_lock
from ..runs.folder import check_resumable, repair_run_folder
from .options import add_changed_inputs_option, add_plugin_option


def report(run_dir, plugins: Sequence[str] = ()) -> Path:
    """Repair ``run_dir`` if needed and rewrite every report section and figure its files
    support (with extra ``plugins`` loaded first); return the path of ``report.md``."""
    run_dir = Path(run_dir)
    load_plugins(plugins)
    if not run_dir.exists():
        raise PyrovaeError(f"no run folder {run_dir} (it does not exist); give the folder of a run "
                           f"'pyrovae train' wrote")
    check_resumable(run_dir)
    if not (run_dir / CHECKPOINT).is_file():
        raise PyrovaeError(f"{run_dir} has no finished epoch (no {CHECKPOINT}), so there is nothing to report; "
                           f"train it with 'pyrovae train {run_dir} --resume'")
    with exclusive_run(run_dir):
        with evaluation_lock(run_dir):  # no evaluation is writing evaluation.json or a bounds figure meanwhile
            repair_run_folder(run_dir, (REPORT, VARIANCE, "variance.csv"))
        return rebuild_report(run_dir)


def _command(args) -> None:
    print(f"report: {report(args.run, args.plugin)}")


def add_command(subparsers) -> None:
    """Add ``pyrovae report`` to the command line."""
    p = subparsers.add_parser(
        "report", help="(re)write a run folder's figures and report.md from its files",
        description="Rewrite figures/ and report.md of a run folder from its config, checkpoint, metrics, "
                    "evaluation.json and variance.json, e.g. after a run was stopped while writing them. "
                    "Repairs metrics.csv from the checkpoint if an interruption left them apart.")
    p.add_argument("run", help="a run folder written by 'pyrovae train'")
    add_plugin_option(p)
    add_changed_inputs_option(p)
    p.set_defaults(func=_command)
