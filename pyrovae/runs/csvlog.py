"""CSV logs (per-epoch metrics, benchmark curves).

:func:`append_row` adds one row at a time, so a log written by an interrupted process
keeps every finished row; :func:`csv_text` renders a whole table for files that are
rewritten atomically instead (a run folder's ``metrics.csv``).
"""

import csv
import io
from pathlib import Path
from typing import Iterable, List, Sequence


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


def csv_text(columns: Sequence[str], rows: Iterable[dict]) -> str:
    """A CSV table with the header ``columns`` and one line per row."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_rows(path: Path) -> List[dict]:
    """The rows of the CSV file ``path`` as dictionaries of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
