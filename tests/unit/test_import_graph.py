"""The top-level packages depend on each other one way only, and the client package
stands on ``common`` and the generated code alone (#20).

The gateway (``services/gateway``) is deployed with the services but is a client of them: it
calls the registry and the scheduler through the SDK, with each caller's key. It is its own
node here, above ``clients``; no other service imports it, nor it them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("wtm", "common", "clients", "services", "tasks")
GATEWAY = "gateway"  # services/gateway, a node of its own (see above)


def node_of(module: str) -> str:
    return GATEWAY if module.startswith("services.gateway") else module.split(".")[0]


def imported(path: Path) -> set[str]:
    """The nodes of ours that a module imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found |= {node_of(n) for n in names if n.split(".")[0] in PACKAGES}
    return found


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {p: set() for p in (*PACKAGES, GATEWAY)}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            owner = node_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
            graph[owner] |= imported(path) - {owner}
    return graph


def test_no_cycle_between_top_level_packages() -> None:
    graph = package_graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, "import cycle: " + " -> ".join([*path, node])
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*path, node])
        done.add(node)

    for package in (*PACKAGES, GATEWAY):
        visit(package, [])
    assert graph["common"] <= {"wtm"}  # the shared package stands on the generated code only
    assert "clients" not in graph["services"]
    assert GATEWAY not in graph["services"] | graph["clients"]
    assert graph[GATEWAY] <= {"clients", "common", "services", "wtm"}


def test_the_client_package_reaches_services_only_to_start_the_local_stack() -> None:
    """The SDK and the CLI use ``common`` and ``wtm``; only the commands that start the
    local stack (``wtm stack up``, ``wtm demo``: the services themselves) import it."""
    for path in (ROOT / "clients").rglob("*.py"):
        text = path.read_text()
        for line in text.splitlines():
            if ("from services" in line or "import services" in line) and "#" not in line:
                assert "services.localstack" in line, f"{path.relative_to(ROOT)}: {line.strip()}"


def test_importing_clients_imports_nothing_under_services() -> None:
    code = (
        "import sys, clients, clients.aio, clients.sdk; "
        "bad = sorted(m for m in sys.modules if m == 'services' or m.startswith('services.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
