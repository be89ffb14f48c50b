"""One run of a sweep, as a worker carries it out: train, evaluate, record.

The run folder is an ordinary ``pyrovae train`` run folder, written by the same engines
(:func:`pyrovae.training.train.train` and :func:`~pyrovae.evaluation.evaluate.evaluate_run`);
its report is drawn by the reports the sweep command hands the job (:class:`JobReports`),
the same ones ``pyrovae train`` and ``pyrovae evaluate`` draw. A job picks up whatever an earlier
sitting left: finished training is not repeated, an interrupted one resumes from its last
checkpoint. The evaluation notes the checkpoint it evaluated (its SHA-256), so a later
re-evaluation with other settings or a retrained checkpoint is seen
(:func:`evaluation_mismatch`) and the next sitting evaluates the run again.

Under a deadline, training goes in chunks (``chunk_epochs``, or the curve's ``every``)
ending at multiples of the chunk (also after resuming from any epoch) and stops at the end
of the chunk in which the deadline passed; resuming chunk by chunk
gives the same parameters as one uninterrupted run, since a checkpoint holds everything
(parameters, optimizer, random state, early-stopping record).

Besides the run's own files a job writes two: ``sweep.lock``, held while it works (so
``--status`` can tell a running run from one whose worker died, and two sittings never
work on one run), and ``sweep_run.json``, its outcome: ``done``, ``failed`` with the
error's one line, or ``paused`` when the budget ran out.
"""

import fcntl
import json
import math
import os
import socket
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

import torch

from ..errors import PyrovaeError
from ..runs.checkpoint import CHECKPOINT, current_checkpoint, load_checkpoint
from ..runs.csvlog import csv_text, read_rows
from ..runs.files import write_atomic
from ..runs.folder import CONFIG, save_config, stopped_early
from ..runs.inputs import changed_inputs_allowed
from ..runs.loading import TrainResult
from ..spec import ExperimentSpec, load_config

RUN_STATE = "sweep_run.json"
RUN_LOCK = "sweep.lock"
CURVE = "curve.csv"
CURVE_COLUMNS = ["epoch", "train_seconds", "wall_seconds", "best_valid_elbo", "test_log_px", "std_error", "samples", "points"]


@dataclass(frozen=True)
class JobReports:
    """What a job draws besides the engines' files, handed to it by the sweep command (an
    engine imports no report): ``training(run_dir, spec, result)`` once training is over
    (``result`` is None when it ended in an earlier sitting: draw the report only if it is
    missing), ``evaluation(run_dir, summary)`` after the evaluation."""

    training: Callable[[Path, ExperimentSpec, Optional[TrainResult]], None]
    evaluation: Callable[[Path, dict], None]
