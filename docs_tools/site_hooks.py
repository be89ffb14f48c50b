"""MkDocs hooks that make the site's figures and numbers at build time, write the API
reference page and ship MathJax.

Every chapter script ``examples/course/ch*.py`` and every results report
``benchmarks/<name>/report.py`` (which draws figures from the measured results committed in
``benchmarks/<name>/results/``: the quality reproductions, the paper's figures, the sweeps
page) is run before the pages are read, each writing its figures and
a ``numbers.md`` of measured values into ``<cache>/generated/<name>/`` (:func:`output_name`). The pages
include those numbers with ``pymdownx.snippets`` and link the figures as
``generated/<name>/<figure>.png`` (from the site's root); the figures join the site's files,
so a strict build fails on a missing figure, a missing snippet or a script that fails.

A script is run again only when what it depends on changed since its outputs were written (a
digest of those files is kept beside them): for a chapter, its own source and every module it
imports, followed through ``examples/course/`` and ``pyrovae/`` (:func:`dependencies`), with the
package's configs; for a results report, its ``results/`` and ``pyrovae/reports/``. Editing one
module of the package reruns only the chapters that import it, and ``mkdocs serve`` rebuilds
quickly. Trained models are cached by the scripts themselves under ``<cache>/models``.

Every chapter is also a Jupyter notebook, ``notebooks/<script>.ipynb``, made from its script
(``docs_tools/notebooks.py``) and linked under the page's title.

A quick build is labelled: every page starts with a banner saying so (:func:`on_page_markdown`),
and the chapter scripts mark every figure they draw at quick settings.

Search works from the file system too: the theme's ``offline`` plugin inlines the search index,
and :func:`on_config` replaces the worker shim it would fetch from the network by the site's own
``javascripts/file-worker.js``.

Environment:

* ``PYROVAE_COURSE_CACHE``: the cache folder (default ``.cache/course`` in the repository,
  ignored by git).
* ``PYROVAE_COURSE_QUICK=1``: run the scripts with ``--quick`` (their smallest settings,
  seconds each) into ``<cache>/quick/``: for the tests that check the site machinery.
* ``PYROVAE_COURSE_RUN=0``: run no script, use the figures and numbers already generated
  (to preview an edit of the prose; a strict build still fails on anything missing).

MathJax is copied from the installed ``django-static-mathjax`` wheel (MathJax 3.2.2, the
``docs`` extra) into ``site/assets/mathjax/``, so formulas render offline.
"""

import ast
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebooks import notebook_text  # noqa: E402  (docs_tools/ is not a package)

log = logging.getLogger("mkdocs.hooks.course")

ROOT = Path(__file__).resolve().parents[1]
COURSE_SCRIPTS = ROOT / "examples" / "course"
GENERATED_URI = "generated"  # where the pages find the figures in the site
RESULTS_REPORTS = ROOT / "benchmarks"  # <name>/report.py --out DIR draws figures from <name>/results/
MATHJAX_URI = "assets/mathjax"
API_PAGE = "api.md"
MATHJAX_PARTS = ("tex-chtml.js", "input", "output", "ui", "a11y")  # what tex-chtml loads on demand
DIGEST_FILE = ".digest"
WORKERS = 2  # the scripts use one torch thread each

_state = {}


def cache_folder() -> Path:
    base = Path(os.environ.get("PYROVAE_COURSE_CACHE", ROOT / ".cache" / "course"))
    return base / "quick" if quick() else base


def quick() -> bool:
    return os.environ.get("PYROVAE_COURSE_QUICK", "") not in ("", "0")


# The order the chapters start in, two at a time: the longest first, and the chapters that
# reuse another chapter's model (5 and 6 use chapter 4's) after it, so that neither worker
# waits idle at the end (measured CPU seconds of a first full build in docs/site.md). Every
# chapter is listed (a test checks it): one left out would start last.
CHAPTER_ORDER = ("ch4", "ch8", "ch6", "ch2", "ch7", "ch5", "ch9", "ch3", "ch1")


