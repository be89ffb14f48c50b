"""The measured results of Kingma & Welling's Fig. 2 and Fig. 3 as plain data, and the one
way both are drawn and tabulated.

A results record is JSON: ``{"figure": NAME, "panels": {title: {method: curve}}}`` plus, for
Fig. 3, ``"comparison"``: one row per small-training-set model with its log p(x) by
importance sampling, the appendix-D estimator and AIS on the same train and test points.
A curve is what :func:`.paper_figures.bound_curve` or :func:`.paper_figures.marginal_curve`
reads from a run folder, with the run's settings (``"settings"``) added.

``pyrovae reproduce`` builds the record from its run folders, writes it as
``OUT/results/NAME.json`` and draws the figure and table from it (:func:`draw`,
:func:`table`); ``pyrovae reproduce NAME --out OUT --record DIR`` writes the same record into
``DIR`` (``benchmarks/paper/results/``), from which ``benchmarks/paper/report.py`` draws the
same figure and table with the same functions when the docs site is built. Recorded curves
keep at most :data:`MAX_POINTS` epochs, spread evenly over the logarithm of the training
points (the figures' x axis), always with the first and last; numbers are rounded to what
the figures and tables show.
"""

import json
import math
from pathlib import Path
from typing import Dict, List, Tuple

from ..errors import PyrovaeError
from ..runs.files import write_atomic
from .paper_figures import figure_2, figure_3, method_label

FIGURES = ("kingma2014-fig2", "kingma2014-fig3")
MAX_POINTS = 150
DECIMALS = 3
ESTIMATORS = (("is", "IS"), ("appendix_d", "appendix D"), ("ais", "AIS"))


def thin(curve: dict, max_points: int = MAX_POINTS) -> dict:
    """``curve`` (parallel lists keyed by name, plus ``settings``) cut to at most
    ``max_points`` entries, evenly spread in log training points, first and last kept."""
    points = curve["points"]
    n = len(points)
    if n <= max_points:
        keep = list(range(n))
    else:
        low, high = math.log(points[0]), math.log(points[-1])
        targets = [low + (high - low) * i / (max_points - 1) for i in range(max_points)]
        logs = [math.log(p) for p in points]
        keep, j = [], 0
        for target in targets:  # the first entry at or past each target, each entry once
            while j < n - 1 and logs[j] < target:
                j += 1
            if not keep or keep[-1] != j:
                keep.append(j)
    return {key: ([value[i] for i in keep] if isinstance(value, list) else value) for key, value in curve.items()}


def _rounded(value):
    if isinstance(value, float):
        return round(value, DECIMALS) if math.isfinite(value) else None
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def recorded(results: dict) -> dict:
    """``results`` as recorded: curves thinned, numbers rounded."""
    panels = {title: {method: thin(curve) for method, curve in curves.items()} for title, curves in results["panels"].items()}
    return _rounded({**results, "panels": panels})


