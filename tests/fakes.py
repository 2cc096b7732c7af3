"""Test doubles that subclass the ports (no mocks): an in-memory Consul with real CAS."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from bootstrap.errors import ConsulBadAnswer, ConsulUnavailable
from bootstrap.model import ClusterView, Instance, RenderedFile, Rendering
from bootstrap.ports import DiscoveryPort, KVEntry, Registration, ServicePort


class FakeDiscovery(DiscoveryPort):
    """Catalog and KV in memory, one global index like Consul's raft index.

    Blocking queries really block until the index moves or the wait ends.
    ``down`` makes every call raise ConsulUnavailable, as an agent that is not there.
    """

    def __init__(self) -> None:
        self.index = 1
        self.kv: dict[str, KVEntry] = {}
        self.services: dict[str, Instance] = {}  # service_id -> instance
        self.names: dict[str, str] = {}  # service_id -> service name
        self.down = False
        self.calls = 0
        self.parked = 0  # blocking queries waiting right now
        self.parked_at: list[int] = []  # the index each blocking query waited on
        self.sessions: dict[str, float] = {}  # session id -> lock delay
        self.checks: dict[str, tuple[str, str]] = {}  # check id -> (status, output)
        self.refused_until: dict[str, float] = {}  # lock key -> end of a dead holder's delay
        self._changed = asyncio.Event()
        self._parking = asyncio.Event()

    def _bump(self) -> int:
        self.index += 1
        self._changed.set()
        self._changed = asyncio.Event()
        return self.index

    async def _enter(self, index: int, wait_s: float) -> None:
        self.calls += 1
        if self.down:
            raise ConsulUnavailable("fake agent is down")
        if index > 0 and index >= self.index:
            self.parked += 1
            self.parked_at.append(index)
            self._parking.set()
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._changed.wait()
            finally:
                self.parked -= 1

    async def until_parked(self, count: int, index: int, timeout_s: float = 5.0) -> None:
        """Return once ``count`` blocking queries wait on ``index`` or later (a test's "they are
        waiting now", observed rather than assumed after a sleep)."""
        async with asyncio.timeout(timeout_s):
            while self.parked < count or sum(i >= index for i in self.parked_at) < count:
                self._parking.clear()
                await self._parking.wait()

    def add_instance(self, name: str, instance: Instance) -> None:
        self.services[instance.service_id] = instance
        self.names[instance.service_id] = name
        self._bump()

    async def instances(
        self, service: str, *, index: int = 0, wait_s: float = 0.0
    ) -> tuple[int, list[Instance]]:
        await self._enter(index, wait_s)
        found = [i for sid, i in sorted(self.services.items()) if self.names[sid] == service]
        return self.index, found

    async def kv_list(
        self, prefix: str, *, index: int = 0, wait_s: float = 0.0
    ) -> tuple[int, dict[str, KVEntry]]:
        await self._enter(index, wait_s)
        return self.index, {k: v for k, v in sorted(self.kv.items()) if k.startswith(prefix)}

    async def kv_get(self, key: str) -> KVEntry | None:
        await self._enter(0, 0)
        return self.kv.get(key)

    async def kv_create(self, key: str, value: str) -> bool:
        await self._enter(0, 0)
        if key in self.kv:
            return False
        self.kv[key] = KVEntry(value, self._bump())
        return True

    async def kv_replace(self, key: str, value: str, modify_index: int) -> bool:
        await self._enter(0, 0)
        if key not in self.kv or self.kv[key].modify_index != modify_index:
            return False
        self.kv[key] = KVEntry(value, self._bump())
        return True

    async def kv_delete(self, key: str, modify_index: int) -> bool:
        await self._enter(0, 0)
        if key not in self.kv or self.kv[key].modify_index != modify_index:
            return False
        del self.kv[key]
        self._bump()
        return True

    async def register(self, registration: Registration) -> None:
        await self._enter(0, 0)
        self.add_instance(
            registration.name,
            Instance(
                registration.service_id,
                "fake-node",
                registration.address,
                registration.port,
                registration.tags,
                dict(registration.meta),
            ),
        )

    async def deregister(self, service_id: str) -> None:
        await self._enter(0, 0)
        if self.services.pop(service_id, None) is not None:
            self._bump()

    async def session_create(self, name: str, ttl_s: int, lock_delay_s: int) -> str:
        await self._enter(0, 0)
        session = str(uuid.uuid4())
        self.sessions[session] = lock_delay_s
        return session

    async def session_renew(self, session_id: str) -> bool:
        await self._enter(0, 0)
        return session_id in self.sessions

    def expire(self, session_id: str) -> None:
        """What Consul does when a session ends (TTL run out, or destroyed): its locks are
        released, and refused to everyone for the session's lock-delay."""
        delay = self.sessions.pop(session_id, 0.0)
        for key, entry in list(self.kv.items()):
            if entry.session == session_id:
                self.kv[key] = KVEntry(entry.value, self._bump())
                self.refused_until[key] = time.monotonic() + delay

    async def session_destroy(self, session_id: str) -> None:
        await self._enter(0, 0)
        self.expire(session_id)

    async def lock_acquire(self, key: str, session_id: str, value: str) -> bool:
        await self._enter(0, 0)
        held = self.kv.get(key)
        if session_id not in self.sessions or time.monotonic() < self.refused_until.get(key, 0):
            return False
        if held is not None and held.session not in (None, session_id):
            return False
        self.kv[key] = KVEntry(value, self._bump(), session_id)
        return True

    async def lock_release(self, key: str, session_id: str) -> bool:
        await self._enter(0, 0)
        held = self.kv.get(key)
        if held is None or held.session != session_id:
            return False
        self.kv[key] = KVEntry(held.value, self._bump())
        return True

    async def report_health(self, check_id: str, status: str, output: str) -> None:
        await self._enter(0, 0)
        if check_id.removeprefix("service:") not in self.services:
            raise ConsulBadAnswer(f"the agent has no check {check_id!r}")
        self.checks[check_id] = (status, output)


class ListService(ServicePort):
    """A tiny service: one file listing the members, as a ZooKeeper-like adapter would."""

    key = "list"
    port_labels: ClassVar[Mapping[str, int]] = {"client": 2181, "peer": 2888}

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options or {})

    def joiner_form(self, view: ClusterView) -> str:
        if self.options.get("static"):
            return super().joiner_form(view)  # CannotJoin, as a service without online changes
        return "an observer"

    def render(self, view: ClusterView) -> Rendering:
        lines = [
            f"member.{m.member_id}={m.address}:{m.ports['peer']}"
            + (":observer" if view.joining and m.member_id == view.member_id else "")
            for m in view.members
        ]
        return Rendering(
            (RenderedFile(view.me.conf_dir / "members.cfg", "\n".join(lines) + "\n"),),
            {"MY_ID": str(view.member_id)},
        )
