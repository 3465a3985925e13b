"""Large JSON documents by reference.

A step output (or a resolved step input) larger than the inline limit is stored as an
artifact in the object store, and what travels through Redis, MongoDB and the gRPC streams
is a small reference document in its place:

    {"wtm_ref": "artifact://sha256/<digest>/<output_id>.json", "bytes": 1234567}

The executor stores large outputs and fetches large inputs; the scheduler fetches a
referenced output when a downstream step's input mapping reads it; the SDK fetches them when
a client reads a run. Tasks never see references.
"""

from __future__ import annotations

import json
from typing import Any

from common.artifacts import is_uri

REF_KEY = "wtm_ref"
DEFAULT_INLINE_MAX_BYTES = 256 * 1024
# Whatever the setting, an output over this goes by reference: a result travels in one
# stream message, and the scheduler takes messages of at most 8 MiB. (With the setting at 0
# a 10 MB output once made the stream fail, and the executor re-sent it on every reconnect.)
MAX_INLINE_BYTES = 4 * 1024 * 1024


def make_ref(uri: str, size: int) -> str:
    """The reference document (JSON text) standing for a stored document."""
    return json.dumps({REF_KEY: uri, "bytes": size})


def ref_uri(value: Any) -> str | None:
    """The artifact URI when ``value`` (a parsed JSON value) is a reference document."""
    if isinstance(value, dict) and len(value) == 2 and is_uri(value.get(REF_KEY)):
        return str(value[REF_KEY])
    return None


def text_ref_uri(text: str) -> str | None:
    """``ref_uri`` of a JSON text, without parsing texts that cannot be a reference."""
    if len(text) > 300 or REF_KEY not in text:
        return None
    try:
        return ref_uri(json.loads(text))
    except ValueError:
        return None


def too_large(text: str, limit: int) -> bool:
    """Whether a JSON text goes by reference: over ``limit`` bytes (0: no limit of its
    own), and always over MAX_INLINE_BYTES."""
    limit = min(limit or MAX_INLINE_BYTES, MAX_INLINE_BYTES)
    return len(text) > limit // 4 and len(text.encode()) > limit
