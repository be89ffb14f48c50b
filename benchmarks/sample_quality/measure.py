"""Measure the sample-quality numbers of docs/sample_quality.md and record them in ``results/``.

    PYROVAE_DATA=../shared/data nice python3 benchmarks/sample_quality/measure.py [--quick]

Stages (each recorded in its own JSON file and skipped when that file exists; delete it to
measure again):

- ``classifiers.json``: the feature classifiers' protocols and held-out accuracies
  (Fashion-MNIST; the MNIST protocol on the labelled test split);
- ``floor.json``: the Fréchet distance, precision and recall of n Fashion-MNIST test images
  against the training split, by n, over seeds: the score's finite-sample bias and noise;
- ``fashion_trajectory.json``, ``frey_trajectory.json``: the per-epoch score of a Fashion-MNIST
  VAE (``fashion_vae``) and of a Frey Face VAE (``frey_logistic``) trained with
  ``train.quality.every=1``, and ``pyrovae quality`` of the finished runs (spread over draws);
- ``priors.json``: the built-in sweep ``fashion_priors_quality`` (Fashion-MNIST VAEs with three
  priors, two seeds each: importance-sampled test log p(x) with its standard error and its
  per-image values, the score at the last epoch) and ``pyrovae quality`` of each of its runs
  (the spread over draws). A sweep folder left in ``--runs`` is resumed, its finished runs kept.

The budgets (epochs, training images, samples) are those in ``BUDGET`` and, for the priors'
training and evaluation, the sweep file's (``--quick``: tiny, for checking the script); the runs
go to ``--runs`` (default a temporary folder).
"""

import argparse
import csv
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

import pyrovae
from pyrovae.api import quality
from pyrovae.components.datasets import load_data
from pyrovae.sample_quality.features import classifier_network
from pyrovae.sample_quality.score import QualityScorer
from pyrovae.sweeps import RUNS, load_sweep, read_results

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BUDGET = {"fashion": {"epochs": 4, "train_size": 10000, "samples": 2000},
          "frey": {"epochs": 10, "samples": 200},
          "priors": {"samples": 2000, "seeds": 3},
          "floor": {"sizes": [200, 500, 1000, 2000, 5000, 10000], "seeds": 3},
          "quality": {"samples": 5000, "seeds": 3}, "frey_quality": {"samples": 200, "seeds": 3}}
QUICK = {"fashion": {"epochs": 2, "train_size": 500, "samples": 200},
         "frey": {"epochs": 2, "samples": 100},
         "priors": {"samples": 200, "seeds": 2},
         "floor": {"sizes": [100, 200], "seeds": 2},
         "quality": {"samples": 200, "seeds": 2}, "frey_quality": {"samples": 100, "seeds": 2}}
PRIORS_SWEEP = "fashion_priors_quality"  # the built-in sweep of the priors stage


def _spec(name, **data):
    return pyrovae.load_config({"name": name, "data": {"name": name, **data},
                                "model": {"likelihood": {"name": "discretized_logistic"}}})


def _record(name: str, measure) -> None:
    path = RESULTS / name
    if path.exists():
        print(f"{name}: recorded already")
        return
    started = time.perf_counter()
    result = measure()
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["machine"] = f"{platform.processor() or platform.machine()}, torch {torch.__version__}, " \
                        f"{torch.get_num_threads()} threads"
    path.write_text(json.dumps(result, indent=2))
    print(f"{name}: {result['wall_seconds']} s")


def classifiers() -> dict:
    out = {}
    for name in ("fashion_mnist", "binarized_mnist"):
        spec = _spec(name)
        network = classifier_network(spec.data, load_data(spec.data), progress=True)
        out[name] = {"protocol": network.description, "accuracy": network.accuracy}
    return out


def floor(budget) -> dict:
    spec = _spec("fashion_mnist")
    data = load_data(spec.data)
    scorer = QualityScorer(classifier_network(spec.data, data), data)
    rows = []
    for n in budget["sizes"]:
        for seed in range(budget["seeds"]):
            rows.append({"samples": n, "seed": seed, **scorer.floor(n, seed)})
    return {"reference": f"the {len(data.train)} Fashion-MNIST training images", "rows": rows}


