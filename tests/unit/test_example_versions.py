"""An example task package edited without a version bump is caught here: versions are
immutable in the registry, so such an edit would be refused (ALREADY_EXISTS) wherever the
old content was registered. The content includes the ``tasks/base`` modules an example
imports (detectors, networks), which reach every registered version of it through the
executor. ``scripts/lock_examples.py`` records a new version."""

from __future__ import annotations

from scripts.lock_examples import examples, recorded


def test_every_example_matches_the_record_of_its_version() -> None:
    lock = recorded()
    for task_id, (version, content) in examples().items():
        versions = lock.get(task_id, {})
        assert version in versions, (
            f"{task_id}@{version} is not recorded: run python scripts/lock_examples.py"
        )
        assert versions[version] == content, (
            f"tasks/examples: {task_id} (its package, or a tasks/base module it imports) "
            f"changed but its version is still {version}; bump "
            "task.json's version (versions are immutable), then run "
            "python scripts/lock_examples.py"
        )
