"""Draw the sweeps page's figures and tables from the sweep results committed here.

    python3 benchmarks/sweeps/report.py --out DIR             # what the docs build runs
    python3 benchmarks/sweeps/report.py --record SWEEP_DIR    # copy a finished sweep's results in

``results/<sweep>/`` holds what ``--record`` copied from a sweep folder that ``pyrovae sweep``
wrote: its ``sweep.yaml`` and ``results.json`` (no run folders, no checkpoints). ``--out DIR``
writes, for every such sweep, ``<sweep>.png`` (the figure of the sweep's own report, drawn by
the same function, :func:`pyrovae.reports.sweep_report.results_figure`) and ``<sweep>.md``
(its results table, the table of differences between grid points and, where the sweep
measured them, the inference gaps, as in its report.md).
The site build runs this script; docs/sweeps.md links ``generated/sweeps/<sweep>.png`` and
includes ``sweeps/<sweep>.md``.
"""

import argparse
import json
import shutil
from pathlib import Path

from pyrovae.reports.sweep_report import RESULTS, differences_table, gaps_table, results_figure, results_table
from pyrovae.sweeps import load_sweep
from pyrovae.sweeps.results import results_from_dict
from pyrovae.sweeps.sweep import SWEEP_FILE, open_sweep

HERE = Path(__file__).resolve().parent
RECORDED = HERE / "results"


def recorded_sweeps() -> list:
    """The folders under results/ holding a recorded sweep."""
    return sorted(p.parent for p in RECORDED.glob(f"*/{RESULTS}") if (p.parent / SWEEP_FILE).is_file())


def record(sweep_dir: Path) -> Path:
    """Copy the sweep file and results of the sweep in ``sweep_dir`` to results/<name>/."""
    spec = open_sweep(sweep_dir)
    target = RECORDED / spec.name
    target.mkdir(parents=True, exist_ok=True)
    for name in (SWEEP_FILE, RESULTS):
        shutil.copyfile(Path(sweep_dir) / name, target / name)
    return target


def draw(folder: Path, out: Path) -> None:
    spec = load_sweep(folder / SWEEP_FILE)
    results = results_from_dict(spec, json.loads((folder / RESULTS).read_text()))
    results_figure(results, out / f"{spec.name}.png")
    text = results_table(results) + "\n"
    if len(results.points) > 1:
        text += "\nDifferences (row minus column) with their standard errors:\n\n" + differences_table(results) + "\n"
    gaps = gaps_table(results)
    if gaps:
        text += "\nInference gaps (mean ± sd over seeds):\n\n" + gaps + "\n"
    (out / f"{spec.name}.md").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--out", type=Path, help="write every recorded sweep's figure and tables into this folder")
    action.add_argument("--record", type=Path, metavar="SWEEP_DIR", help="copy a sweep folder's results into results/")
    args = parser.parse_args()
    if args.record:
        print(f"recorded {record(args.record)}")
        return
    folders = recorded_sweeps()
    if not folders:
        raise SystemExit(f"no recorded sweep in {RECORDED}; record one with --record SWEEP_DIR")
    args.out.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        draw(folder, args.out)


if __name__ == "__main__":
    main()
