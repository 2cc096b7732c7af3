"""One deadline for the whole start: every wait and retry is bounded by it."""

from __future__ import annotations

import time


class Deadline:
    """A point on the monotonic clock, ``seconds`` from creation."""

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
