"""Every script in examples/ runs at its smallest settings (``--quick``), so a script that
rots fails the tests. One test per script, found by listing the folder: a new example is
tested without an edit here. A script is a file that runs as ``__main__``; the plugin
modules in examples/plugins/ are imported by pyrovae, not run, and tests/test_plugins.py
covers them.

The course's chapter scripts share one model cache for the session, as the site build does,
so chapters that use the same model train it once.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.rglob("*.py")
                 if not p.name.startswith("_") and 'if __name__ == "__main__":' in p.read_text())


@pytest.fixture(scope="session")
def course_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("course-cache")


def test_every_example_takes_the_quick_flag():
    assert SCRIPTS, "no example scripts found"
    for script in SCRIPTS:
        text = script.read_text()  # the course's scripts get the flag from _course.arguments
        assert '"--quick"' in text or "from _course import arguments" in text, \
            f"{script.relative_to(ROOT)} has no --quick flag"


@pytest.mark.parametrize("script", SCRIPTS, ids=[str(p.relative_to(EXAMPLES)) for p in SCRIPTS])
def test_example_runs_at_its_smallest_settings(script, tmp_path, course_cache):
    out = tmp_path / "out"
    command = [sys.executable, str(script), "--quick", "--out", str(out)]
    if script.parent.name == "course":
        command += ["--cache", str(course_cache)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "MPLBACKEND": "Agg"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    figures = list(out.rglob("*.png"))
    assert figures, f"{script.name} wrote no figure into {out}"
    assert all(f.stat().st_size > 1000 for f in figures)
