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
    training: str
    values: str
    checked: str


PAPER = "read in the paper's text (the proceedings PDF)"
TEXT_COPY = "read in a text conversion of the paper ({}), not in the PDF"
STATIC = "MNIST binarized once (Salakhutdinov & Murray 2008; Larochelle's files), as `binarized_mnist`"

# Values in nats per test (or training) image, negative: log-likelihoods and bounds as pyrovae reports them.
PUBLISHED = [
    Published("NVIL (Mnih & Gregor 2014), Table 1", "linear SBN 200, factorial linear inference network; "
              "SBN 200-200-200", STATIC + "; 60 000 train less 100 for validation",
              "test ELBO, 10 samples per image (the paper's 'test NLL' is this bound, not an importance-sampled "
              "log p(x))", "SGD, batch 20, lr 3e-4, early stopping", "SBN 200: NVIL -113.1, wake-sleep -120.8; "
              "SBN 200-200-200: NVIL -96.7", PAPER),
    Published("VIMCO (Mnih & Rezende 2016), Table 1", "SBN 200-200-200, proposal the reverse SBN",
              STATIC + "; 50 000 train", "test log p(x), importance-sampled with 1000 proposal draws",
              "Adam, batch 24, up to about 4 x 10^6 steps", "VIMCO K=50 -91.9, K=5 -92.8; NVIL K=1 -95.2", PAPER),
    Published("REBAR (Tucker et al. 2017)", "linear SBN 200 (1 and 2 layers), nonlinear SBN 200",
              STATIC, "highest training ELBO", "batch 24, 2 x 10^6 steps",
              "linear, one layer: REBAR -111.6", "as quoted in RELAX's Table 1 (next row); REBAR's own table not "
              "found; not checked against the paper"),
    Published("RELAX (Grathwohl et al. 2018), Table 1", "REBAR's linear SBN 200 (learned prior, linear maps)",
              STATIC + " (from the authors' data script; the text does not say)", "highest training ELBO",
              "batch 24, 2 x 10^6 steps", "linear, one layer: RELAX -111.20, REBAR -111.6, NVIL -112.5, "
              "Concrete -111.3", "read in the authors' LaTeX source of the paper, not in the published PDF"),
    Published("ARM (Yin & Zhou 2019), Table 2(a)", "linear 784-200", STATIC,
              "test log p(x), importance-sampled (100 draws in the authors' code)",
              "Adam, batch 50, at most 1200 epochs (authors' code)", "ARM -107.2 ± 0.1 (5 trials); "
              "REBAR -107.7 as quoted there", TEXT_COPY.format("the version under review")),
    Published("DisARM (Dong, Mnih & Tucker 2020)", "linear and nonlinear SBN 200",
              "dynamically binarized MNIST (the authors' default)", "training ELBO; 100-sample bound on test",
              "Adam, batch 50, 10^6 steps (the authors' code)", "not found", "protocol from the authors' code only"),
    Published("Gumbel-softmax (Jang, Gu & Poole 2017), Table 1", "VAE with 20 x 10 categorical latents "
              "(hidden layer sizes not given in the text read); VAE with 200 Bernoulli latents", STATIC,
              "test negative variational bound (the caption); the text says a 1000-sample bound is used for "
              "evaluation", "SGD with momentum; tau = max(0.5, exp(-r t)), r in {1e-5, 1e-4}",
              "categorical: Gumbel-softmax -101.5, straight-through Gumbel -107.8, score function -110.6; "
              "Bernoulli: Gumbel-softmax -105.0", TEXT_COPY.format("of the ICLR camera-ready")),
]


class Comparable(NamedTuple):
    """A published number measured as one of a run's own numbers (``ours``: test_elbo,
    train_elbo or test_log_marginal)."""
    value: float
    label: str
    ours: str


