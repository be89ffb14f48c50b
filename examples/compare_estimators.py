"""Training with each gradient estimator: the same VAE for the same steps and the same
wall-clock budget, ELBO against steps and against seconds.

Every estimator trains the quickstart VAE (784-400-20 tanh MLPs, Bernoulli likelihood) on
static binarized MNIST with Adam 1e-3 and batch 100, from the same initialization through
the same minibatches. A run goes on until it has taken ``--steps`` steps *and* trained for
``--seconds`` seconds; every ``--eval-every`` steps it records the single-sample ELBO of the
first 1000 validation images (evaluation time is not counted). ELBO against steps compares
the estimators per gradient, ELBO against seconds per unit of compute.

    PYROVAE_DATA=../shared/data python examples/compare_estimators.py --steps 1000 --seconds 20 --out runs/compare
    PYROVAE_DATA=../shared/data python examples/compare_estimators.py --quick --out runs/compare-quick   # seconds
"""

import argparse
import csv
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI

from pyrovae import load_config
from pyrovae.components.datasets import load_data
from pyrovae.inference.elbo import split_elbo
from pyrovae.inference.estimators import ESTIMATORS, build_estimator, handles
from pyrovae.inference.optim import OPTIMIZERS
from pyrovae.reports.plots import pyplot
from pyrovae.runs.loading import build_vae

VALIDATION_POINTS = 1000


def train_with(name: str, data, steps: int, seconds: float, eval_every: int, points: int = VALIDATION_POINTS):
    """(step, training seconds, validation ELBO) rows of one estimator's run."""
    spec = load_config("quickstart", [f"train.estimator.name={name}", "train.device=cpu"])
    vae = build_vae(spec, data)
    optimizer = OPTIMIZERS.build(spec.train.optimizer.name, options=spec.train.optimizer.options)
    pyro.clear_param_store()
    svi = SVI(vae.model, vae.guide, optimizer, build_estimator(spec.train.estimator))
    valid = data.valid.x[:points]
    x, batch = data.train.x, spec.train.batch_size
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(spec.seed))
    rows, step, elapsed = [(0, 0.0, split_elbo(vae, valid))], 0, 0.0
    with pyro.validation_enabled(False):
        while step < steps or elapsed < seconds:
            start = (step * batch) % x.shape[0]
            started = time.perf_counter()
            svi.step(x[order[start:start + batch]], None, 1.0)
            elapsed += time.perf_counter() - started
            step += 1
            if step % eval_every == 0:
                rows.append((step, elapsed, split_elbo(vae, valid)))
    return rows


def plot(curves: dict, steps: int, seconds: float, path: Path, points: int = VALIDATION_POINTS) -> None:
    plt = pyplot()
    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for name, rows in curves.items():
        by_step.plot(*zip(*[(s, e) for s, _, e in rows if s <= steps]), label=name)
        by_time.plot(*zip(*[(t, e) for s, t, e in rows if t <= seconds or s == 0]), label=name)
    by_step.set_xlabel("training steps")
    by_time.set_xlabel("training seconds")
    by_step.set_ylabel(f"validation ELBO ({points} images, nats)")
    start = next(iter(curves.values()))[0][2]  # every run starts from the same parameters
    best = max(e for rows in curves.values() for _, _, e in rows)
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
        ax.set_ylim(start - 0.5 * (best - start), best + 0.05 * (best - start))  # diverging runs leave the plot
    by_time.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("the quickstart VAE trained with each estimator")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--estimators", default=",".join(  # those for the quickstart VAE's Gaussian latents
        name for name in ESTIMATORS.names() if handles(ESTIMATORS.build(name), "continuous")))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--out", default="runs/compare")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: steady timings on a machine others share)")
    parser.add_argument("--quick", action="store_true",
                        help="smallest settings (4 steps, no time budget, 100 validation images): what the tests run")
    args = parser.parse_args()
    points = VALIDATION_POINTS
    if args.quick:
        args.steps, args.seconds, args.eval_every, points = 4, 0.0, 2, 100
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(load_config("quickstart").data)
    curves = {}
    for name in args.estimators.split(","):
        curves[name] = train_with(name, data, args.steps, args.seconds, args.eval_every, points)
        at_steps = next(e for s, _, e in reversed(curves[name]) if s <= args.steps)
        at_time = next(e for _, t, e in reversed(curves[name]) if t <= args.seconds)
        print(f"{name:<20} ELBO {at_steps:8.2f} after {args.steps} steps, {at_time:8.2f} after "
              f"{args.seconds:g} s ({curves[name][-1][1] / curves[name][-1][0] * 1e3:.1f} ms per step)")
    with open(out / "curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["estimator", "step", "seconds", "valid_elbo"])
        writer.writerows([name, *row] for name, rows in curves.items() for row in rows)
    plot(curves, args.steps, args.seconds, out / "compare_estimators.png", points)
    print(f"figure: {out / 'compare_estimators.png'}; curves: {out / 'curves.csv'}")


if __name__ == "__main__":
    main()
