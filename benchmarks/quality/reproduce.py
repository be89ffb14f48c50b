"""Train a built-in config towards its published test log-likelihood, resumably, and
evaluate it the way the papers do.

    python3 benchmarks/quality/reproduce.py mnist_vae_standard --minutes 40
    python3 benchmarks/quality/reproduce.py mnist_vae_standard --final

Training runs in chunks of ``--chunk-epochs`` epochs in ``RUNS/CONFIG`` (outside the
repository by default; checkpoints are not committed). After each chunk the best-validation
model's test log-likelihood is estimated cheaply (``--curve-samples`` importance samples on
``--curve-points`` evenly spaced test images) and appended to ``curve.csv``: the curve of test
log-likelihood against epochs. A sitting stops when the config's epochs are done, early
stopping fires, or at the end of the chunk in which ``--minutes`` ran out; the next sitting
resumes exactly where it left off.

``--final`` evaluates the best-validation model with K = 5000 importance samples on the whole
test split (``pyrovae evaluate``) and records the result, the curve and the time spent in
``benchmarks/quality/results/CONFIG.json``, from which ``table.py`` writes the table in
``docs/benchmarks.md``. It can be run at any point: a run cut short by the budget is then
recorded as such.
"""

import argparse
import csv
import json
import math
import time
from pathlib import Path
from typing import Tuple

import pyro
import torch

from pyrovae.components.datasets import load_data
from pyrovae.errors import PyrovaeError
from pyrovae.evaluation.evaluate import evaluate_run
from pyrovae.evaluation.importance import log_marginal
from pyrovae.runs.checkpoint import CHECKPOINT, load_checkpoint
from pyrovae.runs.csvlog import append_row
from pyrovae.runs.train import train
from pyrovae.spec import load_config

RESULTS = Path(__file__).resolve().parent / "results"
STATUS = "status.json"
CURVE = "curve.csv"
CURVE_COLUMNS = ["epoch", "train_seconds", "wall_seconds", "best_valid_elbo", "test_log_px", "std_error",
                 "samples", "points"]


def train_for(config: str, run_dir: Path, minutes: float, chunk_epochs: int, curve_samples: int,
              curve_points: int, overrides) -> None:
    """Train ``config`` in ``run_dir`` chunk by chunk until it is finished or ``minutes``
    have passed (at least one chunk), recording a curve point after each chunk."""
    spec = load_config(config, overrides)
    spec.train.progress = False
    data = load_data(spec.data)
    status = _read_status(run_dir)
    previous_wall = status.get("wall_seconds", 0.0)
    deadline = time.monotonic() + 60 * minutes
    done, _ = _progress(run_dir)
    while not status["finished"]:
        started = time.monotonic()
        chunk = load_config(spec.to_dict())
        chunk.train.epochs = min(spec.train.epochs, done + chunk_epochs)
        result = train(chunk, run_dir, resume=done > 0, data=data)
        done = result.epochs_done
        status = {"finished": result.stopped_early or result.epochs_done >= spec.train.epochs,
                  "stopped_early": result.stopped_early, "epochs": result.epochs_done,
                  "config_epochs": spec.train.epochs}
        point = _curve_point(result.vae, data.split("test").x, curve_samples, curve_points)
        status["wall_seconds"] = previous_wall + time.monotonic() - started
        previous_wall = status["wall_seconds"]
        append_row(run_dir / CURVE, CURVE_COLUMNS, {
            "epoch": result.epochs_done, "train_seconds": _progress(run_dir)[1],
            "wall_seconds": status["wall_seconds"], "best_valid_elbo": result.best_valid_elbo, **point})
        (run_dir / STATUS).write_text(json.dumps(status, indent=2) + "\n")
        print(f"{config}: epoch {result.epochs_done}, best valid ELBO {result.best_valid_elbo:.2f}, "
              f"test log p(x) ~ {point['test_log_px']:.2f} (K={curve_samples}, {point['points']} images)",
              flush=True)
        if time.monotonic() >= deadline:
            break


def _curve_point(vae, test_x: torch.Tensor, samples: int, points: int) -> dict:
    # Evenly spaced images stand for the whole split; the first ones would not (MNIST's
    # first 5000 test digits are the cleaner half).
    every = torch.linspace(0, test_x.shape[0] - 1, min(points, test_x.shape[0])).round().long()
    pyro.set_rng_seed(0)
    estimate = log_marginal(vae.eval(), test_x[every], num_samples=samples)
    vae.train()
    n = estimate.value.shape[0]
    return {"test_log_px": float(estimate.value.mean()), "std_error": float(estimate.value.std() / math.sqrt(n)),
            "samples": samples, "points": n}


def finalize(config: str, run_dir: Path, num_samples: int) -> Path:
    """Evaluate with ``num_samples`` on the full test split and write the results file."""
    summary = evaluate_run(run_dir, "test", num_samples=num_samples, progress=True)
    status = _read_status(run_dir)
    epochs, train_seconds = _progress(run_dir)
    record = {
        "config": config,
        "epochs": epochs,
        "config_epochs": status.get("config_epochs"),
        "stopped_early": status.get("stopped_early", False),
        "finished": status["finished"],
        "train_seconds": train_seconds,
        "wall_seconds": status.get("wall_seconds"),
        "evaluate_seconds": summary["seconds"],
        "threads": torch.get_num_threads(),
        "test": {key: summary[key] for key in ("num_points", "num_samples", "log_marginal", "iwae", "elbo",
                                               "bits_per_dim", "active_units")},
        "curve": _read_curve(run_dir),
    }
    record["test"]["active_units"] = {k: v for k, v in record["test"]["active_units"].items() if k != "variances"}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{config}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def _progress(run_dir: Path) -> Tuple[int, float]:
    """Epochs trained and seconds spent in training epochs, from the run's checkpoint."""
    path = run_dir / CHECKPOINT
    if not path.exists():
        return 0, 0.0
    state = load_checkpoint(path)
    return state["epoch"], float(state["seconds"])


def _read_status(run_dir: Path) -> dict:
    path = run_dir / STATUS
    return json.loads(path.read_text()) if path.exists() else {"finished": False}


def _read_curve(run_dir: Path) -> list:
    path = run_dir / CURVE
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="built-in config name or config file")
    parser.add_argument("--runs", type=Path, default=Path("../runs/quality"),
                        help="folder holding one run folder per config (default: ../runs/quality)")
    parser.add_argument("--minutes", type=float, default=60.0, help="training time for this sitting")
    parser.add_argument("--chunk-epochs", type=int, default=10, help="epochs between curve points")
    parser.add_argument("--curve-samples", type=int, default=500)
    parser.add_argument("--curve-points", type=int, default=1000)
    parser.add_argument("--final", action="store_true", help="evaluate with K = --num-samples on the full test split")
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir = args.runs / Path(args.config).stem
    try:
        if args.final:
            print(f"wrote {finalize(args.config, run_dir, args.num_samples)}")
        else:
            train_for(args.config, run_dir, args.minutes, args.chunk_epochs, args.curve_samples, args.curve_points,
                      args.overrides)
    except PyrovaeError as error:
        raise SystemExit(f"reproduce.py: error: {error}") from None


if __name__ == "__main__":
    main()
