"""Test doubles that subclass the ports (no mocks): an in-memory Consul with real CAS."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, ClassVar

from bootstrap.errors import ConsulUnavailable
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
        self._changed = asyncio.Event()

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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait_s)

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
