"""One deadline for the whole start: every wait and retry is bounded by it."""

from __future__ import annotations

import math
import time


class Deadline:
    """A point on the monotonic clock, ``seconds`` from creation."""

    retries = True  # transient failures are retried until the deadline

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.end = self.started + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class Unbounded(Deadline):
    """Day 2 has no end. A request is tried once and a blocking query may use its whole wait:
    the long-running loops back off and catch up themselves, and bound what must be bounded
    (``asyncio.wait_for``) on the way out."""

    retries = False

    def __init__(self) -> None:
        super().__init__(math.inf)

    def remaining(self) -> float:
        return math.inf
