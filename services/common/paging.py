"""Opaque page tokens for keyset pagination: the sort key of the last item of a page."""

from __future__ import annotations

import base64
import json
from typing import Any

from common.errors import InvalidArgument

_NOT_OURS = "not a token returned by this service"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_KEY_CHARS = 512


def encode_token(values: list[Any]) -> str:
    """An opaque page token from the sort key of the last item of a page."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def decode_token(token: str, shape: tuple[type, ...]) -> list[Any]:
    """The sort key in a token from ``encode_token``, whose values must have the types of
    ``shape`` (str or int) exactly; INVALID_ARGUMENT for anything else. A token therefore
    can only ever carry plain values: never a query operator such as ``{"$ne": null}``."""
    try:
        values = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError as exc:  # bad base64, bad JSON, bad UTF-8
        raise InvalidArgument(_NOT_OURS, field="page_token") from exc
    if not isinstance(values, list) or len(values) != len(shape):
        raise InvalidArgument(_NOT_OURS, field="page_token")
    for value, kind in zip(values, shape, strict=True):
        if type(value) is not kind:  # bool is not an int here
            raise InvalidArgument(_NOT_OURS, field="page_token")
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise InvalidArgument(_NOT_OURS, field="page_token")
        if isinstance(value, str) and len(value) > MAX_KEY_CHARS:
            raise InvalidArgument(_NOT_OURS, field="page_token")
    return values
