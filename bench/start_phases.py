"""One agent start, timed phase by phase, then the exec: run as a script by start_to_exec.

``python bench/start_phases.py <cluster-bootstrap arguments>`` does what ``bootstrap.__main__``
does for ``run`` (settings, plan, write, exec) with marks on ``time.monotonic`` (the same
clock in every process, so the fork in ``common.run_timed`` lines up with them) and every
Consul call timed through the real ``ConsulDiscovery``. The marks go to ``$BENCH_RESULT`` as
JSON just before the exec. Only the standard library is imported before the first mark.
"""

from __future__ import annotations

import time

PYTHON_READY = time.monotonic()

import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

T = TypeVar("T")


def main(argv: list[str]) -> None:
    marks: dict[str, float] = {
        "spawned": float(os.environ["BENCH_SPAWNED"]),
        "python ready": PYTHON_READY,
    }
    from adapters import service_class
    from adapters.consul import ConsulDiscovery
    from bootstrap import __main__ as root
    from bootstrap import cli
    from bootstrap.deadline import Deadline
    from bootstrap.flow import Plan, Start, exec_command, resolve_command
    from bootstrap.log import setup
    from bootstrap.model import ClusterView, Instance, Rendering
    from bootstrap.ports import KVEntry, Registration

    marks["imported"] = time.monotonic()
    calls: list[tuple[str, float]] = []

    async def timed(name: str, call: Awaitable[T]) -> T:
        started = time.monotonic()
        try:
            return await call
        finally:
            calls.append((name, time.monotonic() - started))

    class TimedDiscovery(ConsulDiscovery):
        """The real discovery adapter, every call to the agent timed."""

        async def instances(
            self, service: str, *, index: int = 0, wait_s: float = 0.0
        ) -> tuple[int, list[Instance]]:
            return await timed(
                "GET health/service", super().instances(service, index=index, wait_s=wait_s)
            )

        async def kv_list(
            self, prefix: str, *, index: int = 0, wait_s: float = 0.0
        ) -> tuple[int, dict[str, KVEntry]]:
            return await timed(
                "GET kv (recurse)", super().kv_list(prefix, index=index, wait_s=wait_s)
            )

        async def kv_get(self, key: str) -> KVEntry | None:
            return await timed("GET kv", super().kv_get(key))

        async def kv_create(self, key: str, value: str) -> bool:
            return await timed("PUT kv ?cas=0", super().kv_create(key, value))

        async def kv_replace(self, key: str, value: str, modify_index: int) -> bool:
            return await timed("PUT kv ?cas=N", super().kv_replace(key, value, modify_index))

        async def register(self, registration: Registration) -> None:
            await timed("PUT agent/service/register", super().register(registration))

    setup(False)
    request = cli.parse(argv)
    settings = root._settings(request, os.environ)
    program = resolve_command(settings.command, os.environ)
    marks["settings"] = time.monotonic()

    async def start() -> Plan:
        marks["loop running"] = time.monotonic()
        deadline = Deadline(settings.timeout_s)
        service = service_class(settings.service)(settings.options, os.environ)
        render_s: list[float] = []
        real_render: Callable[[ClusterView], Rendering] = service.render

        def render(view: ClusterView) -> Rendering:
            started = time.monotonic()
            try:
                return real_render(view)
            finally:
                render_s.append(time.monotonic() - started)

        service.render = render  # type: ignore[method-assign]
        async with TimedDiscovery(settings.consul, deadline) as discovery, service:
            marks["session open"] = time.monotonic()
            flow = Start(settings, discovery, service, deadline)
            plan = await flow.plan()
            marks["planned"] = time.monotonic()
            await flow.write(plan)
            marks["written"] = time.monotonic()
        marks["session closed"] = time.monotonic()
        marks["render_s"] = sum(render_s)
        return plan

    plan = asyncio.run(start())
    marks["loop closed"] = time.monotonic()
    marks["exec"] = time.monotonic()
    result: dict[str, Any] = {"marks": marks, "calls": calls}
    Path(os.environ["BENCH_RESULT"]).write_text(json.dumps(result))
    exec_command(program, settings.command, plan.rendering)


if __name__ == "__main__":
    main(sys.argv[1:])
