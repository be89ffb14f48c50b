"""Write the reproduction table and the curve figure into the docs from the results that
``reproduce.py --record`` recorded.

    python3 benchmarks/quality/report.py              # the docs section
    python3 benchmarks/quality/report.py --out DIR    # only the figure, into DIR

Reads ``benchmarks/quality/results/*.json``, and the seed-to-seed spread of a config where a
built-in sweep measured it (``SEED_SWEEPS``, recorded in ``benchmarks/sweeps/results/``);
writes the "Published log-likelihoods" section of ``docs/benchmarks.md``. The curve figure,
``quality_curves.png``, is drawn when the docs site is built (``docs_tools/site_hooks.py`` runs
this script with ``--out``), so no copy of it is kept in the repository.
"""

import argparse
import json
from pathlib import Path
from typing import NamedTuple, Optional

from pyrovae.reports.markdown import markdown_table, replace_section
from pyrovae.reports.plots import save_figure

HERE = Path(__file__).resolve().parent
DOCS = HERE.parents[1] / "docs"
SECTION = "Published log-likelihoods"
# Configs whose seed-to-seed spread a built-in sweep measured, under a shorter protocol:
# the sweep's recorded results (benchmarks/sweeps/report.py --record) by config.
SEED_SWEEPS = {"mnist_vae_standard": HERE.parent / "sweeps" / "results" / "mnist_standard_seeds"}


class Published(NamedTuple):
    value: Optional[float]
    source: str


# Test log p(x) in nats on static binarized MNIST, mean of IWAE_5000 over the 10000 test images.
PUBLISHED = {
    "mnist_vae_standard": Published(-88.56, "Tomczak & Welling 2018, Table 2 (not checked against the paper's "
                                            "text); Burda et al. 2016, app. D: VAE k=1 -88.71 (checked)"),
    "mnist_vae_mog": Published(-86.55, "Tomczak & Welling 2018, Table 2 (not checked against the paper's text)"),
    "mnist_vae_vamp": Published(-85.57, "Tomczak & Welling 2018, Table 2 (checked in a secondary source only)"),
    "mnist_iwae_k50": Published(-87.10, "Burda et al. 2016, app. D, Table 3, IWAE 1 layer k=50 (checked)"),
    "frey_gaussian": Published(None, "no published test log-likelihood (Kingma & Welling plot training bounds)"),
    "frey_logistic": Published(None, "no published one-layer figure"),
}


def load_results() -> list:
    """Recorded results, MNIST rows in the order of ``PUBLISHED``, then any others."""
    results = [json.loads(p.read_text()) for p in sorted((HERE / "results").glob("*.json"))]
    order = list(PUBLISHED)
    return sorted(results, key=lambda r: order.index(r["config"]) if r["config"] in order else len(order))


def seed_spread(config: str) -> Optional[dict]:
    """The seed-to-seed standard deviation of test log p(x) a built-in sweep measured for
    ``config``, with its protocol, or ``None``."""
    folder = SEED_SWEEPS.get(config)
    if folder is None or not (folder / "results.json").exists():
        return None
    import yaml

    results = json.loads((folder / "results.json").read_text())
    sweep = yaml.safe_load((folder / "sweep.yaml").read_text())
    point = results["points"][0]
    return {"sweep": results["sweep"], "sd": point["sd"], "n": len(point["values"]),
            "epochs": sweep["set"]["train.epochs"], "evaluate": sweep["evaluate"]}


def _spread_cell(spread: Optional[dict]) -> str:
    return "" if spread is None else f"{spread['sd']:.2f} ({spread['n']} seeds, {spread['epochs']} epochs)"


def _minutes(seconds: Optional[float]) -> str:
    return "?" if seconds is None else f"{seconds / 60:.1f} min"


def _row(r: dict) -> list:
    published = PUBLISHED.get(r["config"], Published(None, "?"))
    test = r["test"]
    lp = test["log_marginal"]
    run = f"{r['epochs']} of {r['config_epochs']}"
    if r["stopped_early"]:
        run += " (early stop)"
    elif not r["finished"]:
        run += " (cut short)"
    gap = "" if published.value is None else f"{lp['mean'] - published.value:+.2f}"
    bits = test["bits_per_dim"]
    return [f"`{r['config']}`", "" if published.value is None else f"{published.value:.2f}",
            f"{lp['mean']:.2f} ± {lp['std_error']:.2f}", gap, f"{test['elbo']['pathwise']:.2f}",
            _spread_cell(seed_spread(r["config"])), "" if bits is None else f"{bits:.3f}", test["num_points"], run,
            _minutes(r.get("wall_seconds")), _minutes(r["evaluate_seconds"])]


