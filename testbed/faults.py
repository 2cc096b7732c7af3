"""Consul's own failures on the hosts bed, played against a ZooKeeper ensemble that is forming.

Each scenario drives a ``HostsZk`` through one fault and returns an ``Outcome``: the evidence
the tests assert on (modes, ids, server lists, who exited) and the seconds each step took,
which ``bench/hosts_faults.py`` prints and the tests never assert on.

The fault always lands *during* formation: members 1 and 3 (subnet a) are started first and
hold their id claims, so they are waiting for the third when the fault strikes; member 2 (on
subnet b) starts at the moment of the fault.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from testbed.hosts import HostsBed, HostsZk
from testbed.jvm import four_letter, zk_mode
from testbed.netns import in_netns
from testbed.procs import wait_until
from testbed.zookeeper import PORTS, config_members

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


def roster(bed: HostsBed, cluster: str, via: str = "m3") -> dict[str, object]:
    """The roster as ``via``'s agent reads it (``{}`` when there is none or no answer)."""
    try:
        status, answer = bed.agents[via].request(
            "GET", f"/v1/kv/{KV_PREFIX}/{cluster}/roster?raw", timeout_s=2
        )
    except OSError:
        return {}
    if status == 200 and isinstance(answer, (str, bytes)):
        answer = json.loads(answer)
    return answer if status == 200 and isinstance(answer, dict) else {}


def roster_ids(bed: HostsBed, cluster: str, via: str = "m3") -> list[int]:
    voters = roster(bed, cluster, via).get("voters")
    return sorted(int(v["id"]) for v in voters) if isinstance(voters, list) else []


def conf_voters(bed: HostsBed, address: str) -> list[int] | None:
    """The voters (``server.N`` not observers) in the ``conf`` of the server at ``address``,
    probed from the router; ``None`` when it does not serve (``conf`` needs a running server)."""
    answer = bed.probe(lambda: four_letter(address, PORTS["client"], "conf"))
    voters, observers = config_members(answer)
    return voters if voters or observers else None


def disk_voters(zk: HostsZk, n: int) -> list[int]:
    """The voters in the dynamic config file member n's ``zoo.cfg`` names: what its server runs
    with when it does not serve and cannot answer ``conf`` (ZooKeeper rewrites both files on
    every committed reconfig)."""
    zoo_cfg = (zk.member_dir(n) / "conf" / "zoo.cfg").read_text()
    found = re.search(r"^dynamicConfigFile=(.+)$", zoo_cfg, re.MULTILINE)
    text = Path(found.group(1).strip()).read_text() if found else zoo_cfg
    return config_members(text)[0]


def reaches(bed: HostsBed, from_short: str, address: str, timeout_s: float = 2.0) -> bool:
    """A TCP connect from host ``from_short`` to ``address``'s ZooKeeper client port."""

    def connect() -> bool:
        try:
            socket.create_connection((address, PORTS["client"]), timeout=timeout_s).close()
        except OSError:
            return False
        return True

    return in_netns(bed.host(from_short).netns, connect)


def log_lines(zk: HostsZk, needle: str) -> list[str]:
    """Every line of every member's log that contains ``needle``."""
    return [
        line
        for n in zk.procs
        for line in (zk.member_dir(n) / "member.log").read_text(errors="replace").splitlines()
        if needle in line
    ]


def supervised_args(remove_after_s: float, min_size: int = 2) -> list[str]:
    """The agent's options for ``partition_then_cut``: supervise mode that removes lost voters."""
    return [
        "--set", "reconfig=true", "--supervise", "--register",
        "--remove-after", f"{remove_after_s:g}s", "--min-size", str(min_size),
    ]  # fmt: skip


def registration_status(bed: HostsBed, service: str, node: str, via: str) -> str | None:
    """The worst check of ``service``'s registration on ``node``, as the catalog (the
    servers) reports it through ``via``'s agent: what the keeper counts a voter lost by."""
    try:
        status, entries = bed.agents[via].request(
            "GET", f"/v1/health/service/{service}", timeout_s=2
        )
    except OSError:
        return None
    if status != 200 or not isinstance(entries, list):
        return None
    order = ["passing", "warning", "critical"]
    for entry in entries:
        if entry.get("Node", {}).get("Node") == node:
            found = [c.get("Status") for c in entry.get("Checks", [])]
            return max(found, key=lambda c: order.index(c) if c in order else 3, default=None)
    return None


