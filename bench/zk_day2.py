"""ZooKeeper day 2: voter changes online (the agent), each against a hand-run rolling restart.

Throughout, a client (kazoo, connected to the members that stay) creates one sequential znode
every 100 ms and records each acknowledged write and each failure. Four changes, each made
online and by a rolling restart in the same round (the order rotates every round):

- **3 -> 4** (127.0.0.95-98). Online: an ensemble formed through the agent in supervise mode
  with ``--set reconfig=true``; a fourth member started the same way joins as an observer and
  its own agent's keeper (``bootstrap.keeper``) makes it a voter once it is synced (kazoo
  reconfig as the superuser, under the cluster lock), then the roster. Then it is stopped for
  good and another member's agent removes it after ``--remove-after`` (3 s here): that figure
  is printed beyond the 3 s, without a baseline. Rolling: a static ensemble of the same three
  (hand-written configs), the fourth started with a four-server list, then each of the three
  stopped, its zoo.cfg rewritten with four servers, started again, and the next one restarted
  once it answers ``ruok`` (waiting for each to *serve* never ends: a member with the
  four-server list sees only two of four votes for the running leader and keeps looking).
- **replace** (127.0.0.175-178): a member dies for good and a newcomer with an empty disk
  starts on another address. Online: the newcomer's keeper makes it a voter, then a live
  member's keeper removes the dead one after ``--remove-after`` (the floor of 3 holds it until
  the newcomer votes). Rolling: the newcomer started with the new three-server list, then each
  survivor stopped, its zoo.cfg rewritten with that list, started, and the next one restarted
  once it serves.
- **remove** (127.0.0.179-182): a planned scale-in, 4 -> 3, of a follower. Online:
  ``cluster-bootstrap remove zookeeper --id N`` (reconfig -remove under the lock, then the
  roster), then the member stopped. Rolling: the member stopped, then each of the three left
  restarted one at a time with the three-server list, the next once it serves.
- **move** (127.0.0.183-186): a follower rescheduled, its data disk moved with it, on a new
  address with the same member name. Online: its agent keeps the id and re-adds it at the new
  address before its server starts. Rolling: it starts with the list naming its new address,
  then each of the two others restarted with that list, the next once it serves.

Figures per round and change: seconds to the change being committed (3 -> 4 and replace: from
the newcomer's start; remove: from the removal's start; move: from the moved member's start;
online: the roster and every live server's ``conf`` agree on the new voters; rolling: every
member of the new list serves in one quorum after the last restart), the longest gap between
two acknowledged writes, the failed writes, and the acknowledged writes missing afterwards on
some live member (lost). Printed, not asserted.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Figure, clean_env, jvm_peers, median, per_round, rotated
from bootstrap.model import Member
from testbed.consul import ConsulAgent
from testbed.jvm import four_letter, zk_mode
from testbed.procs import AGENT, Process
from testbed.zookeeper import (
    PORTS,
    Writer,
    ZkEnsemble,
    host,
    server_address,
    server_view,
    static_config,
)

FIRST_HOST = 95  # 127.0.0.95-97 the ensemble, .98 the newcomer
REPLACE_FIRST, REMOVE_FIRST, MOVE_FIRST = 175, 179, 183  # four addresses each
NEW = 4
SETTLE_S = 3.0  # writes go on this long after the change, before they are checked
TIMEOUT_S = 120.0
ONLINE, ROLLING = "online reconfig (agent)", "rolling restart (by hand)"


@dataclass
class Outcome:
    """One change made once: seconds to committed, the writer, when the change started, and
    figures printed without a baseline."""

    took: float
    writer: Writer
    started: float
    extra: dict[str, float] = field(default_factory=dict)


def _wait(check: Callable[[], bool], what: str) -> float:
    """Poll ``check`` every 50 ms; the moment it held."""
    end = time.monotonic() + TIMEOUT_S
    while not check():
        if time.monotonic() > end:
            raise TimeoutError(f"{what} after {TIMEOUT_S:.0f}s")
        time.sleep(0.05)
    return time.monotonic()


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


def _ensemble(consul: ConsulAgent, workdir: Path, first: int, expect: int = 3) -> ZkEnsemble:
    cluster = f"zkd2-{uuid.uuid4().hex[:8]}"
    args = [*SUPERVISED, f"{REMOVE_AFTER_S:g}s"]
    return ZkEnsemble(
        consul, workdir, NEW, cluster, args, first_host=first, expect=expect, server_jvmflags=True
    )


def _writer(hosts: list[str], path: str) -> Writer:
    writer = Writer(",".join(f"{h}:2181" for h in hosts), path)
    writer.start()
    time.sleep(1.0)  # a second of writes before the change
    return writer


def _follower(modes: dict[int, str | None]) -> int:
    """The lowest member number that follows: the one a change takes out or moves."""
    return min(n for n, mode in modes.items() if mode == "follower")


def _lose(consul: ConsulAgent, zk: ZkEnsemble, n: int) -> None:
    """Member n is gone for good: killed, its registration removed (as Nomad does)."""
    gone = _member(zk, n).member_id
    zk.procs.pop(n).kill()
    consul.deregister(f"{zk.cluster}-{gone}")


def online(consul: ConsulAgent, workdir: Path) -> Outcome:
    """3 -> 4: a fourth member is started and promoted by its own agent; then it is lost
    (killed, deregistered) and removed by another member's agent after --remove-after."""
    with _ensemble(consul, workdir, FIRST_HOST) as zk:
        for n in (1, 2, 3):
            zk.start(n)
        zk.wait_quorum()
        writer = _writer([zk.host(n) for n in (1, 2, 3)], f"/{zk.cluster}")
        try:
            started = time.monotonic()
            zk.start(NEW)
            _wait(lambda: len(_voters(consul, zk, (1, 2, 3, NEW)) or []) == NEW, "no 4 voters")
            took = time.monotonic() - started
            time.sleep(SETTLE_S)
            new_id = _member(zk, NEW).member_id
            lost_at = time.monotonic()
            zk.stop(NEW)  # its agent deregisters on the way out, as Nomad's would be
            consul.deregister(f"{zk.cluster}-{new_id}")
            _wait(lambda: len(_voters(consul, zk, (1, 2, 3)) or []) == 3, "the lost one stays")
            removal = time.monotonic() - lost_at - REMOVE_AFTER_S
            time.sleep(SETTLE_S)
        finally:
            writer.stop()
        writer.count_lost([f"{zk.host(n)}:2181" for n in (1, 2, 3)])
    return Outcome(took, writer, started, {"lost voter removed, beyond --remove-after": removal})


