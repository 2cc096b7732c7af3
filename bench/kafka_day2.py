"""Kafka day 2: a controller joins a dynamic quorum as a voter, and leaves again: through the
agent's keeper (what users get) against the same change by hand with the Kafka tools.

A dynamic-quorum cluster of 3 combined members forms through the agent once (127.0.0.111-113),
each member supervised (``--supervise --register --remove-after 3s``, the quorum and cluster
tools configured), as ``tests/integration/test_kafka_day2.py`` runs them; a producer with
``acks=all`` (``testbed.kafka.AckedProducer``) sends one message every 100 ms to a topic with
replication factor 3 and min ISR 2 throughout. Each round, two kinds, alternating (which goes
first alternates too), each with a new combined member on an empty disk at 127.0.0.114:

- **through the agent's keeper**: a 4th supervised member is started like the others; its own
  agent formats it with ``--no-initial-controllers``, starts Kafka, waits until it caught up
  and runs ``add-controller`` (``bootstrap.keeper``), then the roster. Leave: it is stopped
  (SIGTERM to its agent, which stops Kafka and deregisters it) and a live member's keeper
  removes it after ``--remove-after`` (``remove-controller``, the roster, then
  ``kafka-cluster unregister``). No tool is run by the bench.
- **by hand**: the same change an operator types: the joiner's properties written and
  formatted with ``--no-initial-controllers``, Kafka started, ``describe --replication`` until
  its row says Observer with lag 0, ``add-controller --command-config``; leave: stop it,
  ``remove-controller --controller-id N --controller-directory-id D``, then
  ``kafka-cluster unregister --id N`` (untimed, as the keeper's is).

Join: from the joiner's start (the agent's start, or just before the hand format) until it is
a committed voter: by hand the add's success; through the keeper the roster listing it (the
keeper writes it only after Kafka committed the add, polled every 0.1 s), after which
``describe --status`` must list the roster's voters (waited for, untimed). Leave: from the stop
until it is out (the remove's success; the roster without it, then ``describe --status``
agreeing); the keeper's figure is also printed beyond ``--remove-after``, its deliberate wait.
Per kind, inside its windows: the longest time between two acknowledged sends, the failed
sends, and the acknowledged sends that the consumer at the end did not read back (missing).
Printed, not asserted.

    python -m bench --only kafka_day2 --rounds 3
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Figure, jvm_peers, median, per_round, rotated
from testbed.consul import ConsulAgent
from testbed.jvm import CLUSTER_TOOL, METADATA_QUORUM, kafka_tool_command
from testbed.kafka import (
    PORTS,
    AckedProducer,
    KafkaCluster,
    KafkaMember,
    combined,
    read_properties,
    start_joiner,
)
from testbed.procs import Process

FIRST_HOST = 111  # .111-.113 the cluster, .114 the joiner of either kind
JOINER_HOST = "127.0.0.114"
REMOVE_AFTER_S = 3.0
DEADLINE_S = 180.0
POLL_S = 0.5  # a poll that runs a Kafka tool (a JVM); the roster (Consul KV) is polled at 0.1 s
KEEPER, HAND = "through the agent's keeper", "by hand with the Kafka tools"


@dataclass
class Round:
    """One join and one leave of one kind: seconds, and the wall-clock window they took."""

    join_s: float = 0.0
    leave_s: float = 0.0
    windows: list[tuple[float, float]] = field(default_factory=list)


def _until(step: Callable[[], bool], what: str, every_s: float = POLL_S) -> None:
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        if step():
            return
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not done after {DEADLINE_S:.0f}s")


class Bed:
    def __init__(self, kafka: KafkaCluster, lib: Path, options: dict[str, object]) -> None:
        self.kafka = kafka
        self.lib = lib
        self.options = options
        self.cluster_id = kafka.meta("k1")["cluster.id"]
        self.hosts = [m.host for m in kafka.members.values()]
        self.bootstrap = ",".join(f"{h}:{PORTS['controller']}" for h in self.hosts)
        self.three = kafka.roster_voters()
        self.ids = [v[0] for v in self.three]
        self.hand_ids = itertools.count(10)  # the agent's joiners claim the lowest free id
        self.joiners = itertools.count(1)
        self.proc: Process | None = None  # the hand-run joiner
        self.said = ""  # the last tool's output

    def tool(self, main_class: str, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """A Kafka tool asked through the controllers: ``kafka-metadata-quorum`` takes
        ``--bootstrap-controller`` before its command, ``kafka-cluster`` after it."""
        where = ["--bootstrap-controller", self.bootstrap]
        argv = [*where, *args] if main_class == METADATA_QUORUM else [*args[:1], *where, *args[1:]]
        done = subprocess.run(
            kafka_tool_command(self.lib, main_class, argv),
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            check=False,
        )
        self.said = (done.stdout + done.stderr).strip()[-500:]
        return done

    def until_ok(self, main_class: str, args: Sequence[str]) -> None:
        """Run the tool until it exits 0; at the deadline, an error with its last words."""
        try:
            _until(lambda: self.tool(main_class, args).returncode == 0, " ".join(args))
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; it said: {self.said}") from None

    def stop_joiner(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout_s=60)
            self.proc = None


def through_keeper(bed: Bed) -> Round:
    """A supervised 4th member joins and is promoted by its own agent; stopped, it is removed
    by a live member's agent. The bench only starts, stops and watches."""
    kafka, result = bed.kafka, Round()
    name = f"j{next(bed.joiners)}"
    kafka.members[name] = KafkaMember(name, JOINER_HOST, kafka.cluster, 3, bed.options)
    t0 = time.time()
    started = time.monotonic()
    kafka.start(name)
    _until(lambda: len(kafka.roster_voters()) == 4, "the joiner in the roster", every_s=0.1)
    result.join_s = time.monotonic() - started
    _until(lambda: len(kafka.agreed("k1")) == 4, "describe --status listing the roster's 4")
    node_id = int(kafka.meta(name)["node.id"])
    stopped = time.monotonic()
    kafka.procs.pop(name).stop(timeout_s=60)  # its agent stops Kafka and deregisters it
    kafka.consul.deregister(f"{kafka.cluster}-{node_id}")  # as Nomad does (a no-op by then)
    _until(lambda: kafka.roster_voters() == bed.three, "the joiner out of the roster", 0.1)
    result.leave_s = time.monotonic() - stopped
    _until(lambda: kafka.agreed("k1") == bed.three, "describe --status back to the roster's 3")
    _until(lambda: kafka.endpoint_ids("k1") == bed.ids, "the joiner unregistered as a broker")
    result.windows.append((t0, time.time()))
    del kafka.members[name]
    return result