def figure_scripts():
    """Every script whose figures the site shows: the course chapters (in CHAPTER_ORDER) and
    the results reports."""
    def rank(script):
        prefix = script.stem.split("_")[0]
        return (CHAPTER_ORDER.index(prefix) if prefix in CHAPTER_ORDER else len(CHAPTER_ORDER), script.stem)

    return sorted(COURSE_SCRIPTS.glob("ch*.py"), key=rank) + results_reports()


def results_reports():
    """The scripts that draw figures from committed results: ``benchmarks/*/report.py``."""
    return sorted(RESULTS_REPORTS.glob("*/report.py"))


def _module_file(name: str):
    """The file of a module of the package or of the course (``_course``, ``ch4_...``), or None."""
    parts = name.split(".")
    base = ROOT if parts[0] == "pyrovae" else COURSE_SCRIPTS
    for candidate in (base.joinpath(*parts).with_suffix(".py"), base.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path):
    """The modules that ``path`` imports, absolute names (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1] if path.name != "__init__.py"
                       else path.relative_to(ROOT).parent.parts) if path.is_relative_to(ROOT / "pyrovae") else ""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]  # a submodule imported by name
    return names


def dependencies(script: Path):
    """Every file of the course and the package that ``script`` imports, directly or through
    the modules it imports. A module imported by name pulls in its own file only, not its
    package's ``__init__`` (whose imports re-export; a chapter that imports from the package's
    top level depends on what that imports)."""
    seen, todo = set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            found = _module_file(name) if name.split(".")[0] in ("pyrovae", *COURSE_MODULES) else None
            if found is not None and found not in seen:
                todo.append(found)
    return sorted(seen)


COURSE_MODULES = tuple(p.stem for p in COURSE_SCRIPTS.glob("*.py"))


def _inputs(script: Path):
    if script.parent.parent == RESULTS_REPORTS:
        results = sorted(p for p in (script.parent / "results").rglob("*") if p.is_file())
        return [script, *results, *sorted((ROOT / "pyrovae" / "reports").glob("*.py"))]
    configs = sorted(p for p in (ROOT / "pyrovae").rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".json"))
    return [*dependencies(script), *configs]


def _digest(script: Path) -> str:
    """What a script's outputs depend on: its source and what it reads (for a chapter the
    modules it imports and the package's configs; for a results report its results)."""
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))  # a chapter may link a page that exists
    h = hashlib.sha256(f"quick={quick()} pages={pages}".encode())
    for path in _inputs(script):
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def output_name(script: Path) -> str:
    """The folder under ``generated/`` of a script's figures: a chapter's file stem, a results
    report's benchmark name (``generated/quality/``)."""
    return script.parent.name if script.parent.parent == RESULTS_REPORTS else script.stem


def _run(script: Path, generated: Path, cache: Path) -> str:
    out = generated / output_name(script)
    digest = _digest(script)
    stamp = out / DIGEST_FILE
    if stamp.is_file() and stamp.read_text() == digest:
        return f"{script.name}: up to date"
    if out.exists():
        shutil.rmtree(out)
    command = [sys.executable, str(script), "--out", str(out)]
    if script.parent.parent != RESULTS_REPORTS:
        command += ["--cache", str(cache / "models")] + (["--quick"] if quick() else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "MPLBACKEND": "Agg"}
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=stderr, text=True)
        _, status, usage = os.wait4(child.pid, 0)  # the child's own CPU time, not the other worker's
        child.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if child.returncode != 0:
            raise PluginError(f"figure script {script.relative_to(ROOT)} failed (exit {child.returncode}):\n"
                              f"{stdout.read()[-3000:]}\n{stderr.read()[-3000:]}")
    stamp.write_text(digest)
    cpu = usage.ru_utime + usage.ru_stime
    _state["cpu"] = _state.get("cpu", 0.0) + cpu
    return f"{script.name}: {time.perf_counter() - started:.0f} s (CPU {cpu:.0f} s)"


FILE_WORKER = "javascripts/file-worker.js"


def on_config(config, **kwargs):
    """Point pymdownx.snippets at the generated numbers (where ``--8<--`` finds them), and give
    the offline plugin the site's own worker shim instead of one fetched from the network."""
    polyfills = [p for p in config["extra"].get("polyfills", []) if "//" not in str(p)]
    config["extra"]["polyfills"] = polyfills + [FILE_WORKER]
    generated = cache_folder() / "generated"
    generated.mkdir(parents=True, exist_ok=True)
    snippets = config["mdx_configs"].setdefault("pymdownx.snippets", {})
    snippets["base_path"] = [str(generated), str(ROOT)]
    _state["generated"] = generated
    return config


