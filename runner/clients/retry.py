"""One backoff policy for every request the runner retries (the registry's API, additional-files downloads):
capped, jittered exponential delays, and a server's Retry-After honoured up to a cap."""

from __future__ import annotations

import random

RETRY_AFTER_CAP = 60.0  # a server asking for a longer pause is treated as down
DEADLINE_S = 120.0  # a whole request (connect, send, every byte of the answer) ends within this, or is a fault


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random,
                  retry_after: float | None = None, retry_after_cap: float = RETRY_AFTER_CAP) -> float | None:
    """Seconds to wait before attempt `attempt + 1` (1-based `attempt`), or None: give up (Retry-After too long)."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    delay = rng.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        if retry_after > retry_after_cap:
            return None
        delay = max(delay, retry_after)
    return delay
