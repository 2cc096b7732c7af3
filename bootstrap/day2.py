"""Day 2 composed: the supervised server, the watch loop, health into Consul, reload on change.

``supervise`` runs after the same start flow as an exec'd start. It starts the server as a
child (``bootstrap.supervisor``), watches the cluster (``bootstrap.watch``), reports health
(``bootstrap.health``) and, for services that re-render on change, rewrites the files and
applies ``--on-change`` after the quiet period, under the cluster lock (``bootstrap.lock``).
It returns the server's exit code. Nothing here ever stops the server because Consul is down
or slow: every loop logs, backs off and catches up.

A service that changes its voters online (``ServicePort.voter_changes``) also gets a
``VoterKeeper`` (``bootstrap.keeper``): a joiner promoted, a moved voter re-added (before its
server starts), a lost voter removed after ``--remove-after``, one change at a time under the
same lock. A service whose voters cannot change online but that keeps a record of members
(``ServicePort.unregisters``: a static Kafka quorum) gets one that only unregisters gone
non-voters (brokers).

``watch_only`` is the same loop without a child (``cluster-bootstrap watch``): a sidecar that
keeps the files of a server it cannot signal up to date.

On the way out every task is cancelled and awaited; what ``--register`` registered is
deregistered within ``DEREGISTER_TIMEOUT_S`` (a Consul that is down costs a warning).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable
from pathlib import Path

from bootstrap.deadline import Unbounded
from bootstrap.errors import BootstrapError, ConsulError
from bootstrap.files import write_all
from bootstrap.flow import Plan, Start, child_env
from bootstrap.health import HealthReporter
from bootstrap.keeper import VoterKeeper
from bootstrap.lock import ClusterLock
from bootstrap.log import log
from bootstrap.model import Rendering
from bootstrap.ports import DiscoveryPort, ServicePort
from bootstrap.reload import OnChange, QuietPeriod
from bootstrap.settings import Settings
from bootstrap.supervisor import Child

DEREGISTER_TIMEOUT_S = 5.0
SETTLE_CHECK_S = 0.25  # how often the lock holder asks whether its server is back


def changed_files(rendering: Rendering) -> list[Path]:
    """The rendered files whose bytes differ from what is on disk."""
    changed = []
    for file in rendering.files:
        try:
            same = file.path.read_bytes() == file.content.encode()
        except OSError:
            same = False
        if not same:
            changed.append(file.path)
    return changed


class Day2:
    """The loops of one member after its start; ``child`` is ``None`` for ``watch_only``."""

    def __init__(
        self,
        settings: Settings,
        discovery: DiscoveryPort,
        service: ServicePort,
        plan: Plan,
        child: Child | None,
    ) -> None:
        self.settings = settings
        self.discovery = discovery
        self.service = service
        self.plan = plan
        self.child = child
        self.start = Start(settings, discovery, service, Unbounded())
        self.quiet = QuietPeriod(settings.change_wait)
        self.lock = ClusterLock(discovery, f"{settings.cluster_prefix}/lock", settings.member_name)
        self.service_id = self.start.registration(plan.view.member_id).service_id
        self.health = HealthReporter(discovery, service, self.start.me, self.service_id)
        self.on_change = settings.on_change if child is not None else OnChange("none")
        self.reloads = 0
        self.keeper: VoterKeeper | None = None
        if child is not None and service.votes():
            online = service.voter_changes(plan.view) is not None
            if online or service.unregisters():
                self.keeper = VoterKeeper(
                    self.start, self.lock, plan.view.member_id, voters_online=online
                )

    def notice(self, kind: str) -> None:
        if type(self.service).reloads_on_change:
            self.quiet.notice()
        if self.keeper is not None:
            self.keeper.notice()

    async def run(self) -> None:
        """The loops, until cancelled."""
        from bootstrap.watch import Watch  # the exec'd start never needs it

        watch = Watch(
            self.discovery, self.settings.cluster_prefix, self.settings.consul_service, self.notice
        )
        async with asyncio.TaskGroup() as group:
            group.create_task(watch.run())
            group.create_task(self._reload_loop())
            if self.settings.register:
                group.create_task(self.health.run())
            if self.keeper is not None:
                group.create_task(self._keep_voters(self.keeper))

    async def _keep_voters(self, keeper: VoterKeeper) -> None:
        """The keeper, once this member's own server is healthy: a member whose server does
        not serve yet neither asks to vote nor judges who is lost."""
        while True:  # polled: the server's health is not an event anything could set
            if await self.health.healthy():
                break
            await asyncio.sleep(SETTLE_CHECK_S * 4)
        await keeper.run()

    async def _reload_loop(self) -> None:
        while True:
            await self.quiet.settled()
            try:
                await self.reload()
            except ConsulError as exc:
                log.warning("reload: %s; the next change tries again", exc)
            except BootstrapError as exc:
                log.error("reload: %s; keeping the files as they are", exc)

    async def reload(self) -> None:
        """Re-render; if the bytes changed, write and apply ``--on-change`` under the lock."""
        if not changed_files((await self.start.preview()).rendering):
            log.info("re-rendered after a change: no file differs; nothing to do")
            return
        async with self.lock.hold(f"reload ({self.on_change})"):
            plan = await self.start.preview()  # the view may have moved while we waited
            changed = changed_files(plan.rendering)
            if not changed:
                log.info("re-rendered under the lock: no file differs any more")
                return
            write_all(plan.rendering.files)
            log.info("rewrote %s", ", ".join(str(path) for path in changed))
            env_changed = sorted(
                name
                for name in plan.rendering.env.keys() | self.plan.rendering.env.keys()
                if plan.rendering.env.get(name) != self.plan.rendering.env.get(name)
            )
            if env_changed:
                log.info("environment %s changed: it applies when the server starts", env_changed)
            self.plan = plan
            self.reloads += 1
            await self._apply()

    async def _apply(self) -> None:
        child, action = self.child, self.on_change
        if child is None or action.action == "none":
            return
        if action.action == "signal":
            child.forward(action.signal)
        else:
            child.env = child_env(self.plan.rendering)  # a restart also takes the new environment
            await child.restart()
        await self._settle()

    async def _settle(self) -> None:
        """Hold the lock until the server is healthy again (bounded by the kill timeout)."""
        await asyncio.sleep(SETTLE_CHECK_S * 2)
        deadline = asyncio.get_running_loop().time() + max(self.settings.kill_timeout_s, 5.0)
        while asyncio.get_running_loop().time() < deadline:
            if await self.health.healthy():
                return
            await asyncio.sleep(SETTLE_CHECK_S)
        log.warning("the server is not healthy again after the reload; releasing the lock")

    async def deregister(self) -> None:
        if not self.settings.register:
            return
        try:
            async with asyncio.timeout(DEREGISTER_TIMEOUT_S):
                await self.discovery.deregister(self.service_id)
            log.info("deregistered %s", self.service_id)
        except (ConsulError, TimeoutError) as exc:
            log.warning(
                "could not deregister %s (%s); Consul removes it when its check stays critical",
                self.service_id,
                exc or "no answer",
            )


async def supervise(
    settings: Settings, discovery: DiscoveryPort, service: ServicePort, plan: Plan, program: str
) -> int:
    """Run the server as a child with the day-2 loops beside it; the server's exit code."""
    async with Child(
        program, settings.command, child_env(plan.rendering), settings.kill_timeout_s
    ) as child:
        service.tool_runner = child.run_tool  # its reaper would steal asyncio's exit codes
        day2 = Day2(settings, discovery, service, plan, child)
        keeper = day2.keeper
        if keeper is not None and keeper.voters_online and type(service).moves_before_start:
            await keeper.move_first()
        child.start()
        loops = asyncio.create_task(day2.run())
        try:
            code = await _first_of(child.wait(), loops)
        finally:
            await _cancel(loops)
            await day2.deregister()
    return code


async def watch_only(
    settings: Settings, discovery: DiscoveryPort, service: ServicePort, plan: Plan
) -> int:
    """The watch loop alone, re-rendering files for a server in another task; until a signal."""
    day2 = Day2(settings, discovery, service, plan, None)
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[int] = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: None if stop.done() else stop.set_result(0))
    loops = asyncio.create_task(day2.run())
    try:
        await _first_of(stop, loops)
    finally:
        await _cancel(loops)
        await day2.deregister()
    return 0


async def _first_of(waited: Awaitable[int], loops: asyncio.Task[None]) -> int:
    waiter = asyncio.ensure_future(waited)
    done, _ = await asyncio.wait({waiter, loops}, return_when=asyncio.FIRST_COMPLETED)
    if loops in done:  # a loop ended: a bug, since each loop outlives every Consul failure
        waiter.cancel()
        loops.result()
        raise RuntimeError("the day-2 loops ended on their own")
    return waiter.result()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
