"""Logging set-up shared by the services: one line per record on stderr."""

from __future__ import annotations

import logging
import os


def configure(service: str) -> None:
    """Configure the root logger for ``service``; ``WTM_LOG_LEVEL`` sets the level."""
    level = os.environ.get("WTM_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