def _metrics(run: Path) -> list:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def trajectory(config: str, budget, runs: Path, quality_budget, extra=()) -> dict:
    out = runs / config
    overrides = [f"train.epochs={budget['epochs']}", "train.quality.every=1", f"train.quality.samples={budget['samples']}",
                 "train.device=cpu", *extra]
    if "train_size" in budget:
        overrides.append(f"data.train_size={budget['train_size']}")
    run = pyrovae.train(config, out=out, overrides=overrides, quiet=True)
    final = quality(run, samples=quality_budget["samples"], seeds=quality_budget["seeds"])
    return {"config": config, "overrides": overrides, "metrics": _metrics(out), "quality": final,
            "figures": str(out / "figures")}


def _per_point(path: Path) -> dict:
    """Each evaluated test image's index and log p(x) estimate: every run of a sweep is evaluated
    on the same images, so differences between runs can be taken image by image (paired)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {"index": [int(r["index"]) for r in rows], "log_px": [round(float(r["log_marginal"]), 3) for r in rows]}


def priors_sweep(quick: bool):
    """The built-in sweep ``fashion_priors_quality``; with ``quick``, the same grid on a tiny budget."""
    if not quick:
        return load_sweep(PRIORS_SWEEP)
    quick_set = {"data.train_size": 500, "train.epochs": 1, "train.quality.every": 1, "train.quality.samples": 200}
    return load_sweep({**load_sweep(PRIORS_SWEEP).to_dict(), "set": quick_set,
                       "evaluate": {"split": "test", "num_samples": 20, "max_points": 20}})


def priors(sweep, folder: Path, budget) -> dict:
    """Run ``sweep`` (a grid of priors, each run evaluated by importance sampling and scored by
    ``train.quality`` at its last epoch) into ``folder``, then ``pyrovae quality`` of every run:
    ``budget['samples']`` samples for ``budget['seeds']`` draws, the spread of the draw."""
    statuses = pyrovae.sweep(sweep, out=folder, workers=1, threads=1, log=lambda line: print(line, flush=True))
    failed = [f"{s.plan.folder}: {s.state} {s.error or ''}" for s in statuses if s.state != "done"]
    if failed:
        raise SystemExit(f"the sweep in {folder} is not done ({'; '.join(failed)}); resume it and measure again")
    results = read_results(folder, sweep)
    rows = []
    for run in results.runs:
        run_dir = folder / RUNS / run.folder
        last = _metrics(run_dir)[-1]
        score = quality(run_dir, samples=budget["samples"], seeds=budget["seeds"])
        estimate = run.evaluation
        sitting = json.loads((run_dir / "sweep_run.json").read_text())["sitting_seconds"]
        rows.append({"point": run.point, "prior": run.point.get("model.prior.name"), "seed": run.seed,
                     "epochs": run.epochs, "train_seconds": run.train_seconds, "sweep_seconds": sitting,
                     "log_px": estimate["log_marginal"]["mean"], "log_px_se": estimate["log_marginal"]["std_error"],
                     "bits_per_dim": estimate.get("bits_per_dim"), "log_px_points": estimate["num_points"],
                     "is_samples": estimate["num_samples"], "iwae": estimate["iwae"],
                     "pareto_khat": estimate["pareto_khat"], "ess": estimate["ess"],
                     "per_point": _per_point(run_dir / estimate["per_point_file"]),
                     "last_epoch": {key: last[key] for key in ("epoch", "frechet", "precision", "recall", "frechet_floor")},
                     "quality": score})
    return {"sweep": sweep.name, "set": sweep.set, "grid": sweep.grid, "seeds": sweep.seeds,
            "evaluate": {k: sweep.evaluate[k] for k in ("split", "num_samples", "max_points")},
            "command": f"pyrovae sweep {sweep.name} --out DIR", "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets, results in a temporary folder")
    parser.add_argument("--runs", help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    global RESULTS
    budget = QUICK if args.quick else BUDGET
    if args.quick:
        RESULTS = Path(tempfile.mkdtemp(prefix="sample-quality-quick-"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs = Path(args.runs or tempfile.mkdtemp(prefix="sample-quality-runs-"))
    _record("classifiers.json", classifiers)
    _record("floor.json", lambda: floor(budget["floor"]))
    _record("frey_trajectory.json", lambda: trajectory("frey_logistic", budget["frey"], runs, budget["frey_quality"],
                                                       ["train.early_stopping_patience=null"]))
    _record("fashion_trajectory.json", lambda: trajectory("fashion_vae", budget["fashion"], runs, budget["quality"]))
    _record("priors.json", lambda: priors(priors_sweep(args.quick), runs / PRIORS_SWEEP, budget["priors"]))
    print(f"results in {RESULTS}, runs in {runs}")


if __name__ == "__main__":
    main()
