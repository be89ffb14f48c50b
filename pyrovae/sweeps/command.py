"""``pyrovae sweep``: run a sweep, show its status, resume it."""

from pathlib import Path


def _command(args) -> int:
    """Run the sitting, or show the status; the exit status says whether every run is done
    (0), some are left to continue (3) or some failed or were interrupted (4)."""
    from ..errors import PyrovaeError
    from .sweep import exit_status, format_status, open_sweep, run_sweep

    options = {"budget": args.budget, "engine": args.engine, "workers": args.workers, "address": args.address,
               "threads": args.threads}
    if args.status:
        print(format_status(args.sweep))
        return 0
    if args.resume:
        if args.out and Path(args.out) != Path(args.sweep):
            raise PyrovaeError("with --resume give the sweep folder only: pyrovae sweep DIR --resume")
        return exit_status(run_sweep(open_sweep(args.sweep), args.sweep, **options))
    if args.out is None:
        raise PyrovaeError(f"say where the sweep's runs go: pyrovae sweep {args.sweep} --out DIR "
                           f"(or continue a sweep folder with --resume)")
    return exit_status(run_sweep(args.sweep, args.out, **options))


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
    p.set_defaults(func=_command)
