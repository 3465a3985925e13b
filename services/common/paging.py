"""Opaque page tokens for keyset pagination: the sort key of the last item of a page."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from common.errors import InvalidArgument

_NOT_OURS = "not a token returned by this service"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_KEY_CHARS = 512
T = TypeVar("T")


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


def page_size_of(page_size: int, default: int, maximum: int) -> int:
    """A request's page size, as Google's AIP-158 has it: ``default`` for 0, ``maximum`` for
    anything above it (a client asking for "everything" gets full pages, not an error);
    INVALID_ARGUMENT for a negative size."""
    if page_size < 0:
        raise InvalidArgument(f"must not be negative, got {page_size}", field="page_size")
    return min(page_size or default, maximum)


def page_of(
    items: Sequence[T],
    key: Callable[[T], list[Any]],
    shape: tuple[type, ...],
    page_size: int,
    page_token: str,
) -> tuple[list[T], str]:
    """One page of a report that is built whole for each call (the fleet, the queues): the
    items, sorted by ``key``, that come after the key in ``page_token``, at most
    ``page_size`` of them, and the token of the next page ("" on the last). An item added or
    removed between pages is seen or not, as in any keyset paging; none is seen twice."""
    after = decode_token(page_token, shape) if page_token else None
    ordered = sorted(items, key=key)
    if after is not None:
        ordered = [item for item in ordered if key(item) > after]
    page = ordered[:page_size]
    more = len(ordered) > page_size
    return page, encode_token(key(page[-1])) if more else ""
