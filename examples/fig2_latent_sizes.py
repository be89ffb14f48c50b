"""The paper's Fig. 2 in miniature: the lower bound against the number of training points
seen, for several latent sizes, on static binarized MNIST.

Kingma & Welling compare AEVB with wake-sleep for N_z in {3, 5, 10, 20, 200} over up to
10^8 training points; this trains the paper's architecture (500 tanh units, Adagrad) for a
few epochs per latent size, which is enough to see the ordering appear: more latent
dimensions reach a better bound, and the bound keeps improving with more data seen.

    PYROVAE_DATA=../shared/data python examples/fig2_latent_sizes.py --epochs 5 --out runs/fig2
    PYROVAE_DATA=../shared/data python examples/fig2_latent_sizes.py --quick --out runs/fig2-quick   # seconds
"""

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pyrovae import load_config  # noqa: E402
from pyrovae.components.datasets import load_data  # noqa: E402
from pyrovae.runs.train import train  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latent-sizes", default="3,5,10,20")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="runs/fig2")
    parser.add_argument("--quick", action="store_true",
                        help="smallest settings (latent sizes 3 and 5, one epoch on 500 training images): what the tests run")
    args = parser.parse_args()
    extra = []
    if args.quick:
        args.latent_sizes, args.epochs, extra = "3,5", 1, ["data.train_size=500"]
    out = Path(args.out)
    data = None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for size in map(int, args.latent_sizes.split(",")):
        spec = load_config("mnist_aevb", [f"model.latent_dim={size}", f"train.epochs={args.epochs}",
                                          "train.progress=false", *extra])
        data = data or load_data(spec.data)
        run = out / f"latent_{size}"
        result = train(spec, run, resume=(run / "checkpoint.pt").exists(), data=data)
        with open(run / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        seen = [int(r["step"]) * spec.train.batch_size for r in rows]
        ax.plot(seen, [float(r["valid_elbo"]) for r in rows], "o-", label=f"N_z = {size}")
        print(f"N_z = {size:3d}: validation ELBO {result.best_valid_elbo:.2f} nats after {seen[-1]} points")
    ax.set_xscale("log")
    ax.set_xlabel("training points evaluated")
    ax.set_ylabel("validation ELBO (nats per image)")
    ax.set_title("AEVB on static binarized MNIST")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(out / "fig2.png", dpi=110, bbox_inches="tight")
    print(f"figure: {out / 'fig2.png'}")


if __name__ == "__main__":
    main()
