"""The harness's layout holds: no import loops, imports flowing one way from the command line
down to the spec model, and modules small enough to have one job.

The import graph is read from the source (every `import` a module runs, at its top or inside a
function; imports only a type checker reads, under `if TYPE_CHECKING:`, are left out since
they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "conformance"

# What each part of the harness may import, bottom to top: the error root, the provider
# contract and the units users type at the bottom, the spec model on them, then the engine (and
# extraction beside it), the remote side, the reports, the runner (pytest) and the command line
# on top.
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "provider": {"errors"},
    "units": set(),
    "spec": {"provider", "units", "errors"},
    "extract": {"spec", "provider", "units", "errors"},
    "engine": {"spec", "provider", "units", "errors"},
    "remote": {"engine", "spec", "provider", "units", "errors"},
    "reporting": {"engine", "remote", "spec", "provider", "units", "errors"},
    "runner": {"reporting", "remote", "engine", "extract", "spec", "provider", "units", "errors"},
    "cli": {
        "runner",
        "reporting",
        "remote",
        "engine",
        "extract",
        "spec",
        "provider",
        "units",
        "errors",
    },
    "__init__": {"provider"},
    "__main__": {"cli"},
}

# Modules over about 600 lines, each with the reason it earns its size.
LARGE: dict[str, str] = {}
LIMIT = 650


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def part_of(module: str) -> str:
    """The part of the harness a module belongs to: its package, or its own name at the top."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def imports_of(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The conformance modules `path` imports when it runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for sub in node.body for n in ast.walk(sub))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, name, path.name == "__init__.py")
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("conformance"):
                found.add(target)
    return found


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, name, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_loops() -> None:
    loops = cycles(graph())
    assert not loops, "import loops: " + "; ".join(" <-> ".join(c) for c in loops)


def test_imports_flow_from_the_command_line_down_to_the_spec_model() -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if part_of(target) != part_of(module) and part_of(target) not in MAY_IMPORT[part_of(module)]
    )
    assert not wrong, "imports against the flow:\n" + "\n".join(wrong)


def test_every_part_is_declared() -> None:
    assert {part_of(m) for m in modules()} <= set(MAY_IMPORT)


def test_the_graph_sees_loops_and_wrong_directions() -> None:
    """The checks above can fail: a made-up loop is found, and so is a spec module importing
    the engine."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "engine" not in MAY_IMPORT["spec"]


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_stay_small(name: str) -> None:
    lines = len(modules()[name].read_text(encoding="utf-8").splitlines())
    if name in LARGE:
        return
    assert lines <= LIMIT, (
        f"{name} has {lines} lines: split it by job, or say in LARGE why it earns its size"
    )
