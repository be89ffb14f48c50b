"""Seconds per training epoch: pyrovae's SVI loop against a hand-written PyTorch VAE.

Both fit the same VAE (784-400-50 tanh MLPs, Bernoulli likelihood, standard normal prior,
decoder output bias started at the data mean) on static binarized MNIST with the same batch
size, Adam 1e-3 and the single-sample pathwise ELBO with a Monte Carlo KL (what Pyro's
Trace_ELBO computes). An epoch is a shuffled pass
over the 50000 training images followed by the validation ELBO on 10000 images; pyrovae's
epoch also writes its checkpoint and metrics. Runs alternate to share the machine's
state fairly; the median of the repeats is reported, with the ratio.

    PYROVAE_DATA=../shared/data python benchmarks/training_speed.py [--repeats 3] [--batch-size 100]
"""

import argparse
import json
import math
import platform
import statistics
import tempfile
import time

import torch
from torch import nn

from pyrovae import load_config
from pyrovae.components.datasets import load_data
from pyrovae.runs.train import train

CONFIG = ["model.latent_dim=50", "train.epochs=1", "train.progress=false", "train.device=cpu"]


class HandWrittenVAE(nn.Module):
    """The same networks as pyrovae's ``mlp`` encoder and decoder, written out by hand."""

    def __init__(self, mean_image, hidden=400, latent=50):
        super().__init__()
        pixels = mean_image.numel()
        self.encoder = nn.Sequential(nn.Linear(pixels, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, pixels))
        with torch.no_grad():
            self.decoder[-1].bias.copy_(torch.logit(mean_image.flatten().clamp(1e-3, 1 - 1e-3)))

    def negative_elbo(self, x):
        """-ELBO summed over the batch, single sample, Monte Carlo KL, written as formulas
        (no distribution objects, so no argument validation: the leanest fair baseline)."""
        x = x.flatten(1)
        loc, log_scale = self.encoder(x).chunk(2, -1)
        eps = torch.randn_like(loc)
        z = loc + log_scale.exp() * eps
        log_lik = -nn.functional.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(-1)
        log_prior = -0.5 * (z ** 2).sum(-1)
        log_q = (-0.5 * eps ** 2 - log_scale).sum(-1)  # the 2 pi terms cancel with the prior's
        return -(log_lik + log_prior - log_q).sum()


def handwritten_epoch(data, seed: int, batch_size: int) -> float:
    torch.manual_seed(seed)
    x = data.train.x
    start = time.perf_counter()
    vae = HandWrittenVAE(x.mean(0))
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    order = torch.randperm(x.shape[0])
    for i in range(math.ceil(x.shape[0] / batch_size)):
        loss = vae.negative_elbo(x[order[i * batch_size:(i + 1) * batch_size]])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        valid = -sum(vae.negative_elbo(xb).item() for xb in data.valid.x.split(1000)) / data.valid.x.shape[0]
    return time.perf_counter() - start, valid


def pyrovae_epoch(data, seed: int, batch_size: int) -> float:
    spec = load_config("quickstart", CONFIG + [f"seed={seed}", f"train.batch_size={batch_size}"])
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = train(spec, out, data=data)
        return time.perf_counter() - start, result.best_valid_elbo


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    data = load_data(load_config("quickstart").data)
    times = {"handwritten": [], "pyrovae": []}
    elbos = {"handwritten": [], "pyrovae": []}
    for r in range(args.repeats):
        for name, run in (("handwritten", handwritten_epoch), ("pyrovae", pyrovae_epoch)):
            seconds, elbo = run(data, seed=r, batch_size=args.batch_size)
            times[name].append(seconds)
            elbos[name].append(elbo)
            print(f"repeat {r + 1}: {name:<12} {seconds:6.2f} s/epoch, valid ELBO {elbo:8.2f}")
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "seconds_per_epoch": medians,
        "ratio_pyrovae_over_handwritten": medians["pyrovae"] / medians["handwritten"],
        "valid_elbo_after_one_epoch": {k: statistics.mean(v) for k, v in elbos.items()},
        "batch_size": args.batch_size,
        "repeats": args.repeats,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
