"""Draw Kingma & Welling's Fig. 2 and Fig. 3 and their tables from the recorded results.

    python3 benchmarks/paper/report.py --out DIR                   # from benchmarks/paper/results/
    python3 benchmarks/paper/report.py --out DIR --results FOLDER  # from another record

The records (``kingma2014-fig2.json``, ``kingma2014-fig3.json``) are written by
``pyrovae reproduce NAME --out RUNS --record benchmarks/paper/results`` from the runs of a
reproduction; this script draws the same figures and tables from them with the same code as
``pyrovae reproduce`` (``pyrovae.reports.paper_results``). The docs site runs it when it is
built (``docs_tools/site_hooks.py``): the figures become ``generated/paper/<name>.png`` and
the tables ``generated/paper/<name>-<table>.md``, which ``docs/paper.md`` includes, so no
figure or number of the page is kept anywhere but in the records.
"""

import argparse
from pathlib import Path

from pyrovae.errors import PyrovaeError
from pyrovae.reports.markdown import markdown_table
from pyrovae.reports.paper_results import FIGURES, draw, read_results, tables

HERE = Path(__file__).resolve().parent


def report(results_folder: Path, out: Path) -> list:
    """Every figure and table of the records in ``results_folder``, written into ``out``;
    returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for figure in FIGURES:
        results = read_results(results_folder, figure)
        written.append(draw(results, out / f"{figure}.png"))
        for name, table in tables(results).items():
            path = out / f"{figure}-{name}.md"
            path.write_text(markdown_table(*table) + "\n")
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for the figures and tables (the docs build gives one)")
    parser.add_argument("--results", default=str(HERE / "results"), help="the recorded results (default: %(default)s)")
    args = parser.parse_args()
    try:
        written = report(Path(args.results), Path(args.out))
    except PyrovaeError as exc:
        raise SystemExit(f"error: {exc}") from None
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
