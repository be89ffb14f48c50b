"""The run folder ``pyrovae train`` + ``evaluate`` + ``report`` writes, held against a recorded
reference: every file byte for byte, apart from wall-clock timings.

The reference (``tests/data/run_folder_reference.json``) holds a digest per file of a small
quickstart run; timings are masked before digesting (the ``seconds`` column of metrics.csv and
of the report's tables, every ``seconds`` entry of evaluation.json and of the checkpoint, and
the checkpoint hash evaluation.json records, which the checkpoint's seconds change), and so is
the folder the run was made in.
A change that alters what a run folder holds (a new field, another figure) records the
reference again, on purpose and in its own commit:

    PYROVAE_DATA=... python3 tests/test_run_folder_reference.py --record

Figures are compared only under the Matplotlib version that drew the reference (their bytes
depend on its renderer); everything else always.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import matplotlib
import torch

from pyrovae.cli import main

REFERENCE = Path(__file__).resolve().parent / "data" / "run_folder_reference.json"
TRAIN = ["train", "quickstart", "--out", "run", "--quiet", "--set", "data.train_size=300", "--set",
         "model.latent_dim=2", "--set", "train.epochs=2", "--set", "model.encoder.hidden=[32]", "--set",
         "model.decoder.hidden=[32]", "--set", "train.device=cpu"]
EVALUATE = ["evaluate", "run", "--num-samples", "50", "--max-points", "20", "--quiet"]
MASK = "<seconds>"


def _masked(value):
    """``value`` with every ``seconds`` entry of its mappings masked (and the hash of a checkpoint
    an evaluation records: the checkpoint's bytes hold its training seconds), tensors as their bytes."""
    if isinstance(value, dict):
        checkpoint_record = "sha256" in value and "epoch" in value  # an evaluation's record of its checkpoint
        return {str(k): MASK if k == "seconds" or (checkpoint_record and k == "sha256") else _masked(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v) for v in value]
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} {tuple(value.shape)} {hashlib.sha256(value.contiguous().numpy().tobytes()).hexdigest()}"
    return repr(value)


def _masked_tables(text: str) -> str:
    """Markdown with the cells of every ``seconds`` column and row masked."""
    lines, column = text.splitlines(), None
    for i, line in enumerate(lines):
        cells = line.split("|")
        if not line.startswith("|"):
            column = None
            continue
        names = [c.strip() for c in cells]
        if "seconds" in names and column is None and not names[1] == "seconds":
            column = names.index("seconds")
        elif names[1] == "seconds":
            cells[2] = f" {MASK} "
        elif column is not None and not set(line) <= set("|-"):
            cells[column] = f" {MASK} "
        lines[i] = "|".join(cells)
    return "\n".join(lines) + "\n"


def normalized(path: Path, workdir: Path) -> bytes:
    """The bytes of ``path`` with its timings masked and the folder the run was made in left
    out of the paths it names."""
    if path.name == "checkpoint.pt":
        return json.dumps(_masked(torch.load(path, map_location="cpu", weights_only=False)), sort_keys=True).encode()
    if path.suffix not in (".json", ".csv", ".md", ".yaml"):
        return path.read_bytes()
    text = path.read_text().replace(f"{workdir.resolve()}/", "")
    if path.suffix == ".json":
        return json.dumps(_masked(json.loads(text)), sort_keys=True).encode()
    if path.name == "metrics.csv":
        rows = [line.split(",") for line in text.splitlines()]
        column = rows[0].index("seconds")
        return "\n".join(",".join(MASK if i == column and n else c for i, c in enumerate(row))
                         for n, row in enumerate(rows)).encode()
    if path.suffix == ".md":
        return _masked_tables(text).encode()
    return text.encode()


def run_folder_digests(workdir: Path) -> dict:
    """Train, evaluate and report a small quickstart run in ``workdir/run`` (one thread), and
    return a digest of each of its files, timings masked."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for argv in (TRAIN, EVALUATE, ["report", "run"]):
            assert main(argv) == 0, argv
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    folder = workdir / "run"
    return {str(p.relative_to(folder)): hashlib.sha256(normalized(p, workdir)).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_train_evaluate_report_folder_equals_the_reference(tmp_path):
    reference = json.loads(REFERENCE.read_text())
    digests = run_folder_digests(tmp_path)
    same_renderer = reference["matplotlib"] == matplotlib.__version__
    expected = {k: v for k, v in reference["files"].items() if same_renderer or not k.endswith(".png")}
    got = {k: v for k, v in digests.items() if same_renderer or not k.endswith(".png")}
    assert sorted(digests) == sorted(reference["files"])  # the same files, figures included
    assert got == expected


def test_masking_keeps_everything_but_timings():
    table = "| epoch | train ELBO | seconds |\n|---|---|---|\n| 1 | -208.95 | 38.9 |\n\nText 38.9\n"
    assert _masked_tables(table) == f"| epoch | train ELBO | seconds |\n|---|---|---|\n| 1 | -208.95 | {MASK} |\n\nText 38.9\n"
    assert _masked_tables("| seconds | 2.7 |\n") == f"| seconds | {MASK} |\n"
    assert _masked({"seconds": 1.0, "epoch": 2, "metrics": [{"seconds": 3}]}) == \
        {"seconds": MASK, "epoch": "2", "metrics": [{"seconds": MASK}]}
    assert _masked({"checkpoint": {"epoch": 2, "sha256": "ab"}, "sha256": "cd"}) == \
        {"checkpoint": {"epoch": "2", "sha256": MASK}, "sha256": "'cd'"}


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        files = run_folder_digests(Path(scratch))
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps({"matplotlib": matplotlib.__version__, "files": files}, indent=1) + "\n")
    print(f"recorded {REFERENCE}: {len(files)} files")
