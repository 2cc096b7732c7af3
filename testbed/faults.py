"""Consul's own failures on the hosts bed, played against a ZooKeeper ensemble that is forming.

Each scenario drives a ``HostsZk`` through one fault and returns an ``Outcome``: the evidence
the tests assert on (modes, ids, server lists, who exited) and the seconds each step took,
which ``bench/hosts_faults.py`` prints and the tests never assert on.

The fault always lands *during* formation: members 1 and 3 (subnet a) are started first and
hold their id claims, so they are waiting for the third when the fault strikes; member 2 (on
subnet b) starts at the moment of the fault.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from testbed.hosts import HostsBed, HostsZk
from testbed.jvm import zk_mode
from testbed.procs import wait_until
from testbed.zookeeper import PORTS

KV_PREFIX = "cluster-bootstrap"  # the agent's default --kv-prefix


@dataclass
class Outcome:
    modes: dict[int, str | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, object] = field(default_factory=dict)


def myids(zk: HostsZk) -> dict[int, int]:
    return {n: int((zk.member_dir(n) / "data" / "myid").read_text()) for n in zk.procs}


def server_lines(zk: HostsZk) -> set[tuple[str, ...]]:
    """The distinct ``server.N=`` lists the members rendered (one, when all agree)."""
    lists = set()
    for n in zk.procs:
        cfg = zk.member_dir(n) / "conf" / "zoo.cfg"
        lines = cfg.read_text().splitlines() if cfg.exists() else []
        lists.add(tuple(sorted(line for line in lines if line.startswith("server."))))
    return lists


def exited(zk: HostsZk) -> dict[int, int | None]:
    return {n: p.popen.returncode for n, p in zk.procs.items() if not p.alive()}


def claims(bed: HostsBed, cluster: str, via: str = "m1") -> list[str]:
    return bed.agents[via].kv_keys(f"{KV_PREFIX}/{cluster}/ids/")


def start_first_two(bed: HostsBed, zk: HostsZk, timeout_s: float = 60) -> None:
    """Members 1 and 3 started, and waiting: both id claims are in Consul."""
    zk.start(1)
    zk.start(3)
    wait_until(lambda: len(claims(bed, zk.cluster)) >= 2, timeout_s, "two id claims")


def no_fault(bed: HostsBed, zk: HostsZk) -> Outcome:
    """The baseline: the same start order with nothing failing."""
    out = Outcome()
    start_first_two(bed, zk)
    t0 = time.monotonic()
    zk.start(2)
    out.modes = zk.wait_quorum(timeout_s=120)
    out.seconds["ensemble serving"] = time.monotonic() - t0
    return out


def leader_killed(bed: HostsBed, zk: HostsZk) -> Outcome:
    """SIGKILL the raft leader while members wait; the last member starts in the election."""
    out = Outcome()
    start_first_two(bed, zk)
    old = bed.wait_leader()
    t0 = time.monotonic()
    bed.agents[old].kill()
    zk.start(2)
    new = bed.wait_leader(other_than=old)
    out.seconds["new consul leader"] = time.monotonic() - t0
    out.modes = zk.wait_quorum(timeout_s=120)
    out.seconds["ensemble serving"] = time.monotonic() - t0
    out.notes = {"old leader": old, "new leader": new}
    return out


def link_cut(bed: HostsBed, zk: HostsZk, hold_s: float = 15.0) -> Outcome:
    """Member 2's host loses its link as it starts; back after ``hold_s``.

    While it is cut, the other two are sampled every 0.2 s: ``notes["served while cut"]`` lists
    every mode seen (a split cluster would show a leader here), ``seconds["failed declared"]``
    when Consul's catalog first said the host's ``serfHealth`` is critical.
    """
    out = Outcome()
    start_first_two(bed, zk)
    short = bed.members[1].short
    seen: set[str | None] = set()
    t0 = time.monotonic()
    others = [bed.members[0].address, bed.members[2].address]  # a probe of the cut host
    # would wait out its connect timeout and blur the timing; it cannot serve while cut anyway
    with bed.network.cut(short):
        zk.start(2)
        while time.monotonic() - t0 < hold_s:
            seen.update(bed.probe(lambda: [zk_mode(a, PORTS["client"]) for a in others]))
            if "failed declared" not in out.seconds and bed.node_status(short, "m1") == "critical":
                out.seconds["failed declared"] = time.monotonic() - t0
            time.sleep(0.2)
        out.notes["exited while cut"] = exited(zk)
        out.notes["configs while cut"] = [
            n for n in zk.procs if (zk.member_dir(n) / "conf" / "zoo.cfg").exists()
        ]
    t1 = time.monotonic()
    out.notes["served while cut"] = sorted(m for m in seen if m)
    out.modes = zk.wait_quorum(timeout_s=120)
    out.seconds["serving after link back"] = time.monotonic() - t1
    return out


def local_agent_down(bed: HostsBed, zk: HostsZk, down_s: float = 5.0) -> Outcome:
    """Member 2's host has no Consul agent when the member starts; it comes up ``down_s`` later."""
    out = Outcome()
    agent = bed.agents[bed.members[1].short]
    start_first_two(bed, zk)
    agent.stop()
    zk.start(2)
    time.sleep(down_s)
    out.notes["exited while down"] = exited(zk)
    t0 = time.monotonic()
    agent.start()
    out.seconds["agent back"] = time.monotonic() - t0
    out.modes = zk.wait_quorum(timeout_s=120)
    out.seconds["serving after agent back"] = time.monotonic() - t0
    return out


SCENARIOS = {
    "no fault": no_fault,
    "leader killed": leader_killed,
    "link cut": link_cut,
    "local agent down": local_agent_down,
}
