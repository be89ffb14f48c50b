"""Write the published numbers for discrete latents, and the budget-limited runs beside them, into the docs.

    python3 benchmarks/discrete/report.py              # the docs section
    python3 benchmarks/discrete/report.py --out DIR    # only the curve figure, into DIR

Reads ``benchmarks/discrete/results/*.json`` (written by ``reproduce.py``) and writes the
"Published numbers for discrete latents" section of ``docs/benchmarks.md``. The figure,
``discrete_curves.png``, is drawn when the docs site is built (``docs_tools/site_hooks.py``
runs this script with ``--out``).
"""

import argparse
import json
from pathlib import Path
from typing import NamedTuple, Optional

from pyrovae.reports.markdown import markdown_table, replace_section
from pyrovae.reports.plots import save_figure

HERE = Path(__file__).resolve().parent
DOCS = HERE.parents[1] / "docs"
SECTION = "Published numbers for discrete latents"
NVIL_SBN_200 = -113.1  # test log p(x) of the SBN 200 trained with NVIL (Mnih & Gregor 2014), unchecked
UNCHECKED = "value recalled from the paper, not checked against its text (the search tools returned its first page only)"


class Published(NamedTuple):
    paper: str
    model: str
    data: str
    measure: str
    values: str
    checked: str


PUBLISHED = [
    Published("NVIL (Mnih & Gregor 2014)", "SBN 200 (one layer of 200 binary units)",
              "MNIST binarized once (Salakhutdinov & Murray 2008)",
              "test log p(x), importance-sampled with q", f"NVIL {NVIL_SBN_200}; wake-sleep -116.3", UNCHECKED),
    Published("VIMCO (Mnih & Rezende 2016)", "SBN 200-200-200 (three layers)", "static binarized MNIST",
              "test log p(x) (multi-sample bound, large K)", "not retrieved", "protocol only"),
    Published("REBAR (Tucker et al. 2017)", "linear SBN 200 (1 and 2 layers); nonlinear SBN 200 "
              "(two deterministic 200-unit layers)", "static binarized MNIST",
              "training ELBO (single-sample bound) after about 2 x 10^6 steps", "not retrieved", "protocol only"),
    Published("RELAX (Grathwohl et al. 2018)", "REBAR's linear and nonlinear SBNs", "static binarized MNIST",
              "training ELBO", "not retrieved", "protocol only"),
    Published("DisARM (Dong, Mnih & Tucker 2020)", "linear and nonlinear (two 200-unit LeakyReLU layers) "
              "Bernoulli VAE, 200 units", "dynamically binarized MNIST",
              "training ELBO; 100-sample bound on test", "not retrieved", "protocol only"),
    Published("Gumbel-softmax (Jang, Gu & Poole 2017)", "categorical VAE, 20 x 10 classes, MLP 784-512-256",
              "binarized MNIST", "test negative ELBO", "not retrieved", "protocol only"),
]


def load_results(folder: Path = HERE / "results") -> list:
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]


def _row(r: dict) -> list:
    test = r["test"]
    best = max(r["curve"], key=lambda row: row["valid_elbo"])
    return [f"`{r['config']}`", r["estimator"]["name"], r["epochs"], r["steps"], f"{r['wall_seconds'] / 60:.0f} min",
            f"{r['curve'][-1]['train_elbo']:.2f}", f"{best['valid_elbo']:.2f}", f"{test['elbo']:.2f}",
            f"{test['log_marginal']:.2f} ± {test['log_marginal_std_error']:.2f}",
            f"{100 * test['pareto_khat_share_above_0.7']:.0f}%", test["points"]]


def section(results: list) -> str:
    published = markdown_table(["paper", "model", "data", "measure", "published", "checked"],
                               [list(p) for p in PUBLISHED])
    runs = markdown_table(["config", "estimator", "epochs", "steps", "training (wall)", "last train ELBO",
                           "best valid ELBO", "test ELBO", "test log p(x)", "k-hat > 0.7", "test images"],
                          [_row(r) for r in results])
    steps = " and ".join(f"{r['steps']} (`{r['config']}`)" for r in results)
    sbn = [r for r in results if r["config"] == "sbn_mnist"]
    gap = "" if not sbn else (f"\nThe SBN's test ELBO lies {NVIL_SBN_200 - sbn[0]['test']['elbo']:.1f} nats below "
                              f"NVIL's test log p(x) of {NVIL_SBN_200} for its SBN 200 (a bound set beside an "
                              f"estimate).")
    samples = sorted({r["test"]["samples"] for r in results})
    return f"""The papers that compare estimators for discrete latents report on binarized MNIST, each with
its own protocol: which binarization (fixed once, or drawn afresh each epoch), which number
(the training ELBO, or a test log-likelihood estimated by importance sampling) and how long
they train (about 10^6 steps). The table records what each reports. The search tools this
project uses returned only the papers' first pages, so the table keeps the protocols and
leaves out the values that could not be checked; the one value given is marked as unchecked.

{published}

`benchmarks/discrete/reproduce.py CONFIG --minutes M` trains a built-in config for M minutes
of wall clock on this machine (2 cores shared with other jobs), one epoch per sitting (exact
resume), then estimates on a random subset of test images the ELBO (IWAE_1) and log p(x)
(importance sampling with K = {", ".join(map(str, samples))} draws from q, ± the standard error over images), with the share of
images whose weights have Pareto k-hat above 0.7: where it is large, the estimate of log p(x)
is unreliable (far too few effective draws; q is still far from the posterior), and only the
ELBO is a trustworthy number.
`benchmarks/discrete/report.py` writes this section from `benchmarks/discrete/results/`.

{runs}

These runs are not reproductions: they are {steps} of the papers' 10^6 steps, on a busy
machine.{gap}
The curves show where training stood when the budget ran out; reproducing within 1 nat needs
the full protocol (hours on a GPU, or days on these cores).

![ELBO by epoch of the budget-limited runs](generated/discrete/discrete_curves.png)
"""


def curve_figure(results: list, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        epochs = [row["epoch"] for row in r["curve"]]
        line, = ax.plot(epochs, [row["train_elbo"] for row in r["curve"]], marker=".",
                        label=f"{r['config']} train")
        ax.plot(epochs, [row["valid_elbo"] for row in r["curve"]], marker="x", linestyle="--",
                color=line.get_color(), label=f"{r['config']} validation")
    ax.axhline(NVIL_SBN_200, color="grey", linestyle=":", linewidth=1, label="NVIL SBN 200, test log p(x) (unchecked)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO, nats per image")
    ax.set_title("Discrete latents on static binarized MNIST: budget-limited runs")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="draw only the curve figure, into this folder (the docs build does)")
    args = parser.parse_args(argv)
    results = load_results()
    if not results:
        raise SystemExit(f"no results in {HERE / 'results'}; run reproduce.py CONFIG first")
    if args.out:
        curve_figure(results, Path(args.out) / "discrete_curves.png")
        return
    replace_section(DOCS / "benchmarks.md", SECTION, section(results))
    print(f"updated {DOCS / 'benchmarks.md'}; the curve figure is drawn when the site is built")


if __name__ == "__main__":
    main()
