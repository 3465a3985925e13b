"""Opaque page tokens for keyset pagination: the sort key of the last item of a page."""

from __future__ import annotations

import base64
import json
from typing import Any

from services.common.errors import InvalidArgument


def encode_token(values: list[Any]) -> str:
    """An opaque page token from the sort key of the last item of a page."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def decode_token(token: str) -> list[Any]:
    """The sort key in a token from ``encode_token``; INVALID_ARGUMENT for anything else."""
    try:
        values = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError as exc:
        raise InvalidArgument("not a token returned by this service", field="page_token") from exc
    if not isinstance(values, list) or len(values) != 2:
        raise InvalidArgument("not a token returned by this service", field="page_token")
    return values