class RunHeld(PyrovaeError):
    """Another worker (of this sitting or of another one in the same folder) holds the run."""


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/sweep.lock`` for the job's lifetime; the system drops it when the
    worker exits, however it exits. The file names the worker: ``host pid``."""
    with open(run_dir / RUN_LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunHeld(f"another worker is running {run_dir}; left to it") from None
        handle.truncate(0)
        handle.write(f"{socket.gethostname()} {os.getpid()}\n")
        handle.flush()
        yield


def is_locked(run_dir: Path) -> bool:
    """Whether a worker holds ``run_dir``'s lock now."""
    path = Path(run_dir) / RUN_LOCK
    if not path.exists():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def run_job(task: Dict[str, Any], reports: Optional[JobReports] = None) -> Dict[str, Any]:
    """Carry out one run, drawing ``reports`` (none by default), and return its recorded
    outcome (also in ``sweep_run.json``).

    ``task`` holds plain values so any engine can ship it: ``run_dir``, ``config`` (the
    resolved config), ``evaluate`` (``evaluate_run`` options or ``None``), ``curve``
    (``None`` or ``{every, num_samples, points}``), ``deadline`` (``time.time()`` seconds or
    ``None``), ``chunk_epochs`` and ``threads`` (torch threads, ``None``: leave as is).
    A failure is recorded with its one-line message and returned, never raised. A run another
    worker holds (a second sitting in the same folder) is left to it: the outcome is
    ``running`` and that worker's record is not touched.
    """
    if task.get("threads"):
        torch.set_num_threads(task["threads"])
    run_dir = Path(task["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    outcome: Dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "threads": torch.get_num_threads()}
    try:
        with run_lock(run_dir), changed_inputs_allowed(task.get("allow_changed_inputs", False)):
            (run_dir / RUN_STATE).unlink(missing_ok=True)  # an earlier sitting's record is not this one's
            outcome.update(_train_and_evaluate(run_dir, task, reports))
    except RunHeld as exc:
        return {**outcome, "state": "running", "error": str(exc)}
    except PyrovaeError as exc:
        outcome.update(state="failed", error=str(exc).splitlines()[0])
    except Exception as exc:  # a bug or a resource failure: one line here, the traceback in the run folder
        outcome.update(state="failed", error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                       f" (traceback in {run_dir / 'sweep_error.txt'})")
        write_atomic(run_dir / "sweep_error.txt", traceback.format_exc())
    outcome["sitting_seconds"] = time.time() - started
    write_atomic(run_dir / RUN_STATE, json.dumps(outcome, indent=2) + "\n")
    return outcome


def training_progress(run_dir: Path, spec: ExperimentSpec) -> Dict[str, Any]:
    """Epochs trained so far and whether training is over (all epochs, or early stopping)."""
    path = run_dir / CHECKPOINT
    if not path.exists():
        return {"epochs": 0, "finished": False, "stopped_early": False, "train_seconds": 0.0}
    state = load_checkpoint(path)
    stopped = stopped_early(state, spec)
    return {"epochs": int(state["epoch"]), "finished": stopped or state["epoch"] >= spec.train.epochs,
            "stopped_early": stopped, "train_seconds": float(state["seconds"]),
            "best_valid_elbo": float(state["best_valid_elbo"])}


def _train_and_evaluate(run_dir: Path, task: Dict[str, Any], reports: Optional[JobReports]) -> Dict[str, Any]:
    spec = load_config(task["config"])
    progress = training_progress(run_dir, spec)
    result = None
    if not progress["finished"]:
        progress, result = _train(run_dir, spec, task)
        if not progress["finished"]:
            return {"state": "paused", **progress}
    save_config(spec, run_dir / CONFIG)  # the whole run's epochs: training in chunks wrote each chunk's
    if reports is not None:
        reports.training(run_dir, spec, result)
    evaluation = task.get("evaluate")
    if evaluation is not None:
        if _past(task.get("deadline")):
            return {"state": "paused", **progress}
        from ..evaluation.evaluate import evaluate_run

        summary = evaluate_run(run_dir, **evaluation)
        if reports is not None:
            reports.evaluation(run_dir, summary)
    return {"state": "done", "evaluate": evaluation, **progress}


def evaluation_mismatch(run_dir: Path, options: Optional[Dict[str, Any]]) -> Optional[str]:
    """Why the evaluation in ``run_dir/evaluation.json`` is not the sweep's (``options``) of the
    run's current checkpoint, or ``None`` when it is. The entry a sweep reads can be replaced
    later (``pyrovae evaluate RUN --num-samples 200``) and the checkpoint retrained, so a
    finished job's record alone does not make a run done. Each summary names the checkpoint it
    evaluated (its SHA-256); summaries saved before they did are checked on the settings only."""
    if options is None:
        return None
    from ..runs.evaluations import entry_name, read_evaluations

    entry = entry_name(options)
    try:
        summary = read_evaluations(run_dir).get(entry)
    except PyrovaeError as exc:
        return str(exc)
    if not isinstance(summary, dict):
        return f"evaluation.json has no '{entry}' entry"
    made, wanted = _evaluation_settings(summary), _wanted_settings(options, summary)
    if made != wanted:
        return f"evaluation.json's '{entry}' entry has {_settings_text(made)}, not the sweep's {_settings_text(wanted)}"
    evaluated = (summary.get("checkpoint") or {}).get("sha256")
    if evaluated is not None and evaluated != (current_checkpoint(run_dir) or {}).get("sha256"):
        return "checkpoint.pt changed after the sweep evaluated it"
    return None


def _evaluation_settings(summary: Dict[str, Any]) -> Dict[str, Any]:
    """What an evaluation.json entry was made with: the settings its number depends on."""
    settings = {"points": summary.get("num_points"), "seed": summary.get("seed")}
    if summary.get("method", "is") == "is":
        return {"K": summary.get("num_samples"), **settings}
    return {"steps": summary.get("steps"), "chains": summary.get("chains"), **settings}


def _wanted_settings(options: Dict[str, Any], summary: Dict[str, Any]) -> Dict[str, Any]:
    """The settings of :func:`_evaluation_settings` that the sweep's ``options`` ask for."""
    split_size = (summary.get("subset") or {}).get("of")
    points = split_size if options["max_points"] is None or split_size is None else min(options["max_points"], split_size)
    settings = {"points": points, "seed": options["seed"]}
    if options["method"] == "is":
        return {"K": options["num_samples"], **settings}
    return {"steps": options["steps"], "chains": options["chains"], **settings}


def _settings_text(settings: Dict[str, Any]) -> str:
    return ", ".join(f"{key} = {value}" for key, value in settings.items())


def _train(run_dir: Path, spec: ExperimentSpec, task: Dict[str, Any]) -> tuple:
    """Train chunk by chunk until finished or past the deadline; ``(progress, last result)``."""
    from ..training.train import train

    curve, deadline = task.get("curve"), task.get("deadline")
    if curve:
        chunk = curve["every"]
    elif deadline is not None:
        chunk = task.get("chunk_epochs") or 1
    else:
        chunk = spec.train.epochs
    progress, data, result = training_progress(run_dir, spec), None, None
    while not progress["finished"]:
        chunk_started = time.time()
        part = load_config(spec.to_dict())
        part.train.epochs = min(spec.train.epochs, chunk_end(progress["epochs"], chunk))
        result = train(part, run_dir, resume=progress["epochs"] > 0, data=data)
        data = result.data
        progress = training_progress(run_dir, spec)
        if curve:
            _record_curve_point(run_dir, result, progress, curve, chunk_started)
        if _past(deadline) and not progress["finished"]:
            return progress, result
    return progress, result


def chunk_end(epochs: int, chunk: int) -> int:
    """The epoch the chunk that starts after ``epochs`` ends at: the next multiple of
    ``chunk``, so a run resumed from any epoch (a worker killed mid-chunk) still records
    its curve at epochs ``chunk``, ``2 chunk``, ... like an uninterrupted one."""
    return (epochs // chunk + 1) * chunk


def _past(deadline: Optional[float]) -> bool:
    return deadline is not None and time.time() >= deadline


def _record_curve_point(run_dir: Path, result, progress: Dict[str, Any], curve: Dict[str, int],
                        chunk_started: float) -> None:
    """Test log p(x) of the best-validation model on ``points`` evenly spaced test images
    (the first ones would not stand for the split: MNIST's first 5000 are the cleaner half),
    with the wall-clock seconds of training and curve points over all sittings."""
    import pyro

    from ..evaluation.importance import log_marginal

    test_x = result.data.split("test").x
    every = torch.linspace(0, test_x.shape[0] - 1, min(curve["points"], test_x.shape[0])).round().long()
    pyro.set_rng_seed(0)  # the next chunk restores the training random state from the checkpoint
    estimate = log_marginal(result.vae.eval(), test_x[every].to(next(result.vae.parameters()).device),
                            num_samples=curve["num_samples"])
    result.vae.train()
    n = estimate.value.shape[0]
    rows = read_rows(run_dir / CURVE) if (run_dir / CURVE).exists() else []  # as written: epochs stay integers
    wall = (float(rows[-1]["wall_seconds"]) if rows else 0.0) + time.time() - chunk_started
    rows.append({
        "epoch": progress["epochs"], "train_seconds": progress["train_seconds"], "wall_seconds": wall,
        "best_valid_elbo": progress["best_valid_elbo"], "test_log_px": float(estimate.value.mean()),
        "std_error": float(estimate.value.std() / math.sqrt(n)) if n > 1 else math.nan,
        "samples": curve["num_samples"], "points": n})
    write_atomic(run_dir / CURVE, csv_text(CURVE_COLUMNS, rows))  # the whole file: never a torn last line


def read_curve(run_dir: Path) -> list:
    """The rows of ``curve.csv`` as numbers (empty without a curve)."""
    path = Path(run_dir) / CURVE
    if not path.exists():
        return []
    return [{k: float(v) for k, v in row.items()} for row in read_rows(path)]
