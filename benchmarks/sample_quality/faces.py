"""Record a face VAE trained from the command line, for docs/sample_quality.md: what it took
(``results/faces.json``) and small figures of it (``results/faces/*.png``).

    python3 benchmarks/sample_quality/faces.py RUN [--cpu-seconds S]

RUN is a run folder of ``pyrovae train celeba_conv --set data.path=FOLDER ...`` (for instance the
Frey Face images written out by ``frey_folder.py``). Recorded: the overrides that turn the
built-in ``celeba_conv`` config into the run's (the single equivalent command), the epochs,
optimizer steps and training seconds of ``metrics.csv``, the best validation ELBO, and the CPU
seconds of training when given (``/usr/bin/time`` reports them; the machine is shared, so wall
time says little) and a note on how it was trained (in sittings, say). The figures are those of
``pyrovae sample``, ``reconstruct`` and ``interpolate`` on the run, with few images each so that
they stay small.
"""

import argparse
import csv
import json
import shutil
import tempfile
from pathlib import Path

import yaml

import pyrovae
from pyrovae.spec import differing_keys, override_text

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BASE = "celeba_conv"
UNRECORDED = ("train.progress",)  # settings of how a run was watched, not of what it learnt


def overrides(config: dict, base: dict) -> list:
    """``key=value`` overrides (dotted keys, values as YAML) that turn ``base`` into ``config``."""
    return [f"{key}={override_text(value)}" for key, _, value in differing_keys(base, config) if key not in UNRECORDED]


def record(run: Path, cpu_seconds=None, points=(0, 1, 2), note=None) -> dict:
    """faces.json's content for the run folder ``run`` (``points``: the test images the
    interpolation passes through); its figures drawn into results/faces/."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    base = pyrovae.load_config(BASE).to_dict()
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    figures = RESULTS / "faces"
    figures.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        pyrovae.sample(run, n=24, out=scratch, device="cpu")
        pyrovae.reconstruct(run, n=8, out=scratch, device="cpu")
        pyrovae.interpolate(run, points=list(points), steps=8, out=scratch, device="cpu")
        drawn = {"samples.png": "samples.png", "reconstructions.png": "reconstructions_test.png",
                 "interpolation.png": "interpolation_test.png"}
        for name, made in drawn.items():
            shutil.copyfile(Path(scratch) / made, figures / name)
    settings = overrides(config, base)
    best = max(rows, key=lambda r: float(r["valid_elbo"]))  # the parameters the run keeps
    return {"config": BASE, "overrides": settings,
            "command": f"pyrovae train {BASE} " + " ".join(f"--set {s}" for s in settings),
            "epochs": int(rows[-1]["epoch"]), "steps": int(rows[-1]["step"]),
            "train_seconds": float(rows[-1]["seconds"]), "cpu_seconds": cpu_seconds,
            "best_valid_elbo": float(best["valid_elbo"]), "best_epoch": int(best["epoch"]),
            "images": {split: n for split, n in zip(("train", "valid", "test"), _split_sizes(config))},
            "interpolation_points": list(points), "note": note, "figures": list(drawn)}


def _split_sizes(config: dict) -> list:
    from pyrovae.components.datasets import load_data

    data = load_data(pyrovae.load_config(config).data)
    return [len(data.train), len(data.valid), len(data.test)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the run folder")
    parser.add_argument("--cpu-seconds", type=float, help="the CPU seconds training took (as /usr/bin/time says)")
    parser.add_argument("--points", default="0,1,2", help="test images the interpolation passes through, e.g. 0,7,5")
    parser.add_argument("--note", help="how the run was trained, where the command alone does not say it")
    args = parser.parse_args()
    result = record(args.run, args.cpu_seconds, [int(p) for p in args.points.split(",")], args.note)
    (RESULTS / "faces.json").write_text(json.dumps(result, indent=2) + "\n")
    print(result["command"])


if __name__ == "__main__":
    main()
