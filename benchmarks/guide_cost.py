"""Step cost of each guide family relative to the diagonal Gaussian, on the quickstart VAE.

One training step is pyrovae's: :class:`pyrovae.inference.svi.TrainingSVI` with the config's
estimator (single-sample pathwise ELBO) and Adam, on the same minibatch of 100 static
binarized MNIST digits, for each guide in its default options (``refined``: 10 gradient steps
of 4 draws each, unless ``--refined-steps`` says otherwise). Everything runs in one process
on one torch thread; the guides take turns in blocks of ``--steps`` steps, the order rotating
from repeat to repeat, each block timed in process CPU time, so load from other processes on
a shared machine slows all of them alike. Reported: the median per-step time of each guide
over the repeats divided by the diagonal guide's (a ratio; absolute times are not comparable
between machines or loads).

    PYROVAE_DATA=../shared/data python benchmarks/guide_cost.py [--repeats 5] [--steps 5] [--json out.json]
"""

import argparse
import json
import statistics
import time

import pyro
import torch

from pyrovae import VAE, load_config
from pyrovae.components.datasets import load_data
from pyrovae.inference.estimators import build_estimator
from pyrovae.inference.optim import OPTIMIZERS
from pyrovae.inference.svi import TrainingSVI

GUIDES = ["diagonal_normal", "full_covariance", "iaf", "planar", "refined"]


def contender(name: str, x: torch.Tensor, refined_steps: int):
    """A step function training the quickstart VAE with guide ``name`` (its own parameter store)."""
    extra = [f"model.guide.steps={refined_steps}"] if name == "refined" else []
    spec = load_config("quickstart", [f"model.guide.name={name}", *extra])
    pyro.set_rng_seed(0)
    vae = VAE.from_config(spec, (1, 28, 28), 0)
    store = pyro.get_param_store()
    with store.scope() as state:
        optimizer = OPTIMIZERS.build(spec.train.optimizer.name, options=spec.train.optimizer.options)
        svi = TrainingSVI(vae, optimizer, build_estimator(spec.train.estimator))

    def step():
        with store.scope(state):
            svi.step(x, None, 1.0)

    return step


def measure(repeats: int, steps: int, refined_steps: int, guides=GUIDES) -> dict:
    torch.set_num_threads(1)
    data = load_data(load_config("quickstart").data)
    x = data.train.x[:100]
    steppers = {g: contender(g, x, refined_steps) for g in guides}
    for step in steppers.values():  # warm-up
        step()
    times = {g: [] for g in guides}
    for r in range(repeats):
        order = guides[r % len(guides):] + guides[:r % len(guides)]
        for g in order:
            began = time.process_time()
            for _ in range(steps):
                steppers[g]()
            times[g].append((time.process_time() - began) / steps)
    base = statistics.median(times["diagonal_normal"])
    return {"repeats": repeats, "steps_per_block": steps, "refined_steps": refined_steps,
            "ratio_to_diagonal": {g: statistics.median(t) / base for g, t in times.items()}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--refined-steps", type=int, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    result = measure(args.repeats, args.steps, args.refined_steps)
    for g, ratio in result["ratio_to_diagonal"].items():
        print(f"{g:16s} {ratio:6.2f} x diagonal_normal")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
