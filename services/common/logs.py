"""Logging set-up shared by the services: one line per record on stderr, as text or JSON.

``WTM_LOG_FORMAT=json`` writes one JSON object per line. A record about a run carries
``run_id`` (and ``step_id``) — pass them with ``extra=run_fields(...)`` — and every record
made inside a recording span carries its ``trace_id``, so a run's lines can be found from
its trace and the other way round.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

_FIELDS = ("run_id", "step_id", "attempt", "executor_id", "trace_id")


def run_fields(run_id: str, step_id: str = "", attempt: int = 0, **more: Any) -> dict[str, Any]:
    """``extra=`` for a log record about a run (or one of its steps)."""
    fields: dict[str, Any] = {"run_id": run_id, **more}
    if step_id:
        fields["step_id"] = step_id
    if attempt:
        fields["attempt"] = attempt
    return fields


class _TraceIds(logging.Filter):
    """Adds the current span's trace id to records that have none."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "trace_id", ""):
            ctx = trace.get_current_span().get_span_context()
            if ctx.is_valid:
                record.trace_id = f"{ctx.trace_id:032x}"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _FIELDS:
            value = getattr(record, key, None)
            if value not in (None, ""):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(
            f"{k}={getattr(record, k)}" for k in ("run_id", "step_id") if getattr(record, k, "")
        )
        return f"{line} [{ids}]" if ids else line


def configure(service: str) -> None:
    """Configure the root logger for ``service``; ``WTM_LOG_LEVEL`` sets the level and
    ``WTM_LOG_FORMAT`` (text | json) the format."""
    level = os.environ.get("WTM_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler()
    if os.environ.get("WTM_LOG_FORMAT", "text").lower() == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(
            _TextFormatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
        )
    handler.addFilter(_TraceIds())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