def _measured(
    writing_to: list[str],
    path: str,
    before: Callable[[], object],
    change: Callable[[], object],
    committed: Callable[[float], dict[str, float]],
    live: Callable[[], list[str]],
) -> Outcome:
    """A client writing to ``writing_to`` throughout; ``before`` (untimed), then the timed
    part: ``change`` and ``committed`` (blocks until the change is committed; figures printed
    without a baseline), then writes go on; acked writes checked on ``live()``."""
    writer = _writer(writing_to, path)
    try:
        before()
        started = time.monotonic()
        change()
        extra = committed(started)
        took = time.monotonic() - started
        time.sleep(SETTLE_S)
    finally:
        writer.stop()
    writer.count_lost([f"{h}:2181" for h in live()])
    return Outcome(took, writer, started, extra)


def _live(zk: ZkEnsemble) -> Callable[[], list[str]]:
    return lambda: [zk.host(n) for n in sorted(zk.procs)]


def online_replace(consul: ConsulAgent, workdir: Path) -> Outcome:
    """A member lost for good, a newcomer on .178 with an empty disk: voter, then the lost one
    removed (after --remove-after, once the newcomer votes: the floor is 3)."""
    with _ensemble(consul, workdir, REPLACE_FIRST) as zk:
        for n in (1, 2, 3):
            zk.start(n)
        dead = _follower(zk.wait_quorum())
        stay = tuple(n for n in (1, 2, 3) if n != dead)

        def lose() -> None:
            _lose(consul, zk, dead)
            time.sleep(1.0)  # the newcomer comes a little later, as a rescheduled one does

        def replaced(started: float) -> dict[str, float]:
            voting = _wait(
                lambda: _member(zk, NEW).member_id in (_voters(consul, zk, stay) or []),
                "the newcomer never voted",
            )
            live = (*stay, NEW)
            _wait(lambda: _voters(consul, zk, live) == _ids(zk, live), "the dead one never left")
            return {"replace: newcomer to voter": voting - started}

        hosts = [zk.host(n) for n in stay]
        return _measured(hosts, f"/{zk.cluster}", lose, lambda: zk.start(NEW), replaced, _live(zk))


