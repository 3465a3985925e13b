"""The text of an API key: ``wtm_<16 hex digits of key id>.<secret>``. Made here, by the
registry when an admin creates a key and by ``wtm auth new-key`` for bootstrap keys;
checked by ``services.common.auth``."""

from __future__ import annotations

import secrets

PREFIX = "wtm_"


def new_key() -> tuple[str, str]:
    """A fresh key: (key id, the whole key text to hand out once)."""
    key_id = secrets.token_hex(8)
    return key_id, f"{PREFIX}{key_id}.{secrets.token_urlsafe(32)}"
