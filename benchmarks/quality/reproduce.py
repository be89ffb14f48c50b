"""Reproduce a published test log-likelihood through its built-in sweep, and record it.

    python3 benchmarks/quality/reproduce.py mnist_vae_standard --budget 40m   # one sitting
    python3 benchmarks/quality/reproduce.py mnist_vae_standard --record       # results/CONFIG.json

Each published setup is a built-in sweep ``quality_CONFIG`` (``pyrovae/sweeps/builtin/``): the
built-in config with one seed, a curve point every 10 epochs (test log p(x) with K = 500
importance samples on 1000 evenly spaced test images, in the run folder's ``curve.csv``), and,
when training ends (all epochs or early stopping), K = 5000 samples on the whole test split
(``pyrovae evaluate``). A sitting is ``pyrovae sweep quality_CONFIG --out RUNS/CONFIG --budget
TIME``: it stops at the end of the curve chunk in which the budget ran out, and the next
sitting resumes exactly where it left off.

``--record`` writes the result, the curve and the time spent to
``benchmarks/quality/results/CONFIG.json``, from which ``report.py`` writes the table in
``docs/benchmarks.md``. It can be run at any point: a run cut short is first evaluated the
same way (K = 5000, whole test split) and recorded as cut short.
"""

import argparse
import json
from pathlib import Path

from pyrovae.commands.evaluate import evaluate
from pyrovae.commands.sweep import sweep
from pyrovae.errors import PyrovaeError
from pyrovae.runs.evaluations import EVALUATION
from pyrovae.runs.files import write_atomic
from pyrovae.spec import load_config
from pyrovae.sweeps import load_sweep, run_folder, sweep_status
from pyrovae.sweeps.job import read_curve, training_progress
from pyrovae.sweeps.sweep import open_sweep

RESULTS = Path(__file__).resolve().parent / "results"


def sweep_name(config: str) -> str:
    return f"quality_{config}"


def record(config: str, sweep_dir: Path, results: Path = RESULTS) -> Path:
    """Write ``results/CONFIG.json`` from the run folder of the sweep in ``sweep_dir``,
    evaluating it first if its training was cut short."""
    spec = open_sweep(sweep_dir)
    run_dir = run_folder(sweep_dir, {}, spec.seeds[0])
    planned = load_config(spec.runs()[0].config)  # config.yaml of a run cut short names its last chunk's epochs
    progress = training_progress(run_dir, planned)
    status = sweep_status(sweep_dir, spec)[0]
    if status.state == "done":  # trained to the end and evaluated by the sweep
        summary = json.loads((run_dir / EVALUATION).read_text())[spec.evaluate["split"]]
    else:  # cut short: evaluated the same way now
        summary = evaluate(run_dir, **spec.evaluate)
    curve = read_curve(run_dir)
    state = json.loads((run_dir / "sweep_run.json").read_text()) if (run_dir / "sweep_run.json").exists() else {}
    result = {
        "config": config,
        "epochs": progress["epochs"],
        "config_epochs": planned.train.epochs,
        "stopped_early": progress["stopped_early"],
        "finished": progress["finished"],
        "train_seconds": progress["train_seconds"],
        "wall_seconds": curve[-1]["wall_seconds"] if curve else None,
        "evaluate_seconds": summary["seconds"],
        "threads": state.get("threads"),
        "test": {key: summary[key] for key in ("num_points", "num_samples", "log_marginal", "iwae", "elbo",
                                               "bits_per_dim", "active_units")},
        "curve": curve,
    }
    result["test"]["active_units"] = {k: v for k, v in result["test"]["active_units"].items() if k != "variances"}
    results.mkdir(exist_ok=True)
    out = results / f"{config}.json"
    return write_atomic(out, json.dumps(result, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a built-in config with a published result, e.g. mnist_vae_standard")
    parser.add_argument("--runs", type=Path, default=Path("../runs/quality"),
                        help="folder holding one sweep folder per config (default: ../runs/quality)")
    parser.add_argument("--budget", default="60m", help="training time for this sitting (default 60m)")
    parser.add_argument("--record", action="store_true", help="write results/CONFIG.json from the run")
    args = parser.parse_args()
    sweep_dir = args.runs / args.config
    try:
        if args.record:
            print(f"wrote {record(args.config, sweep_dir)}")
        else:
            sweep(load_sweep(sweep_name(args.config)), sweep_dir, budget=args.budget, workers=1)
    except PyrovaeError as error:
        raise SystemExit(f"reproduce.py: error: {error}") from None


if __name__ == "__main__":
    main()
