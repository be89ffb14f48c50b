"""``pyrovae report RUN``: (re)write a run folder's figures and ``report.md`` from its files.

A run stopped while its figures or report were being written (or trained by a version
that wrote none) gets them here, from what the folder holds: the training section from
its config, checkpoint and metrics, the evaluation section from ``evaluation.json`` (only
the evaluations of the checkpoint the folder holds), the variance section from
``variance.json``. Before drawing, the folder is made consistent (``metrics.csv``
rewritten from the checkpoint's history if an interruption left them apart, temporary
files of interrupted writes removed), under the folder's training lock.
"""

import json
from pathlib import Path

from ..errors import PyrovaeError
from ..runs.checkpoint import CHECKPOINT, exclusive_run, load_checkpoint
from ..runs.files import remove_stale_temp_files, write_atomic
from ..runs.folder import METRICS, check_resumable, metrics_history, metrics_need_repair, metrics_text
from .markdown import REPORT

FIGURES = "figures"
VARIANCE = "variance.json"


def rebuild_report(run_dir) -> Path:
    """Repair ``run_dir``'s metrics if needed and rewrite every report section and figure
    its files support; return the path of ``report.md``."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise PyrovaeError(f"no run folder {run_dir} (it does not exist); give the folder of a run "
                           f"'pyrovae train' wrote")
    check_resumable(run_dir)
    if not (run_dir / CHECKPOINT).is_file():
        raise PyrovaeError(f"{run_dir} has no finished epoch (no {CHECKPOINT}), so there is nothing to report; "
                           f"train it with 'pyrovae train {run_dir} --resume'")
    with exclusive_run(run_dir):
        remove_stale_temp_files(run_dir, (METRICS, REPORT, "evaluation.json", VARIANCE, "variance.csv"))
        remove_stale_temp_files(run_dir / FIGURES)
        history = metrics_history(run_dir, load_checkpoint(run_dir))
        if metrics_need_repair(run_dir, history):
            write_atomic(run_dir / METRICS, metrics_text(history))
        return _write_sections(run_dir)


def _write_sections(run_dir: Path) -> Path:
    from ..evaluation.evaluate import read_evaluations
    from ..lab import variance
    from ..runs.checkpoint import current_checkpoint
    from .evaluation_report import draw_figure, split_by_checkpoint
    from .training import result_of_folder, write_training_report

    spec, result = result_of_folder(run_dir)
    current, _ = split_by_checkpoint(read_evaluations(run_dir), current_checkpoint(run_dir))
    for summary in current.values():  # earlier checkpoints' evaluations are left out of the report
        if summary.get("method", "is") == "is":  # AIS and BDMC summaries have no bounds figure
            draw_figure(run_dir, summary)
    report = write_training_report(result, spec)  # and the Evaluation section
    if (run_dir / VARIANCE).is_file():
        try:
            results = json.loads((run_dir / VARIANCE).read_text())
        except (ValueError, UnicodeDecodeError):
            raise PyrovaeError(f"{run_dir / VARIANCE} is not valid JSON; delete it and measure again") from None
        variance.write_results(run_dir, results)
    return report


def add_command(subparsers) -> None:
    """Add ``pyrovae report`` to the command line."""
    p = subparsers.add_parser(
        "report", help="(re)write a run folder's figures and report.md from its files",
        description="Rewrite figures/ and report.md of a run folder from its config, checkpoint, metrics, "
                    "evaluation.json and variance.json, e.g. after a run was stopped while writing them. "
                    "Repairs metrics.csv from the checkpoint if an interruption left them apart.")
    p.add_argument("run", help="a run folder written by 'pyrovae train'")
    p.set_defaults(func=_command)


def _command(args) -> None:
    print(f"report: {rebuild_report(args.run)}")
