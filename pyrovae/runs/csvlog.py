"""CSV tables of a run folder (per-epoch metrics, a sweep run's curve): :func:`csv_text`
renders a whole table, which is written atomically (``runs.files.write_atomic``), so an
interrupted process leaves the previous complete file, never a torn last line;
:func:`read_rows` reads one back."""

import csv
import io
from pathlib import Path
from typing import Iterable, List, Sequence


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