COMPARABLE = {
    "sbn_mnist": [Comparable(-113.1, "NVIL, test ELBO (Mnih & Gregor 2014)", "test_elbo"),
                  Comparable(-112.5, "NVIL, training ELBO after 2 x 10^6 steps (RELAX, Table 1)", "train_elbo")],
    "categorical_mnist": [Comparable(-101.5, "Gumbel-softmax, test bound (Jang et al. 2017)", "test_elbo"),
                          Comparable(-101.5, "Gumbel-softmax, test bound (Jang et al. 2017)", "test_log_marginal")],
}
PAPER_STEPS = 2e6  # the right end of the step axis: REBAR's and RELAX's training length
OURS = {"test_elbo": "test ELBO", "train_elbo": "highest training ELBO (running mean over an epoch)",
        "test_log_marginal": "test log p(x), importance-sampled with K = {K} (the K-sample bound)"}


def load_results(folder: Path = HERE / "results") -> list:
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]


def _estimator(r: dict) -> str:
    options = {k: v for k, v in r["estimator"].items() if k != "name" and f"train.estimator.{k}" in
               " ".join(r["overrides"])}
    return r["estimator"]["name"] + "".join(f", {k}={v}" for k, v in options.items())


def cpu_per_step(r: dict) -> Optional[float]:
    """CPU seconds per step of the call that last trained the run (validation included), or None
    when that call trained nothing (a run recorded as it stood)."""
    steps = r["epochs_this_call"] * r["steps_per_epoch"]
    return r["seconds_this_call"]["cpu"] / steps if steps else None


def _with_error(r: dict, measure: str) -> str:
    """The run's number on ``measure`` with its standard error over test images, where recorded."""
    error = {"test_elbo": r["test"].get("elbo_std_error"),
             "test_log_marginal": r["test"]["log_marginal_std_error"]}.get(measure)
    return f"{ours(r, measure):.2f}" + ("" if error is None else f" ± {error:.2f}")


def ours(r: dict, measure: str) -> float:
    """The run's number on ``measure`` (a key of ``OURS``)."""
    if measure == "train_elbo":
        return max(row["train_elbo"] for row in r["curve"])
    return r["test"]["elbo"] if measure == "test_elbo" else r["test"]["log_marginal"]


def _row(r: dict) -> list:
    test, cpu = r["test"], cpu_per_step(r)
    best = max(r["curve"], key=lambda row: row["valid_elbo"])
    return [f"`{r['config']}`", _estimator(r), f"{r['steps']} ({r['epochs']})",
            f"{r['curve'][-1]['seconds'] / 60:.0f} min", "" if cpu is None else f"{1000 * cpu:.1f} ms",
            f"{r['curve'][-1]['train_elbo']:.2f}", f"{best['valid_elbo']:.2f}", _with_error(r, "test_elbo"),
            _with_error(r, "test_log_marginal"),
            f"{100 * test['pareto_khat_share_above_0.7']:.0f}%", test["points"]]


def comparison_rows(results: list) -> list:
    """Rows (config, published, its value, ours on the same measure, our value, difference)."""
    return [[f"`{r['config']}`", c.label, f"{c.value}", OURS[c.ours].format(K=r["test"]["samples"]),
             _with_error(r, c.ours), f"{ours(r, c.ours) - c.value:+.2f}"]
            for r in results for c in COMPARABLE.get(r["config"], [])]


def _gain_over_last_doubling(r: dict) -> tuple:
    """The step at about half the run's steps, and the validation ELBO gained since then."""
    half = min(r["curve"], key=lambda row: abs(row["step"] - r["steps"] / 2))
    return int(half["step"]), r["curve"][-1]["valid_elbo"] - half["valid_elbo"]


def _within_one_nat(r: dict, c: Comparable) -> str:
    """A note where the run's test ELBO is within 1 nat of a published test ELBO: how sure that is."""
    error = r["test"].get("elbo_std_error")
    if c.ours != "test_elbo" or error is None or abs(ours(r, c.ours) - c.value) >= 1:
        return ""
    return (f" (within 1 nat; the standard error over the {r['test']['points']} test images is {error:.2f}, "
            f"and this is one training seed)")