def on_pre_build(config, **kwargs):
    """Run the figure scripts, two at a time."""
    if os.environ.get("PYROVAE_COURSE_RUN", "1") == "0":
        log.info("PYROVAE_COURSE_RUN=0: figures and numbers are not regenerated")
        return
    generated, cache = _state["generated"], cache_folder()
    started = time.perf_counter()
    _state["cpu"] = 0.0
    failed = []
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(_run, script, generated, cache) for script in figure_scripts()]
        for future in as_completed(futures):  # each logged when it ends; every failure reported
            try:
                log.info(future.result())
            except PluginError as error:
                failed.append(str(error))
    log.info(f"figure scripts: {time.perf_counter() - started:.0f} s (CPU {_state['cpu']:.0f} s)")
    if failed:
        raise PluginError("\n\n".join(failed))


QUICK_BANNER = """!!! quick-build "Quick build: figures and numbers from the smallest settings"
    This site was built with `PYROVAE_COURSE_QUICK=1`, which runs every chapter at its smallest
    settings (seconds each) to check the machinery. Its models are barely trained: the figures
    (marked in red) and numbers do not show what the text describes, and a claim that holds only
    at full settings is replaced by a note. Build without it for the course as written.

"""


NOTEBOOKS_URI = "notebooks"


def _chapter_script(page):
    """The script of a course chapter's page (``course/4_x.md`` is ``ch4_x.py``), or None."""
    path = Path(page.file.src_uri)
    if path.parent.name != "course" or not path.stem[:1].isdigit():
        return None
    return COURSE_SCRIPTS / f"ch{path.stem}.py"


def on_page_markdown(markdown, page, **kwargs):
    """Start every page of a quick build with a banner that says so, and link a chapter's
    notebook under its title."""
    script = _chapter_script(page)
    if script is not None and script.is_file():
        title, _, rest = markdown.partition("\n")
        markdown = (f"{title}\n\n[This chapter as a Jupyter notebook]"
                    f"(../{NOTEBOOKS_URI}/{script.stem}.ipynb){{ .md-button }} made from "
                    f"`examples/course/{script.name}`, the script that drew this page's figures.\n{rest}")
    return QUICK_BANNER + markdown if quick() else markdown


def on_files(files, config, **kwargs):
    """Add the generated figures to the site's files, under ``generated/``, and the
    API reference page."""
    generated = _state["generated"]
    for path in sorted(generated.rglob("*.png")):
        uri = f"{GENERATED_URI}/{path.relative_to(generated).as_posix()}"
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    files.append(File.generated(config, API_PAGE, content=api_page()))
    for script in sorted(COURSE_SCRIPTS.glob("ch*.py")):
        files.append(File.generated(config, f"{NOTEBOOKS_URI}/{script.stem}.ipynb", content=notebook_text(script)))
    return files


def api_page() -> str:
    """The API reference: every module of the package, as mkdocstrings renders its docstrings.
    Written at build time from the package's files, so a new module appears without an edit."""
    parts = ["# API reference", "",
             "Generated from the docstrings of every module in `pyrovae/` when the site is built.", ""]
    modules = sorted(p for p in (ROOT / "pyrovae").rglob("*.py") if p.name != "__init__.py")
    for path in modules:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        parts += [f"::: {name}", "    options:", "      heading_level: 2", ""]
    return "\n".join(parts)


def on_post_build(config, **kwargs):
    """Copy MathJax from the installed package into the site."""
    try:
        import mathjax  # the django-static-mathjax wheel: MathJax 3 as plain files
    except ImportError:
        raise PluginError("MathJax is missing: install the docs extra (python3 -m pip install -e '.[docs]')") from None
    source = Path(next(iter(mathjax.__path__))) / "static" / "mathjax" / "es5"
    target = Path(config["site_dir"]) / MATHJAX_URI
    for part in MATHJAX_PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / part, target / part)
    shutil.copy2(source.parent / "LICENSE", target / "LICENSE")
