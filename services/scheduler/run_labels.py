"""A run's labels: what shape they may have, and a filter of them as runs' records keep them."""

from __future__ import annotations

import re

from common.errors import InvalidArgument
from services.scheduler.models import pairs_of

MAX_LABELS = 64
MAX_LABEL_VALUE_CHARS = 256
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$")


def check_labels(labels: dict[str, str]) -> None:
    """Labels of a run (or a filter of them): keys and values of the allowed shape."""
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(f"has {len(labels)} entries; at most {MAX_LABELS}", field="labels")
    for key, value in labels.items():
        if not _LABEL_KEY.match(key):
            raise InvalidArgument(
                f"key {key[:70]!r} must be 1-63 letters, digits, '_', '.', '/', '-'",
                field="labels",
            )
        if len(value) > MAX_LABEL_VALUE_CHARS:
            raise InvalidArgument(
                f"value of {key!r} is over {MAX_LABEL_VALUE_CHARS} characters",
                field=f"labels.{key}",
            )


def label_pairs(labels: dict[str, str]) -> list[str]:
    """A filter of labels, checked, as a run's record keeps them (``pairs_of``)."""
    check_labels(labels)
    return pairs_of(labels)
