"""Discover + render with 1,000 registered instances of one service in a real Consul agent.

Set-up (timed and printed, not a figure): 1,000 instances of ``scale1000`` on one catalog
node, addresses 10.1.x.y, port 2181, and their claims in KV, all written with ``/v1/txn``
(at most 64 operations a transaction; one node op, then service and KV set ops).

Two clusters over the same 1,000 registrations, because ZooKeeper's ids are 1..255:

- ``template``: 1,000 members (claims 1..1000), rendered by the template adapter into a
  members file of 1,000 lines. The claims are written directly: no adapter claims ids above
  255 today (``ServicePort.id_range`` defaults to 1..255), so a start could not make them.
- ``zookeeper``: its whole id range, 255 members (claims 1..255) among the 1,000
  registrations; the other 745 are registered without a claim, so discovery still reads,
  validates and matches all 1,000.

Timed, each round in this order-rotated mix:

- in-process: a new ``ConsulDiscovery`` session, ``Membership.snapshot()`` and the adapter's
  ``render`` (the real code, no fakes); baseline: the same with a 3-member cluster;
- the whole process ``cluster-bootstrap render <service> --dry-run``; baseline: the import
  floor ``python -c 'import consul.aio'``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.consul import ConsulDiscovery
from adapters.template import TemplateService
from adapters.zookeeper import ZooKeeperService
from bench.common import (
    PYTHON,
    Figure,
    clean_env,
    median,
    per_round,
    rotated,
    run_timed,
)
from bootstrap.deadline import Deadline
from bootstrap.membership import Membership
from bootstrap.model import Claim, ClusterView, Me
from bootstrap.ports import ServicePort
from bootstrap.settings import ConsulSettings
from testbed.consul import ConsulAgent
from testbed.procs import AGENT

SERVICE = "scale1000"
SMALL_SERVICE = "scale3"
NODE = "bench-scale-node"
TXN_MAX_OPS = 64
PORT = 2181  # every registration's port
TARGET_S = 0.5
MEMBERS_FILE = (
    "{% for m in members %}member.{{ m.member_id }}={{ m.address }}:{{ m.ports.service }}\n"
    "{% endfor %}"
)


def address(n: int) -> str:
    """Instance n's address: 10.1.0.1, ... 10.1.3.250 (no .0, no .255)."""
    return f"10.1.{(n - 1) // 250}.{(n - 1) % 250 + 1}"


@dataclass(frozen=True)
class Case:
    """One cluster over a service's registrations, rendered by one adapter."""

    label: str
    service_cls: type[ServicePort]
    cluster: str
    consul_service: str
    members: int

    def owner(self, n: int) -> str:
        return f"{self.cluster}-{n}"

    def options(self, conf_dir: Path) -> dict[str, Any]:
        if self.service_cls is TemplateService:
            return {"files": [{"path": str(conf_dir / "members.conf"), "content": MEMBERS_FILE}]}
        return {}

    def ports(self) -> dict[str, int]:
        """The adapter's default ports, the primary one on the registrations' port."""
        primary = self.service_cls.primary_port()
        return {
            label: PORT if label == primary else default
            for label, default in self.service_cls.port_labels.items()
        }

    def lines(self, text: str) -> int:
        """Member lines in a rendered (or printed) config."""
        prefix = "member." if self.service_cls is TemplateService else "server."
        return sum(1 for line in text.splitlines() if line.startswith(prefix))


CASES = (
    Case("template, 1,000 members", TemplateService, "scale-tpl", SERVICE, 1000),
    Case("zookeeper, 255 of 1,000", ZooKeeperService, "scale-zk", SERVICE, 255),
)
SMALL = (
    Case("template, 3 members", TemplateService, "scale-tpl3", SMALL_SERVICE, 3),
    Case("zookeeper, 3 members", ZooKeeperService, "scale-zk3", SMALL_SERVICE, 3),
)


def _chunks(ops: Sequence[dict[str, Any]], size: int) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(ops), size):
        yield ops[start : start + size]


def populate(consul: ConsulAgent, cases: Sequence[Case]) -> int:
    """Register every case's instances and write its claims; returns the transactions sent."""
    counts: dict[str, int] = {}
    for case in cases:
        counts[case.consul_service] = max(counts.get(case.consul_service, 0), case.members)
    counts[SERVICE] = 1000  # every registration, claimed or not
    ops: list[dict[str, Any]] = [
        {"Node": {"Verb": "set", "Node": {"Node": NODE, "Address": "10.0.0.1"}}}
    ]
    for service, count in counts.items():
        ops += [
            {
                "Service": {
                    "Verb": "set",
                    "Node": NODE,
                    "Service": {
                        "ID": f"{service}-{n}",
                        "Service": service,
                        "Address": address(n),
                        "Port": PORT,
                    },
                }
            }
            for n in range(1, count + 1)
        ]
    for case in cases:
        for n in range(1, case.members + 1):
            claim = Claim(n, case.owner(n), address(n), case.ports(), case.consul_service)
            ops.append(
                {
                    "KV": {
                        "Verb": "set",
                        "Key": f"cluster-bootstrap/{case.cluster}/ids/{n}",
                        "Value": base64.b64encode(claim.to_json().encode()).decode(),
                    }
                }
            )
    sent = 0
    for chunk in _chunks(ops, TXN_MAX_OPS):
        status, answer = consul.request("PUT", "/v1/txn", list(chunk), timeout_s=30)
        if status != 200:
            raise RuntimeError(f"txn: {status} {str(answer)[:300]}")
        sent += 1
    return sent


