"""Fault injection: a run folder survives kills, full disks, read-only folders and damaged
data files with one-line errors (exit status 2) and files that stay valid and consistent.

Kills happen in a child process (``fault_driver.py``) that SIGKILLs itself at a chosen
point: before an SVI step, inside the write of a file (part of its temporary file
written), or between the renames of files written together. The killed run is then
resumed and compared bit for bit with an uninterrupted run. Disk faults are simulated by
making the one function that writes temporary files raise the operating system's error.
"""

import errno
import gzip
import json
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_overrides

import pyrovae.runs.files as files
from pyrovae import load_config
from pyrovae.cli import main
from pyrovae.runs.checkpoint import load_checkpoint
from pyrovae.runs.csvlog import read_rows
from pyrovae.runs.folder import METRIC_COLUMNS

DRIVER = Path(__file__).with_name("fault_driver.py")
REPO = Path(__file__).resolve().parents[1]
EPOCHS = 3
TINY = tiny_overrides(**{"train.epochs": EPOCHS})
STEPS_PER_EPOCH = 5  # 500 training points in minibatches of 100


def _set(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


def _train_argv(run, *extra):
    return ["train", "quickstart", "--out", str(run), "--quiet", *_set(TINY), *extra]


def run_cli(argv, capsys):
    """``pyrovae ARGV`` in this process: (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, err, *fragments):
    assert status == 2, err
    assert err.startswith("pyrovae: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


def folder_problems(run: Path, after_kill: bool = False) -> list:
    """Every way the files in ``run`` are damaged or disagree, as sentences (none: valid).

    After a kill, temporary files of the interrupted write and a ``metrics.csv`` one epoch
    behind the checkpoint (a kill between their renames) are expected: the next command
    removes and repairs them."""
    problems = []
    temps = [p for p in run.rglob(".*.tmp")]
    if temps and not after_kill:
        problems.append(f"temporary files left: {temps}")
    if (run / "config.yaml").exists():
        load_config(run)  # raises if damaged
    state = load_checkpoint(run) if (run / "checkpoint.pt").exists() else None
    epochs = state["epoch"] if state else 0
    if (run / "metrics.csv").exists():
        rows = read_rows(run / "metrics.csv")
        if rows and list(rows[0]) != METRIC_COLUMNS:
            problems.append("metrics.csv has the wrong columns")
        listed = [int(r["epoch"]) for r in rows]
        if listed != list(range(1, len(listed) + 1)):
            problems.append(f"metrics.csv lists epochs {listed}")
        behind = after_kill and len(listed) == epochs - 1
        if len(listed) != epochs and not behind:
            problems.append(f"metrics.csv ends at epoch {len(listed)}, the checkpoint at {epochs}")
        if state is not None and "metrics" in state and not behind:
            if [int(r["epoch"]) for r in state["metrics"]] != listed:
                problems.append("metrics.csv differs from the checkpoint's history")
    elif state is not None and not after_kill:
        problems.append("a checkpoint without metrics.csv")
    if (run / "evaluation.json").exists():
        assert isinstance(json.loads((run / "evaluation.json").read_text()), dict)
    if (run / "report.md").exists():
        text = (run / "report.md").read_text()
        if text.count("<!-- section:") != text.count("<!-- end:"):
            problems.append("report.md has an unfinished section")
    for figure in (run / "figures").glob("*.png") if (run / "figures").exists() else []:
        data = figure.read_bytes()
        if not (data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")):
            problems.append(f"{figure.name} is not a complete PNG")
    return problems


def same_training(a: Path, b: Path) -> bool:
    """Whether two run folders hold bit-identical training states and metrics (but time)."""
    sa, sb = load_checkpoint(a), load_checkpoint(b)
    if sa["epoch"] != sb["epoch"] or sa["step"] != sb["step"]:
        return False
    for key in ("model", "best_model"):
        if any(not torch.equal(sa[key][k], sb[key][k]) for k in sa[key]):
            return False
    if not torch.equal(sa["rng"], sb["rng"]) or repr(sa["optim"]) != repr(sb["optim"]):
        return False
    rows = [[{k: v for k, v in r.items() if k != "seconds"} for r in read_rows(run / "metrics.csv")] for run in (a, b)]
    return rows[0] == rows[1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread):
    """An uninterrupted run of the configuration every kill trial interrupts."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(_train_argv(run)) == 0
    return run


def kill_then_resume(point: str, run: Path, capsys) -> dict:
    """Train in a child process killed at ``point``, check what it left, resume here."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.run([sys.executable, str(DRIVER), point, *_train_argv(run)], env=env,
                           capture_output=True, text=True)
    assert child.returncode == -9, f"not killed at {point}: {child.returncode} {child.stderr[-2000:]}"
    problems = folder_problems(run, after_kill=True) if run.exists() else []
    status, _, err = run_cli(["train", run, "--resume", "--quiet"], capsys)
    then = "resumed"
    if status == 2 and "nothing to resume" in err:  # killed before the folder held a config
        status, _, err = run_cli(_train_argv(run), capsys)
        then = "started again"
    elif status == 2 and f"has already trained {EPOCHS} of {EPOCHS} epochs" in err:  # killed in the report
        status, _, err = run_cli(["report", run], capsys)
        then = "reported"
    assert status == 0, err
    return {"problems": problems, "then": then, "after": folder_problems(run)}


# ----------------------------------------------------------------------------- kills during training

@pytest.mark.parametrize("point", ["write:checkpoint.pt:2:4096", "step:8"])
def test_a_killed_run_resumes_bit_identically(point, reference, tmp_path, capsys, one_thread):
    outcome = kill_then_resume(point, tmp_path / "run", capsys)
    assert outcome["problems"] == [] and outcome["after"] == [] and outcome["then"] == "resumed"
    assert same_training(reference, tmp_path / "run")


def test_a_kill_while_the_input_hashes_are_written_leaves_no_temporary_file(reference, tmp_path, capsys, one_thread):
    """inputs.json is written with the first epoch's files: its leftover is removed like theirs."""
    outcome = kill_then_resume("write:inputs.json:1:20", tmp_path / "run", capsys)
    assert outcome["problems"] == [] and outcome["after"] == []
    assert same_training(reference, tmp_path / "run")


def kill_points(seed: int, count: int) -> list:
    """Random kill points over a whole training run: SVI steps, byte offsets inside every
    file's writes, and the moments between the renames of files written together."""
    rng = random.Random(seed)
    kinds = [lambda: f"step:{rng.randint(1, EPOCHS * STEPS_PER_EPOCH)}",
             lambda: f"write:checkpoint.pt:{rng.randint(1, EPOCHS)}:{rng.choice([0, 1, 4096, 100000, -1])}",
             lambda: f"write:metrics.csv:{rng.randint(1, EPOCHS + 1)}:{rng.choice([0, 20, -1])}",
             lambda: f"write:config.yaml:1:{rng.choice([0, 100, -1])}",
             lambda: f"replace:checkpoint.pt:{rng.randint(1, EPOCHS)}",
             lambda: f"write:report.md:1:{rng.choice([0, 200, -1])}",
             lambda: f"write:samples.png:1:{rng.choice([0, 500, -1])}"]
    return [rng.choice(kinds)() for _ in range(count)]


@pytest.mark.slow
def test_kills_at_random_points_of_training_resume_bit_identically(reference, tmp_path, capsys, one_thread):
    outcomes = []
    for i, point in enumerate(kill_points(seed=13, count=24)):
        run = tmp_path / f"run{i}"
        outcome = kill_then_resume(point, run, capsys)
        outcomes.append({"point": point, **outcome, "identical": same_training(reference, run)})
    with capsys.disabled():
        print("\n" + "\n".join(json.dumps(o) for o in outcomes))
    assert all(o["problems"] == [] and o["after"] == [] and o["identical"] for o in outcomes), outcomes
    assert any(o["then"] == "resumed" for o in outcomes)  # not only kills before the first or after the last epoch


def test_a_run_killed_while_writing_its_report_gets_one_from_pyrovae_report(reference, tmp_path, capsys, one_thread):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.run([sys.executable, str(DRIVER), "write:report.md:1:300", *_train_argv(run)], env=env,
                           capture_output=True, text=True)
    assert child.returncode == -9
    assert not (run / "report.md").exists() and folder_problems(run, after_kill=True) == []
    assert same_training(reference, run)  # training had finished
    status, out, err = run_cli(["report", run], capsys)
    assert status == 0, err
    assert "## Training" in (run / "report.md").read_text() and folder_problems(run) == []
    assert {p.name for p in (run / "figures").iterdir()} == {"training_curves.png", "reconstructions.png",
                                                             "samples.png", "latent_space.png"}


def test_pyrovae_report_repairs_metrics_left_behind_the_checkpoint(reference, tmp_path, capsys):
    run = tmp_path / "run"
    os.system(f"cp -r {reference} {run}")
    rows = (run / "metrics.csv").read_text().splitlines()
    (run / "metrics.csv").write_text("\n".join(rows[:-1]) + "\n")  # as a kill between the renames leaves it
    (run / ".metrics.csv.abc123.tmp").write_text("partial")
    (run / "report.md").unlink()
    assert folder_problems(run) != []
    status, _, err = run_cli(["report", run], capsys)
    assert status == 0, err
    assert folder_problems(run) == [] and same_training(reference, run)


# ----------------------------------------------------------------------------- kills during evaluation

def test_a_kill_inside_the_evaluation_write_loses_no_earlier_result(reference, tmp_path, capsys):
    run = tmp_path / "run"
    os.system(f"cp -r {reference} {run}")
    evaluate = ["evaluate", run, "--num-samples", "20", "--max-points", "30", "--quiet"]
    assert run_cli([*evaluate, "--split", "valid"], capsys)[0] == 0
    before = (run / "evaluation.json").read_text()
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.run([sys.executable, str(DRIVER), "write:evaluation.json:1:4096", *map(str, evaluate)],
                           env=env, capture_output=True, text=True)
    assert child.returncode == -9
    assert (run / "evaluation.json").read_text() == before  # the valid split's results are whole
    assert folder_problems(run, after_kill=True) == []
    assert run_cli(evaluate, capsys)[0] == 0
    assert set(json.loads((run / "evaluation.json").read_text())) == {"valid", "test"}
    assert run_cli(["report", run], capsys)[0] == 0 and folder_problems(run) == []


def evaluation_kill_points(seed: int, count: int) -> list:
    rng = random.Random(seed)
    kinds = [lambda: f"write:evaluation.json:1:{rng.choice([0, 1, 4096, -1])}",
             lambda: "replace:evaluation.json:1",
             lambda: f"write:bounds_vs_k_test.png:1:{rng.choice([0, 1000, -1])}",
             lambda: f"write:report.md:1:{rng.choice([0, 500, -1])}"]
    return [rng.choice(kinds)() for _ in range(count)]


@pytest.mark.slow
def test_kills_at_random_points_of_evaluation_lose_no_result(reference, tmp_path, capsys):
    evaluate = ["--num-samples", "20", "--max-points", "30", "--quiet"]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for i, point in enumerate(evaluation_kill_points(seed=7, count=8)):
        run = tmp_path / f"run{i}"
        os.system(f"cp -r {reference} {run}")
        assert run_cli(["evaluate", run, "--split", "valid", *evaluate], capsys)[0] == 0
        valid = json.loads((run / "evaluation.json").read_text())["valid"]
        child = subprocess.run([sys.executable, str(DRIVER), point, "evaluate", str(run), *evaluate], env=env,
                               capture_output=True, text=True)
        assert child.returncode == -9, (point, child.stderr[-2000:])
        assert folder_problems(run, after_kill=True) == [], point
        assert json.loads((run / "evaluation.json").read_text())["valid"] == valid, point
        assert run_cli(["report", run], capsys)[0] == 0 and folder_problems(run) == [], point


# ----------------------------------------------------------------------------- full disk, read-only folder

def failing_writes(monkeypatch, code: int, name: str = None, after: int = 0):
    """Make the writes of temporary files (of files called ``name``, after ``after`` of
    them succeeded) fail as the operating system fails them with ``code``."""
    write_temp, calls = files._write_temp, []

    def write(fd, data, target):
        if name is None or target.name == name:
            calls.append(target)
            if len(calls) > after:
                os.write(fd, bytes(data[:100]))  # a full disk takes part of a write
                raise OSError(code, os.strerror(code))
        write_temp(fd, data, target)

    monkeypatch.setattr(files, "_write_temp", write)


def read_only_folder(monkeypatch):
    """No file can be created (as in a folder on a read-only file system)."""
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)


