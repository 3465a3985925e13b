"""The garbage collector, set for a long-running service."""

from __future__ import annotations

import gc


def freeze_startup() -> None:
    """Put what start-up made (imported modules, settings, clients: alive as long as the
    process) out of the cycle collector's reach, so that a full collection scans only what
    serving made. Measured on the scheduler under a 5,000-run burst: its full collections
    took 65-80 ms each (up to 107 ms, the event loop stalled), 5-11 ms once frozen."""
    gc.collect()  # garbage from start-up is freed, not frozen
    gc.freeze()
