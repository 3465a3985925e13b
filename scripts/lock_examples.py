"""Records each example task package's version and content in ``tasks/examples/versions.lock``.

Task versions are immutable: the registry refuses a version registered before with other
content (ALREADY_EXISTS, "bump the version"), so an example edited without a version bump
breaks every installation that registered the old one. ``tests/unit/test_example_versions.py``
fails when an example's content no longer matches its version's record; this script adds
the record of a new version and refuses to rewrite an old one.

    python scripts/lock_examples.py

The content is the sha256 of the package as the CLI packs it, before compression (the same
files, names and modes; not the gzip bytes, which depend on the zlib in use), followed by
the ``tasks/base`` modules its code imports, directly or through each other (the shared
detectors and networks: ``mtcnn``, ``vision``, ...). Those come with the executor, not in the
package, so an edit to one changes what a registered version computes without changing its
package; here it changes the content of every example that uses it, which then needs a
version bump like any other edit. The SDK modules every task is run through (``SDK``) are
left out: they are the executor's contract with all tasks, not what one of them computes.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import sys
from pathlib import Path

from common.packaging import pack_directory

EXAMPLES = Path(__file__).resolve().parents[1] / "tasks" / "examples"
LOCK = EXAMPLES / "versions.lock"
BASE = EXAMPLES.parent / "base"
SDK = {"__init__", "task_base", "schema", "runtime"}


def imported_base_modules(sources: list[Path]) -> list[Path]:
    """The ``tasks/base`` modules (outside ``SDK``) that ``sources`` import, directly or
    through each other, in name order."""
    found: set[str] = set()
    todo = list(sources)
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in ast.walk(tree):
            modules: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module == "tasks.base":
                modules = [f"tasks.base.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            for name in (m.split(".")[2] for m in modules if m.startswith("tasks.base.")):
                if name not in found and name not in SDK and (BASE / f"{name}.py").is_file():
                    found.add(name)
                    todo.append(BASE / f"{name}.py")
    return [BASE / f"{name}.py" for name in sorted(found)]


def content(package: Path) -> str:
    digest = hashlib.sha256(gzip.decompress(pack_directory(package)))
    for module in imported_base_modules(sorted(package.rglob("*.py"))):
        digest.update(f"\0tasks/base/{module.name}\0".encode() + module.read_bytes())
    return digest.hexdigest()


def examples() -> dict[str, tuple[str, str]]:
    """Each example's task id -> (version, content), as they are now."""
    found = {}
    for package in sorted(p for p in EXAMPLES.iterdir() if (p / "task.json").is_file()):
        manifest = json.loads((package / "task.json").read_text())
        found[manifest["task_id"]] = (manifest["version"], content(package))
    return found


def recorded() -> dict[str, dict[str, str]]:
    """task id -> {version: content} for every version recorded."""
    return json.loads(LOCK.read_text()) if LOCK.exists() else {}


def main() -> int:
    lock = recorded()
    refused = []
    for task_id, (version, digest) in examples().items():
        versions = lock.setdefault(task_id, {})
        if versions.get(version, digest) != digest:
            refused.append(f"{task_id}@{version}")
        versions[version] = versions.get(version, digest)
    if refused:
        print(
            f"changed without a version bump: {', '.join(refused)}; bump their task.json "
            "version (versions are immutable), then run this again",
            file=sys.stderr,
        )
        return 1
    LOCK.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    print(f"{LOCK}: {sum(len(v) for v in lock.values())} versions recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
