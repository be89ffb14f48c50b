"""Seconds per 1000 gradient draws of every estimator, and the gradient-variance ratios
between estimators on the quickstart VAE at initialization and after training.

Timing (CPU time of this process): the 784-400-50 tanh VAE (the quickstart config with 50 latent dimensions, at its
initialization) and one minibatch of 100 static binarized MNIST images. For each estimator,
1000 draws through the variance laboratory (``gradient_moments``: loss, backward, running
moments) and 1000 iterations of a plain loop ``estimator.differentiable_loss(...).backward()``;
the baseline is a plain loop of ``loss.backward()`` on the hand-written PyTorch VAE of
``training_speed.py``, single-sample pathwise ELBO, same networks, same minibatch. The plain
loops set the gradients to None after each backward pass, as a training step does. The three
loops take turns in blocks of 100 draws. Everything runs on one thread: the machine's two
cores are shared, and with two threads every parallel operation waits whenever the other
core is busy.

Variance: ``pyrovae variance quickstart --snapshots 0,1,10`` with every estimator (1000
draws each), reduced to each estimator's encoder and decoder variance relative to the
pathwise estimator's.

    PYROVAE_DATA=../shared/data python benchmarks/estimator_draws.py --json benchmarks/estimator_draws.json
"""

import argparse
import json
import platform
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import pyro
import torch
from training_speed import HandWrittenVAE

from pyrovae import load_config
from pyrovae.components.datasets import load_data
from pyrovae.inference.estimators import ESTIMATORS
from pyrovae.lab.gradient_stats import gradient_moments
from pyrovae.lab.variance import measurable_estimators, parse_estimators, run_variance
from pyrovae.runs.loading import build_vae


def blocked_seconds(loops: dict, draws: int, blocks: int) -> dict:
    """CPU seconds per ``draws`` draws of each loop, ``loops[name](n)`` running n draws: the loops
    take turns in ``blocks`` blocks, and each total is ``blocks`` times its median block, so a
    burst of load from another process on the shared machine touches one block, not a loop."""
    times = {name: [] for name in loops}
    for _ in range(blocks):
        for name, loop in loops.items():
            started = time.process_time()
            loop(draws // blocks)
            times[name].append(time.process_time() - started)
    return {name: blocks * statistics.median(block) for name, block in times.items()}


def backward_loop(loss, params):
    """``loop(n)``: n times ``loss().backward()``, the gradients set to None after each."""
    def loop(n):
        for _ in range(n):
            loss().backward()
            for p in params:
                p.grad = None
    return loop


def draw_timings(draws: int, blocks: int, names) -> dict:
    spec = load_config("quickstart", ["model.latent_dim=50", "train.device=cpu"])
    data = load_data(spec.data)
    x = data.train.x[:100]
    args = (x, None, 1.0)
    torch.manual_seed(0)
    handwritten = HandWrittenVAE(data.train.x.mean(0))
    vae = build_vae(spec, data)
    rows = {}
    with pyro.validation_enabled(False):
        for name in names:
            estimator = ESTIMATORS.build(name)
            result = blocked_seconds({
                "handwritten": backward_loop(partial(handwritten.negative_elbo, x), list(handwritten.parameters())),
                "plain_loop": backward_loop(partial(estimator.differentiable_loss, vae.model, vae.guide, *args),
                                            list(vae.parameters())),
                "laboratory": partial(_laboratory_draws, estimator, vae, args),
            }, draws, blocks)
            rows[name] = {**{f"{k}_seconds": v for k, v in result.items()},
                          "laboratory_over_plain_loop": result["laboratory"] / result["plain_loop"],
                          "plain_loop_over_handwritten": result["plain_loop"] / result["handwritten"]}
            print(f"{name:<20} laboratory {result['laboratory']:6.2f} s, plain loop {result['plain_loop']:6.2f} s, "
                  f"hand-written {result['handwritten']:5.2f} s per {draws} draws: laboratory / plain "
                  f"{result['laboratory'] / result['plain_loop']:.2f}, plain / hand-written "
                  f"{result['plain_loop'] / result['handwritten']:.2f}", flush=True)
    return {"draws": draws, "blocks": blocks, "estimators": rows}


def _laboratory_draws(estimator, vae, args, n):
    gradient_moments(estimator, vae, args, n, seed=0)


def variance_ratios(draws: int, snapshots, out) -> dict:
    run_variance("quickstart", parse_estimators(",".join(measurable_estimators())), draws=draws,
                 snapshots=snapshots, out=out, overrides=["train.device=cpu"], progress=True)
    results = json.loads((out / "variance.json").read_text())
    ratios = {}
    for snapshot in results["snapshots"]:
        estimators = snapshot["estimators"]
        base = {g: estimators["pathwise"]["groups"][g]["trace"] for g in ("encoder", "decoder")}
        ratios[f"epoch {snapshot['epoch']}"] = {
            name: {f"{g}_variance_over_pathwise": entry["groups"][g]["trace"] / base[g] for g in base}
            | {"encoder_snr": entry["groups"]["encoder"]["snr"], "decoder_snr": entry["groups"]["decoder"]["snr"],
               "encoder_variance": entry["groups"]["encoder"]["trace"]}
            for name, entry in estimators.items()}
    return ratios


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=10, help="turns the timed loops take")
    parser.add_argument("--snapshots", default="0,1,10", help="epochs of the variance part; 'none' skips it")
    parser.add_argument("--estimators", default=",".join(measurable_estimators()), help="comma-separated names to time")
    parser.add_argument("--variance-out", help="keep the variance run here (default: a temporary folder)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {"machine": f"{platform.processor() or platform.machine()}, 1 thread, torch {torch.__version__}, "
                         f"pyro {pyro.__version__}",
              "timing": draw_timings(args.draws, args.blocks, args.estimators.split(","))}
    if args.snapshots != "none":
        snapshots = [int(s) for s in args.snapshots.split(",")]
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(args.variance_out or Path(scratch) / "variance")
            result["variance"] = variance_ratios(args.draws, snapshots, out)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