def by_hand(bed: Bed) -> Round:
    result = Round()
    node_id = next(bed.hand_ids)
    t0 = time.time()
    started = time.monotonic()
    d = bed.kafka.workdir / f"hand-{node_id}"
    bed.proc, conf = start_joiner(
        bed.lib, d, JOINER_HOST, node_id, bed.cluster_id, bed.hosts, broker=True
    )

    def caught_up() -> bool:
        out = bed.tool(METADATA_QUORUM, ["describe", "--replication"]).stdout
        return any(
            row.split()[:1] == [str(node_id)] and row.split()[3:4] == ["0"] and "Observer" in row
            for row in out.splitlines()
        )

    _until(caught_up, "caught up")
    bed.until_ok(METADATA_QUORUM, ["--command-config", str(conf), "add-controller"])
    result.join_s = time.monotonic() - started
    directory = read_properties(d / "data" / "meta.properties")["directory.id"]
    stopped = time.monotonic()
    bed.stop_joiner()
    remove = ["remove-controller", "--controller-id", str(node_id)]
    remove += ["--controller-directory-id", directory]
    bed.until_ok(METADATA_QUORUM, remove)
    result.leave_s = time.monotonic() - stopped
    bed.until_ok(CLUSTER_TOOL, ["unregister", "--id", str(node_id)])
    result.windows.append((t0, time.time()))
    return result


def _within(stamp: float, windows: Sequence[tuple[float, float]]) -> bool:
    return any(start <= stamp <= end for start, end in windows)


def _stamp(event: dict[str, object]) -> float:
    return int(str(event.get("timestamp", 0))) / 1000


