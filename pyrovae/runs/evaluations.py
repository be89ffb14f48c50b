"""A run's evaluation record, ``evaluation.json``: its name, how its entries are keyed, how it
is read, and the names its summaries use. The evaluation engine writes it; reports and sweeps
read it.
"""

import json
from pathlib import Path

from ..errors import PyrovaeError

EVALUATION = "evaluation.json"
SECTION = "Evaluation"  # the section of report.md drawn from the record
ELBO_ESTIMATORS = {"pathwise": "Trace_ELBO", "analytic_kl": "TraceMeanField_ELBO"}  # summary key -> Pyro ELBO


def entry_name(summary: dict) -> str:
    """The key of a summary in evaluation.json: the split for importance sampling, the split
    and the method otherwise."""
    return summary["split"] if summary.get("method", "is") == "is" else f"{summary['split']} ({summary['method']})"


def read_evaluations(run_dir: Path) -> dict:
    """The summaries in ``run_dir/evaluation.json`` by entry name (none if it does not exist)."""
    path = Path(run_dir) / EVALUATION
    try:
        everything = json.loads(path.read_text()) if path.exists() else {}
    except (ValueError, UnicodeDecodeError):
        raise PyrovaeError(f"{path} is not valid JSON; delete it and evaluate again") from None
    if not isinstance(everything, dict):
        raise PyrovaeError(f"{path} is not an evaluation file (a mapping of splits); delete it and evaluate again")
    return everything
