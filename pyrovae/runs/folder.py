"""Run folders: what counts as one, and keeping its files consistent with each other.

A run folder holds ``config.yaml`` (the resolved config), ``checkpoint.pt`` (the state
after the last finished epoch, with that epoch's metrics history), ``metrics.csv`` (one
row per finished epoch), ``train.lock``, and later figures, ``report.md`` and the results
of evaluation and measurements. The checkpoint is the reference: ``metrics.csv`` lists
exactly the epochs the checkpoint has finished. A process stopped between writing the two
leaves them one epoch apart; :func:`metrics_history` recognizes that and the next command
rewrites ``metrics.csv`` from the checkpoint.
"""

import hashlib
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from ..errors import PyrovaeError
from .checkpoint import CHECKPOINT, LOCK, load_checkpoint
from .csvlog import csv_text, read_rows
from .files import StagedWrites, make_folder, remove_stale_temp_files, write_atomic
from .inputs import INPUTS, inputs_text
from .portable import PLUGINS, plugin_copies, relative_spec

CONFIG = "config.yaml"
METRICS = "metrics.csv"
METRIC_COLUMNS = ["epoch", "step", "kl_weight", "lr", "train_elbo", "valid_elbo", "seconds"]
# Files only training writes; their temporary leftovers are removed when training starts.
TRAINING_FILES = (CONFIG, CHECKPOINT, METRICS, INPUTS)


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a folder training has written into (its lock, metrics or
    checkpoint), as opposed to a folder that merely holds a ``config.yaml``."""
    path = Path(path)
    return path.is_dir() and any((path / name).exists() for name in (CHECKPOINT, METRICS, LOCK))


def check_new_run_folder(out_dir: Path) -> None:
    """Refuse an ``--out`` that a new run must not write into: a file, a folder holding a
    run, or a folder holding a ``config.yaml`` that is not a run's (it would be overwritten).
    A run folder stopped before its first checkpoint may be started again."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PyrovaeError(f"--out {out_dir} is a file, not a folder; choose a folder for the run")
    if (out_dir / CHECKPOINT).exists():
        raise PyrovaeError(f"{out_dir} already holds a run; continue it with --resume "
                           f"or choose another --out folder")
    if (out_dir / CONFIG).exists() and not is_run_folder(out_dir):
        raise PyrovaeError(f"{out_dir} holds a config.yaml that is not a run's and would be overwritten; "
                           f"choose another --out folder (train from that file with "
                           f"'pyrovae train {out_dir / CONFIG} --out NEW_FOLDER')")


def check_resumable(run_dir: Path) -> None:
    """Refuse to resume (or report on) what holds no run, saying how to start one. A folder
    pyrovae did not make is never written into: a ``config.yaml`` alone, without the lock,
    metrics or checkpoint training leaves, is the user's file, not a run's."""
    run_dir = Path(run_dir)
    start = f"start it with 'pyrovae train CONFIG --out {run_dir}'"
    if not run_dir.exists():
        raise PyrovaeError(f"no run folder {run_dir} to resume; {start}")
    if not run_dir.is_dir():
        raise PyrovaeError(f"{run_dir} is a file, not a run folder; --resume needs the folder of a run")
    if not (run_dir / CONFIG).is_file():
        if is_run_folder(run_dir):
            raise PyrovaeError(f"{run_dir} was stopped before it held a config or a checkpoint, so there is "
                               f"nothing to resume; {start}")
        raise PyrovaeError(f"{run_dir} is not a run folder (no config.yaml); {start}")
    if not is_run_folder(run_dir):
        raise PyrovaeError(f"{run_dir} holds a config.yaml but no run (pyrovae never trained there), so there is "
                           f"nothing to resume or report and the folder is left as it is; train from that file with "
                           f"'pyrovae train {run_dir / CONFIG} --out NEW_FOLDER'")


def load_resume_config(run_dir: Path, overrides: Sequence[str] = (), plugins: Sequence[str] = ()):
    """The config of the run in ``run_dir`` with ``overrides`` (and extra ``plugins``)
    applied, for ``--resume`` (whose training checks the run's inputs)."""
    from ..spec import load_config

    check_resumable(run_dir)
    return load_config(run_dir, overrides, plugins)


def save_config(spec, path) -> None:
    """Write the resolved config ``spec`` to ``path`` atomically."""
    from ..spec import config_text

    write_atomic(path, config_text(spec))


