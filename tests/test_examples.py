"""Every script in examples/ runs at its smallest settings (``--quick``), so a script that
rots fails the tests. One test per script, found by listing the folder: a new example is
tested without an edit here. A script is a file that runs as ``__main__``; the plugin
modules in examples/plugins/ are imported by pyrovae, not run, and tests/test_plugins.py
covers them.

The course's chapter scripts are not run here: tests/test_course.py executes each chapter as
its notebook, every cell of the same source, and the site build runs them as scripts.
"""

import ast
import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.rglob("*.py")
                 if not p.name.startswith("_") and 'if __name__ == "__main__":' in p.read_text())
COURSE = EXAMPLES / "course"


def _imports_course_arguments(source: str) -> bool:
    """Whether the script imports ``arguments`` from ``_course`` (which gives it ``--quick``)."""
    return any(isinstance(node, ast.ImportFrom) and node.module == "_course"
               and any(alias.name == "arguments" for alias in node.names) for node in ast.walk(ast.parse(source)))


def test_every_example_takes_the_quick_flag():
    assert SCRIPTS, "no example scripts found"
    for script in SCRIPTS:
        text = script.read_text()  # the course's scripts get the flag from _course.arguments
        assert '"--quick"' in text or _imports_course_arguments(text), f"{script.relative_to(ROOT)} has no --quick flag"


@pytest.mark.parametrize("script", [p for p in SCRIPTS if p.parent != COURSE],
                         ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_runs_at_its_smallest_settings(script, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, str(script), "--quick", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "MPLBACKEND": "Agg"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    figures = list(out.rglob("*.png"))
    assert figures, f"{script.name} wrote no figure into {out}"
    assert all(f.stat().st_size > 1000 for f in figures)


def test_compare_estimators_trains_every_estimator_from_the_same_start(tmp_path):
    """examples/compare_estimators.py at its smallest settings: every estimator asked for gets
    a curve at the evaluation steps, all from the same initial parameters (the same step-0
    ELBO), with finite validation ELBOs and training time that grows with the steps."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(EXAMPLES / "compare_estimators.py"), "--quick", "--out", str(out),
                           "--estimators", "pathwise,score,iwae"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    with open(out / "curves.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    curves = {name: [r for r in rows if r["estimator"] == name] for name in ("pathwise", "score", "iwae")}
    for name, curve in curves.items():
        assert [int(r["step"]) for r in curve] == [0, 2, 4], name
        assert all(math.isfinite(float(r["valid_elbo"])) and float(r["valid_elbo"]) < 0 for r in curve)
        seconds = [float(r["seconds"]) for r in curve]
        assert seconds[0] == 0 and seconds == sorted(seconds) and seconds[-1] > 0
        assert f"{name} " in done.stdout
    assert len({curve[0]["valid_elbo"] for curve in curves.values()}) == 1  # one initialization for all
    assert (out / "compare_estimators.png").stat().st_size > 1000
