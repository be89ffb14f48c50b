"""The run folder's ``report.md``: a document made of named sections.

Each command that learns something about a run (training, evaluation, variance
measurements) owns one section and rewrites only that one, so a report always shows
the latest result of every command without losing the others'.
"""

import re
from pathlib import Path

from ..runs.files import write_atomic

REPORT = "report.md"


def update_section(run_dir, title: str, body: str) -> Path:
    """Replace (or append) the section ``title`` of ``run_dir/report.md`` with ``body``."""
    return replace_section(Path(run_dir) / REPORT, title, body)


def replace_section(path, title: str, body: str) -> Path:
    """Replace (or append) the section ``title`` of the markdown file ``path`` with ``body``;
    the section is delimited by comments, so the rest of the file is left as it is. The
    file is replaced atomically: an interruption leaves the old report or the new one."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    start, end = f"<!-- section: {title} -->", f"<!-- end: {title} -->"
    block = f"{start}\n## {title}\n\n{body.strip()}\n{end}\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text + ("\n" if text else "") + block
    write_atomic(path, text)
    return path


def markdown_table(header, rows) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)
