"""A sweep folder: the spec, an index of its runs, their states, sittings and results.

```
SWEEP/
  sweep.yaml      the sweep, its base config written out in full
  index.json      every run: folder, grid point, seed
  runs/<point>/seed_<s>/   one ordinary run folder per grid point and seed
  report.md, results.json, figures/   the sweep report (rewritten after each sitting)
```

The state of a run is read from its folder, never kept elsewhere: ``running`` while a
worker holds its lock, else what its last job recorded (``done``, ``failed`` with the
error's one line, ``paused`` when a budget ran out, or when the run is trained but its
evaluation.json no longer holds the sweep's evaluation of its current checkpoint), ``interrupted`` when a worker died
mid-run (a checkpoint but no record), ``pending`` when nothing was started.
"""

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import yaml

from ..errors import PyrovaeError
from ..runs.checkpoint import CHECKPOINT
from ..runs.files import make_folder, staged_writes
from .engines import ENGINES
from .job import RUN_STATE, evaluation_mismatch, is_locked
from .spec import RunPlan, SweepSpec, evaluate_options, load_sweep, spec_differences

SWEEP_FILE = "sweep.yaml"
INDEX = "index.json"
RUNS = "runs"
STATES = ("done", "running", "paused", "interrupted", "failed", "pending")
# Exit statuses of `pyrovae sweep` and `pyrovae reproduce` after a sitting (2 is a user's mistake,
# 130 a sitting stopped by Ctrl-C or SIGTERM): every run done; some not finished yet (paused by
# the budget, not started, or running in another sitting): continue later; some failed or were
# interrupted (a worker died): look at them, then continue.
EXIT_DONE, EXIT_UNFINISHED, EXIT_FAILED = 0, 3, 4


@dataclass
class RunStatus:
    """Where one run of a sweep stands."""

    plan: RunPlan
    state: str
    error: Optional[str] = None
    epochs: Optional[int] = None


