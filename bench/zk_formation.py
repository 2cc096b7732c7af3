"""ZooKeeper formation: 3 members started at the same moment, until one leader + two followers.

- Through the agent: ``testbed.zookeeper.ZkEnsemble`` (127.0.0.41-43): each member is
  ``cluster-bootstrap zookeeper --register ... -- java ... QuorumPeerMain zoo.cfg``; the agents
  find each other through the real Consul agent, claim ids, write zoo.cfg and myid, exec.
- Baseline: the same servers (same JVM flags, addresses, ports) with hand-written configs
  (``testbed.zookeeper.static_config``), started directly.

The clock runs from just before the first of the three processes is started until ``srvr``
(polled every 50 ms on all three) shows one leader and two followers. Every round uses new
data dirs (and, through the agent, a new cluster name). The two kinds alternate, and which of
them goes first alternates too.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from bench.common import Figure, jvm_peers, median, per_round, rotated
from testbed.consul import ConsulAgent
from testbed.jvm import zk_mode
from testbed.procs import Process, port_open
from testbed.zookeeper import PORTS, ZkEnsemble, host, static_config

FIRST_HOST = 41  # this benchmark's loopback range: 127.0.0.41-43
SIZE = 3
POLL_S = 0.05
TIMEOUT_S = 120.0
AGENT, STATIC = "through cluster-bootstrap", "static configs"


def _ports_free() -> None:
    """Wait until nothing of an earlier round listens; someone else there is an error."""
    end = time.monotonic() + 15
    while any(port_open(host(n, FIRST_HOST), PORTS["client"], 0.2) for n in range(1, SIZE + 1)):
        if time.monotonic() > end:
            raise RuntimeError(f"127.0.0.{FIRST_HOST}-{FIRST_HOST + SIZE - 1}:2181 still in use")
        time.sleep(0.2)


def _is_java(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/exe").readlink().name.startswith("java")
    except OSError:
        return False


def _formed(
    procs: Mapping[int, Process], started: float, execs: dict[int, float] | None = None
) -> float:
    """Seconds from ``started`` until one leader and the rest followers.

    ``execs`` collects when each member became the JVM (the agent's exec), as polled.
    """
    while True:
        for n, proc in procs.items():
            if execs is not None and n not in execs and _is_java(proc.pid):
                execs[n] = time.monotonic() - started
        modes = [zk_mode(host(n, FIRST_HOST), PORTS["client"]) for n in procs]
        if modes.count("leader") == 1 and modes.count("follower") == len(procs) - 1:
            return time.monotonic() - started
        for n, proc in procs.items():
            if not proc.alive():
                tail = proc.log_tail()
                last = tail.strip().splitlines()[-1] if tail.strip() else "no output"
                raise RuntimeError(f"member {n} exited {proc.popen.returncode} ({last})\n{tail}")
        if time.monotonic() - started > TIMEOUT_S:
            raise TimeoutError(f"no ensemble after {TIMEOUT_S:.0f}s: {modes}")
        time.sleep(POLL_S)


def through_agent(
    consul: ConsulAgent, workdir: Path, execs: dict[int, float], kind: type[ZkEnsemble]
) -> float:
    cluster = f"zkf-{uuid.uuid4().hex[:8]}"
    _ports_free()
    try:
        with kind(consul, workdir / cluster, SIZE, cluster, first_host=FIRST_HOST) as zk:
            started = time.monotonic()
            zk.start_all()
            return _formed(zk.procs, started, execs)
    finally:
        for n in range(1, SIZE + 1):
            consul.deregister(f"{cluster}-{n}")


def static(workdir: Path) -> float:
    _ports_free()
    commands = static_config(workdir, SIZE, first_host=FIRST_HOST)
    procs: dict[int, Process] = {}
    try:
        started = time.monotonic()
        for n, command in enumerate(commands, start=1):
            procs[n] = Process(command, workdir / f"zk{n}" / "member.log")
        return _formed(procs, started)
    finally:
        for proc in procs.values():
            proc.stop()


def run(rounds: int, consul: ConsulAgent, workdir: Path) -> list[Figure]:
    jvm_peers()
    seconds: dict[str, list[float]] = {AGENT: [], STATIC: []}
    last_exec: dict[str, list[float]] = {AGENT: []}
    dirs = {AGENT: "agent", STATIC: "static"}
    for round_no in range(rounds):
        for kind in rotated(list(seconds), round_no):
            where = workdir / f"round-{round_no}" / dirs[kind]
            execs: dict[int, float] = {}
            if kind == STATIC:
                took = static(where)
            else:
                took = through_agent(consul, where, execs, ZkEnsemble)
            seconds[kind].append(took)
            shown = ""
            if kind in last_exec and len(execs) == SIZE:
                last_exec[kind].append(max(execs.values()))
                shown = ", ".join(f"{t:.2f}" for t in execs.values())
                shown = f" (exec'd java at {shown} s)"
            print(f"  round {round_no + 1}: {kind:<32} {took:.2f} s{shown}", flush=True)
    for kind, values in seconds.items():
        print(per_round(kind, values))
    for kind, values in last_exec.items():
        if values:
            print(per_round(f"last exec'd java, {dirs[kind]} (polled)", values))
    agent, baseline = median(seconds[AGENT]), median(seconds[STATIC])
    print(f"  ratio of medians: {agent / baseline:.3f}")
    return [
        Figure(
            "ZooKeeper 3 members formed",
            agent,
            "s",
            baseline,
            "static configs",
            target_ratio=1.15,
            note=f"start to 1 leader + 2 followers, {rounds} rounds each, interleaved",
        ),
    ]


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["--only", "zk_formation", *sys.argv[1:]]))
