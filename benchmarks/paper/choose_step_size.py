"""Choose Adagrad's global step size the way Kingma & Welling did (sec. 5: "chosen from
{0.01, 0.02, 0.1} based on performance on the training set in the first few iterations"):
train a config briefly at each step size, per training method and latent size, and print
the mean training bound of the last epoch (nats per data point) and the held-out bound.

    python3 benchmarks/paper/choose_step_size.py frey_aevb --epochs 20 --latent 2,20

The runs go into a temporary folder and are deleted; only the table is kept (docs/paper.md).
"""

import argparse
import math
import tempfile
from pathlib import Path

from pyrovae import load_config
from pyrovae.errors import PyrovaeError
from pyrovae.reports.markdown import markdown_table
from pyrovae.reports.paper_figures import read_csv
from pyrovae.training.train import train

PAPER_STEP_SIZES = "0.01,0.02,0.1"


def bounds(config: str, estimator: str, latent_dim: int, lr: float, epochs: int, folder: Path):
    """(last epoch's training bound, best held-out bound) of one short run; -inf for a run
    whose loss diverged."""
    spec = load_config(config, [f"train.estimator.name={estimator}", f"model.latent_dim={latent_dim}",
                                f"train.optimizer.lr={lr}", f"train.epochs={epochs}", "train.progress=false"])
    try:
        result = train(spec, folder)
    except PyrovaeError:
        return -math.inf, -math.inf
    return float(read_csv(folder / "metrics.csv")[-1]["train_elbo"]), result.best_valid_elbo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--latent", default="2", help="latent sizes, comma-separated")
    parser.add_argument("--estimators", default="pathwise,wake_sleep")
    parser.add_argument("--lrs", default=PAPER_STEP_SIZES)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for estimator in args.estimators.split(","):
            for latent_dim in [int(v) for v in args.latent.split(",")]:
                for lr in [float(v) for v in args.lrs.split(",")]:
                    folder = Path(tmp) / f"{estimator}-{latent_dim}-{lr}"
                    train_bound, heldout = bounds(args.config, estimator, latent_dim, lr, args.epochs, folder)
                    rows.append([estimator, latent_dim, lr, f"{train_bound:.1f}", f"{heldout:.1f}"])
                    print(*rows[-1], flush=True)
    print(markdown_table(["method", "N_z", "step size", f"train bound, epoch {args.epochs}", "best held-out"], rows))


if __name__ == "__main__":
    main()
