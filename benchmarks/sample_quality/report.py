"""Write the sample-quality page's tables and figures from the results ``measure.py`` and ``faces.py`` recorded.

    python3 benchmarks/sample_quality/report.py --out DIR

Reads ``benchmarks/sample_quality/results/*.json``; writes into DIR the Markdown snippets that
docs/sample_quality.md includes (``classifiers.md``, ``floor.md``, ``trajectories.md``,
``final.md``, ``priors.md``, ``faces.md``) and its figures (``trajectories.png``, ``floor.png``,
``priors.png``, and the face run's ``faces_*.png`` from ``results/faces/``), each linked from
its snippet. The site build runs it
(``docs_tools/site_hooks.py``); a stage not recorded yet gives a line saying so instead of its
table and figure.
"""

import argparse
import json
import math
import shutil
import statistics
from pathlib import Path

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


def _by_prior(rows: list) -> dict:
    """Each prior's runs, in the sweep's order."""
    out = {}
    for r in rows:
        out.setdefault(r["prior"], []).append(r)
    return out


def _per_image(runs: list) -> list:
    """A prior's log p(x) per test image, averaged over its seeds' runs (the same images each)."""
    index = runs[0]["per_point"]["index"]
    assert all(r["per_point"]["index"] == index for r in runs), "runs evaluated on different test images"
    return [statistics.fmean(values) for values in zip(*(r["per_point"]["log_px"] for r in runs))]


def _paired(a: list, b: list) -> str:
    """Mean of ``a - b`` over the test images, ± its standard error over them (paired)."""
    d = [x - y for x, y in zip(a, b)]
    return f"{statistics.fmean(d):.1f} ± {statistics.stdev(d) / math.sqrt(len(d)):.1f}"


def _bound_rise(run: dict) -> float:
    """How much the importance-sampled bound rose from the second-largest K to the largest."""
    iwae = sorted(run["iwae"], key=lambda e: e["k"])
    return iwae[-1]["mean"] - iwae[-2]["mean"]


def _ranking(rows: list) -> str:
    """The priors ranked by each measure (means over seeds), the paired differences in log p(x)
    of neighbours in that ranking, and how many pairs both measures order alike."""
    priors = _by_prior(rows)
    log_px = {p: statistics.fmean(r["log_px"] for r in runs) for p, runs in priors.items()}
    fd = {p: statistics.fmean(r["quality"]["model"]["frechet"]["mean"] for r in runs) for p, runs in priors.items()}
    by_log_px = sorted(priors, key=lambda p: -log_px[p])
    by_fd = sorted(priors, key=lambda p: fd[p])
    per_image = {p: _per_image(runs) for p, runs in priors.items()}
    steps = "; ".join(f"{a} − {b}: {_paired(per_image[a], per_image[b])}" for a, b in zip(by_log_px, by_log_px[1:]))
    pairs = [(a, b) for i, a in enumerate(by_log_px) for b in by_log_px[i + 1:]]
    alike = sum(fd[a] < fd[b] for a, b in pairs)
    rises = [_bound_rise(r) for r in rows]
    iwae = sorted(rows[0]["iwae"], key=lambda e: e["k"])
    shares = [(r["pareto_khat"] or {}).get("share_above_0.7") for r in rows]  # None: too few samples to fit k̂
    khat = "" if None in shares else (
        "Pareto k̂ exceeds 0.7 on every image of every run, and " if min(shares) == 1
        else f"Pareto k̂ exceeds 0.7 on at least {min(shares):.0%} of the images in every run, and ")
    return (f"Means over seeds, best first: by test log p(x) {', '.join(f'{p} ({log_px[p]:.1f})' for p in by_log_px)}; "
            f"by Fréchet distance {', '.join(f'{p} ({fd[p]:.1f})' for p in by_fd)}. "
            f"The two measures order {alike} of the {len(pairs)} pairs of priors alike. Differences in log p(x) "
            f"(nats, seeds averaged, ± standard error over the same {len(per_image[by_log_px[0]])} test images): "
            f"{steps}. The importance-sampling estimates are lower bounds: {khat}"
            f"the bound rose by {min(rises):.1f} to {max(rises):.1f} nats from K = {iwae[-2]['k']} to "
            f"K = {iwae[-1]['k']}.")


