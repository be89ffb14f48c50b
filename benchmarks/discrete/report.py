"""Write the published numbers for discrete latents, and the budget-limited runs beside them, into the docs.

    python3 benchmarks/discrete/report.py              # the docs section
    python3 benchmarks/discrete/report.py --out DIR    # only the curve figure, into DIR

Reads ``benchmarks/discrete/results/*.json`` (written by ``reproduce.py``) and writes the
"Published numbers for discrete latents" section of ``docs/benchmarks.md``. The figure,
``discrete_curves.png`` (training and validation ELBO against training steps, on a log axis,
with the published number where its protocol matches the run's), is drawn when the docs site
is built (``docs_tools/site_hooks.py`` runs this script with ``--out``).
"""

import importlib.util
import json
from pathlib import Path
from typing import NamedTuple, Optional

from pyrovae.reports.markdown import markdown_table
from pyrovae.reports.plots import pyplot, save_figure

HERE = Path(__file__).resolve().parent
SECTION = "Published numbers for discrete latents"


def _quality_report():
    """benchmarks/quality/report.py, whose command line this report shares (a sibling script,
    not a package, so it is loaded from its file)."""
    spec = importlib.util.spec_from_file_location("quality_report", HERE.parent / "quality" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Published(NamedTuple):
    paper: str
    model: str
    data: str
    measure: str
    values: str
    checked: str


VERIFIED = "read in the paper's text"
SECONDARY = "as quoted by {}, not checked against the paper"
UNCHECKED = "recalled, not checked against the paper or any other source"

# Values in nats per test image (negative: log-likelihoods and bounds, as pyrovae reports them).
PUBLISHED = [
    Published("NVIL (Mnih & Gregor 2014), Table 1", "linear SBN 200 (one layer of 200 binary units), factorial "
              "linear inference network", "MNIST binarized once (Salakhutdinov & Murray 2008), 60 000 train",
              "test ELBO, 10 samples per image (the paper's 'test NLL' is this bound, not an importance-sampled "
              "log p(x))", "NVIL -113.1; wake-sleep -120.8 (SBN 200-200-200: NVIL -96.7)", VERIFIED),
    Published("VIMCO (Mnih & Rezende 2016), Table 1", "SBN 200-200-200, proposal the reverse SBN",
              "MNIST binarized once (Salakhutdinov & Murray 2008), 50 000 train",
              "test log p(x), importance-sampled with 1000 proposal draws", "VIMCO K=50 -91.9; K=5 -92.8; "
              "NVIL K=1 -95.2", VERIFIED),
]


class Comparable(NamedTuple):
    """A published number measured as a run's own: its value and what it is."""
    value: float
    label: str
    measure: str  # the run's measure it is set beside: "elbo" (test ELBO) or "log_marginal"


COMPARABLE = {
    "sbn_mnist": Comparable(-113.1, "NVIL, SBN 200, test ELBO (Mnih & Gregor 2014)", "elbo"),
}


def load_results(folder: Path = HERE / "results") -> list:
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]


def _estimator(r: dict) -> str:
    options = {k: v for k, v in r["estimator"].items() if k != "name" and f"train.estimator.{k}" in
               " ".join(r["overrides"])}
    return r["estimator"]["name"] + "".join(f", {k}={v}" for k, v in options.items())


def _cpu_per_step(r: dict) -> str:
    steps = r["epochs_this_call"] * r["steps_per_epoch"]
    return f"{1000 * r['seconds_this_call']['cpu'] / steps:.1f} ms" if steps else ""


def _comparison(r: dict) -> list:
    published = COMPARABLE.get(r["config"])
    if published is None:
        return ["", ""]
    return [f"{published.value} ({published.label})", f"{r['test'][published.measure] - published.value:+.1f}"]


def _row(r: dict) -> list:
    test = r["test"]
    best = max(r["curve"], key=lambda row: row["valid_elbo"])
    return [f"`{r['config']}`", _estimator(r), f"{r['steps']} ({r['epochs']})", f"{r['curve'][-1]['seconds'] / 60:.0f} min",
            _cpu_per_step(r), f"{r['curve'][-1]['train_elbo']:.2f}", f"{best['valid_elbo']:.2f}",
            f"{test['elbo']:.2f}", f"{test['log_marginal']:.2f} ± {test['log_marginal_std_error']:.2f}",
            f"{100 * test['pareto_khat_share_above_0.7']:.0f}%", test["points"], *_comparison(r)]


def section(results: list) -> str:
    published = markdown_table(["paper", "model", "data", "measure", "published", "checked"],
                               [list(p) for p in PUBLISHED])
    runs = markdown_table(["config", "estimator", "steps (epochs)", "training (wall)", "CPU per step",
                           "last train ELBO", "best valid ELBO", "test ELBO", "test log p(x)", "k-hat > 0.7",
                           "test images", "published, same measure", "difference"], [_row(r) for r in results])
    samples = sorted({r["test"]["samples"] for r in results})
    return f"""The papers that compare estimators for discrete latents report on binarized MNIST, each with
its own protocol: which binarization (fixed once, or drawn afresh each epoch), which number
(a training ELBO, a test ELBO, or a test log-likelihood estimated by importance sampling) and
how long they train (10^5 to 10^6 steps and more). The table records what each reports and
whether the value was read in the paper itself.

{published}

`benchmarks/discrete/reproduce.py CONFIG --steps N` trains a built-in config for N steps
(rounded up to whole epochs) in one call on one torch thread, then estimates on a random
subset of test images the ELBO (IWAE_1) and log p(x) (importance sampling with
K = {", ".join(map(str, samples))} draws from q, ± the standard error over images), with the share of
images whose weights have Pareto k-hat above 0.7: where it is large, the estimate of log p(x)
is unreliable (far too few effective draws; q is still far from the posterior), and only the
ELBO is a trustworthy number. *Training (wall)* is the wall clock of the training steps on
this machine, shared with other jobs; *CPU per step* is this process's CPU time per step,
the per-epoch validation included.
`benchmarks/discrete/report.py` writes this section from `benchmarks/discrete/results/`.

{runs}

![ELBO against training steps of the budget-limited runs](generated/discrete/discrete_curves.png)
"""


def curve_figure(results: list, path: Path) -> None:
    """One panel per run: training and validation ELBO against steps (log axis), the test ELBO
    at the end, and the published number where it is measured as the run's test ELBO."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), squeeze=False)
    for ax, r in zip(axes[0], results):
        steps = [row["step"] for row in r["curve"]]
        ax.plot(steps, [row["train_elbo"] for row in r["curve"]], label="train (running mean over the epoch)")
        ax.plot(steps, [row["valid_elbo"] for row in r["curve"]], linestyle="--", label="validation")
        ax.plot([r["steps"]], [r["test"]["elbo"]], marker="*", markersize=12, linestyle="none", color="black",
                label=f"test ELBO, best-validation parameters ({r['test']['points']} images)")
        published = COMPARABLE.get(r["config"])
        if published is not None:
            ax.axhline(published.value, color="grey", linestyle=":", label=published.label)
        ax.set_xscale("log")
        ax.set_xlabel("training steps (minibatches of 100)")
        ax.set_ylabel("ELBO, nats per image")
        ax.set_title(f"{r['config']}, {_estimator(r)}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


def main(argv: Optional[list] = None) -> None:
    _quality_report().docs_report(load_results(), f"run {HERE / 'reproduce.py'} CONFIG --steps N first", SECTION,
                                  section, "discrete_curves.png", curve_figure, __doc__.split("\n")[0], argv)


if __name__ == "__main__":
    main()