def online_remove(consul: ConsulAgent, workdir: Path) -> Outcome:
    """4 voters formed at once; ``remove zookeeper --id N`` of a follower, then it stops (the
    planned scale-in ends with the member stopped)."""
    with _ensemble(consul, workdir, REMOVE_FIRST, expect=NEW) as zk:
        zk.start_all()
        gone = _follower(zk.wait_quorum())
        stay = tuple(n for n in range(1, NEW + 1) if n != gone)

        def remove() -> None:
            done = subprocess.run(
                [AGENT, "remove", "zookeeper", "--cluster", zk.cluster, "--expect", "3",
                 "--set", "reconfig=true", "--id", str(_member(zk, gone).member_id)],
                env=clean_env(consul.env()), capture_output=True, text=True, check=False,
                timeout=TIMEOUT_S,
            )  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"remove exited {done.returncode}:\n{done.stderr}")
            zk.stop(gone)

        def removed(started: float) -> dict[str, float]:
            _wait(lambda: _voters(consul, zk, stay) == _ids(zk, stay), "not removed")
            return {}

        hosts = [zk.host(n) for n in stay]
        return _measured(hosts, f"/{zk.cluster}", lambda: None, remove, removed, _live(zk))


def online_move(consul: ConsulAgent, workdir: Path) -> Outcome:
    """A follower rescheduled on .186 (same member name, its data dir moved): re-added at the
    new address with the same id before its server starts."""
    with _ensemble(consul, workdir, MOVE_FIRST) as zk:
        for n in (1, 2, 3):
            zk.start(n)
        moved = _follower(zk.wait_quorum())
        stay = [n for n in (1, 2, 3) if n != moved]
        moved_id = _member(zk, moved).member_id

        def lose() -> None:
            _lose(consul, zk, moved)
            zk.names[NEW] = zk.member_name(moved)
            zk.member_dir(NEW).mkdir(parents=True)
            shutil.move(zk.member_dir(moved) / "data", zk.member_dir(NEW) / "data")

        def re_added(started: float) -> dict[str, float]:
            live = (*stay, NEW)
            _wait(
                lambda: (
                    all(server_address(zk.host(n), moved_id) == zk.host(NEW) for n in live)
                    and _voters(consul, zk, live) == _ids(zk, live)
                ),
                "never re-added at its new address",
            )
            return {}

        hosts = [zk.host(n) for n in stay]
        return _measured(hosts, f"/{zk.cluster}", lose, lambda: zk.start(NEW), re_added, _live(zk))


def _ids(zk: ZkEnsemble, members: tuple[int, ...] | list[int]) -> list[int]:
    return sorted(_member(zk, n).member_id for n in members)


def _four_server_cfg(cfg: Path) -> None:
    lines = cfg.read_text().splitlines()
    servers = [line for line in lines if line.startswith("server.")]
    new = f"server.{NEW}={host(NEW, FIRST_HOST)}:2888:3888;{host(NEW, FIRST_HOST)}:2181"
    if new not in servers:
        cfg.write_text("\n".join([*lines, new]) + "\n")


def rolling(workdir: Path) -> Outcome:
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

    def up(n: int) -> bool:
        return four_letter(host(n, FIRST_HOST), 2181, "ruok") == "imok"

    try:
        _wait(lambda: all(_serving(FIRST_HOST, n) for n in (1, 2, 3)), "no static ensemble")
        writer = _writer([host(n, FIRST_HOST) for n in (1, 2, 3)], "/rolling")
        try:
            started = time.monotonic()
            procs[NEW] = Process(commands[NEW - 1], workdir / f"zk{NEW}" / "member.log")
            for n in (1, 2, 3):
                procs.pop(n).stop()
                _four_server_cfg(workdir / f"zk{n}" / "conf" / "zoo.cfg")
                procs[n] = Process(commands[n - 1], workdir / f"zk{n}" / "member.log")
                _wait(functools.partial(up, n), f"member {n} not up")
            _wait(lambda: _one_quorum(FIRST_HOST, list(procs)), "no four-member quorum")
            took = time.monotonic() - started
            time.sleep(SETTLE_S)
        finally:
            writer.stop()
        writer.count_lost(hosts)
        return Outcome(took, writer, started)
    finally:
        for proc in procs.values():
            proc.stop()