def account(r: dict) -> str:
    """How far the run is from the published numbers measured as its own, and where it stood."""
    half, gain = _gain_over_last_doubling(r)
    gaps = "; ".join(f"{OURS[c.ours].format(K=r['test']['samples'])} {_with_error(r, c.ours)}, "
                     f"{abs(ours(r, c.ours) - c.value):.2f} nats {'below' if ours(r, c.ours) < c.value else 'above'} "
                     f"{c.label} {c.value}{_within_one_nat(r, c)}" for c in COMPARABLE.get(r["config"], []))
    return (f"* `{r['config']}` with {_estimator(r)}: after {r['steps']} steps ({r['epochs']} epochs, "
            f"{r['steps'] / PAPER_STEPS:.1%} of REBAR's and RELAX's 2 x 10^6): {gaps}. The validation ELBO "
            f"{'gained' if gain > 0 else 'lost'} {abs(gain):.1f} nats from step {half} to the end.")


def _cpu_hours(r: dict, steps: float) -> str:
    return "?" if cpu_per_step(r) is None else f"{cpu_per_step(r) * steps / 3600:.1f}"


def _bracket(r: dict) -> str:
    """Where a published value read two ways (a test ELBO, or a K-sample bound) lies between
    the run's two numbers: what that says about the reading; "" otherwise."""
    readings = {c.ours: c.value for c in COMPARABLE.get(r["config"], [])}
    value = readings.get("test_elbo")
    if value is None or readings.get("test_log_marginal") != value:
        return ""
    below, above = value - ours(r, "test_elbo"), ours(r, "test_log_marginal") - value
    if below <= 0 or above <= 0:
        return ""
    return (f" For `{r['config']}` the two readings bracket {value}: the test ELBO lies {below:.1f} nats below it "
            f"and the {r['test']['samples']}-sample bound {above:.1f} above. A {r['test']['samples']}-sample bound "
            f"that far below this short run's would be surprising, which favours the caption's reading, unless the "
            f"models differ (next point).")


def why(results: list) -> str:
    """Why the runs fall short of the published numbers, with the runs' own figures."""
    steps = " and ".join(f"{r['steps']} (`{r['config']}`)" for r in results)
    hours = " and ".join(f"{_cpu_hours(r, PAPER_STEPS)} hours (`{r['config']}`)" for r in results)
    gaps = " and ".join(f"{r['test']['log_marginal'] - r['test']['elbo']:.1f} nats (`{r['config']}`)" for r in results)
    bracket = "".join(_bracket(r) for r in results)
    rising = all(_gain_over_last_doubling(r)[1] > 0 for r in results)
    rising = ("every validation curve was still rising when its budget ran out (the gains above)" if rising else
              "not every validation curve was still rising at the end (the gains above)")
    return f"""Where the gaps come from, the largest cause first:

* **Steps.** The papers train for 10^6 steps and more: REBAR and RELAX 2 x 10^6 at batch 24
  (about 960 passes over 50 000 images), VIMCO's curves run to 4 x 10^6. These runs had {steps}
  steps at batch 100, what one core of this shared machine gave them in the time there was;
  {rising}. At each run's own CPU cost per step, 2 x 10^6 steps would take {hours} of one core.
* **Not the binarization.** Every number set beside ours comes from MNIST binarized once, the
  data `binarized_mnist` holds (DisARM's default, MNIST binarized afresh each epoch, is not
  comparable, and no DisARM value was found). NVIL trained on 60 000 images, these runs on 50 000.
* **Not the measure.** Each difference sets ours beside the same measure: NVIL's -113.1 is a
  10-sample test ELBO, not a log-likelihood (though ARM's table lists it among log-likelihoods);
  RELAX's -112.5 is the highest training ELBO. Jang et al.'s caption calls -101.5 a variational
  bound and their text a 1000-sample bound, so both readings are shown.{bracket} The
  importance-sampled log p(x) lies {gaps} above the test ELBO here: setting it beside NVIL's
  ELBO would flatter the run by that much.
* **Optimizer, batch and architecture.** NVIL used SGD on batches of 20 with a five times smaller
  learning rate for the inference network and centred inputs; Jang et al. SGD with momentum and
  a learning rate chosen on validation data. The configs use Adam at one learning rate on
  batches of 100. The text of Jang et al. read for this page gives no hidden-layer sizes for the
  categorical VAE; `categorical_mnist`'s 512-256 MLPs are the config's choice."""


