"""Write the sample-quality page's tables and figures from the results ``measure.py`` recorded.

    python3 benchmarks/sample_quality/report.py --out DIR

Reads ``benchmarks/sample_quality/results/*.json``; writes into DIR the Markdown snippets that
docs/sample_quality.md includes (``classifiers.md``, ``floor.md``, ``trajectories.md``,
``final.md``, ``priors.md``) and its figures (``trajectories.png``, ``floor.png``,
``priors.png``), each linked from its snippet. The site build runs it
(``docs_tools/site_hooks.py``); a stage not recorded yet gives a line saying so instead of its
table and figure.
"""

import argparse
import json
import statistics
from pathlib import Path

from measure import BUDGET  # the budgets measure.py ran with (this folder is on the path)

from pyrovae.reports.markdown import markdown_table
from pyrovae.reports.plots import pyplot, save_figure

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TRAJECTORIES = {"fashion_trajectory": "Fashion-MNIST VAE (fashion_vae)",
                "frey_trajectory": "Frey Face VAE (frey_logistic)"}


def _load(name: str):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _missing(name: str) -> str:
    return f"*Not measured yet: run `benchmarks/sample_quality/measure.py` to record `{name}.json`.*\n"


def _sd(values) -> str:
    return f"{statistics.stdev(values):.3g}" if len(values) > 1 else "-"


def _budget(result: dict) -> str:
    return f"Measured in {result['wall_seconds'] / 60:.1f} min of wall-clock time ({result['machine']}, niced, " \
           f"sharing two cores with other work)."


def classifiers(out: Path) -> None:
    result = _load("classifiers")
    if result is None:
        (out / "classifiers.md").write_text(_missing("classifiers"))
        return
    rows = [[name, f"{r['accuracy']:.4f}", r["protocol"]] for name, r in result.items() if isinstance(r, dict)]
    (out / "classifiers.md").write_text(markdown_table(["data", "held-out accuracy", "protocol"], rows) + "\n")


def floor(out: Path) -> None:
    result = _load("floor")
    if result is None:
        (out / "floor.md").write_text(_missing("floor"))
        return
    sizes = sorted({r["samples"] for r in result["rows"]})
    by = {n: [r for r in result["rows"] if r["samples"] == n] for n in sizes}
    rows = []
    for n in sizes:
        fd = [r["frechet"] for r in by[n]]
        rows.append([n, len(fd), f"{statistics.fmean(fd):.3f}", _sd(fd),
                     f"{statistics.fmean(r['precision'] for r in by[n]):.3f}",
                     f"{statistics.fmean(r['recall'] for r in by[n]):.3f}",
                     f"{statistics.fmean(fd) * n:.0f}"])
    table = markdown_table(["test images n", "draws", "Fréchet distance", "sd over draws", "precision", "recall",
                            "n x distance"], rows)
    (out / "floor.md").write_text(f"Reference: {result['reference']}. {_budget(result)}\n\n{table}\n\n"
                                  f"![the floor by sample size](generated/sample_quality/floor.png)\n")
    fig, ax = pyplot().subplots(figsize=(5, 3.5))
    ax.errorbar(sizes, [statistics.fmean(r["frechet"] for r in by[n]) for n in sizes],
                yerr=[statistics.stdev([r["frechet"] for r in by[n]]) if len(by[n]) > 1 else 0 for n in sizes],
                fmt="o-", capsize=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("test images n")
    ax.set_ylabel("Fréchet distance to the training split")
    ax.set_title("the floor: real unseen data, by sample size")
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, out / "floor.png")


