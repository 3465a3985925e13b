"""How a step's skip_if condition ({path, op, value}) reads, for the scheduler's reason and
the CLI: ``$.mode == "fast"``, ``$.debug exists``."""

from __future__ import annotations

import json
from typing import Any


def said(condition: dict[str, Any]) -> str:
    path, op = condition.get("path", "?"), str(condition.get("op", "?"))
    if op in ("exists", "not_exists"):
        return f"{path} {op.replace('_', ' ')}"
    return f"{path} {op.replace('_', ' ')} {json.dumps(condition.get('value'))}"
