"""Wall-clock of the acceptance sweep (``acceptance_sweep.yaml``: 8 runs) with 1 and with 2
local workers, one torch thread per run.

    PYROVAE_DATA=... python3 benchmarks/sweeps/workers_wall_clock.py [--repeats 2] [--runs DIR]

The sittings alternate (1, 2, 1, 2, ...) in one process, so that whatever else loads the
machine weighs on both worker counts alike; each sitting starts from an empty sweep folder.
Prints one line per sitting (seconds, the 1-minute load average before and after) and the
median ratio, and writes them to ``results/workers_wall_clock.json``.
"""

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from pyrovae.commands.sweep import sweep as run_sweep
from pyrovae.runs.files import write_atomic

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="sittings per worker count (default 2)")
    parser.add_argument("--runs", type=Path, help="scratch folder for the sweeps (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "workers_wall_clock.json")
    args = parser.parse_args()
    sweep = yaml.safe_load((HERE / "acceptance_sweep.yaml").read_text())
    scratch = args.runs or Path(tempfile.mkdtemp(prefix="sweep_wall_clock_"))
    sittings = []
    for repeat in range(args.repeats):
        for workers in (1, 2):
            folder = scratch / f"workers{workers}_{repeat}"
            shutil.rmtree(folder, ignore_errors=True)
            load_before = os.getloadavg()[0]
            started = time.perf_counter()
            statuses = run_sweep(sweep, folder, workers=workers, threads=1, log=lambda line: None)
            seconds = time.perf_counter() - started
            if any(s.state != "done" for s in statuses):
                raise SystemExit(f"a run of {folder} did not finish: {[s.state for s in statuses]}")
            sittings.append({"workers": workers, "seconds": seconds, "load_before": load_before,
                             "load_after": os.getloadavg()[0]})
            print(json.dumps(sittings[-1]), flush=True)
    one = [s["seconds"] for s in sittings if s["workers"] == 1]
    two = [s["seconds"] for s in sittings if s["workers"] == 2]
    summary = {"runs": 8, "cores": os.cpu_count(), "median_seconds": {"1": statistics.median(one),
                                                                      "2": statistics.median(two)},
               "speed_up": statistics.median(one) / statistics.median(two), "sittings": sittings}
    print(f"1 worker: {summary['median_seconds']['1']:.1f} s, 2 workers: {summary['median_seconds']['2']:.1f} s, "
          f"speed-up {summary['speed_up']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, json.dumps(summary, indent=2) + "\n")
    if args.runs is None:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
