"""The watch loop: what changed in the cluster's Consul records, one log line per change.

Contract:

- Two blocking queries, nothing else: the cluster's KV prefix (``<kv_prefix>/<cluster>/``:
  the roster, the id claims, the shared values, the lock) and the service's registrations.
  Between changes it costs one request per query per ``wait_s``: no polling.
- Each change is one log line naming what changed, from what to what. Values are untrusted
  and shown printable and cut short; shared values (cookies, cluster ids) only by fingerprint.
- The first answer is the baseline, not a change. A lock taken or released is logged but is
  not a change of the cluster (it does not ask for a re-render: that would loop).
- Consul down or slow never ends the loop: it logs once, backs off (1 s doubling to 30 s),
  and catches up with a fresh query when Consul answers again (an index that went backwards,
  as after a Consul restart, starts over).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from bootstrap.errors import ConsulError
from bootstrap.log import log
from bootstrap.membership import next_index
from bootstrap.model import Instance
from bootstrap.ports import DiscoveryPort, KVEntry

WAIT_S = 300.0  # Consul's default blocking wait; its maximum is 600
BACKOFF_MIN_S, BACKOFF_MAX_S = 1.0, 30.0
SHOWN_CHARS = 80
T = TypeVar("T")


def kind_of(prefix: str, key: str) -> str:
    """``roster``, ``claims``, ``shared``, ``lock`` or ``other`` for a key under ``prefix``."""
    rest = key.removeprefix(prefix).lstrip("/")
    if rest in ("roster", "lock"):
        return rest
    head = rest.split("/", 1)[0]
    return {"ids": "claims", "shared": "shared"}.get(head, "other")


def shown(kind: str, entry: KVEntry | None) -> str:
    if entry is None:
        return "(none)"
    if kind == "lock":
        return f"held by {_printable(entry.value)}" if entry.session else "free"
    if kind == "shared":
        return "sha256:" + hashlib.sha256(entry.value.encode()).hexdigest()[:12]
    return _printable(entry.value)


def _printable(text: str) -> str:
    cut = text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."
    return repr(cut) if not cut.isprintable() or not cut else cut


def kv_changes(
    prefix: str, old: Mapping[str, KVEntry], new: Mapping[str, KVEntry]
) -> list[tuple[str, str]]:
    """(kind, log line) for every key that differs between two answers."""
    changes = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before == after or (
            before is not None
            and after is not None
            and (before.value, before.session) == (after.value, after.session)
        ):
            continue
        kind = kind_of(prefix, key)
        changes.append((kind, f"{kind} {key}: {shown(kind, before)} -> {shown(kind, after)}"))
    return changes


def registration_changes(old: list[Instance], new: list[Instance]) -> list[str]:
    before = {i.service_id: i for i in old}
    after = {i.service_id: i for i in new}
    lines = []
    for sid in sorted(before.keys() | after.keys()):
        a, b = before.get(sid), after.get(sid)
        if a == b:
            continue
        lines.append(
            f"registration {_printable(sid)}: "
            f"{_printable(a.describe()) if a else '(none)'} -> "
            f"{_printable(b.describe()) if b else '(none)'}"
        )
    return lines


class Watch:
    """Blocking queries on one cluster; ``on_change(kind)`` for each change that matters."""

    def __init__(
        self,
        discovery: DiscoveryPort,
        prefix: str,
        consul_service: str,
        on_change: Callable[[str], None],
        *,
        wait_s: float = WAIT_S,
    ) -> None:
        self.discovery = discovery
        self.prefix = prefix.rstrip("/") + "/"
        self.consul_service = consul_service
        self.on_change = on_change
        self.wait_s = wait_s
        self.requests = 0

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch_kv())
            group.create_task(self._watch_registrations())

    async def _watch_kv(self) -> None:
        index, entries = await self._next(
            "KV " + self.prefix, lambda: self.discovery.kv_list(self.prefix)
        )
        log.info("watching %d keys under %s", len(entries), self.prefix)
        while True:
            new_index, new = await self._next(
                "KV " + self.prefix,
                functools.partial(
                    self.discovery.kv_list, self.prefix, index=index, wait_s=self.wait_s
                ),
            )
            for kind, line in kv_changes(self.prefix, entries, new):
                log.info("%s", line)
                if kind != "lock":
                    self.on_change(kind)
            index, entries = next_index(index, new_index), new

    async def registrations(self) -> None:
        """The registrations query alone (another Consul service of the cluster), until
        cancelled."""
        await self._watch_registrations()

    async def _watch_registrations(self) -> None:
        what = f"registrations of {self.consul_service!r}"
        index, instances = await self._next(
            what, lambda: self.discovery.instances(self.consul_service)
        )
        log.info("watching %d registrations of %r", len(instances), self.consul_service)
        while True:
            new_index, new = await self._next(
                what,
                functools.partial(
                    self.discovery.instances, self.consul_service, index=index, wait_s=self.wait_s
                ),
            )
            lines = registration_changes(instances, new)
            for line in lines:
                log.info("%s", line)
            if lines:
                self.on_change("registrations")
            index, instances = next_index(index, new_index), new

    async def _next(self, what: str, request: Callable[[], Awaitable[T]]) -> T:
        """One answer, however long Consul takes to give it: back off while it is down."""
        delay, down_since = BACKOFF_MIN_S, 0.0
        while True:
            self.requests += 1
            try:
                answer = await request()
            except ConsulError as exc:
                if not down_since:
                    down_since = time.monotonic()
                    log.warning("watch: %s: %s; backing off, the server keeps running", what, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            if down_since:
                log.info(
                    "watch: Consul answers again after %.0fs; catching up on %s",
                    time.monotonic() - down_since,
                    what,
                )
            return answer
