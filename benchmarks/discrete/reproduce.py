"""Train a discrete-latent config for a fixed wall-clock budget and record its learning curve.

    python3 benchmarks/discrete/reproduce.py sbn_mnist --minutes 15            # train and record
    python3 benchmarks/discrete/reproduce.py categorical_mnist --minutes 15 --set train.epochs=1000

The published numbers for discrete latents (docs/benchmarks.md) come from about 10^6 training
steps; this machine affords a few thousand. So the config is trained one epoch per sitting
(``pyrovae train``, then ``--resume`` with one more epoch: the same run as one uninterrupted
training, since resume is exact) until the budget is spent; the run's training and validation
ELBO by epoch are its curve. At the end the parameters ``pyrovae evaluate`` reads are evaluated on
``--test-points`` test images chosen at random (seed 0): the ELBO (IWAE_1) and log p(x)
importance-sampled with K = ``--samples`` draws from q. The result goes to
``benchmarks/discrete/results/CONFIG.json``, from which ``report.py`` writes the docs section.
"""

import argparse
import json
import time
from pathlib import Path
from typing import Optional

from pyrovae import api
from pyrovae.runs.files import write_atomic
from pyrovae.spec import load_config

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def train_for(config: str, out: Path, minutes: float, overrides: list) -> dict:
    """Train epoch by epoch until ``minutes`` of wall clock are spent (one epoch at least); the
    curve and the time."""
    started, epoch = time.perf_counter(), 0
    while epoch == 0 or time.perf_counter() - started < 60 * minutes:
        epoch += 1
        if epoch == 1:
            api.train(config, out, [*overrides, "train.epochs=1", "train.progress=false"], quiet=True)
        else:
            api.train(out, out, [f"train.epochs={epoch}"], resume=True, quiet=True)
    rows = (out / "metrics.csv").read_text().splitlines()
    keys = rows[0].split(",")
    curve = [{k: float(v) for k, v in zip(keys, row.split(","))} for row in rows[1:]]
    return {"epochs": epoch, "wall_seconds": time.perf_counter() - started, "curve": curve}


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget (wall clock)")
    parser.add_argument("--set", action="append", default=[], help="config overrides KEY=VALUE")
    parser.add_argument("--out", default=None, help="run folder (default runs/discrete/CONFIG)")
    parser.add_argument("--test-points", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--results", default=str(RESULTS), help="where CONFIG.json goes")
    args = parser.parse_args(argv)
    out = Path(args.out or Path("runs") / "discrete" / args.config)
    training = train_for(args.config, out, args.minutes, args.set)
    started = time.perf_counter()
    evaluation = api.evaluate(out, "test", num_samples=args.samples, max_points=args.test_points).summary
    spec = load_config(out)
    steps_per_epoch = training["curve"][0]["step"]
    result = {"config": args.config, "overrides": args.set, "estimator": spec.train.estimator.to_dict(),
              "steps": int(training["curve"][-1]["step"]), "steps_per_epoch": int(steps_per_epoch), **training,
              "test": {"points": evaluation["num_points"], "samples": evaluation["num_samples"],
                       "elbo": evaluation["iwae"][0]["mean"], "log_marginal": evaluation["log_marginal"]["mean"],
                       "log_marginal_std_error": evaluation["log_marginal"]["std_error"],
                       "pareto_khat_share_above_0.7": evaluation["unreliable"]["share"]},
              "evaluate_seconds": time.perf_counter() - started}
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{args.config}.json"
    write_atomic(path, json.dumps(result, indent=2) + "\n")
    print(f"recorded {path}")


if __name__ == "__main__":
    main()