def section(results: list) -> str:
    """The docs section: protocol, table, sources of the published values, curve figure."""
    header = ["config", "published", "pyrovae log p(x)", "difference", "test ELBO", "seed-to-seed sd", "bits/dim",
              "test images", "epochs", "training (wall)", "evaluation (wall)"]
    sources = "\n".join(f"- `{r['config']}`: {PUBLISHED[r['config']].source}" for r in results
                        if r["config"] in PUBLISHED)
    spreads = []
    for r in results:
        spread = seed_spread(r["config"])
        if spread is not None:
            e = spread["evaluate"]
            spreads.append(f"`{r['config']}`: the standard deviation over {spread['n']} training seeds of test log "
                           f"p(x), measured by the built-in sweep `{spread['sweep']}` "
                           f"([sweeps](sweeps.md#seed-to-seed-spread-of-the-standard-prior-vae)) under a budget "
                           f"protocol: the same architecture trained {spread['epochs']} epochs (KL warm-up "
                           f"shortened), K = {e['num_samples']} importance samples on {e['max_points']} test images "
                           f"chosen at random, the same images for every seed. It is the spread early in training, "
                           f"not at convergence.")
    spread_text = "Seed-to-seed spread: " + " ".join(spreads) + "\n\n" if spreads else ""
    return f"""Each built-in config below reproduces a published setup (its comments cite the paper).
`benchmarks/quality/reproduce.py CONFIG --budget TIME` trains it in resumable sittings of the
built-in sweep `quality_CONFIG` ([sweeps](sweeps.md)), which at the end (or `--record` at any
point) evaluates the best-validation parameters on the whole test split: log p(x) in nats
per image is the mean over test images of the importance-sampled estimate with K = 5000
samples from the guide (IWAE_5000, as in both papers), ± its standard error over images.
`benchmarks/quality/report.py` writes this section from `benchmarks/quality/results/`.
Wall-clock times are for this machine: one torch thread per run, two or three runs sharing
its 2 cores.

{markdown_table(header, [_row(r) for r in results])}

{spread_text}Published values:

{sources}

![test log-likelihood during training](generated/quality/quality_curves.png)
"""


def curve_figure(results: list, path: Path) -> None:
    import matplotlib.pyplot as plt

    mnist = [r for r in results if r["config"].startswith("mnist") and r["curve"]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in mnist:
        epochs = [row["epoch"] for row in r["curve"]]
        line, = ax.plot(epochs, [row["test_log_px"] for row in r["curve"]], marker=".", label=r["config"])
        ax.plot([r["epochs"]], [r["test"]["log_marginal"]["mean"]], marker="*", markersize=12,
                 color=line.get_color())
        value = PUBLISHED[r["config"]].value
        if value is not None:
            ax.axhline(value, color=line.get_color(), linestyle="--", linewidth=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test log p(x), nats (K = 500, 1000 images)")
    ax.set_title("Static binarized MNIST: test log-likelihood during training\n"
                 "(stars: K = 5000 on all test images; dashed: published values)")
    ax.set_ylim(bottom=max(ax.get_ylim()[0], -110))
    ax.legend()
    save_figure(fig, path)


def docs_report(results: list, hint: str, title: str, section, figure_name: str, figure,
                description: str, argv: Optional[list] = None) -> None:
    """The command line of a results report (this one and benchmarks/discrete/report.py): with
    ``--out DIR`` only the figure ``figure(results, DIR / figure_name)`` is drawn (the docs
    build does this), otherwise the section ``title`` of docs/benchmarks.md is rewritten with
    ``section(results)``; no results is an error that says how to make them (``hint``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", help="draw only the curve figure, into this folder (the docs build does)")
    args = parser.parse_args(argv)
    if not results:
        raise SystemExit(f"no results recorded; {hint}")
    if args.out:
        figure(results, Path(args.out) / figure_name)
        return
    replace_section(DOCS / "benchmarks.md", title, section(results))
    print(f"updated {DOCS / 'benchmarks.md'}; the curve figure is drawn when the site is built")


def main() -> None:
    docs_report(load_results(), f"run {HERE / 'reproduce.py'} CONFIG --record first", SECTION, section,
                "quality_curves.png", curve_figure, __doc__.split("\n")[0])


if __name__ == "__main__":
    main()