def stage_run_files(files: StagedWrites, spec, run_dir: Path) -> None:
    """Stage into ``files`` what a run folder keeps of its inputs: copies of ``spec``'s plugin
    files not yet in ``run_dir`` (:mod:`pyrovae.runs.portable`), ``config.yaml`` naming the copies
    and the folder's own data files relatively, and ``inputs.json`` with their hashes."""
    from ..plugins import plugin_sha256
    from ..spec import config_text

    copies = plugin_copies(spec, run_dir)
    if (Path(run_dir) / PLUGINS).is_dir():  # under the run's lock: leftovers of a killed start
        remove_stale_temp_files(Path(run_dir) / PLUGINS)
    for plugin, name in copies.items():
        target = Path(run_dir) / name
        if Path(plugin).resolve() == target.resolve():
            continue
        data = Path(plugin).read_bytes()
        if hashlib.sha256(data).hexdigest() != plugin_sha256(plugin):
            raise PyrovaeError(f"plugin {plugin} changed since it was imported; start again so that the run "
                               f"records the code it runs")
        make_folder(target.parent)
        files.write(target, data)
    files.write(Path(run_dir) / CONFIG, config_text(relative_spec(spec, run_dir, copies)))
    files.write(Path(run_dir) / INPUTS, inputs_text(spec, run_dir))


def stopped_early(state: dict, spec) -> bool:
    """Whether the run whose checkpoint holds ``state`` ended by early stopping: patience
    used up (a run merely interrupted before its last epoch has not stopped early)."""
    patience = spec.train.early_stopping_patience
    return patience is not None and state["epochs_since_best"] >= patience


def metrics_history(run_dir: Path, state: Optional[dict]) -> List[dict]:
    """The metrics rows of the epochs checkpoint ``state`` has finished (none without one).

    Checkpoints carry their history; for older ones ``metrics.csv`` is read and rows of
    epochs after the checkpoint (an epoch interrupted before its checkpoint) are dropped.
    """
    if state is None:
        return []
    if "metrics" in state:
        return [dict(row) for row in state["metrics"]]
    path = Path(run_dir) / METRICS
    rows = [r for r in read_rows(path) if int(r["epoch"]) <= state["epoch"]] if path.exists() else []
    if [int(r["epoch"]) for r in rows] != list(range(1, state["epoch"] + 1)):
        raise PyrovaeError(f"{path} does not list epochs 1 to {state['epoch']} of the checkpoint in {run_dir}; "
                           f"restore it from a backup, or start a new run")
    return rows


def metrics_text(rows: Sequence[dict]) -> str:
    """``metrics.csv``'s content for ``rows``: the columns every run has, then any others some
    rows carry (sample quality measured during training), empty in the rows without them."""
    extra = [key for row in rows for key in row if key not in METRIC_COLUMNS]
    return csv_text(METRIC_COLUMNS + list(dict.fromkeys(extra)), rows)


def metrics_need_repair(run_dir: Path, rows: Sequence[dict]) -> bool:
    """Whether ``metrics.csv`` differs from ``rows`` (the checkpoint's history)."""
    path = Path(run_dir) / METRICS
    try:
        return path.read_text() != metrics_text(rows)
    except (OSError, UnicodeDecodeError):
        return True


def repair_run_folder(run_dir: Path, written: Sequence[str]) -> None:
    """Make ``run_dir`` consistent after an interruption: remove temporary files of the
    interrupted writes of ``written`` (and of figures/), and rewrite ``metrics.csv`` from the
    checkpoint's history if the two came apart. Call it holding the run's lock."""
    remove_stale_temp_files(run_dir, (METRICS, *written))
    remove_stale_temp_files(run_dir / "figures")
    history = metrics_history(run_dir, load_checkpoint(run_dir))
    if metrics_need_repair(run_dir, history):
        write_atomic(run_dir / METRICS, metrics_text(history))


def check_output_folder(out_dir: Path, is_earlier_output: Callable[[Path], bool], command: str, writes: str) -> None:
    """Refuse an ``--out`` of ``command`` that is a file (or lies under one), or a folder holding
    files the command did not write (``is_earlier_output`` recognizes its own earlier output);
    a new folder or an empty one is fine. ``writes`` names what the command puts there."""
    out_dir = Path(out_dir)
    existing = next(p for p in (out_dir, *out_dir.absolute().parents) if p.exists())
    if not existing.is_dir():
        where = "is a file" if existing == out_dir else f"lies under the file {existing}"
        raise PyrovaeError(f"--out {out_dir} {where}; give a folder for {writes}")
    if existing == out_dir and any(out_dir.iterdir()) and not is_earlier_output(out_dir):
        raise PyrovaeError(f"--out {out_dir} holds files '{command}' did not write, which it would replace; "
                           f"give a new folder (it is made) or an empty one")
