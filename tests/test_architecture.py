"""The house's one direction: every import in pyrovae (function-local ones included) goes to
its own layer or a lower one, and no modules import each other in a circle. The layers are
those docs/architecture.md draws; the page is checked to list them."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pyrovae"
ARCHITECTURE_PAGE = PACKAGE.parent / "docs" / "architecture.md"

# Bottom to top: what each layer holds (top-level modules and packages of pyrovae).
LAYERS = [
    ("foundation", ["errors", "digests", "registry", "plugins"]),
    ("model", ["components", "model", "inference"]),
    ("experiment", ["spec"]),
    ("run folder", ["runs"]),
    ("engines", ["training", "evaluation", "lab", "sweeps", "sample_quality"]),
    ("reports", ["reports"]),
    ("commands", ["commands"]),
    ("entry points", ["cli", "api", "__init__"]),
]
LAYER_OF = {part: level for level, (_, parts) in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set:
    """The pyrovae modules ``path`` imports anywhere in its body, as dotted names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "pyrovae":
                found.update(f"{target}.{alias.name}" if _is_module(f"{target}.{alias.name}") else target
                             for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "pyrovae")
    return {m for m in found if m != name}


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def layer(dotted: str) -> int:
    parts = dotted.split(".")
    return LAYER_OF[parts[1] if len(parts) > 1 else "__init__"]


def import_graph() -> dict:
    return {module_name(p): imported_modules(p) for p in PACKAGE.rglob("*.py")}


def test_every_module_belongs_to_a_layer():
    assert all(layer(m) is not None for m in import_graph())


def test_no_import_runs_up_a_layer():
    upward = sorted(f"{m} -> {t}" for m, targets in import_graph().items() for t in targets if layer(t) > layer(m))
    assert upward == []


def test_no_engine_imports_another_layers_report_or_command():
    engines = LAYER_OF["training"]
    offending = sorted(f"{m} -> {t}" for m, targets in import_graph().items() if layer(m) <= engines
                       for t in targets if t.split(".")[1] in ("reports", "commands"))
    assert offending == []


def test_no_circles():
    graph = import_graph()
    state, circles = {}, []

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            nxt = nxt if nxt in graph else nxt.rpartition(".")[0]  # an imported name's module
            if state.get(nxt) == "open":
                circles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt in graph and nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert circles == []


def test_the_architecture_page_draws_these_layers():
    page = ARCHITECTURE_PAGE.read_text()
    for title, parts in LAYERS:
        assert title in page, title
        for part in parts:
            assert f"`{part}" in page, part


def test_the_graph_reader_sees_function_local_imports():
    """A check that could fail: the reader finds the engine-to-log_joint import inside a method."""
    assert "pyrovae.inference.log_joint" in imported_modules(PACKAGE / "inference" / "mcem.py")