def priors(out: Path) -> None:
    result = _load("priors")
    if result is None:
        (out / "priors.md").write_text(_missing("priors"))
        return
    rows = []
    for r in result["rows"]:
        model = r["quality"]["model"]
        rows.append([r["prior"], r["seed"], f"{r['log_px']:.1f} ± {r['log_px_se']:.1f}",
                     f"{model['frechet']['mean']:.1f} ± {model['frechet']['sd']:.1f}",
                     f"{model['precision']['mean']:.3f}", f"{model['recall']['mean']:.3f}",
                     f"{r['last_epoch']['frechet']:.1f}"])
    first = result["rows"][0]
    q = first["quality"]
    floor = q["floor"]
    rows.append(["test split (floor)", "-", "-", f"{floor['frechet']['mean']:.2f} ± {floor['frechet']['sd']:.2f}",
                 f"{floor['precision']['mean']:.3f}", f"{floor['recall']['mean']:.3f}", "-"])
    draws = len(q["seeds"])
    table = markdown_table(["prior", "seed", "test log p(x) ± se (nats)", f"Fréchet ± sd over {draws} draws",
                            "precision", "recall", "Fréchet at the last epoch (1 draw)"], rows)
    settings = ", ".join(f"{k}={v}" for k, v in result["set"].items())
    evaluation = result["evaluate"]
    (out / "priors.md").write_text(
        f"`{result['command']}` (the built-in sweep: `fashion_vae` with {settings}; priors "
        f"{', '.join(result['grid']['model.prior.name'])}; seeds {', '.join(map(str, result['seeds']))}). "
        f"Test log p(x) by importance sampling with K = {evaluation['num_samples']} on "
        f"{first['log_px_points']} test images (± its standard error over the images); then "
        f"`pyrovae quality RUN --samples {q['samples']} --seeds {draws}` of each run (best-validation parameters): "
        f"mean ± standard deviation over {draws} draws of the samples, against the floor of {q['floor_samples']} "
        f"test images. The last column is the sweep's own score, `train.quality` at the last epoch. The sweep took "
        f"{sum(r['sweep_seconds'] for r in result['rows']) / 60:.1f} min of wall-clock time on one worker, the scoring "
        f"after it {result['wall_seconds'] / 60:.1f} min ({result['machine']}, niced, sharing two cores with other "
        f"work).\n\n{table}\n\n{_ranking(result['rows'])}\n\n"
        f"![Fréchet distance against log p(x)](generated/sample_quality/priors.png)\n")
    fig, ax = pyplot().subplots(figsize=(5.5, 3.8))
    for number, (prior, runs) in enumerate(_by_prior(result["rows"]).items()):
        ax.errorbar([r["log_px"] for r in runs], [r["quality"]["model"]["frechet"]["mean"] for r in runs],
                    yerr=[r["quality"]["model"]["frechet"]["sd"] for r in runs],
                    fmt="os^vD"[number % 5], capsize=3, ls="none", label=prior)
    ax.set_xlabel("test log p(x) (nats, higher is better)")
    ax.set_ylabel("Fréchet distance (lower is better)")
    ax.set_title("each run, ± sd over draws (log p(x): the same test images)", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, out / "priors.png")


def faces(out: Path) -> None:
    """What training the conv VAE on a folder of faces took (``faces.py``), and its figures."""
    result = _load("faces")
    if result is None:
        (out / "faces.md").write_text(_missing("faces"))
        return
    for name in result["figures"]:
        shutil.copyfile(RESULTS / "faces" / name, out / f"faces_{name}")
    cpu = f"{result['cpu_seconds'] / 60:.1f} CPU minutes, " if result.get("cpu_seconds") else ""
    images = result["images"]
    note = f"{result['note']} " if result.get("note") else ""
    figures = "\n\n".join(f"![{name[:-4]}](generated/sample_quality/faces_{name})" for name in result["figures"])
    (out / "faces.md").write_text(
        f"```\n{result['command']}\n```\n\n"
        f"{images['train']} training, {images['valid']} validation and {images['test']} test images; "
        f"{result['epochs']} epochs, {result['steps']} optimizer steps: {cpu}"
        f"{result['train_seconds'] / 60:.1f} minutes of wall-clock time on the shared machine; best validation "
        f"ELBO {result['best_valid_elbo']:.1f} nats at epoch {result['best_epoch']} (the parameters kept). {note}"
        f"`pyrovae sample`, `pyrovae reconstruct` and `pyrovae interpolate` (through test images "
        f"{', '.join(map(str, result['interpolation_points']))}) of the run:\n\n{figures}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where the snippets and figures go")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for part in (classifiers, floor, trajectories, priors, faces):
        part(args.out)


if __name__ == "__main__":
    main()