def write_results(folder, results: dict) -> Path:
    """Write ``results`` (recorded form) as ``folder/<figure>.json``, atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{results['figure']}.json"
    write_atomic(path, json.dumps(recorded(results), indent=1) + "\n")
    return path


def read_results(folder, figure: str) -> dict:
    """The record of ``figure`` in ``folder``; a one-line error when it is missing or damaged."""
    path = Path(folder) / f"{figure}.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PyrovaeError(f"cannot read {path} ({type(exc).__name__}); record it with "
                           f"'pyrovae reproduce {figure} --out OUT --record {folder}'") from None
    if results.get("figure") != figure or not isinstance(results.get("panels"), dict):
        raise PyrovaeError(f"{path} is not a {figure} results record; record it again with pyrovae reproduce --record")
    for curves in results["panels"].values():
        for curve in curves.values():
            curve["std_error"] = [math.nan if s is None else s for s in curve.get("std_error", [])]
    return results


def draw(results: dict, path) -> Path:
    """The figure of ``results`` (Fig. 2 or Fig. 3) as ``path``."""
    painter = {"kingma2014-fig2": figure_2, "kingma2014-fig3": figure_3}.get(results["figure"])
    if painter is None:
        raise PyrovaeError(f"no figure for results of '{results['figure']}'; choose one of: {', '.join(FIGURES)}")
    return painter(results["panels"], Path(path))


def _plain(title: str) -> str:
    return title.replace("$", "")


def _sci(value: float) -> str:
    return f"{value:.3g}"


def fig2_table(results: dict) -> Tuple[List[str], List[list]]:
    """One row per curve: training points reached, last train and held-out bound, the best
    held-out bound of every epoch (where it was), training seconds."""
    header = ["panel", "method", "training points", "train bound (last epoch)", "held-out bound (last epoch)",
              "best held-out bound (at training points)", "training time"]
    rows = []
    for title, curves in results["panels"].items():
        for method, c in curves.items():
            best = max(range(len(c["heldout"])), key=c["heldout"].__getitem__)
            best = (c.get("best_heldout", c["heldout"][best]), c.get("best_heldout_points", c["points"][best]))
            rows.append([_plain(title), method_label(method)[0], _sci(c["points"][-1]), f"{c['train'][-1]:.2f}",
                         f"{c['heldout'][-1]:.2f}", f"{best[0]:.2f} ({_sci(best[1])})", f"{c['seconds'][-1]:.0f} s"])
    return header, rows


def common_point_table(results: dict) -> Tuple[List[str], List[list]]:
    """Fig. 2, AEVB against wake-sleep at the furthest number of training points both reached
    on each panel (the last recorded epoch of each at or before it)."""
    header = ["panel", "training points", "AEVB train", "AEVB held-out", "wake-sleep train", "wake-sleep held-out",
              "held-out difference"]
    rows = []
    for title, curves in results["panels"].items():
        if "pathwise" not in curves or "wake_sleep" not in curves:
            continue
        common = min(curves["pathwise"]["points"][-1], curves["wake_sleep"]["points"][-1])
        at = {m: max(i for i, p in enumerate(curves[m]["points"]) if p <= common) for m in ("pathwise", "wake_sleep")}
        a, w = ((curves[m]["train"][at[m]], curves[m]["heldout"][at[m]]) for m in ("pathwise", "wake_sleep"))
        rows.append([_plain(title), _sci(common), f"{a[0]:.2f}", f"{a[1]:.2f}", f"{w[0]:.2f}", f"{w[1]:.2f}",
                     f"{a[1] - w[1]:+.2f}"])
    return header, rows


def fig3_table(results: dict) -> Tuple[List[str], List[list]]:
    """One row per curve: training points reached and the last estimate of test log p(x)."""
    header = ["panel", "method", "training points", "test log p(x) (IS, K = 500)", "training time"]
    rows = []
    for title, curves in results["panels"].items():
        for method, c in curves.items():
            rows.append([_plain(title), method_label(method)[0], _sci(c["points"][-1]),
                         f"{c['test'][-1]:.2f} ± {c['std_error'][-1]:.2f}", f"{c['seconds'][-1]:.0f} s"])
    return header, rows


def comparison_table(results: dict) -> Tuple[List[str], List[list]]:
    """Fig. 3's small-training-set models: mean log p(x) of the same train and test points by
    importance sampling, the appendix-D estimator and AIS, ± standard errors over points."""
    header = ["method", "epochs", "split"] + [label for _, label in ESTIMATORS]
    rows = []
    for row in results.get("comparison", []):
        for split in ("train", "test"):
            cells = []
            for key, _ in ESTIMATORS:
                value = row.get(f"{split}_{key}")
                cells.append("" if value is None else f"{value:.2f} ± {row[f'{split}_{key}_se']:.2f}")
            rows.append([method_label(row["method"])[0], row["epoch"], f"{split} ({row['points']} points)", *cells])
    return header, rows


def tables(results: dict) -> Dict[str, Tuple[List[str], List[list]]]:
    """Every table of ``results``, by name."""
    if results["figure"] == "kingma2014-fig2":
        return {"curves": fig2_table(results), "common": common_point_table(results)}
    return {"curves": fig3_table(results), "comparison": comparison_table(results)}