def parse_budget(text: Union[str, float, int, None]) -> Optional[float]:
    """Seconds from ``90s``, ``30m``, ``2h``, ``1.5h`` or a number of seconds; ``None`` stays ``None``."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text).lower())
        if not match:
            raise PyrovaeError(f"budget '{text}' is not a time; write e.g. 90s, 30m or 2h")
        seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if seconds <= 0:
        raise PyrovaeError(f"budget must be positive, got {text}")
    return seconds


def is_sweep_folder(sweep_dir) -> bool:
    """Whether ``sweep_dir`` is a folder a sweep was started in: its ``sweep.yaml`` and its
    ``index.json``, which pyrovae writes together (a ``sweep.yaml`` alone is someone's file)."""
    sweep_dir = Path(sweep_dir)
    return (sweep_dir / SWEEP_FILE).is_file() and (sweep_dir / INDEX).is_file()


def open_sweep(sweep_dir) -> SweepSpec:
    """The sweep stored in ``sweep_dir``; a one-line error for anything that is not a sweep folder."""
    sweep_dir = Path(sweep_dir)
    if sweep_dir.is_file():
        raise PyrovaeError(f"{sweep_dir} is a file, not a sweep folder; --status and --resume take the folder "
                           f"a sweep runs in (start one with 'pyrovae sweep {sweep_dir} --out DIR')")
    if not is_sweep_folder(sweep_dir):
        raise PyrovaeError(f"{sweep_dir} holds no sweep ({SWEEP_FILE} and {INDEX} missing); "
                           f"start one with 'pyrovae sweep SWEEP.yaml --out {sweep_dir}'")
    return load_sweep(sweep_dir / SWEEP_FILE)


def check_new_sweep_folder(sweep_dir: Path) -> None:
    """Refuse an ``--out`` a new sweep must not write into: a file, or a folder that holds
    anything but no sweep (a run folder, another tool's files, a report): a folder pyrovae
    did not make is never written into."""
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise PyrovaeError(f"--out {sweep_dir} is a file, not a folder; choose a folder for the sweep")
    held = sorted(p.name for p in sweep_dir.iterdir()) if sweep_dir.is_dir() else []
    if held:
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise PyrovaeError(f"--out {sweep_dir} already holds files ({shown}) but no sweep, and is left as it is; "
                           f"choose a new or empty folder for the sweep")


def prepare_sweep(source: Union[str, Path, Dict[str, Any], SweepSpec], sweep_dir) -> SweepSpec:
    """Write the sweep spec and index into ``sweep_dir`` (new or empty), or check that the
    sweep already there is the same one (so starting it again continues it)."""
    spec = source if isinstance(source, SweepSpec) else load_sweep(source)
    sweep_dir = Path(sweep_dir)
    if is_sweep_folder(sweep_dir):
        stored = open_sweep(sweep_dir)
        differences = spec_differences(stored.to_dict(), spec.to_dict())
        if differences:
            raise PyrovaeError(f"{sweep_dir} holds a different sweep ('{stored.name}': {differences}); continue "
                               f"it with its own settings or choose another folder")
        return stored
    check_new_sweep_folder(sweep_dir)
    make_folder(sweep_dir)
    index = {"name": spec.name, "runs": [{"folder": f"{RUNS}/{p.folder}", "point": p.point, "seed": p.seed}
                                         for p in spec.runs()]}
    with staged_writes() as files:  # the index first: a sweep.yaml never stands without it
        files.write(sweep_dir / INDEX, json.dumps(index, indent=2) + "\n")
        files.write(sweep_dir / SWEEP_FILE, yaml.safe_dump(spec.to_dict(), sort_keys=False))
    return spec


def run_sweep(source: Union[str, Path, Dict[str, Any], SweepSpec], sweep_dir, *, job: Callable[[dict], dict],
              budget=None, engine: str = "local", workers: Optional[int] = None, address: Optional[str] = None,
              threads: Optional[int] = None, log: Callable[[str], None] = print) -> List[RunStatus]:
    """Run every unfinished run of the sweep ``source`` in ``sweep_dir`` for one sitting, each
    by ``job`` (a module-level function of a task, such as the sweep command's
    :func:`pyrovae.sweeps.job.run_job` with its reports); return each run's status.

    ``sweep_dir`` may already hold this sweep: finished runs are skipped, interrupted and
    paused ones resumed from their checkpoints, failed ones tried again. ``budget`` (seconds
    or text like ``2h``) ends the sitting: no run starts after it, running ones stop at the
    end of their current epoch (or curve chunk) and continue in the next sitting.
    ``threads``: torch threads per run (default: the local engine shares the cores out,
    Ray gives one); floating-point sums, and so the last digits of a run, depend on it.
    """
    deadline = None if budget is None else time.time() + parse_budget(budget)
    spec = prepare_sweep(source, sweep_dir)
    sweep_dir = Path(sweep_dir)
    runner = ENGINES.build(engine, options={"workers": workers, "address": address, "threads": threads}, where="--engine")
    statuses = sweep_status(sweep_dir, spec)
    todo = [s for s in statuses if s.state not in ("done", "running")]
    busy = sum(s.state == "running" for s in statuses)
    log(f"sweep {spec.name}: {len(statuses)} runs, {len(statuses) - len(todo) - busy} done, "
        f"{busy} running elsewhere, {len(todo)} to run on {runner.workers} {engine} worker(s)")
    tasks = [job_task(spec, sweep_dir, s.plan, deadline) for s in todo]

    def on_done(task: Dict[str, Any], outcome: Dict[str, Any]) -> None:
        line = f"  {task['folder']}: {outcome['state']}"
        if outcome.get("error"):
            line += f": {outcome['error']}"
        log(line)

    runner.run(tasks, on_done, deadline, function=job)
    return sweep_status(sweep_dir, spec)


def exit_status(statuses: List[RunStatus]) -> int:
    """The command's exit status after a sitting (see :data:`EXIT_FAILED`): scripts can tell a
    finished sweep from one to continue later and from one with failed or interrupted runs."""
    states = {s.state for s in statuses}
    if states & {"failed", "interrupted"}:
        return EXIT_FAILED
    return EXIT_DONE if states <= {"done"} else EXIT_UNFINISHED


def resume_command(sweep_dir) -> str:
    """The command that continues the sweep in ``sweep_dir``."""
    return f"pyrovae sweep {sweep_dir} --resume"


def continue_hint(statuses: List[RunStatus], again: str) -> str:
    """How to finish the runs that are not done (nothing when all are)."""
    return "" if exit_status(statuses) == EXIT_DONE else f"; continue with: {again}"


def job_task(spec: SweepSpec, sweep_dir: Path, plan: RunPlan, deadline: Optional[float]) -> Dict[str, Any]:
    """The task for :func:`pyrovae.sweeps.job.run_job` that carries out ``plan`` (with the
    caller's ``--allow-changed-inputs``, which a worker's context does not inherit)."""
    from ..runs.inputs import changed_inputs_are_allowed

    return {"folder": plan.folder, "run_dir": str((sweep_dir / RUNS / plan.folder).resolve()), "config": plan.config,
            "evaluate": spec.evaluate, "curve": spec.curve, "deadline": deadline,
            "allow_changed_inputs": changed_inputs_are_allowed()}


def sweep_status(sweep_dir, spec: Optional[SweepSpec] = None) -> List[RunStatus]:
    """Each run's state, read from its folder (see the module docstring)."""
    sweep_dir = Path(sweep_dir)
    spec = spec or open_sweep(sweep_dir)
    return [_run_status(sweep_dir / RUNS / plan.folder, plan, spec) for plan in spec.runs()]


def _run_status(run_dir: Path, plan: RunPlan, spec: SweepSpec) -> RunStatus:
    if is_locked(run_dir):
        return RunStatus(plan, "running")
    record = _read_json(run_dir / RUN_STATE)
    if record is not None:
        state, error = record.get("state"), record.get("error")
        if state == "done":
            if not _same_evaluation(record.get("evaluate"), spec.evaluate):
                error = "trained, but evaluated with other options (or not at all)"
            else:
                error = evaluation_mismatch(run_dir, spec.evaluate)
            if error:  # trained: the next sitting evaluates it with the sweep's settings
                state, error = "paused", f"{error}; the next sitting evaluates it again"
        return RunStatus(plan, state, error, record.get("epochs"))
    if (run_dir / CHECKPOINT).exists():
        return RunStatus(plan, "interrupted", "the worker stopped mid-run; its last checkpoint is kept")
    return RunStatus(plan, "pending")


def _same_evaluation(recorded: Optional[dict], wanted: Optional[dict]) -> bool:
    """Whether a run was evaluated with the sweep's options; an option ``pyrovae evaluate``
    gained since counts as given at its default."""
    if recorded is None or wanted is None:
        return recorded == wanted
    defaults = evaluate_options()
    return all(recorded.get(key, defaults.get(key)) == value for key, value in wanted.items())


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summary_line(statuses: List[RunStatus]) -> str:
    """How many runs are in each state, e.g. ``6 done, 2 failed``."""
    counts = {state: sum(s.state == state for s in statuses) for state in STATES}
    return ", ".join(f"{n} {state}" for state, n in counts.items() if n)


def format_status(sweep_dir) -> str:
    """``pyrovae sweep DIR --status``: counts, then one line per run that is not done."""
    spec = open_sweep(sweep_dir)
    statuses = sweep_status(sweep_dir, spec)
    lines = [f"sweep {spec.name} in {sweep_dir}: {len(statuses)} runs: {summary_line(statuses)}"]
    for s in statuses:
        if s.state != "done":
            epochs = "" if s.epochs is None else f" ({s.epochs} epochs)"
            lines.append(f"  {s.state:<11} {s.plan.folder}{epochs}" + (f": {s.error}" if s.error else ""))
    if exit_status(statuses) != EXIT_DONE:
        lines.append(f"continue with: {resume_command(sweep_dir)}")
    return "\n".join(lines)