def longest_gap(producer: AckedProducer, windows: Sequence[tuple[float, float]]) -> float:
    """The longest time between two acks that both fall in (or span into) one window."""
    stamps = [_stamp(e) for e in producer.events("producer_send_success")]
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
    options: dict[str, object] = {
        "quorum": "dynamic",
        "quorum_tool": kafka_tool_command(lib, METADATA_QUORUM, []),
        "cluster_tool": kafka_tool_command(lib, CLUSTER_TOOL, []),
    }
    members = combined(cluster, first_host=FIRST_HOST, **options)
    supervised = ["--supervise", "--remove-after", f"{REMOVE_AFTER_S:g}s"]  # + --register
    results: dict[str, list[Round]] = {KEEPER: [], HAND: []}
    with KafkaCluster(
        consul, workdir / "cluster", cluster, members, lib=lib, agent_extra=supervised
    ) as kafka:
        kafka.start_all()
        kafka.wait_formed()
        _until(lambda: len(kafka.agreed("k1")) == 3, "the roster's 3 voters in the quorum")
        kafka.create_topic("day2", replicas=3, via="k1", configs={"min.insync.replicas": 2})
        bed = Bed(kafka, lib, options)
        producer = AckedProducer(
            lib,
            ",".join(f"{h}:{PORTS['broker']}" for h in bed.hosts),
            "day2",
            workdir / "producer.log",
        )
        try:
            time.sleep(3)  # the producer's first acks before the first change
            for round_no in range(rounds):
                for kind in rotated([KEEPER, HAND], round_no):
                    done = through_keeper(bed) if kind == KEEPER else by_hand(bed)
                    results[kind].append(done)
                    print(
                        f"  round {round_no + 1}: {kind:<30} join {done.join_s:.2f} s, "
                        f"leave {done.leave_s:.2f} s",
                        flush=True,
                    )
        finally:
            bed.stop_joiner()  # a round that failed half-way leaves its joiner running
            producer.stop()
        acked = producer.events("producer_send_success")
        consumed = set(kafka.consume_all("day2", len(acked), via="k2"))
    failures = producer.events("producer_send_error")
    windows = {kind: [w for r in rs for w in r.windows] for kind, rs in results.items()}
    gaps = {kind: longest_gap(producer, ws) for kind, ws in windows.items()}
    failed = {kind: sum(_within(_stamp(e), ws) for e in failures) for kind, ws in windows.items()}
    missing = [e for e in acked if str(e["value"]) not in consumed]
    lost = {kind: sum(_within(_stamp(e), ws) for e in missing) for kind, ws in windows.items()}
    beyond = [r.leave_s - REMOVE_AFTER_S for r in results[KEEPER]]
    for kind, rs in results.items():
        print(per_round(f"join, {kind}", [r.join_s for r in rs]))
        print(per_round(f"leave, {kind}", [r.leave_s for r in rs]))
        if kind == KEEPER:
            print(per_round(f"leave beyond --remove-after {REMOVE_AFTER_S:g}s, {kind}", beyond))
        print(
            f"  {kind}: longest gap between acks {gaps[kind]:.3f} s, failed sends "
            f"{failed[kind]}, acked but missing {lost[kind]}"
        )
    print(
        f"  whole run: acked {len(acked)}, failed sends {len(failures)}, acked but not "
        f"consumed {len(missing)}"
    )
    shutil.rmtree(workdir / "cluster", ignore_errors=True)
    a, h = results[KEEPER], results[HAND]
    note = (
        f"3 -> 4 -> 3 voters, combined joiner, --remove-after {REMOVE_AFTER_S:g}s, {rounds} rounds"
    )
    return [
        Figure(
            "Kafka controller join: start to voter",
            median([r.join_s for r in a]),
            "s",
            median([r.join_s for r in h]),
            HAND,
            note=note,
        ),
        Figure(
            "Kafka controller leave: stop to removed",
            median([r.leave_s for r in a]),
            "s",
            median([r.leave_s for r in h]),
            HAND,
            note=f"the agent's includes --remove-after {REMOVE_AFTER_S:g}s",
        ),
        Figure(
            "Kafka controller leave, beyond --remove-after",
            median(beyond),
            "s",
            median([r.leave_s for r in h]),
            HAND,
        ),
        Figure("Kafka longest gap between acks (day 2)", gaps[KEEPER], "s", gaps[HAND], HAND),
        Figure("Kafka failed sends (day 2)", float(failed[KEEPER]), "", float(failed[HAND]), HAND),
        Figure(
            "Kafka acked but not consumed (day 2)",
            float(lost[KEEPER]),
            "",
            float(lost[HAND]),
            HAND,
            note=f"{len(acked)} acked, {len(failures)} failed sends in the whole run",
        ),
    ]


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["--only", "kafka_day2", *sys.argv[1:]]))
