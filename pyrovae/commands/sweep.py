"""``pyrovae sweep``: run a sweep for one sitting (:mod:`pyrovae.sweeps`), each run's job
drawing the same reports ``pyrovae train`` and ``pyrovae evaluate`` draw, then write the sweep
report (:mod:`pyrovae.reports.sweep_report`); show a sweep's status; resume it."""

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

from ..errors import PyrovaeError
from ..reports.evaluation_report import write_evaluation_report
from ..reports.markdown import REPORT
from ..reports.sweep_report import write_sweep_report
from ..reports.training import result_of_folder, write_training_report
from ..runs.loading import TrainResult
from ..spec import ExperimentSpec
from ..sweeps.job import JobReports, run_job
from ..sweeps.spec import SweepSpec
from ..sweeps.sweep import (
    RunStatus,
    continue_hint,
    exit_status,
    format_status,
    open_sweep,
    resume_command,
    run_sweep,
    summary_line,
)
from .options import add_changed_inputs_option


def _report_training(run_dir: Path, spec: ExperimentSpec, result: Optional[TrainResult]) -> None:
    """The Training section and figures of a sweep's run; for a run trained in an earlier
    sitting (``result`` None) only if its report lacks them (the worker died in between)."""
    if result is None:
        path = run_dir / REPORT
        if path.exists() and "<!-- section: Training -->" in path.read_text():
            return
        _, result = result_of_folder(run_dir)
    write_training_report(result, spec)


def _report_evaluation(run_dir: Path, summary: dict) -> None:
    write_evaluation_report(run_dir, drawn=[summary])


RUN_REPORTS = JobReports(training=_report_training, evaluation=_report_evaluation)


def reported_job(task: Dict[str, Any]) -> Dict[str, Any]:
    """A sweep's job with the run reports: what every engine's worker carries out."""
    return run_job(task, RUN_REPORTS)


def sweep(source: Union[str, Path, Dict[str, Any], SweepSpec], sweep_dir, *, log: Callable[[str], None] = print,
          again: Optional[str] = None, **options) -> List[RunStatus]:
    """One sitting of the sweep ``source`` in ``sweep_dir`` (``options`` as
    :func:`pyrovae.sweeps.sweep.run_sweep`'s: ``budget``, ``engine``, ``workers``, ``address``,
    ``threads``), then the sweep report; return each run's status. The last line logged says
    how to continue when runs are left: ``again``, by default ``pyrovae sweep DIR --resume``."""
    statuses = run_sweep(source, sweep_dir, job=reported_job, log=log, **options)
    report = write_sweep_report(sweep_dir)
    log(summary_line(statuses) + f"; report: {report}" + continue_hint(statuses, again or resume_command(sweep_dir)))
    return statuses


def resume(sweep_dir, **options) -> List[RunStatus]:
    """One more sitting of the sweep stored in ``sweep_dir`` (``options`` as :func:`sweep`'s)."""
    return sweep(open_sweep(sweep_dir), sweep_dir, **options)


def _command(args) -> int:
    """Run the sitting, or show the status; the exit status says whether every run is done
    (0), some are left to continue (3) or some failed or were interrupted (4)."""
    options = {"budget": args.budget, "engine": args.engine, "workers": args.workers, "address": args.address,
               "threads": args.threads}
    if args.status:
        print(format_status(args.sweep))
        return 0
    if args.resume:
        if args.out and Path(args.out) != Path(args.sweep):
            raise PyrovaeError("with --resume give the sweep folder only: pyrovae sweep DIR --resume")
        return exit_status(resume(args.sweep, **options))
    if args.out is None:
        raise PyrovaeError(f"say where the sweep's runs go: pyrovae sweep {args.sweep} --out DIR "
                           f"(or continue a sweep folder with --resume)")
    return exit_status(sweep(args.sweep, args.out, **options))


def add_command(subparsers) -> None:
    """Add ``pyrovae sweep`` to the command line."""
    p = subparsers.add_parser(
        "sweep", help="run a grid of configs and seeds (locally or on a Ray cluster), its status, resume it",
        description="Train and evaluate every grid point and seed of a sweep as ordinary run folders, "
                    "then write report.md with mean ± sd over seeds and a figure. Finished runs are skipped, "
                    "interrupted ones resumed. Exit status: 0 every run done, 3 runs left to continue "
                    "(budget reached), 4 runs failed or interrupted, 2 a mistake in the command.")
    p.add_argument("sweep", help="a sweep file or built-in sweep name; with --status or --resume a sweep folder")
    p.add_argument("--out", metavar="DIR", help="the sweep folder to write")
    p.add_argument("--status", action="store_true", help="show which runs are done, running, interrupted or failed")
    p.add_argument("--resume", action="store_true", help="continue the sweep in the folder SWEEP")
    p.add_argument("--budget", metavar="TIME", help="end this sitting after TIME (e.g. 90m, 2h); resume later")
    p.add_argument("--engine", default="local", help="local (worker processes here, the default) or ray")
    p.add_argument("--workers", type=int, metavar="N", help="runs at a time (default: the cores or the cluster's CPUs)")
    p.add_argument("--threads", type=int, metavar="T", help="torch threads per run (default: cores / workers "
                                                          "locally, 1 on Ray)")
    p.add_argument("--address", metavar="ADDR", help="the Ray cluster to use (auto: the one 'ray start' made here)")
    add_changed_inputs_option(p)
    p.set_defaults(func=_command)
