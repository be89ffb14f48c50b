"""Train a discrete-latent config for a fixed number of steps and record its learning curve.

    python3 benchmarks/discrete/reproduce.py sbn_mnist --steps 70000 --set train.estimator.name=nvil
    python3 benchmarks/discrete/reproduce.py categorical_mnist --steps 30000 \\
        --set train.estimator.name=gumbel_softmax --set train.estimator.anneal_rate=1e-4

The published numbers for discrete latents (docs/benchmarks.md) come from 10^6 training steps
and more; this machine affords tens of thousands. The budget is a number of steps, rounded up
to whole epochs, trained in one call of ``pyrovae train`` (the curve is the run's training and
validation ELBO after every epoch). Run again with the same ``--out`` and more steps to go on:
training resumes exactly from the run's checkpoint; with fewer steps than the run has trained,
it is recorded as it stands (a run stopped for time keeps its finished epochs). At the end the
parameters ``pyrovae evaluate`` reads (best validation ELBO) are evaluated on
``--test-points`` test images chosen at random (seed 0): the ELBO (IWAE_1) and log p(x)
importance-sampled with K = ``--samples`` draws from q, with the share of images whose Pareto
k-hat is above 0.7. The result goes to ``benchmarks/discrete/results/CONFIG.json``, from which
``report.py`` writes the docs section.

Torch runs on ``--threads`` threads (default 1): on a machine whose other core is busy, a
second thread makes every parallel operation wait for it (a step of ``sbn_mnist`` was measured
ten times slower in wall clock, see docs/benchmarks_estimators.md).
"""

import argparse
import json
import math
import time
from pathlib import Path
from typing import Optional

import torch

from pyrovae import api
from pyrovae.components.datasets import load_data
from pyrovae.runs.checkpoint import CHECKPOINT
from pyrovae.runs.files import write_atomic
from pyrovae.runs.folder import METRICS
from pyrovae.spec import load_config

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def epochs_for(spec, steps: int) -> int:
    """The whole epochs that hold at least ``steps`` minibatch steps of ``spec``'s training set."""
    train_size = load_data(spec.data).train.x.shape[0]
    return math.ceil(steps / math.ceil(train_size / spec.train.batch_size))


class Clock:
    """Wall-clock and CPU seconds (this process's) since it was made."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def seconds(self) -> dict:
        return {"wall": time.perf_counter() - self.wall, "cpu": time.process_time() - self.cpu}


def curve(out: Path) -> list:
    """The rows of the run's metrics.csv (one per epoch), as numbers."""
    if not (out / METRICS).exists():
        return []
    rows = (out / METRICS).read_text().splitlines()
    keys = rows[0].split(",")
    return [{k: float(v) for k, v in zip(keys, row.split(",")) if v} for row in rows[1:]]


def train(config: str, out: Path, steps: int, overrides: list) -> dict:
    """Train ``config`` (or continue the run in ``out``) for ``steps`` steps in all, rounded up to
    whole epochs, in one call (nothing when the run has trained that long already: a run stopped
    for time is recorded as far as it got); the epochs, those of this call and its wall-clock and
    CPU seconds, and the curve (its ``seconds``: the run's wall clock in training steps)."""
    spec = load_config(config, overrides)
    epochs = epochs_for(spec, steps)
    clock, before = Clock(), len(curve(out))
    if not (out / CHECKPOINT).exists():
        api.train(config, out, [*overrides, f"train.epochs={epochs}"], quiet=True)
    elif before < epochs:
        api.train(out, out, [f"train.epochs={epochs}"], resume=True, quiet=True)
    rows = curve(out)
    return {"epochs": int(rows[-1]["epoch"]), "epochs_this_call": len(rows) - before,
            "seconds_this_call": clock.seconds(), "curve": rows}


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--steps", type=int, required=True, help="training steps in all (rounded up to whole epochs)")
    parser.add_argument("--set", action="append", default=[], help="config overrides KEY=VALUE")
    parser.add_argument("--out", default=None, help="run folder (default runs/discrete/CONFIG)")
    parser.add_argument("--test-points", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--results", default=str(RESULTS), help="where CONFIG.json goes")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.threads < 1:
        raise SystemExit("--steps and --threads must be positive")
    torch.set_num_threads(args.threads)
    out = Path(args.out or Path("runs") / "discrete" / args.config)
    training = train(args.config, out, args.steps, args.set)
    clock = Clock()
    evaluation = api.evaluate(out, "test", num_samples=args.samples, max_points=args.test_points).summary
    spec = load_config(out)
    result = {"config": args.config, "overrides": args.set, "estimator": spec.train.estimator.to_dict(),
              "threads": args.threads, "steps": int(training["curve"][-1]["step"]),
              "steps_per_epoch": int(training["curve"][0]["step"]), **training,
              "test": {"points": evaluation["num_points"], "samples": evaluation["num_samples"],
                       "elbo": evaluation["iwae"][0]["mean"], "elbo_std_error": evaluation["iwae"][0]["std_error"],
                       "log_marginal": evaluation["log_marginal"]["mean"],
                       "log_marginal_std_error": evaluation["log_marginal"]["std_error"],
                       "pareto_khat_share_above_0.7": evaluation["unreliable"]["share"]},
              "evaluation_seconds": clock.seconds()}
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{args.config}.json"
    if training["epochs_this_call"] == 0 and path.exists():  # recorded again: keep the last training call's time
        last = json.loads(path.read_text())
        if last["curve"] == result["curve"]:
            result.update({k: last[k] for k in ("epochs_this_call", "seconds_this_call")})
    write_atomic(path, json.dumps(result, indent=2) + "\n")
    print(f"recorded {path}")


if __name__ == "__main__":
    main()
