"""Every course chapter as a Jupyter notebook, made from the chapter's script.

The script stays the one source: :func:`percent_script` rewrites it in jupytext's percent
format (its docstring a Markdown cell, each top-level definition a code cell of its own, the
``if __name__ == "__main__"`` guard replaced by a cell that runs the chapter), and jupytext
turns that into a notebook. A first cell finds the course's helper modules in the
repository, so the notebook runs from ``site/notebooks/`` or from anywhere inside a checkout,
and points it at the checkout's model cache (``PYROVAE_COURSE_CACHE``, default
``.cache/course``), so it loads the models the site build trained; the chapter's ``main()``
returns the objects its exercises use (the trained model, the digits), kept as ``chapter``.
Quick settings come from ``PYROVAE_COURSE_QUICK=1``, as for the scripts.
"""

import ast
from pathlib import Path

SETUP = '''# %%
# Setup: the chapter imports its helpers from examples/course/ of a pyrovae checkout (installed
# with `python3 -m pip install -e '.[docs]'`); the datasets come from PYROVAE_DATA.
import os
import sys
from pathlib import Path

here = Path(os.environ.get("PYROVAE_ROOT", Path.cwd())).resolve()
ROOT = next((p for p in (here, *here.parents) if (p / "examples" / "course" / "_course.py").is_file()), None)
if ROOT is None:
    raise RuntimeError("run this notebook inside a pyrovae checkout, or set PYROVAE_ROOT to one")
sys.path[:0] = [str(ROOT / "examples" / "course"), str(ROOT)]
os.environ.setdefault("PYROVAE_DATA", str(ROOT.parent / "shared" / "data"))
os.environ.setdefault("PYROVAE_COURSE_CACHE", str(ROOT / ".cache" / "course"))  # the site build's trained models
__doc__ = {doc!r}  # the script's docstring, which its command line reads
__file__ = str(ROOT / "examples" / "course" / {script!r})  # the script this notebook is made from
'''

RUN = '''# %% [markdown]
# Run the chapter: it writes its figures and numbers into `runs/course/{name}/`, and loads the
# models it needs from the checkout's `.cache/course/models/` where the site build trained them
# (`.cache/course/quick/models/` at quick settings), training the missing ones there. `chapter`
# keeps what the exercises use: for a chapter with a trained model, `chapter["vae"]` and the
# test digits `chapter["x"]`.

# %%
chapter = main()

# %%
from IPython.display import Image, Markdown, display  # noqa: E402

out = Path("runs/course/{name}")
for figure in sorted(out.glob("*.png")):
    display(Image(filename=str(figure)))
for numbers in sorted(out.glob("*.md")):
    display(Markdown(numbers.read_text()))
chapter
'''


def percent_script(script: Path) -> str:
    """The chapter's source in jupytext's percent format."""
    source = script.read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    cells, body = [], list(tree.body)
    docstring = ast.get_docstring(tree)
    if docstring:
        body = body[1:]
        page = f"{script.stem[2]}_"  # the page's file name starts with the chapter's number
        cells.append("# %% [markdown]\n" + "\n".join(f"# {line}".rstrip() for line in docstring.splitlines())
                     + f"\n#\n# This notebook is made from `examples/course/{script.name}`; its page in the course "
                     f"is `docs/course/{page}*.md`.")
    cells.append(SETUP.format(doc=docstring or "", script=script.name))
    group = []
    for node in body:
        if _is_main_guard(node):
            break
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
        while start > 0 and lines[start - 1].startswith("#"):  # comments that belong to the definition
            start -= 1
        text = "\n".join(lines[start:node.end_lineno])
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            if group:
                cells.append("# %%\n" + "\n".join(group))
                group = []
            cells.append("# %%\n" + text)
        else:
            group.append(text)
    if group:
        cells.append("# %%\n" + "\n".join(group))
    cells.append(RUN.format(name=script.stem))
    return "\n\n".join(cells) + "\n"


def _is_main_guard(node) -> bool:
    return isinstance(node, ast.If) and "__name__" in ast.unparse(node.test)


def notebook(script: Path):
    """The chapter as an ``nbformat`` notebook (not executed)."""
    import jupytext

    nb = jupytext.reads(percent_script(script), fmt="py:percent")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.pop("jupytext", None)
    return nb


def notebook_text(script: Path) -> str:
    import nbformat

    return nbformat.writes(notebook(script))
