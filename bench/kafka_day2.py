"""Kafka day 2: a controller joins a dynamic quorum as a voter, and leaves again.

A dynamic-quorum cluster of 3 combined members forms through the agent once (127.0.0.111-113);
a producer with ``acks=all`` (``testbed.kafka.AckedProducer``) sends one message every 100 ms to
a topic with replication factor 3 and min ISR 2 throughout. Each round, two kinds, alternating
(which goes first alternates too), each with a new controller on an empty disk
(127.0.0.114, ``--no-initial-controllers``, a new node id per change):

- **through the adapter**: ``adapters.kafka_voters.KafkaVoterChanges``: ``caught_up`` polled
  every 0.5 s, then ``add`` (retried on a conflict); leave: stop the joiner, ``remove``.
- **by hand**: the same Kafka tools an operator types: ``describe --replication`` until the
  joiner's row says Observer with lag 0, ``add-controller --command-config``; leave: stop it,
  ``remove-controller --controller-id N --controller-directory-id D``.

Join: from just before the joiner's format to the tool's success (the joiner is a voter).
Leave: from the stop of the joiner to the remove's success. Gap: the longest time between two
acknowledged sends inside each kind's windows; failed sends are counted. Printed, not asserted.

    python -m bench --only kafka_day2 --rounds 3
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from adapters.kafka_voters import KafkaVoterChanges
from bench.common import Figure, jvm_peers, median, per_round, rotated
from bootstrap.model import Member
from bootstrap.voters import Voter
from testbed.consul import ConsulAgent
from testbed.jvm import METADATA_QUORUM, kafka_tool_command
from testbed.kafka import (
    PORTS,
    AckedProducer,
    KafkaCluster,
    combined,
    read_properties,
    start_joiner,
)
from testbed.procs import Process

FIRST_HOST = 111
JOINER_HOST = "127.0.0.114"
DEADLINE_S = 120.0
POLL_S = 0.5
ADAPTER, HAND = "through KafkaVoterChanges", "by hand with the Kafka tools"


class Round:
    """One join and one leave of one kind: seconds, and the wall-clock windows they took."""

    def __init__(self) -> None:
        self.join_s = 0.0
        self.leave_s = 0.0
        self.windows: list[tuple[float, float]] = []


def _until(step: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        if step():
            return
        time.sleep(POLL_S)
    raise TimeoutError(f"{what}: not done after {DEADLINE_S:.0f}s")


async def _until_async(step: Callable[[], Awaitable[bool]], what: str) -> None:
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        if await step():
            return
        await asyncio.sleep(POLL_S)
    raise TimeoutError(f"{what}: not done after {DEADLINE_S:.0f}s")


class Bed:
    def __init__(self, kafka: KafkaCluster, lib: Path, cluster_id: str, workdir: Path) -> None:
        self.kafka = kafka
        self.lib = lib
        self.cluster_id = cluster_id
        self.workdir = workdir
        self.hosts = [m.host for m in kafka.members.values()]
        self.bootstrap = ",".join(f"{h}:{PORTS['controller']}" for h in self.hosts)
        self.node_ids = itertools.count(10)
        self.proc: Process | None = None

    def joiner(self, kind: str) -> tuple[int, Path, float]:
        node_id = next(self.node_ids)
        started = time.monotonic()
        d = self.workdir / f"{kind}-{node_id}"
        self.proc, conf = start_joiner(
            self.lib, d, JOINER_HOST, node_id, self.cluster_id, self.hosts
        )
        return node_id, conf, started

    def quorum(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            kafka_tool_command(
                self.lib, METADATA_QUORUM, ["--bootstrap-controller", self.bootstrap, *args]
            ),
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            check=False,
        )

    def stop_joiner(self) -> float:
        started = time.monotonic()
        if self.proc is not None:
            self.proc.stop(timeout_s=30)
        return started


def through_adapter(bed: Bed) -> Round:
    result = Round()
    t0 = time.time()
    node_id, conf, started = bed.joiner("adapter")
    changes = KafkaVoterChanges(
        kafka_tool_command(bed.lib, METADATA_QUORUM, []),
        [Member(n, h, {"controller": PORTS["controller"]}) for n, h in enumerate(bed.hosts, 1)],
        conf,
    )
    directory = read_properties(conf.parent.parent / "data" / "meta.properties")["directory.id"]
    voter = Voter(Member(node_id, JOINER_HOST, {"controller": PORTS["controller"]}), directory)

    async def join() -> None:
        await _until_async(lambda: changes.caught_up(node_id), "caught up")
        await _until_async(lambda: changes.add(voter, version=""), "add-controller")

    asyncio.run(join())
    result.join_s = time.monotonic() - started
    stopped = bed.stop_joiner()
    asyncio.run(_until_async(lambda: changes.remove(voter, version=""), "remove-controller"))
    result.leave_s = time.monotonic() - stopped
    result.windows.append((t0, time.time()))
    return result


def by_hand(bed: Bed) -> Round:
    result = Round()
    t0 = time.time()
    node_id, conf, started = bed.joiner("hand")

    def caught_up() -> bool:
        out = bed.quorum(["describe", "--replication"]).stdout
        return any(
            row.split()[:1] == [str(node_id)] and row.split()[3:4] == ["0"] and "Observer" in row
            for row in out.splitlines()
        )

    _until(caught_up, "caught up")
    _until(
        lambda: bed.quorum(["--command-config", str(conf), "add-controller"]).returncode == 0,
        "add-controller",
    )
    result.join_s = time.monotonic() - started
    directory = read_properties(conf.parent.parent / "data" / "meta.properties")["directory.id"]
    stopped = bed.stop_joiner()
    remove = [
        "remove-controller",
        "--controller-id",
        str(node_id),
        "--controller-directory-id",
        directory,
    ]
    _until(lambda: bed.quorum(remove).returncode == 0, "remove-controller")
    result.leave_s = time.monotonic() - stopped
    result.windows.append((t0, time.time()))
    return result


def longest_gap(producer: AckedProducer, windows: Sequence[tuple[float, float]]) -> float:
    """The longest time between two acks that both fall in (or span into) one window."""
    stamps = [int(str(e["timestamp"])) / 1000 for e in producer.events("producer_send_success")]
    gaps = [
        b - a
        for a, b in itertools.pairwise(stamps)
        if any(start <= b and a <= end for start, end in windows)
    ]
    return max(gaps, default=0.0)


def run(rounds: int, consul: ConsulAgent, workdir: Path) -> list[Figure]:
    lib = jvm_peers()["kafka4"]
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = f"kd-{uuid.uuid4().hex[:8]}"
    members = combined(cluster, first_host=FIRST_HOST, quorum="dynamic")
    results: dict[str, list[Round]] = {ADAPTER: [], HAND: []}
    with KafkaCluster(consul, workdir / "cluster", cluster, members, lib=lib) as kafka:
        kafka.start_all()
        kafka.wait_formed()
        kafka.create_topic("day2", replicas=3, via="k1", configs={"min.insync.replicas": 2})
        bed = Bed(kafka, lib, kafka.meta("k1")["cluster.id"], workdir)
        bed.hosts = [
            m.host
            for m in sorted(
                kafka.members.values(), key=lambda m: int(kafka.meta(m.name)["node.id"])
            )
        ]
        producer = AckedProducer(
            lib,
            ",".join(f"{h}:{PORTS['broker']}" for h in bed.hosts),
            "day2",
            workdir / "producer.log",
        )
        try:
            time.sleep(3)  # the producer's first acks before the first change
            for round_no in range(rounds):
                for kind in rotated([ADAPTER, HAND], round_no):
                    done = through_adapter(bed) if kind == ADAPTER else by_hand(bed)
                    results[kind].append(done)
                    print(
                        f"  round {round_no + 1}: {kind:<30} join {done.join_s:.2f} s, "
                        f"leave {done.leave_s:.2f} s",
                        flush=True,
                    )
        finally:
            bed.stop_joiner()  # a round that failed half-way leaves its joiner running
            producer.stop()
        acked = producer.acked()
        consumed = set(kafka.consume_all("day2", len(acked), via="k2"))
        lost = [value for value in acked if value not in consumed]
    gaps = {
        kind: longest_gap(producer, [w for r in rs for w in r.windows])
        for kind, rs in results.items()
    }
    for kind, rs in results.items():
        print(per_round(f"join, {kind}", [r.join_s for r in rs]))
        print(per_round(f"leave, {kind}", [r.leave_s for r in rs]))
        print(f"  longest gap between acks, {kind}: {gaps[kind]:.3f} s")
    print(
        f"  acked {len(acked)}, failed sends {producer.failed()}, "
        f"acked but not consumed {len(lost)}"
    )
    shutil.rmtree(workdir / "cluster", ignore_errors=True)
    a, h = results[ADAPTER], results[HAND]
    return [
        Figure(
            "Kafka controller join: start to voter",
            median([r.join_s for r in a]),
            "s",
            median([r.join_s for r in h]),
            HAND,
        ),
        Figure(
            "Kafka controller leave: stop to removed",
            median([r.leave_s for r in a]),
            "s",
            median([r.leave_s for r in h]),
            HAND,
        ),
        Figure("Kafka longest gap between acks (day 2)", gaps[ADAPTER], "s", gaps[HAND], HAND),
        Figure(
            "Kafka acked but not consumed (day 2)",
            float(len(lost)),
            "",
            note=f"{len(acked)} acked, {producer.failed()} failed sends",
        ),
    ]