def test_a_full_disk_in_epoch_two_keeps_epoch_one_and_resumes_exactly(reference, tmp_path, capsys, monkeypatch,
                                                                         one_thread):
    run = tmp_path / "run"
    failing_writes(monkeypatch, errno.ENOSPC, "checkpoint.pt", after=1)
    status, _, err = run_cli(_train_argv(run), capsys)
    assert_one_line_error(status, err, "No space left on device", "the disk is full",
                          "the last good checkpoint (epoch 1) is kept", "continue with --resume")
    assert folder_problems(run) == [] and load_checkpoint(run)["epoch"] == 1
    monkeypatch.undo()
    assert run_cli(["train", run, "--resume", "--quiet"], capsys)[0] == 0
    assert same_training(reference, run)


def test_a_full_disk_in_the_first_epoch_says_no_checkpoint_exists(tmp_path, capsys, monkeypatch, one_thread):
    run = tmp_path / "run"
    failing_writes(monkeypatch, errno.ENOSPC, "checkpoint.pt")
    status, _, err = run_cli(_train_argv(run), capsys)
    assert_one_line_error(status, err, "the disk is full", "no epoch had finished, so no checkpoint was written")
    assert folder_problems(run) == [] and not (run / "checkpoint.pt").exists()


@pytest.mark.parametrize("resume", [False, True])
def test_training_into_a_read_only_folder_is_refused_before_any_work(reference, tmp_path, capsys, monkeypatch,
                                                                     resume):
    run = tmp_path / "run"
    if resume:
        os.system(f"cp -r {reference} {run}")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} if resume else {}
    read_only_folder(monkeypatch)
    argv = ["train", run, "--resume", "--quiet", "--set", "train.epochs=5"] if resume else _train_argv(run)
    status, _, err = run_cli(argv, capsys)
    assert_one_line_error(status, err, "Read-only file system", "use a writable folder")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_no_permission_for_the_lock_is_one_line(tmp_path, capsys, monkeypatch):
    real_open = open

    def no_permission(path, *args, **kwargs):
        if str(path).endswith("train.lock"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_permission)
    status, _, err = run_cli(_train_argv(tmp_path / "run"), capsys)
    assert_one_line_error(status, err, "Permission denied", "train.lock")


