"""The scheduler's shape, as issue 21 asked for it: modules small enough to read at once,
no import cycle, and parts wired through constructors and the listener interface, never by
assigning a callback onto another object's attribute."""

from __future__ import annotations

import ast
from pathlib import Path

import services.scheduler

PACKAGE = Path(services.scheduler.__file__).parent
MODULES = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
MAX_LINES = 450  # "about 400"


def runtime_imports(path: Path) -> set[str]:
    """The package's modules ``path`` imports when it runs (not under TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("services.scheduler."):
                found.add(node.module.rsplit(".", 1)[1])
            elif node.module == "services.scheduler":
                found |= {a.name for a in node.names}
    return found & MODULES.keys()


def test_no_module_is_too_long_to_read_at_once() -> None:
    long = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert {n: k for n, k in long.items() if k > MAX_LINES} == {}


def test_no_import_cycle() -> None:
    graph = {name: runtime_imports(path) for name, path in MODULES.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        assert name not in trail, " -> ".join([*trail, name])
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_no_callback_is_assigned_onto_another_objects_attribute() -> None:
    """``queue.on_queued = self.wake`` and the like: wiring hidden in an attribute. Parts
    take what they call in their constructor, or listen through ``Listeners``."""
    found = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id != "self"
                    and target.attr.startswith("on_")
                ):
                    found.append(f"{name}.py:{node.lineno}: {ast.unparse(node)}")
    assert found == []
