"""``pyrovae report RUN``: (re)write a run folder's figures and ``report.md`` from its files:
the training section from its config, checkpoint and metrics, the evaluation section from
``evaluation.json``, the variance section from ``variance.json``."""

import json
from pathlib import Path

from ..errors import PyrovaeError
from ..runs.checkpoint import CHECKPOINT
from .markdown import REPORT

VARIANCE = "variance.json"


def rebuild_report(run_dir) -> Path:
    """Rewrite every report section and figure ``run_dir``'s files support; return the
    path of ``report.md``."""
    from ..api import load
    from ..evaluation import evaluate
    from ..lab import variance
    from ..runs.train import TrainResult
    from .training import make_figures, write_training_report

    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).is_file():
        raise PyrovaeError(f"{run_dir} has no finished epoch (no {CHECKPOINT}), so there is nothing to report; "
                           f"train it with 'pyrovae train CONFIG --out {run_dir}'")
    run = load(run_dir)
    result = TrainResult(run.vae, run.data, run_dir, run.epochs_done, run.best_valid_elbo, run.stopped_early)
    write_training_report(result, run.spec, make_figures(result))
    if (run_dir / evaluate.EVALUATION).is_file():
        for summary in _read_json(run_dir / evaluate.EVALUATION).values():
            evaluate._save(run_dir, summary)
    if (run_dir / VARIANCE).is_file():
        variance.write_results(run_dir, _read_json(run_dir / VARIANCE))
    return run_dir / REPORT


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise PyrovaeError(f"{path} is not valid JSON; delete it and measure again") from None


def add_command(subparsers) -> None:
    """Add ``pyrovae report`` to the command line."""
    p = subparsers.add_parser(
        "report", help="(re)write a run folder's figures and report.md from its files",
        description="Rewrite figures/ and report.md of a run folder from its config, checkpoint, metrics, "
                    "evaluation.json and variance.json.")
    p.add_argument("run", help="a run folder written by 'pyrovae train'")
    p.set_defaults(func=_command)


def _command(args) -> None:
    print(f"report: {rebuild_report(args.run)}")
