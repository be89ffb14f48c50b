"""A run's evaluation record, ``evaluation.json``: its name, how its entries are keyed, how it
is read, and the names its summaries use; beside it one CSV file per entry with the per-point
results (:func:`per_point_name`), which the entry names under ``per_point_file``. The evaluation
engine writes them; reports and sweeps read them.
"""

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import PyrovaeError
from .files import remove_stale_temp_files

EVALUATION = "evaluation.json"
SECTION = "Evaluation"  # the section of report.md drawn from the record
ELBO_ESTIMATORS = {"pathwise": "Trace_ELBO", "analytic_kl": "TraceMeanField_ELBO"}  # summary key -> Pyro ELBO


PER_POINT_PATTERN = "evaluation_*.csv"  # the per-point results beside evaluation.json


def entry_name(summary: dict) -> str:
    """The key of a summary in evaluation.json: the split for importance sampling, the split
    and the method otherwise."""
    return summary["split"] if summary.get("method", "is") == "is" else f"{summary['split']} ({summary['method']})"


def per_point_name(summary: dict) -> str:
    """The file holding a summary's per-point results: ``evaluation_test.csv`` for importance
    sampling of the test split, ``evaluation_test_ais.csv``, ``evaluation_simulated_bdmc.csv``."""
    method = summary.get("method", "is")
    return f"evaluation_{summary['split']}{'' if method == 'is' else '_' + method}.csv"


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


@contextmanager
def evaluation_lock(run_dir: Path) -> Iterator[None]:
    """Let one evaluation at a time save into ``run_dir`` or draw the report's Evaluation
    section, under a lock on the folder itself (no lock file): each save reads evaluation.json,
    adds to it and writes it back, so two at once would lose one. evaluation.json, its per-point
    files and the bounds figures are written only under this lock, so a temporary file of theirs
    found on taking it was left by a killed process and is removed."""
    folder = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)  # released when the descriptor is closed
        remove_stale_temp_files(run_dir, [EVALUATION, PER_POINT_PATTERN])
        remove_stale_temp_files(Path(run_dir) / "figures", ["bounds_vs_k_*.png"])
        yield
    finally:
        os.close(folder)