def hold_partition(bed: HostsBed, zk: HostsZk, peer: int, hold_s: float) -> dict[str, object]:
    """m2 partitioned from member ``peer``'s host only, for ``hold_s``; the evidence.

    ``reaches``: whether the peer and the third host can connect to m2 during it; ``roster``,
    ``serf`` and ``registration``: every roster ids, m2's ``serfHealth`` and the worst check
    of m2's registration sampled through the hold (via both other hosts' agents); ``modes``,
    ``conf`` and ``disk``: each server's mode, ``conf`` voters and on-disk voters at the end.
    """
    shorts = {n: h.short for n, h in enumerate(bed.members, 1)}
    third = next(n for n in (1, 3) if n != peer)
    address = {n: zk.host(n) for n in (1, 2, 3)}
    roster_seen: set[tuple[int, ...]] = set()
    serf: set[str | None] = set()
    registration: set[str | None] = set()
    with bed.network.partition(shorts[peer], shorts[2]):
        found: dict[str, object] = {
            "reaches": {n: reaches(bed, shorts[n], address[2]) for n in (peer, third)}
        }
        t0 = time.monotonic()
        while time.monotonic() - t0 < hold_s:
            roster_seen.add(tuple(roster_ids(bed, zk.cluster)))
            for via in (shorts[peer], shorts[third]):
                serf.add(bed.node_status(shorts[2], via))
                registration.add(registration_status(bed, zk.cluster, shorts[2], via))
            time.sleep(0.25)
        found["modes"] = zk.modes()
        found["conf"] = {n: conf_voters(bed, address[n]) for n in (1, 2, 3)}
        found["disk"] = {n: disk_voters(zk, n) for n in (1, 2, 3)}
    found.update(roster=roster_seen, serf=serf, registration=registration)
    return found


def partition_then_cut(bed: HostsBed, zk: HostsZk, remove_after_s: float) -> Outcome:
    """A supervised ensemble of 3 (``supervised_args``, the servers started with
    ``server_jvmflags``), members 1..3 on m1..m3, formed. m2 is partitioned from m1 only for
    3x ``remove_after_s`` (``hold_partition``); when m3 leads ZooKeeper after that, m2 is also
    partitioned from m3 only, so that in one of the two m2's own server stops serving (its
    check a warning) unless m2 leads. Then m2's link is cut at the router until the roster
    drops its id.

    ``notes``: the ids, ``partitions`` (member -> ``hold_partition``'s evidence), the "lost"
    lines and roster versions after them; after the cut, the roster's version and ids, the
    "removed voter" lines and the remaining servers' voters. ``seconds``: from the cut until
    Consul declares m2 failed, until the roster drops it, until both remaining servers run 2
    voters.
    """
    out = Outcome()
    for n in (1, 2, 3):
        zk.start(n)
    zk.wait_quorum(timeout_s=120)
    ids = myids(zk)
    lost = ids[2]
    wait_until(lambda: len(roster_ids(bed, zk.cluster)) == 3, 60, "a roster of 3")
    out.notes["ids"] = ids
    out.notes["version before"] = roster(bed, zk.cluster)["version"]
    m1, m2 = bed.members[0].short, bed.members[1].short
    address = {n: zk.host(n) for n in (1, 2, 3)}

    # A member whose server stopped serving after it had served is critical: a "lost" line
    # from the formation (a leader election), soon followed by "back", is not the
    # partition's doing. Count from here.
    formed_lines = Counter(log_lines(zk, f"voter {lost} ("))
    partitions: dict[int, dict[str, object]] = {}
    partitions[1] = hold_partition(bed, zk, 1, 3 * remove_after_s)
    modes = zk.wait_quorum(timeout_s=120)
    if modes[3] == "leader":  # m2 followed m3 through the first: hide m2 from its leader
        partitions[3] = hold_partition(bed, zk, 3, 3 * remove_after_s)
        modes = zk.wait_quorum(timeout_s=120)  # the cut starts from three serving members
    out.notes["partitions"] = partitions
    out.notes["lost lines while partitioned"] = sorted(
        (Counter(log_lines(zk, f"voter {lost} (")) - formed_lines).elements()
    )
    out.notes["version after partitions"] = roster(bed, zk.cluster)["version"]

    out.notes["m2 leads at the cut"] = modes[2] == "leader"  # then ZooKeeper fails over first
    t0 = time.monotonic()
    with bed.network.cut(m2):
        while lost in roster_ids(bed, zk.cluster):
            if time.monotonic() - t0 > 120:
                raise TimeoutError(f"voter {lost} still in the roster 120 s after the cut")
            if "failed declared" not in out.seconds and bed.node_status(m2, m1) == "critical":
                out.seconds["failed declared"] = time.monotonic() - t0
            time.sleep(0.2)
        out.seconds["removed from the roster"] = time.monotonic() - t0
        wait_until(
            lambda: all(conf_voters(bed, address[n]) == sorted([ids[1], ids[3]]) for n in (1, 3)),
            60,
            "both remaining servers at 2 voters",
            every_s=0.2,
        )
        out.seconds["servers at 2 voters"] = time.monotonic() - t0
        time.sleep(2 * remove_after_s)  # time for a second removal, were there one
        out.notes["conf after removal"] = {n: conf_voters(bed, address[n]) for n in (1, 3)}
        out.notes["version after removal"] = roster(bed, zk.cluster)["version"]
        out.notes["roster after removal"] = roster_ids(bed, zk.cluster)
        out.notes["removed lines"] = log_lines(zk, "removed voter")
    return out


SCENARIOS = {
    "no fault": no_fault,
    "leader killed": leader_killed,
    "link cut": link_cut,
    "local agent down": local_agent_down,
}