def trajectories(out: Path) -> None:
    recorded = {name: _load(name) for name in TRAJECTORIES}
    parts, finals = [], []
    for name, title in TRAJECTORIES.items():
        result = recorded[name]
        if result is None:
            parts.append(f"**{title}.** " + _missing(name))
            continue
        rows = [[int(m["epoch"]), f"{m['valid_elbo']:.1f}", f"{m['frechet']:.2f}", f"{m['precision']:.3f}",
                 f"{m['recall']:.3f}"] for m in result["metrics"] if "frechet" in m]
        floor_value = result["metrics"][-1]["frechet_floor"]
        parts.append(f"**{title}**, `pyrovae train {result['config']} " + " ".join(f"--set {o}" for o in result["overrides"])
                     + f"`; floor (the test split at the same size): {floor_value:.2f}. {_budget(result)}\n\n"
                     + markdown_table(["epoch", "valid ELBO (nats)", "Fréchet distance", "precision", "recall"], rows)
                     + "\n")
        q = result["quality"]
        finals.append([title, q["samples"], f"{q['model']['frechet']['mean']:.2f} ± {q['model']['frechet']['sd']:.2f}",
                       f"{q['floor']['frechet']['mean']:.2f} ± {q['floor']['frechet']['sd']:.2f} ({q['floor_samples']})",
                       f"{q['model']['precision']['mean']:.3f}", f"{q['model']['recall']['mean']:.3f}",
                       f"{q['floor']['precision']['mean']:.3f}", f"{q['floor']['recall']['mean']:.3f}"])
    if any(r is not None for r in recorded.values()):
        parts.append("![Fréchet distance by epoch](generated/sample_quality/trajectories.png)\n")
    (out / "trajectories.md").write_text("\n".join(parts))
    final = (markdown_table(["run", "samples", "Fréchet distance ± sd over 3 draws", "floor ± sd (test images)",
                             "precision", "recall", "floor precision", "floor recall"], finals) + "\n"
             if finals else _missing("fashion_trajectory"))
    (out / "final.md").write_text(final)
    drawn = {name: r for name, r in recorded.items() if r is not None}
    if drawn:
        fig, axes = pyplot().subplots(1, len(drawn), figsize=(5 * len(drawn), 3.5), squeeze=False)
        fig.subplots_adjust(wspace=0.35)
        for ax, (name, result) in zip(axes[0], drawn.items()):
            scored = [m for m in result["metrics"] if "frechet" in m]
            ax.plot([m["epoch"] for m in scored], [m["frechet"] for m in scored], "o-", label="samples")
            ax.axhline(scored[-1]["frechet_floor"], color="grey", ls="--", label="test split (floor)")
            ax.set_yscale("log")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_xlabel("epoch")
            ax.set_ylabel("Fréchet distance")
            ax.set_title(TRAJECTORIES[name], fontsize="medium")
            ax.grid(alpha=0.3, which="both")
            ax.legend()
        save_figure(fig, out / "trajectories.png")


def priors(out: Path) -> None:
    result = _load("priors")
    if result is None:
        (out / "priors.md").write_text(_missing("priors"))
        return
    rows = [[r["prior"], f"{r['log_px']:.1f}", f"{r['frechet']:.2f}", f"{r['precision']:.3f}", f"{r['recall']:.3f}",
             f"{r['floor']:.2f}"] for r in result["rows"]]
    first = result["rows"][0]
    table = markdown_table(["prior", "test log p(x) (nats)", "Fréchet distance", "precision", "recall", "floor"], rows)
    (out / "priors.md").write_text(
        "`pyrovae train fashion_vae " + " ".join(f"--set {o}" for o in first["overrides"][1:]) + "` with "
        f"`--set model.prior.name=` each prior; log p(x) by importance sampling with {first['is_samples']} samples "
        f"on {first['log_px_points']} test images; {first.get('samples', BUDGET['priors']['samples'])} samples "
        f"scored. {_budget(result)}\n\n{table}\n\n"
        f"![Fréchet distance against log p(x)](generated/sample_quality/priors.png)\n")
    fig, ax = pyplot().subplots(figsize=(5, 3.5))
    for r in result["rows"]:
        ax.plot(r["log_px"], r["frechet"], "o")
        ax.annotate(r["prior"], (r["log_px"], r["frechet"]), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel("test log p(x) (nats, higher is better)")
    ax.set_ylabel("Fréchet distance (lower is better)")
    ax.grid(alpha=0.3)
    save_figure(fig, out / "priors.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where the snippets and figures go")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for part in (classifiers, floor, trajectories, priors):
        part(args.out)


if __name__ == "__main__":
    main()
