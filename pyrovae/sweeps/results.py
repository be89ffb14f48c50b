"""A sweep's results: one number per finished run, summarized over seeds per grid point.

The number is the test log p(x) the sweep's evaluation estimated (importance sampling or AIS,
mean over the evaluated points), or the best validation ELBO when the sweep does not
evaluate. Per grid point: the mean over seeds, the seed-to-seed standard deviation $s$,
and the standard error of the mean $s/\\sqrt{n}$. Between grid points $a$ and $b$ the
difference of means has standard error

$$\\mathrm{se}(\\bar m_a - \\bar m_b) = \\sqrt{s_a^2/n_a + s_b^2/n_b},$$

the runs of different grid points being independent (their seeds are not paired: a seed
fixes the initialization and minibatch order of one config, not a shared random effect).
"""

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..runs.evaluations import entry_name
from .spec import SweepSpec
from .sweep import RUNS, open_sweep, sweep_status


@dataclass
class RunResult:
    """One run: its grid point, seed, state and (when done) its numbers."""

    folder: str
    point: Dict[str, Any]
    seed: int
    state: str
    value: Optional[float] = None
    epochs: Optional[int] = None
    train_seconds: Optional[float] = None
    evaluation: Optional[dict] = field(default=None, repr=False)


@dataclass
class PointSummary:
    """One grid point over its finished seeds."""

    label: str
    point: Dict[str, Any]
    values: List[float]
    seeds: List[int]
    runs: int

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if self.n > 1 else math.nan

    @property
    def std_error(self) -> float:
        return self.sd / math.sqrt(self.n) if self.n > 1 else math.nan


@dataclass
class SweepResults:
    spec: SweepSpec
    metric: str
    runs: List[RunResult]
    points: List[PointSummary]

    def difference(self, a: int, b: int) -> Dict[str, float]:
        """Mean of point ``a`` minus mean of point ``b`` and the standard error of that difference."""
        pa, pb = self.points[a], self.points[b]
        return {"difference": pa.mean - pb.mean, "std_error": math.sqrt(pa.sd ** 2 / pa.n + pb.sd ** 2 / pb.n)
                if pa.n > 1 and pb.n > 1 else math.nan}

    def to_dict(self) -> Dict[str, Any]:
        return {
            "sweep": self.spec.name, "metric": self.metric,
            "points": [{"label": p.label, "point": p.point, "seeds": p.seeds, "values": p.values, "runs": p.runs,
                        "mean": _finite(p.mean), "sd": _finite(p.sd), "std_error": _finite(p.std_error)}
                       for p in self.points],
            "differences": [[{k: _finite(v) for k, v in self.difference(a, b).items()} for b in range(len(self.points))]
                            for a in range(len(self.points))],
            "runs": [{"folder": r.folder, "point": r.point, "seed": r.seed, "state": r.state, "value": r.value,
                      "epochs": r.epochs, "train_seconds": r.train_seconds, **_gaps_of(r)} for r in self.runs],
        }


def _gaps_of(run: RunResult) -> Dict[str, Any]:
    """``{"gaps": ...}``: the run's inference-gap summary where its evaluation measured one, so
    that the gap table can be drawn again from ``results.json`` alone."""
    if run.evaluation is None or "gaps" not in run.evaluation:
        return {}
    return {"gaps": run.evaluation["gaps"]}


def results_from_dict(spec: SweepSpec, data: Dict[str, Any]) -> SweepResults:
    """The :class:`SweepResults` that ``results.json`` (``to_dict``) holds, for the sweep
    ``spec``: how a report is drawn again from committed results, without the run folders."""
    runs = [RunResult(r["folder"], r["point"], r["seed"], r["state"], r["value"], r["epochs"], r["train_seconds"],
                      evaluation={"gaps": r["gaps"]} if "gaps" in r else None)
            for r in data["runs"]]
    points = [PointSummary(p["label"], p["point"], p["values"], p["seeds"], p["runs"]) for p in data["points"]]
    return SweepResults(spec, data["metric"], runs, points)


def metric_name(spec: SweepSpec) -> str:
    """What the sweep compares: the best validation ELBO, or log p(x) by its evaluation."""
    options = spec.evaluate
    if options is None:
        return "best validation ELBO (nats)"
    if options["method"] == "ais":
        return f"{options['split']} log p(x) (nats, AIS, {options['steps']} steps x {options['chains']} chains)"
    return f"{options['split']} log p(x) (nats, importance sampled, K = {options['num_samples']})"


def read_results(sweep_dir, spec: Optional[SweepSpec] = None) -> SweepResults:
    """The results of every finished run of the sweep in ``sweep_dir``, per run and per grid point."""
    sweep_dir = Path(sweep_dir)
    spec = spec or open_sweep(sweep_dir)
    runs = []
    for status in sweep_status(sweep_dir, spec):
        plan = status.plan
        result = RunResult(plan.folder, plan.point, plan.seed, status.state, epochs=status.epochs)
        if status.state == "done":
            run_dir = sweep_dir / RUNS / plan.folder
            record = json.loads((run_dir / "sweep_run.json").read_text())
            result.train_seconds = record.get("train_seconds")
            if spec.evaluate is None:
                result.value = record.get("best_valid_elbo")
            else:
                entry = entry_name({"split": spec.evaluate["split"], "method": spec.evaluate["method"]})
                result.evaluation = json.loads((run_dir / "evaluation.json").read_text())[entry]
                result.value = result.evaluation["log_marginal"]["mean"]
        runs.append(result)
    points = []
    for point in spec.points():
        mine = [r for r in runs if r.point == point]
        done = [r for r in mine if r.value is not None]
        points.append(PointSummary(mine[0].folder.rsplit("/", 1)[0], point, [r.value for r in done],
                                   [r.seed for r in done], len(mine)))
    return SweepResults(spec, metric_name(spec), runs, points)


def _finite(x: float) -> Optional[float]:
    return x if math.isfinite(x) else None