@pytest.mark.parametrize("code,hint", [(errno.EROFS, "read-only"), (errno.ENOSPC, "disk is full"),
                                       (errno.EACCES, "no permission")])
def test_evaluate_prints_its_results_when_it_cannot_save_them(reference, tmp_path, capsys, monkeypatch, code, hint):
    run = tmp_path / "run"
    os.system(f"cp -r {reference} {run}")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    failing_writes(monkeypatch, code)
    status, out, err = run_cli(["evaluate", run, "--num-samples", "20", "--max-points", "30", "--quiet"], capsys)
    assert_one_line_error(status, err, "cannot write", hint, "the results are kept in memory")
    assert "log p(x), importance sampled (K = 20)" in out
    full = json.loads(out[out.index("{"):])
    assert full["num_points"] == 30 and full["split"] == "test"
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_report_on_a_read_only_folder_is_one_line_and_changes_nothing(reference, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    os.system(f"cp -r {reference} {run}")
    before = (run / "report.md").read_bytes()
    failing_writes(monkeypatch, errno.EROFS)
    status, _, err = run_cli(["report", run], capsys)
    assert_one_line_error(status, err, "cannot write", "read-only")
    assert (run / "report.md").read_bytes() == before and folder_problems(run) == []


# ----------------------------------------------------------------------------- damaged data files

def _amat_lines(split: str, count: int) -> list:
    with gzip.open(Path(os.environ["PYROVAE_DATA"]) / "binarized_mnist" / f"binarized_mnist_{split}.amat.gz") as f:
        return [f.readline() for _ in range(count)]


def _data_root(tmp_path: Path, train: bytes, name: str = "binarized_mnist_train.amat") -> Path:
    """A data root whose valid and test files are real and whose training file is ``train``."""
    folder = tmp_path / "data" / "binarized_mnist"
    folder.mkdir(parents=True)
    for split in ("valid", "test"):
        (folder / f"binarized_mnist_{split}.amat").write_bytes(b"".join(_amat_lines(split, 20)))
    (folder / name).write_bytes(train)
    return tmp_path / "data"


def _ragged(lines):
    shorter = lines[1][:-3] + b"\n"  # 783 values
    longer = lines[2][:-1] + b" 1\n"  # 785 values
    return b"".join([lines[0], shorter, longer, *lines[3:]])


def _with_nan(lines):
    return b"".join([lines[0], lines[1].replace(b"0 ", b"nan ", 1), *lines[2:]])


DAMAGED_FILES = {
    "ragged rows": (lambda lines: _ragged(lines), "binarized_mnist_train.amat", "image 2 has 783 values"),
    "NaN pixels": (_with_nan, "binarized_mnist_train.amat", "line 2 holds something other than 0 and 1 values"),
    "truncated gzip": (lambda lines: gzip.compress(b"".join(lines))[:-50], "binarized_mnist_train.amat.gz",
                       "is a damaged gzip file"),
    "corrupt gzip": (lambda lines: gzip.compress(b"".join(lines))[:40] + b"\x00" * 200,
                     "binarized_mnist_train.amat.gz", "is a damaged gzip file"),
    "not gzip at all": (lambda lines: b"".join(lines), "binarized_mnist_train.amat.gz", "is a damaged gzip file"),
    "empty": (lambda lines: b"", "binarized_mnist_train.amat", "no images"),
}


@pytest.mark.parametrize("case", DAMAGED_FILES)
def test_a_damaged_data_file_is_one_line_and_leaves_a_valid_folder(case, tmp_path, capsys):
    damage, name, message = DAMAGED_FILES[case]
    root = _data_root(tmp_path, damage(_amat_lines("train", 20)), name)
    run = tmp_path / "run"
    status, _, err = run_cli(_train_argv(run, "--set", f"data.root={root}"), capsys)
    assert_one_line_error(status, err, message, "fetch it again")
    assert folder_problems(run) == [] and not (run / "config.yaml").exists()


def _idx(magic: int, shape, values: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape) + values


@pytest.mark.parametrize("content,message", [
    (_idx(0x0803, (2, 28, 28), bytes(2 * 784)), None),  # valid: the error names the next file
    (_idx(0x0D03, (2, 28, 28), bytes(2 * 784)), "wrong header"),  # floats, not unsigned bytes
    (_idx(0x0803, (5, 28, 28), bytes(2 * 784)), "is truncated"),
    (b"\x00\x00", "only 2 bytes"),
])
def test_damaged_idx_files_are_one_line(content, message, tmp_path, capsys):
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    (folder / "train-images-idx3-ubyte").write_bytes(content)
    status, _, err = run_cli(_train_argv(tmp_path / "run", "--set", "data.name=mnist", "--set",
                                         f"data.root={tmp_path / 'data'}", "--set", "data.binarize=static"), capsys)
    assert_one_line_error(status, err, message or "train-labels-idx1-ubyte[.gz] not found")


def test_nan_pixels_in_a_frey_faces_file_are_one_line(tmp_path, capsys):
    from scipy.io import savemat

    faces = np.random.default_rng(0).integers(0, 256, (560, 600)).astype(np.float64)
    faces[17, 412] = np.nan
    (tmp_path / "data" / "frey_faces").mkdir(parents=True)
    savemat(tmp_path / "data" / "frey_faces" / "frey_rawface.mat", {"ff": faces})
    status, _, err = run_cli(_train_argv(tmp_path / "run", "--set", "data.name=frey_faces", "--set",
                                         f"data.root={tmp_path / 'data'}", "--set", "model.likelihood.name=gaussian"),
                             capsys)
    assert_one_line_error(status, err, "holds NaN or infinite values", "1 in all")


# ----------------------------------------------------------------------------- mistakes around run folders

def _copy(reference, run):
    os.system(f"cp -r {reference} {run}")
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def _files(run):
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def test_a_refused_resume_leaves_the_config_as_it_was(reference, tmp_path, capsys):
    run = tmp_path / "run"
    before = _copy(reference, run)
    status, _, err = run_cli(["train", run, "--resume", "--set", "train.epochs=5", "--set", "model.latent_dim=5"],
                             capsys)
    assert_one_line_error(status, err, "does not match the config")
    assert _files(run) == before
    assert run_cli(["train", run, "--resume", "--quiet", "--set", "train.epochs=4"], capsys)[0] == 0  # still resumable
    assert load_config(run).train.epochs == 4 and folder_problems(run) == []


def test_a_diverging_resume_leaves_the_config_as_it_was(reference, tmp_path, capsys):
    run = tmp_path / "run"
    before = _copy(reference, run)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        status, _, err = run_cli(["train", run, "--resume", "--quiet", "--set", "train.epochs=5",
                                  "--set", "train.optimizer.lr=1e9"], capsys)
    assert_one_line_error(status, err, "the loss became", f"the last good checkpoint (epoch {EPOCHS}) is kept")
    assert not [w for w in shown if "Encountered" in str(w.message)]  # Pyro's NaN warning would be a second line
    assert _files(run) == before and folder_problems(run) == []


def test_a_nan_in_the_first_epoch_does_not_claim_a_checkpoint(tmp_path, capsys, monkeypatch):
    from pyro.infer import SVI

    monkeypatch.setattr(SVI, "step", lambda self, *args: float("nan"))
    run = tmp_path / "run"
    status, _, err = run_cli(_train_argv(run), capsys)
    assert_one_line_error(status, err, "the loss became nan at epoch 1, step 1",
                          "no epoch had finished, so no checkpoint was written")
    assert "is kept" not in err and folder_problems(run) == [] and not (run / "checkpoint.pt").exists()


def test_variance_on_a_folder_without_a_checkpoint_is_refused(reference, tmp_path, capsys):
    run = tmp_path / "run"
    _copy(reference, run)
    (run / "checkpoint.pt").unlink()
    status, _, err = run_cli(["variance", run, "--draws", "2", "--quiet"], capsys)
    assert_one_line_error(status, err, "without checkpoint.pt, so there is no trained model to measure")
    assert not (tmp_path / "runs").exists() and not (run / "variance.json").exists()


def test_out_naming_a_file_or_a_folder_with_someone_elses_config_is_refused(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    status, _, err = run_cli(_train_argv(a_file), capsys)
    assert_one_line_error(status, err, "is a file, not a folder")
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text("my: own config\n")
    status, _, err = run_cli(_train_argv(project), capsys)
    assert_one_line_error(status, err, "holds a config.yaml that is not a run's")
    assert (project / "config.yaml").read_text() == "my: own config\n" and a_file.read_text() == "mine"
    assert {p.name for p in project.iterdir()} == {"config.yaml"}


def test_resuming_what_holds_no_run_says_how_to_start_one(tmp_path, capsys):
    status, _, err = run_cli(["train", tmp_path / "never", "--resume"], capsys)
    assert_one_line_error(status, err, "no run folder", "start it with 'pyrovae train CONFIG --out")
    stopped = tmp_path / "stopped"  # killed after taking the lock, before writing anything
    stopped.mkdir()
    (stopped / "train.lock").touch()
    status, _, err = run_cli(["train", stopped, "--resume"], capsys)
    assert_one_line_error(status, err, "was stopped before it held a config or a checkpoint", "nothing to resume")
    (tmp_path / "notes.txt").touch()
    status, _, err = run_cli(["train", tmp_path / "notes.txt", "--resume"], capsys)
    assert_one_line_error(status, err, "is a file, not a run folder")


def test_a_run_stopped_in_its_first_epoch_starts_again_without_leftover_rows(reference, tmp_path, capsys, one_thread):
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.lock").touch()
    (run / "config.yaml").write_bytes((reference / "config.yaml").read_bytes())
    (run / "metrics.csv").write_text(",".join(METRIC_COLUMNS) + "\n1,5,1.0,0.001,-300,-300,1.0\n")  # no checkpoint
    assert run_cli(["train", run, "--resume", "--quiet"], capsys)[0] == 0
    assert [r["epoch"] for r in read_rows(run / "metrics.csv")] == ["1", "2", "3"]
    assert same_training(reference, run) and folder_problems(run) == []


def test_a_gaussian_likelihood_on_binary_data_is_warned_about(tmp_path, capsys):
    status, _, err = run_cli(_train_argv(tmp_path / "run", "--set", "model.likelihood.name=gaussian",
                                         "--set", "train.epochs=1"), capsys)
    assert status == 0
    assert err.startswith("pyrovae: warning: the training data are binary") and err.count("\n") == 1
    assert "likelihood 'gaussian'" in err and "model.likelihood.name=bernoulli" in err


@pytest.mark.parametrize("override,message", [
    ("train.epochs=0", "train.epochs must be a positive integer, got 0"),
    ("data.binarize=yes", "must be one of none, static, dynamic, got True (YAML reads unquoted yes"),
    ("train.optimizer.lr=-1", "train.optimizer.lr must be a number >= 0"),
    ("model.encoder.hidden=abc", "model.encoder.hidden must be a list like [500], got 'abc'"),
    ("model.encoder.hidden=[32, x]", "model.encoder.hidden must be an integer, got 'x'"),
    ("model.decoder.hidden=[0]", "must be a list of positive sizes"),
    ("train.kl_warmup_epochs=.nan", "must be a finite number"),
])
def test_bad_config_values_are_refused_before_a_folder_is_made(override, message, tmp_path, capsys):
    status, _, err = run_cli(_train_argv(tmp_path / "run", "--set", override), capsys)
    assert_one_line_error(status, err, message)
    assert not (tmp_path / "run").exists()
