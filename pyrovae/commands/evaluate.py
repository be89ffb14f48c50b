"""``pyrovae evaluate``: estimate log p(x) (:func:`pyrovae.evaluation.evaluate.evaluate_run`,
its options as flags), then write the Evaluation section of the report
(:mod:`pyrovae.reports.evaluation_report`) and print the summary."""

import json
import sys
from pathlib import Path
from typing import Sequence

from ..components.datasets import SPLITS
from ..evaluation.ais import DEFAULT_LEAPFROG, STARTS
from ..evaluation.chunking import DEFAULT_MAX_MEMORY
from ..evaluation.evaluate import METHODS, EvaluationNotSaved, evaluate_run
from ..plugins import load_plugins
from ..reports.evaluation_report import print_summary, write_evaluation_report
from ..runs.evaluations import EVALUATION, SECTION
from ..sweeps.split_evaluation import SplitSampler
from .options import add_changed_inputs_option, add_device_option, add_plugin_option


def evaluate(run_dir, plugins: Sequence[str] = (), **options) -> dict:
    """Evaluate the run in ``run_dir`` (``options`` as :func:`~pyrovae.evaluation.evaluate.evaluate_run`'s)
    with extra ``plugins`` loaded first, then draw the summary's figure and rewrite the report's
    Evaluation section; return the summary."""
    load_plugins(plugins)
    summary = evaluate_run(run_dir, **options)
    write_evaluation_report(Path(run_dir), drawn=[summary])
    return summary


def _command(args) -> None:
    sampler = None
    if any(value is not None for value in (args.engine, args.workers, args.address, args.threads)):
        sampler = SplitSampler(args.engine or "local", args.workers, args.address, args.threads)
    try:
        summary = evaluate(args.run, plugins=args.plugin, split=args.split, num_samples=args.num_samples,
                           max_memory=args.max_memory, max_points=args.max_points, seed=args.seed,
                           elbo_particles=args.elbo_particles, quadrature=args.quadrature, device=args.device,
                           progress=not args.quiet and sys.stderr.isatty(),  # no bar in a log file
                           method=args.method, steps=args.steps, chains=args.chains, leapfrog=args.leapfrog,
                           ais_start=args.ais_start, simulated=args.simulated,
                           proposal_scale=args.proposal_scale, proposal_df=args.proposal_df, sampler=sampler,
                           gap_points=args.gap_points)
    except EvaluationNotSaved as exc:  # nothing computed is lost: print all of it, then the error
        print_summary(exc.summary)
        print("full results (evaluation.json could not be written):")
        print(json.dumps(exc.summary, indent=2))
        raise
    print_summary(summary)
    print(f"saved {Path(args.run) / EVALUATION} and the {SECTION} section of {Path(args.run) / 'report.md'}")


def add_command(subparsers) -> None:
    """Add ``pyrovae evaluate`` to the command line."""
    p = subparsers.add_parser(
        "evaluate", help="log p(x) of a trained run: importance sampling, AIS or BDMC bounds",
        description="Estimate log p(x) per data point by importance sampling from the guide (with IWAE bounds, "
                    "ELBOs, rate, distortion, ESS, Pareto k-hat and active units), by annealed importance sampling, "
                    "or bracket it between BDMC's bounds on simulated data; writes evaluation.json and the "
                    "Evaluation section of report.md.")
    p.add_argument("run", help="a run folder written by 'pyrovae train'")
    p.add_argument("--method", default="is", choices=METHODS,
                   help="is: importance sampling (default); ais: annealed importance sampling; "
                        "bdmc: forward and reverse AIS on data simulated from the model")
    p.add_argument("--num-samples", type=int, default=5000, metavar="K",
                   help="importance samples per data point (default 5000)")
    p.add_argument("--split", default="test", help=f"which data: {', '.join(SPLITS)} (default test)")
    p.add_argument("--max-memory", default=DEFAULT_MAX_MEMORY, metavar="SIZE",
                   help=f"bound on the working memory, e.g. 512MB or 2GB (default {DEFAULT_MAX_MEMORY})")
    p.add_argument("--max-points", type=int, metavar="N",
                   help="evaluate N points of the split chosen at random with --seed (default: all)")
    p.add_argument("--gap-points", type=int, default=0, metavar="N",
                   help="also split log p(x) - ELBO of the first N evaluated points into the approximation and "
                        "amortization gaps (q* fitted per point in the guide's family; --method is or ais; default 0: "
                        "none)")
    p.add_argument("--quadrature", action="store_true",
                   help="also integrate log p(x) on a latent grid (1-D and 2-D latent spaces)")
    p.add_argument("--elbo-particles", type=int, default=10, metavar="L",
                   help="samples per point for the Pyro ELBO estimators (default 10)")
    p.add_argument("--proposal-scale", type=float, default=1.0, metavar="C",
                   help="importance sampling from the guide with its scale times C (default 1: the guide)")
    p.add_argument("--proposal-df", type=float, metavar="NU",
                   help="importance sampling from a Student-t with NU degrees of freedom around the guide")
    p.add_argument("--steps", type=int, default=1000, help="AIS and BDMC: annealing steps (default 1000)")
    p.add_argument("--chains", type=int, default=16, help="AIS and BDMC: chains per data point (default 16)")
    p.add_argument("--leapfrog", type=int, default=DEFAULT_LEAPFROG,
                   help=f"AIS and BDMC: leapfrog steps per HMC transition (default {DEFAULT_LEAPFROG})")
    p.add_argument("--ais-start", default="guide", choices=STARTS,
                   help="AIS and BDMC: anneal from the guide q(z|x) (default) or from the prior")
    p.add_argument("--simulated", type=int, default=100, metavar="N",
                   help="BDMC: number of data points simulated from the model (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_device_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    parallel = p.add_argument_group("data-parallel importance sampling (the engines of 'pyrovae sweep'; the same "
                                     "results as one process for the same seed and threads per worker)")
    parallel.add_argument("--engine", help="local (worker processes here) or ray; default local when --workers is given")
    parallel.add_argument("--workers", type=int, metavar="N", help="blocks of points sampled at a time "
                                                                  "(default: the cores or the cluster's CPUs)")
    parallel.add_argument("--threads", type=int, metavar="T", help="torch threads per worker (default: cores / "
                                                                  "workers locally, 1 on Ray)")
    parallel.add_argument("--address", metavar="ADDR", help="the Ray cluster (auto: the one 'ray start' made here)")
    add_plugin_option(p)
    add_changed_inputs_option(p)
    p.set_defaults(func=_command)