def _me(case: Case, workdir: Path) -> Me:
    ports = case.ports()
    return Me(case.owner(1), address(1), ports, "0.0.0.0", ports, workdir, workdir)


async def _in_process(consul: ConsulAgent, case: Case, workdir: Path) -> tuple[float, int]:
    """Seconds for a new session + snapshot + render, and the member lines rendered."""
    settings = ConsulSettings(host="127.0.0.1", port=consul.http_port)
    service = case.service_cls(case.options(workdir), {})
    started = time.monotonic()
    async with ConsulDiscovery(settings, Deadline(60)) as discovery:
        membership = Membership(
            discovery,
            prefix=f"cluster-bootstrap/{case.cluster}",
            consul_service=case.consul_service,
            port_labels=case.service_cls.port_labels,
            id_range=(1, case.members),
        )
        members, _ = await membership.snapshot()
        view = ClusterView(_me(case, workdir), 1, tuple(members), {}, {})
        rendering = service.render(view)
    took = time.monotonic() - started
    return took, case.lines(rendering.files[0].content)


def _process_argv(case: Case, workdir: Path) -> list[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        AGENT,
        "render",
        case.service_cls.key,
        "--dry-run",
        "--cluster",
        case.cluster,
        "--consul-service",
        case.consul_service,
        "--expect",
        str(case.members),
        "--address",
        address(1),
        "--member-name",
        case.owner(1),
        "--data-dir",
        str(workdir / "data"),
        "--conf-dir",
        str(workdir / "conf"),
    ]
    if case.service_cls is TemplateService:
        config = workdir / "settings.yaml"
        config.write_text(json.dumps({"options": case.options(workdir / "conf")}))
        argv += ["--config", str(config), "--port", f"service={PORT}"]
    return argv


def run(rounds: int, consul: ConsulAgent, workdir: Path) -> list[Figure]:
    started = time.monotonic()
    sent = populate(consul, [*CASES, *SMALL])
    took = time.monotonic() - started
    print(f"  set-up: {sent} transactions (<= {TXN_MAX_OPS} ops each) in {took:.2f} s")
    _, answer = consul.request("GET", f"/v1/health/service/{SERVICE}")
    size = len(json.dumps(answer))
    print(
        f"  health/service/{SERVICE}: {len(answer) if isinstance(answer, list) else answer} "
        f"instances, about {size / 1024:.0f} KiB of JSON"
    )
    env = clean_env(consul.env())
    jobs: dict[str, Callable[[], float]] = {
        "python -c 'import consul.aio'": lambda: (
            run_timed([PYTHON, "-c", "import consul.aio"], env).check("import floor").seconds
        )
    }
    for case in (*CASES, *SMALL):
        jobs[f"in-process: {case.label}"] = _in_process_job(consul, case, workdir)
    for case in CASES:
        jobs[f"process: {case.label}"] = _process_job(case, workdir, env)
    for job in jobs.values():  # warm-up, and the checks of what was rendered
        job()
    seconds: dict[str, list[float]] = defaultdict(list)
    for round_no in range(rounds):
        for name in rotated(list(jobs), round_no):
            seconds[name].append(jobs[name]())
    for name, values in seconds.items():
        print(per_round(name, values))
    floor = median(seconds["python -c 'import consul.aio'"])
    figures = []
    for case, small in zip(CASES, SMALL, strict=True):
        figures.append(
            Figure(
                f"discover+render in-process ({case.label})",
                median(seconds[f"in-process: {case.label}"]),
                "s",
                median(seconds[f"in-process: {small.label}"]),
                "3 members",
                target_value=TARGET_S,
            )
        )
    for case in CASES:
        figures.append(
            Figure(
                f"render --dry-run process ({case.label})",
                median(seconds[f"process: {case.label}"]),
                "s",
                floor,
                "import consul.aio",
                target_value=TARGET_S,
            )
        )
    return figures


def _in_process_job(consul: ConsulAgent, case: Case, workdir: Path) -> Callable[[], float]:
    def job() -> float:
        took, lines = asyncio.run(_in_process(consul, case, workdir / "in-process"))
        if lines != case.members:
            raise RuntimeError(f"{case.label}: rendered {lines} members, not {case.members}")
        return took

    return job


def _process_job(case: Case, workdir: Path, env: Mapping[str, str]) -> Callable[[], float]:
    where = workdir / f"process-{case.cluster}"
    argv = _process_argv(case, where)
    printed = where / "stdout.txt"

    def job() -> float:
        ran = run_timed(argv, env, stdout=printed).check(" ".join(argv[:3]))
        lines = case.lines(printed.read_text())
        if lines != case.members:
            raise RuntimeError(f"{case.label}: printed {lines} members, not {case.members}")
        return ran.seconds

    return job


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["--only", "scale", *sys.argv[1:]]))
