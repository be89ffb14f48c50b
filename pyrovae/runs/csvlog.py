"""Append-only CSV logs (per-epoch metrics, benchmark curves): one row at a time, so a
log written by an interrupted run keeps every row that was finished."""

import csv
from pathlib import Path
from typing import Sequence


def append_row(path: Path, columns: Sequence[str], row: dict) -> None:
    """Append ``row`` to the CSV file ``path``, writing the header ``columns`` first if the
    file is new."""
    path = Path(path)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        if new:
            writer.writeheader()
        writer.writerow(row)
