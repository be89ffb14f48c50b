"""A run folder's whole report, drawn again from its files: the training section from its
config, checkpoint and metrics, the evaluation section from ``evaluation.json`` (only the
evaluations of the checkpoint the folder holds), the variance section from
``variance.json``. ``pyrovae report`` (:mod:`pyrovae.commands.report`) calls it after making
the folder consistent.
"""

import json
from pathlib import Path

from ..errors import PyrovaeError
from ..lab.variance import VARIANCE
from .evaluation_report import write_evaluation_report
from .training import result_of_folder, write_training_report
from .variance_report import write_variance_report


def rebuild_report(run_dir: Path) -> Path:
    """Rewrite every report section and figure ``run_dir``'s files support; return the path of
    ``report.md``."""
    spec, result = result_of_folder(run_dir)
    report = write_training_report(result, spec)
    write_evaluation_report(run_dir)  # with the bounds figures of the checkpoint's evaluations
    if (run_dir / VARIANCE).is_file():
        try:
            results = json.loads((run_dir / VARIANCE).read_text())
        except (ValueError, UnicodeDecodeError):
            raise PyrovaeError(f"{run_dir / VARIANCE} is not valid JSON; delete it and measure again") from None
        write_variance_report(run_dir, results)
    return report