def _serving(first: int, n: int) -> bool:
    return zk_mode(host(n, first), 2181) in ("leader", "follower")


def _one_quorum(first: int, members: list[int]) -> bool:
    modes = [zk_mode(host(n, first), 2181) for n in members]
    return modes.count("leader") == 1 and modes.count("follower") == len(members) - 1


def _set_servers(cfg: Path, servers: dict[int, str]) -> None:
    """Rewrite ``cfg``'s server lines by hand: id -> address, the way users do it."""
    kept = [line for line in cfg.read_text().splitlines() if not line.startswith("server.")]
    lines = [f"server.{i}={a}:2888:3888;{a}:2181" for i, a in sorted(servers.items())]
    cfg.write_text("\n".join([*kept, *lines]) + "\n")


@dataclass
class Static:
    """Members 1..4 with hand-written configs on ``first``: 1-3 started as one ensemble (or
    all four, ``size``), each restarted by hand."""

    workdir: Path
    first: int
    size: int = 3
    procs: dict[int, Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.commands = static_config(self.workdir, NEW, first_host=self.first)
        servers = {n: host(n, self.first) for n in range(1, self.size + 1)}
        for n in range(1, NEW + 1):
            _set_servers(self.cfg(n), servers)
        for n in range(1, self.size + 1):
            self.start(n)
        _wait(lambda: _one_quorum(self.first, list(self.procs)), "no static ensemble")

    def cfg(self, n: int) -> Path:
        return self.workdir / f"zk{n}" / "conf" / "zoo.cfg"

    def start(self, n: int) -> None:
        self.procs[n] = Process(self.commands[n - 1], self.workdir / f"zk{n}" / "member.log")

    def change(
        self,
        stay: list[int],
        servers: dict[int, str],
        before: Callable[[], object],
        change: Callable[[], object],
    ) -> Outcome:
        """``before`` (untimed), then ``change`` and the rolling restart of ``stay`` with
        ``servers`` (timed), until the members left serve in one quorum."""

        def rolled(started: float) -> dict[str, float]:
            for n in stay:  # each one stopped, its list rewritten, started; the next once it serves
                self.procs.pop(n).stop()
                _set_servers(self.cfg(n), servers)
                self.start(n)
                _wait(functools.partial(_serving, self.first, n), f"member {n} not serving")
            _wait(lambda: _one_quorum(self.first, list(self.procs)), "no quorum of the new list")
            return {}

        def live() -> list[str]:
            return [host(n, self.first) for n in sorted(self.procs)]

        hosts = [host(n, self.first) for n in stay]
        return _measured(hosts, "/rolling", before, change, rolled, live)

    def modes(self) -> dict[int, str | None]:
        return {n: zk_mode(host(n, self.first), 2181) for n in self.procs}

    def __enter__(self) -> Static:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            proc.stop()


def rolling_replace(workdir: Path) -> Outcome:
    with Static(workdir, REPLACE_FIRST) as zk:
        dead = _follower(zk.modes())
        stay = [n for n in (1, 2, 3) if n != dead]
        servers = {n: host(n, REPLACE_FIRST) for n in (*stay, NEW)}

        def lose() -> None:
            zk.procs.pop(dead).kill()
            time.sleep(1.0)  # the newcomer comes a little later, as online

        def newcomer() -> None:
            _set_servers(zk.cfg(NEW), servers)
            zk.start(NEW)

        return zk.change(stay, servers, lose, newcomer)


def rolling_remove(workdir: Path) -> Outcome:
    with Static(workdir, REMOVE_FIRST, size=NEW) as zk:
        gone = _follower(zk.modes())
        stay = [n for n in range(1, NEW + 1) if n != gone]
        servers = {n: host(n, REMOVE_FIRST) for n in stay}
        return zk.change(stay, servers, lambda: None, lambda: zk.procs.pop(gone).stop())


def rolling_move(workdir: Path) -> Outcome:
    """A follower rescheduled: its data dir moved to member 4's directory, started there
    (its id kept) with the list naming its new address."""
    with Static(workdir, MOVE_FIRST) as zk:
        moved = _follower(zk.modes())
        stay = [n for n in (1, 2, 3) if n != moved]
        servers = {n: host(n, MOVE_FIRST) for n in stay} | {moved: host(NEW, MOVE_FIRST)}

        def lose() -> None:
            zk.procs.pop(moved).kill()
            shutil.rmtree(workdir / f"zk{NEW}" / "data")
            shutil.move(workdir / f"zk{moved}" / "data", workdir / f"zk{NEW}" / "data")
            _set_servers(zk.cfg(NEW), servers)

        return zk.change(stay, servers, lose, lambda: zk.start(NEW))


@dataclass(frozen=True)
class Change:
    """One change in the table: its name, what its time counts, and how each way makes it."""

    name: str
    slug: str  # its directory in each round
    clock: str
    online: Callable[[ConsulAgent, Path], Outcome]
    rolling: Callable[[Path], Outcome]
    note: str


CHANGES = (
    Change("ZK 3->4", "grow", "newcomer to voter", online, rolling, "3 -> 4 voters"),
    Change("ZK replace", "replace", "newcomer to replaced", online_replace, rolling_replace,
           "a dead member replaced by a newcomer on another address with an empty disk; "
           f"online includes --remove-after {REMOVE_AFTER_S:g}s"),
    Change("ZK 4->3", "remove", "removal to committed", online_remove, rolling_remove,
           "a planned scale-in of a follower (online: remove --id N)"),
    Change("ZK moved member", "move", "moved start to re-added", online_move, rolling_move,
           "a follower rescheduled on a new address, its data dir moved, the same name"),
)  # fmt: skip
FIGURES = ("to committed", "longest write gap", "failed writes", "acked writes lost")


def run(rounds: int, consul: ConsulAgent, workdir: Path) -> list[Figure]:
    jvm_peers()
    values: dict[tuple[str, str, str], list[float]] = {
        (c.name, kind, f): [] for c in CHANGES for kind in (ONLINE, ROLLING) for f in FIGURES
    }
    extra: dict[str, list[float]] = {}
    for round_no in range(rounds):
        for change in CHANGES:
            for kind in rotated([ONLINE, ROLLING], round_no):
                short = "online" if kind == ONLINE else "rolling"
                where = workdir / f"round-{round_no}" / change.slug / short
                out = change.online(consul, where) if kind == ONLINE else change.rolling(where)
                gap = out.writer.longest_gap(out.started)
                for name, value in zip(
                    FIGURES, (out.took, gap, out.writer.failed, out.writer.lost), strict=True
                ):
                    values[(change.name, kind, name)].append(value)
                for name, value in out.extra.items():
                    extra.setdefault(name, []).append(value)
                print(
                    f"  round {round_no + 1}: {change.name:<16} {kind:<27} {change.clock} "
                    f"{out.took:.2f} s, longest write gap {gap * 1000:.0f} ms, "
                    f"{out.writer.failed} failed, {out.writer.lost} acked lost, "
                    f"{len(out.writer.acked)} acked",
                    flush=True,
                )  # fmt: skip
    figures = []
    for change in CHANGES:
        for kind in (ONLINE, ROLLING):
            short = "online" if kind == ONLINE else "rolling"
            for name in FIGURES:
                unit = "s" if name in FIGURES[:2] else ""
                label = f"{change.name} {short}: {name}"
                print(per_round(label, values[(change.name, kind, name)], unit))
        note = f"{change.note}, a write every 100 ms, {rounds} rounds each, interleaved"
        for i, name in enumerate(FIGURES):
            unit = "s" if i < 2 else ""
            shown = change.clock if i == 0 else name
            online_, rolling_ = (median(values[(change.name, k, name)]) for k in (ONLINE, ROLLING))
            figures.append(
                Figure(f"{change.name} online: {shown}", online_, unit, rolling_,
                       "rolling restart", note=note if i == 0 else "")
            )  # fmt: skip
    for name, got in extra.items():
        print(per_round(f"online: {name}", got))
    return figures


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["--only", "zk_day2", *sys.argv[1:]]))
