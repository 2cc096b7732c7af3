"""Reload on change: what to do when the rendered config changes, and when to do it.

Contract:

- ``--on-change``: ``signal:<NAME>`` (e.g. ``signal:HUP``) sends the signal to the server,
  ``restart`` stops and starts it, ``none`` only rewrites the files.
- ``--change-wait MIN[:MAX]`` has consul-template's ``wait`` semantics: after a change, wait
  until nothing changed for MIN seconds, but never longer than MAX after the first change
  (MAX defaults to 4 x MIN). A burst of changes gives one reload.
- ``QuietPeriod.settled`` returns when the burst is over; the caller then re-renders and, if
  the bytes changed, applies the action under the cluster lock, one member at a time.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OnChange:
    """``action`` is ``signal``, ``restart`` or ``none``; ``signal`` the number for ``signal``."""

    action: str
    signal: int = 0

    def __str__(self) -> str:
        if self.action == "signal":
            return f"signal:{signal.Signals(self.signal).name}"
        return self.action


@dataclass(frozen=True)
class ChangeWait:
    min_s: float
    max_s: float


NO_ACTION = OnChange("none")
DEFAULT_CHANGE_WAIT = ChangeWait(2.0, 8.0)
STOPS = (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM, signal.SIGINT)


def parse_on_change(value: Any) -> OnChange:
    text = str(value).strip()
    if text in ("none", "restart"):
        return OnChange(text)
    kind, sep, name = text.partition(":")
    if kind == "signal" and sep:
        name = name.upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        sig = getattr(signal.Signals, name, None) if name.isalnum() else None
        if sig is not None and sig not in STOPS:
            return OnChange("signal", int(sig))
    raise ValueError(
        f"{text!r} is not signal:<NAME> (e.g. signal:HUP; a signal that stops the server is "
        "'restart'), restart or none"
    )


DEFAULT_REMOVE_AFTER_S = 600.0  # --remove-after: ten minutes


def _seconds(text: str, most: float = 3600.0) -> float:
    text = text.strip()
    scale = 1.0
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix):
            text, scale = text[: -len(suffix)], factor
            break
    number = float(text) * scale
    if not 0 <= number <= most:
        raise ValueError
    return number


def parse_remove_after(value: Any) -> float:
    """``--remove-after``: seconds (``600``, ``10m``, ``2h``, up to a week); 0 disables."""
    try:
        return _seconds(str(value), most=7 * 24 * 3600.0)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a duration of 0 (never) up to a week (e.g. 10m, 90s, 2h)"
        ) from None


def parse_change_wait(value: Any) -> ChangeWait:
    low_text, sep, high_text = str(value).partition(":")
    try:
        low = _seconds(low_text)
        high = _seconds(high_text) if sep else 4 * low
    except ValueError:
        raise ValueError(f"{value!r} is not MIN[:MAX] in seconds (e.g. 2s:10s, 500ms, 3)") from None
    if high < low:
        raise ValueError(f"{value!r}: MAX is shorter than MIN")
    return ChangeWait(low, high)


class QuietPeriod:
    """Collects change notices and tells when a burst of them has settled."""

    def __init__(self, wait: ChangeWait) -> None:
        self.wait = wait
        self._changed = asyncio.Event()
        self._last = 0.0

    def notice(self) -> None:
        """Something changed (called by the watch loop, once per change)."""
        self._last = time.monotonic()
        self._changed.set()

    async def settled(self) -> int:
        """Wait for a change, then for the quiet period; the number of waits it took."""
        await self._changed.wait()
        first = time.monotonic()
        rounds = 0
        while True:
            rounds += 1
            self._changed.clear()
            now = time.monotonic()
            quiet_until = self._last + self.wait.min_s
            cap = first + self.wait.max_s
            if now >= quiet_until or now >= cap:
                return rounds
            await asyncio.sleep(min(quiet_until, cap) - now)
