"""Sweeps: grids of experiments and seeds, run as ordinary run folders.

A sweep is a base config, a grid of dotted overrides, seeds and evaluation options
(:mod:`pyrovae.sweeps.spec`). Each grid point and seed is a run folder trained by
:func:`pyrovae.training.train.train` and evaluated by ``pyrovae evaluate``'s
:func:`~pyrovae.evaluation.evaluate.evaluate_run` (:mod:`pyrovae.sweeps.job`), on an
engine: worker processes on this machine by default, or a Ray cluster
(:mod:`pyrovae.sweeps.engines`). Every grid of runs in pyrovae goes through here: the
built-in sweeps (``pyrovae/sweeps/builtin/*.yaml``, among them the published-number
reproductions) and the built-in experiments built on them.

The engine's Python API (``pyrovae.sweep``, :mod:`pyrovae.commands.sweep`, runs a sitting
with the runs' reports and the sweep report on top of it):

- ``run_sweep(source, sweep_dir, job=..., budget=None, engine="local", workers=None, address=None)``
  runs one sitting of the sweep ``source`` (a file, a built-in sweep name, a mapping or a
  :class:`SweepSpec`) in ``sweep_dir``, each run by ``job``, and returns every run's
  :class:`RunStatus`. It is resumable by construction: called again with the same sweep and
  folder it skips finished runs, resumes interrupted or budget-paused ones from their
  checkpoints (with results identical to an uninterrupted run) and retries failed ones; a
  folder holding a different sweep is refused. ``budget`` (seconds, or ``"90m"``, ``"2h"``)
  ends the sitting: no run starts after it, and running ones stop at the end of their
  current epoch. A failed run is recorded with its one-line error and does not stop the others.
- ``sweep_status(sweep_dir)``: each run's state (done, running, paused, interrupted,
  failed with its error, pending), read from the run folders.
- ``read_results(sweep_dir)``: a :class:`SweepResults`: per run (grid point, seed, state,
  test log p(x) or best validation ELBO, the whole evaluation summary) and per grid point
  (values over seeds, mean, standard deviation, standard error; ``difference(a, b)`` with
  its standard error).
- ``run_folder(sweep_dir, point, seed)``: the run folder of one grid point and seed.
- ``load_sweep(source)``, ``builtin_sweeps()``: read and validate a sweep; the names of
  the built-in ones.

The same engines split one evaluation: ``pyrovae evaluate RUN --workers N [--engine ray]``
(:class:`pyrovae.sweeps.split_evaluation.SplitSampler`) shares the blocks of importance
sampling out over their workers, with the same results as one process.
"""

from pathlib import Path
from typing import Any, Dict

from .results import PointSummary, RunResult, SweepResults, read_results
from .spec import RunPlan, SweepSpec, builtin_sweeps, load_sweep
from .sweep import RUNS, RunStatus, open_sweep, run_sweep, sweep_status


def run_folder(sweep_dir, point: Dict[str, Any], seed: int) -> Path:
    """The run folder of ``point`` (a mapping of grid keys to values) and ``seed``."""
    from ..errors import PyrovaeError

    for plan in open_sweep(sweep_dir).runs():
        if plan.point == point and plan.seed == seed:
            return Path(sweep_dir) / RUNS / plan.folder
    raise PyrovaeError(f"the sweep in {sweep_dir} has no run for {point} with seed {seed}")


__all__ = ["PointSummary", "RunPlan", "RunResult", "RunStatus", "SweepResults", "SweepSpec", "builtin_sweeps",
           "load_sweep", "open_sweep", "read_results", "run_folder", "run_sweep", "sweep_status"]
