"""ZooKeeper day 2: one more voter (3 -> 4) online, against a hand-run rolling restart.

Throughout, a client (kazoo, connected to the three original members) creates one sequential
znode every 100 ms and records each acknowledged write and each failure.

- Online: an ensemble formed through the agent in supervise mode with ``--set reconfig=true``
  (127.0.0.95-97). A fourth member (.98) is started the same way: it joins as an observer and
  its own agent's keeper (``bootstrap.keeper``) makes it a voter once it is synced (kazoo
  reconfig as the superuser, under the cluster lock), then the roster. Then it is stopped for
  good and another member's agent removes it after ``--remove-after`` (3 s here): that
  figure is printed beyond the 3 s, without a baseline (by hand it is another rolling restart).
- Rolling restart (the way users do it without this tool): a static ensemble of the same three
  (hand-written configs), the fourth started with a four-server list, then each of the three
  stopped, its zoo.cfg rewritten with four servers, started again, and the next one restarted
  once it answers ``ruok`` (waiting for each to *serve* never ends: a member with the
  four-server list sees only two of four votes for the running leader and keeps looking).

Figures per round: seconds from the newcomer's start until it is a voter (online: the
committed config lists it; rolling: all four serve in one quorum of the four-server list), the
longest gap between two acknowledged writes, the failed writes, and the acknowledged writes
missing afterwards on some member (lost). Printed, not asserted.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench.common import Figure, jvm_peers, median, per_round, rotated
from bootstrap.model import Member
from testbed.consul import ConsulAgent
from testbed.jvm import four_letter, zk_mode
from testbed.procs import Process
from testbed.zookeeper import PORTS, Writer, ZkEnsemble, host, server_view, static_config

FIRST_HOST = 95  # 127.0.0.95-97 the ensemble, .98 the newcomer
NEW = 4
SETTLE_S = 3.0  # writes go on this long after the change, before they are checked
TIMEOUT_S = 120.0
ONLINE, ROLLING = "online reconfig (agent)", "rolling restart (by hand)"


def _wait(check: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + TIMEOUT_S
    while not check():
        if time.monotonic() > end:
            raise TimeoutError(f"{what} after {TIMEOUT_S:.0f}s")
        time.sleep(0.05)


def _member(zk: ZkEnsemble, n: int) -> Member:
    myid = zk.member_dir(n) / "data" / "myid"
    return Member(int(myid.read_text()) if myid.exists() else n, zk.host(n), PORTS)


SUPERVISED = ["--set", "reconfig=true", "--supervise", "--register", "--remove-after"]
REMOVE_AFTER_S = 3.0


def _voters(consul: ConsulAgent, zk: ZkEnsemble, members: tuple[int, ...]) -> list[int] | None:
    """The roster's voter ids when every listed member's server runs exactly those."""
    status, roster = consul.request("GET", f"/v1/kv/cluster-bootstrap/{zk.cluster}/roster?raw")
    if status != 200 or not isinstance(roster, dict):
        return None
    ids = sorted(int(v["id"]) for v in roster["voters"])
    if any(server_view(zk.host(n))[0] != ids for n in members):
        return None
    return ids


def online(consul: ConsulAgent, workdir: Path) -> tuple[float, Writer, float, float]:
    """Supervised members (the agent stays, its keeper changes voters): a fourth member is
    started and promoted by its own agent; then it is lost (killed, deregistered) and removed
    by another member's agent after --remove-after. Returns (newcomer to voter, the writer,
    when the newcomer started, loss to removal minus --remove-after)."""
    cluster = f"zkd2-{uuid.uuid4().hex[:8]}"
    args = [*SUPERVISED, f"{REMOVE_AFTER_S:g}s"]
    with ZkEnsemble(
        consul, workdir, NEW, cluster, args, first_host=FIRST_HOST, expect=3, server_jvmflags=True
    ) as zk:
        for n in (1, 2, 3):
            zk.start(n)
        zk.wait_quorum()
        writer = Writer(",".join(f"{zk.host(n)}:2181" for n in (1, 2, 3)), f"/{cluster}")
        writer.start()
        try:
            time.sleep(1.0)
            started = time.monotonic()
            zk.start(NEW)
            _wait(lambda: len(_voters(consul, zk, (1, 2, 3, NEW)) or []) == NEW, "no 4 voters")
            took = time.monotonic() - started
            time.sleep(SETTLE_S)
            new_id = _member(zk, NEW).member_id
            lost_at = time.monotonic()
            zk.stop(NEW)  # its agent deregisters on the way out, as Nomad's would be
            consul.deregister(f"{cluster}-{new_id}")
            _wait(lambda: len(_voters(consul, zk, (1, 2, 3)) or []) == 3, "the lost one stays")
            removal = time.monotonic() - lost_at - REMOVE_AFTER_S
            time.sleep(SETTLE_S)
        finally:
            writer.stop()
        writer.count_lost([f"{zk.host(n)}:2181" for n in (1, 2, 3)])
    return took, writer, started, removal


def _four_server_cfg(cfg: Path) -> None:
    lines = cfg.read_text().splitlines()
    servers = [line for line in lines if line.startswith("server.")]
    new = f"server.{NEW}={host(NEW, FIRST_HOST)}:2888:3888;{host(NEW, FIRST_HOST)}:2181"
    if new not in servers:
        cfg.write_text("\n".join([*lines, new]) + "\n")


def rolling(workdir: Path) -> tuple[float, Writer, float]:
    commands = static_config(workdir, NEW, first_host=FIRST_HOST)  # four dirs; 1-3 as three
    for n in (1, 2, 3):
        cfg = workdir / f"zk{n}" / "conf" / "zoo.cfg"
        cfg.write_text(
            "\n".join(
                line
                for line in cfg.read_text().splitlines()
                if not line.startswith(f"server.{NEW}=")
            )
            + "\n"
        )
    procs = {n: Process(commands[n - 1], workdir / f"zk{n}" / "member.log") for n in (1, 2, 3)}
    hosts = [f"{host(n, FIRST_HOST)}:2181" for n in (1, 2, 3, NEW)]

    def serving(n: int) -> bool:
        return zk_mode(host(n, FIRST_HOST), 2181) in ("leader", "follower")

    def up(n: int) -> bool:
        return four_letter(host(n, FIRST_HOST), 2181, "ruok") == "imok"

    try:
        _wait(lambda: all(serving(n) for n in (1, 2, 3)), "no static ensemble")
        writer = Writer(",".join(hosts[:3]), "/rolling")
        writer.start()
        try:
            time.sleep(1.0)
            started = time.monotonic()
            procs[NEW] = Process(commands[NEW - 1], workdir / f"zk{NEW}" / "member.log")
            for n in (1, 2, 3):
                procs.pop(n).stop()
                _four_server_cfg(workdir / f"zk{n}" / "conf" / "zoo.cfg")
                procs[n] = Process(commands[n - 1], workdir / f"zk{n}" / "member.log")
                _wait(lambda n=n: up(n), f"member {n} not up")
            _wait(
                lambda: (
                    [zk_mode(host(n, FIRST_HOST), 2181) for n in procs].count("leader") == 1
                    and all(serving(n) for n in procs)
                ),
                "no four-member quorum",
            )
            took = time.monotonic() - started
            time.sleep(SETTLE_S)
        finally:
            writer.stop()
        writer.count_lost(hosts)
        return took, writer, started
    finally:
        for proc in procs.values():
            proc.stop()


def run(rounds: int, consul: ConsulAgent, workdir: Path) -> list[Figure]:
    jvm_peers()
    to_voter: dict[str, list[float]] = {ONLINE: [], ROLLING: []}
    gaps: dict[str, list[float]] = {ONLINE: [], ROLLING: []}
    failed: dict[str, list[float]] = {ONLINE: [], ROLLING: []}
    lost: dict[str, list[float]] = {ONLINE: [], ROLLING: []}
    removals: list[float] = []
    for round_no in range(rounds):
        for kind in rotated(list(to_voter), round_no):
            where = workdir / f"round-{round_no}" / ("online" if kind == ONLINE else "rolling")
            if kind == ONLINE:
                took, writer, started, removal = online(consul, where)
                removals.append(removal)
            else:
                took, writer, started = rolling(where)
            gap = writer.longest_gap(started)
            to_voter[kind].append(took)
            gaps[kind].append(gap)
            failed[kind].append(writer.failed)
            lost[kind].append(writer.lost)
            print(
                f"  round {round_no + 1}: {kind:<27} to voter {took:.2f} s, longest write gap "
                f"{gap * 1000:.0f} ms, {writer.failed} failed, {writer.lost} acked lost, "
                f"{len(writer.acked)} acked",
                flush=True,
            )
    for kind in to_voter:
        print(per_round(f"{kind}: to voter", to_voter[kind]))
        print(per_round(f"{kind}: longest write gap", gaps[kind]))
        print(per_round(f"{kind}: failed writes", failed[kind], ""))
        print(per_round(f"{kind}: acked writes lost", lost[kind], ""))
    print(per_round("online: lost voter removed, beyond --remove-after", removals))
    note = f"3 -> 4 voters, a write every 100 ms, {rounds} rounds each, interleaved"
    return [
        Figure("ZK 3->4 online: newcomer to voter", median(to_voter[ONLINE]), "s",
               median(to_voter[ROLLING]), "rolling restart", note=note),
        Figure("ZK 3->4 online: longest write gap", median(gaps[ONLINE]), "s",
               median(gaps[ROLLING]), "rolling restart"),
        Figure("ZK 3->4 online: failed writes", median(failed[ONLINE]), "",
               median(failed[ROLLING]), "rolling restart"),
        Figure("ZK 3->4 online: acked writes lost", median(lost[ONLINE]), "",
               median(lost[ROLLING]), "rolling restart"),
    ]  # fmt: skip


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["--only", "zk_day2", *sys.argv[1:]]))
