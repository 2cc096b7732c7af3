"""One lock for the cluster: a Consul session lock at ``<kv_prefix>/<cluster>/lock``.

Contract:

- ``hold(why)`` waits for the lock (a blocking query on the key, no polling), holds it for the
  ``async with`` body and releases it on the way out, even when the body fails or is cancelled.
- ``hold(why, patience_s=N)`` waits at most about N seconds (a blocking query never runs past
  it; an acquire already sent is never cut short, so it cannot leave a lock held unknown), then
  raises ``LockBusy`` naming the holder, with nothing held. The voter keeper waits so, and looks
  at the cluster again: a change it decided while another member held the lock may be done
  already, and a decision that needs no lock (a removal refused at the floor) is not kept
  waiting behind a slow holder, or a dead one (its session TTL, then the lock-delay).
- The lock lives on a session with a TTL (``TTL_S``), renewed every third of it while held.
  A holder that dies (SIGKILL, host gone) stops renewing: Consul ends its session after the TTL
  (up to twice it) and refuses the lock for ``LOCK_DELAY_S`` more, so a holder that is only
  slow has time to notice it lost the lock before someone else acts.
- A session exists only while an action wants the lock: an idle member costs Consul nothing.
- Every action the watch loop takes that disturbs a server (a reload, a restart, a membership
  change) runs inside ``hold``: one Consul change never hits every member at the same moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable

from bootstrap.errors import ConsulError, LockBusy
from bootstrap.log import log
from bootstrap.ports import DiscoveryPort

TTL_S = 10  # Consul's minimum
LOCK_DELAY_S = 10
RETRY_S = 1.0  # after a refused acquire of a free key (lock-delay) or a Consul error
MAX_RETRY_S = 30.0
RELEASE_TIMEOUT_S = 5.0


class ClusterLock:
    def __init__(
        self,
        discovery: DiscoveryPort,
        key: str,
        holder: str,
        *,
        ttl_s: int = TTL_S,
        lock_delay_s: int = LOCK_DELAY_S,
        wait_s: float = 300.0,
    ) -> None:
        self.discovery = discovery
        self.key = key
        self.holder = holder
        self.ttl_s = ttl_s
        self.lock_delay_s = lock_delay_s
        self.wait_s = wait_s
        self.lost = asyncio.Event()  # set if the session died while the lock was held

    @contextlib.asynccontextmanager
    async def hold(self, why: str, *, patience_s: float | None = None) -> AsyncIterator[None]:
        session = await self._session()
        renewer = asyncio.create_task(self._renew(session))
        try:
            await self._acquire(session, why, patience_s)
            log.info("took the cluster lock %s (%s)", self.key, why)
            try:
                yield
            finally:
                await self._bounded(self.discovery.lock_release(self.key, session), "release")
                log.info("released the cluster lock %s", self.key)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self._bounded(self.discovery.session_destroy(session), "session destroy")

    async def _session(self) -> str:
        delay = RETRY_S
        while True:
            try:
                return await self.discovery.session_create(
                    f"cluster-bootstrap {self.holder}", self.ttl_s, self.lock_delay_s
                )
            except ConsulError as exc:
                if delay == RETRY_S:
                    log.warning("cluster lock: cannot create a session: %s; retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_S)

    async def _acquire(self, session: str, why: str, patience_s: float | None) -> None:
        index = failures = 0
        waiting_logged = False
        end = None if patience_s is None else time.monotonic() + patience_s
        holder = "another member"
        while True:
            left = self.wait_s if end is None else end - time.monotonic()
            if left <= 0:
                raise LockBusy(f"the cluster lock stayed held by {holder} for {patience_s:g}s")
            try:
                if await self.discovery.lock_acquire(self.key, session, f"{self.holder}: {why}"):
                    return
                index, entries = await self.discovery.kv_list(
                    self.key, index=index, wait_s=min(self.wait_s, left)
                )
            except ConsulError as exc:
                if not failures:
                    log.warning("cluster lock: %s; retrying", exc)
                failures += 1
                await asyncio.sleep(min(RETRY_S * failures, MAX_RETRY_S))
                continue
            failures = 0
            entry = entries.get(self.key)
            if entry is not None and entry.session is not None:
                holder = repr(entry.value[:80])
                if not waiting_logged:
                    log.info("waiting for the cluster lock, held by %r", entry.value[:80])
                    waiting_logged = True
            else:
                # Free but refused: a dead holder's lock-delay. The key will not change when
                # it ends, so a blocking query would sleep through it: look again shortly.
                index, holder = 0, "a lock-delay (a holder that died)"
                await asyncio.sleep(RETRY_S)

    async def _renew(self, session: str) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                alive = await self.discovery.session_renew(session)
            except ConsulError as exc:
                log.warning("cluster lock: renewing the session failed: %s", exc)
                continue
            if not alive:
                log.error("cluster lock: the session expired; the lock is lost")
                self.lost.set()
                return

    async def _bounded(self, request: Awaitable[object], what: str) -> None:
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT_S):
                await request
        except (ConsulError, TimeoutError) as exc:
            log.warning("cluster lock: %s failed (%s); the session TTL frees it", what, exc)
