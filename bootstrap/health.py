"""Health into Consul: a TTL check on this member's registration, fed from ``health()``.

Contract:

- In supervise mode the registration carries ``supervised_check()``: a TTL check, so Consul's
  UI shows what the service adapter says (ZooKeeper: passing only while serving in a quorum),
  not merely that a port is open. Discovery still counts members in every health state.
- The adapter is asked every ``PROBE_S`` (locally, no Consul request). Consul hears of a new
  state at once, and of an unchanged one every ``REFRESH_S`` (a third of the TTL), so an idle
  member costs two requests a minute. If the agent dies, the check goes critical after the TTL.
- **Starting is a warning, not critical.** Until the server first passes, a critical answer
  goes to Consul as ``warning`` ("starting: ..."), and the check is registered ``warning``
  (Consul would start it critical). A voter with a critical check counts as lost
  (``bootstrap.keeper``) and Consul deregisters a registration critical for
  ``deregister_critical_after``: a slow start (Kafka recovering its log after an unclean
  stop) must be neither. Once it has passed, critical is critical; an agent that died still
  goes critical when its TTL runs out.
- Consul down: one warning, the next probe tries again; the server is never touched.
"""

from __future__ import annotations

import asyncio
import time

from bootstrap.errors import ConsulError
from bootstrap.log import log
from bootstrap.model import Me
from bootstrap.ports import DiscoveryPort, HealthCheck, ServicePort

TTL_S = 90
REFRESH_S = TTL_S / 3
PROBE_S = 10.0
STARTING_PROBE_S = 1.0  # until the first passing answer: a starting server is seen at once
PROBE_TIMEOUT_S = 5.0
STATUS = {0: "passing", 1: "warning", 2: "critical"}


def supervised_check() -> HealthCheck:
    return HealthCheck(ttl=f"{TTL_S}s", status="warning")


def check_id(service_id: str) -> str:
    """The id Consul gives the single check registered with a service."""
    return f"service:{service_id}"


class HealthReporter:
    def __init__(
        self, discovery: DiscoveryPort, service: ServicePort, me: Me, service_id: str
    ) -> None:
        self.discovery = discovery
        self.service = service
        self.me = me
        self.check_id = check_id(service_id)
        self.requests = 0
        self.served = False  # the server has passed once: from then on, critical is critical

    async def probe(self) -> tuple[str, str]:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                report = await self.service.health(self.me)
        except TimeoutError:
            return "critical", f"health probe gave no answer in {PROBE_TIMEOUT_S:g}s"
        return STATUS.get(report.code, "critical"), report.detail

    async def healthy(self) -> bool:
        return (await self.probe())[0] == "passing"

    async def report(self) -> tuple[str, str]:
        """What Consul is told: the probe, with a critical start softened to a warning."""
        status, detail = await self.probe()
        self.served = self.served or status == "passing"
        if status == "critical" and not self.served:
            return "warning", f"starting: {detail}"
        return status, detail

    async def run(self) -> None:
        last, sent_at, warned = "", 0.0, False
        while True:
            status, detail = await self.report()
            if status != last or time.monotonic() - sent_at >= REFRESH_S:
                try:
                    self.requests += 1
                    await self.discovery.report_health(self.check_id, status, detail)
                except ConsulError as exc:
                    if not warned:
                        log.warning("health: cannot tell Consul (%s); trying again", exc)
                    warned = True
                else:
                    if status != last:
                        log.info("health: %s -> %s (%s)", last or "(unknown)", status, detail)
                    last, sent_at, warned = status, time.monotonic(), False
            await asyncio.sleep(PROBE_S if last == "passing" else STARTING_PROBE_S)