def section(results: list) -> str:
    published = markdown_table(["paper", "model", "data", "measure", "training", "published", "checked"],
                               [list(p) for p in PUBLISHED])
    runs = markdown_table(["config", "estimator", "steps (epochs)", "training (wall)", "CPU per step",
                           "last train ELBO", "best valid ELBO", "test ELBO", "test log p(x)", "k-hat > 0.7",
                           "test images"], [_row(r) for r in results])
    beside = markdown_table(["config", "published", "value", "ours, same measure", "value", "difference"],
                            comparison_rows(results))
    samples = sorted({r["test"]["samples"] for r in results})
    return f"""The papers that compare estimators for discrete latents report on binarized MNIST, each with
its own protocol: which binarization (fixed once, or drawn afresh each epoch), which number
(a training ELBO, a test ELBO, or a test log-likelihood estimated by importance sampling) and
how long they train (10^6 steps and more). The table records what each reports and how its
value was checked.

{published}

`benchmarks/discrete/reproduce.py CONFIG --steps N` trains a built-in config for N steps
(rounded up to whole epochs; one training seed, the config's) in one call on one torch thread,
then estimates on a random
subset of test images the ELBO (IWAE_1) and log p(x) (importance sampling with
K = {", ".join(map(str, samples))} draws from q), each ± its standard error over the images, with the share of
images whose weights have Pareto k-hat above 0.7: where it is large, the estimate of log p(x)
is unreliable (far too few effective draws; q is still far from the posterior) and may lie
well below log p(x); it remains a K-sample lower bound, and the ELBO a single-sample one.
*Training (wall)* is the wall clock of the training steps on this machine, shared with other
jobs; *CPU per step* is the CPU time per step of the call that last trained the run, the
per-epoch validation included.
`benchmarks/discrete/report.py` writes this section from `benchmarks/discrete/results/`.

{runs}

Beside the published numbers measured the same way:

{beside}

{chr(10).join(account(r) for r in results)}

{why(results)}

![ELBO against training steps of the budget-limited runs](generated/discrete/discrete_curves.png)
"""


def curve_figure(results: list, path: Path) -> None:
    """One panel per run: training and validation ELBO against steps (log axis), the test ELBO
    (and log p(x), where a published number is a many-sample bound) at the end, and the
    published numbers measured as one of the run's own (``COMPARABLE``) as horizontal lines."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), squeeze=False)
    for ax, r in zip(axes[0], results):
        steps = [row["step"] for row in r["curve"]]
        ax.plot(steps, [row["train_elbo"] for row in r["curve"]], label="train (running mean over the epoch)")
        ax.plot(steps, [row["valid_elbo"] for row in r["curve"]], linestyle="--", label="validation")
        ax.plot([r["steps"]], [r["test"]["elbo"]], marker="*", markersize=12, linestyle="none", color="black",
                label=f"test ELBO, best-validation parameters ({r['test']['points']} images)")
        drawn = set()
        for c, colour in zip(COMPARABLE.get(r["config"], []), ("grey", "tab:purple")):
            if c.ours == "test_log_marginal":
                ax.plot([r["steps"]], [r["test"]["log_marginal"]], marker="D", linestyle="none", color="grey",
                        label=f"test log p(x) estimate, K = {r['test']['samples']} (a {r['test']['samples']}-sample bound)")
            if (c.value, c.label) not in drawn:
                ax.axhline(c.value, color=colour, linestyle=":", label=c.label)
                drawn.add((c.value, c.label))
        ax.set_xscale("log")
        ax.set_xlim(right=PAPER_STEPS)
        ax.set_xlabel("training steps (minibatches of 100)")
        ax.set_ylabel("ELBO, nats per image")
        ax.set_title(f"{r['config']}\n{_estimator(r)}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    save_figure(fig, path)


def main(argv: Optional[list] = None) -> None:
    _quality_report().docs_report(load_results(), f"run {HERE / 'reproduce.py'} CONFIG --steps N first", SECTION,
                                  section, "discrete_curves.png", curve_figure, __doc__.split("\n")[0], argv)


if __name__ == "__main__":
    main()
