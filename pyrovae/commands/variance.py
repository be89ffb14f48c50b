"""``pyrovae variance``: measure estimators' gradients (:mod:`pyrovae.lab.variance`), then
draw the Variance section of the report (:mod:`pyrovae.reports.variance_report`)."""

from pathlib import Path
from typing import Optional, Tuple

from ..lab.variance import measurable_estimators, parse_estimators, parse_snapshots, run_variance
from ..reports.variance_report import write_variance_report
from .options import add_changed_inputs_option, add_plugin_option


def add_command(subparsers) -> None:
    """Add ``pyrovae variance`` to the command line."""
    p = subparsers.add_parser(
        "variance", help="gradient variance, SNR, bias and cost of estimators at frozen parameters",
        description="Draw many gradients of each estimator at frozen parameters on one minibatch and "
                    "report variance, SNR, cosine and bias against a reference, and seconds per draw, "
                    "per parameter group. Writes variance.json, variance.csv, figures/variance.png and "
                    "the Variance section of report.md.")
    p.add_argument("source", metavar="RUN_OR_CONFIG",
                   help="a run folder (measured at its latest checkpoint) or a config (built-in name or file)")
    p.add_argument("--estimators", default=",".join(measurable_estimators()),
                   help="comma-separated names, each optionally with options as name:key=value "
                        "(default: every estimator with a gradient to draw)")
    p.add_argument("--draws", type=int, default=1000, help="gradient draws per estimator (default 1000)")
    p.add_argument("--snapshots", help="with a config: epochs at which to measure, e.g. 0,1,5,20 "
                                       "(default 0, the initialization)")
    p.add_argument("--out", help="results folder (default: the run folder, or runs/<name>-variance)")
    p.add_argument("--batch-size", type=int, default=100, help="size of the measured minibatch (default 100)")
    p.add_argument("--reference-draws", type=int,
                   help="draws averaged into a Monte Carlo reference gradient (default: --draws)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (the reference uses seed + 1)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set data.train_size=1000 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_plugin_option(p)
    add_changed_inputs_option(p)
    p.set_defaults(func=_command)


def variance(source, estimators: str, snapshots: Optional[str] = None, **options) -> Tuple[Path, dict]:
    """Measure ``estimators`` (comma-separated, each optionally ``name:key=value``) on a run
    or a config at the epochs ``snapshots`` (e.g. ``0,1,5``), then write the report's figure and
    Variance section; ``options`` as :func:`pyrovae.lab.variance.run_variance`'s. Returns
    ``(folder, results)``."""
    out, results = run_variance(source, parse_estimators(estimators),
                                snapshots=parse_snapshots(snapshots) if snapshots else None, **options)
    write_variance_report(out, results)
    return out, results


def _command(args) -> None:
    out, _ = variance(args.source, args.estimators, args.snapshots, draws=args.draws, out=args.out,
                      batch_size=args.batch_size, seed=args.seed, reference_draws=args.reference_draws,
                      overrides=args.set, plugins=args.plugin, progress=not args.quiet)
    print(f"variance results: {out / 'variance.csv'}; report: {out / 'report.md'}")
