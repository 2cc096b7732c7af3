"""Kafka day 2 on the controllers of a dynamic quorum (KIP-853), real Kafka 4.4.0 and a real
Consul agent, supervised members: split roles scaled 3 -> 5 -> 3, and a controller lost with
its disk replaced on another host. The members' own agents (``bootstrap.keeper``) make every
change; a producer with acks=all sends throughout and every acknowledged message is read back.

Nomad's semantics are played by hand: a lost member's process group is killed and its
registration removed. Members live on 127.0.0.151 .. 127.0.0.158 and 127.0.0.161 .. .164.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from adapters.kafka import directory_id
from testbed.consul import ConsulAgent
from testbed.jvm import peer_libs
from testbed.kafka import (
    PORTS,
    AckedProducer,
    KafkaCluster,
    combined,
    controller_only,
    dynamic_quorum,
    split,
)
from testbed.kafka import host as kafka_host
from testbed.procs import wait_until
from tests.integration.test_roster import roster

REMOVE_AFTER_S = 3
MIN_SIZE = 3
SUPERVISED = ["--supervise", "--remove-after", f"{REMOVE_AFTER_S}s", "--min-size", str(MIN_SIZE)]
TIMEOUT_S = 240


class RosterHistory:
    """Every version of the roster, as Consul's blocking queries return them (a thread): the
    test reads which voters each version had, so two changes made at once would show."""

    def __init__(self, consul: ConsulAgent, cluster: str) -> None:
        self.consul = consul
        self.path = f"/v1/kv/cluster-bootstrap/{cluster}/roster"
        self.seen: list[tuple[int, list[int]]] = []  # (version, voter ids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        index = 0
        while not self._stop.is_set():
            status, answer = self.consul.request(
                "GET", f"{self.path}?index={index}&wait=2s", timeout_s=10
            )
            if status != 200 or not isinstance(answer, list):
                time.sleep(0.2)  # not written yet
                continue
            index = int(answer[0]["ModifyIndex"])
            value = json.loads(base64.b64decode(answer[0]["Value"]))
            entry = (int(value["version"]), sorted(int(v["id"]) for v in value["voters"]))
            if not self.seen or self.seen[-1] != entry:
                self.seen.append(entry)

    def stop(self) -> list[tuple[int, list[int]]]:
        self._stop.set()
        self._thread.join(timeout=15)
        return self.seen


def one_change_at_a_time(seen: Sequence[tuple[int, list[int]]]) -> list[str]:
    """Each version after the first adds or removes exactly one voter: the steps, as text."""
    steps = []
    for (v1, before), (v2, after) in itertools.pairwise(seen):
        added, removed = sorted(set(after) - set(before)), sorted(set(before) - set(after))
        assert v2 == v1 + 1, f"roster v{v1} -> v{v2}: a version missed or two at once: {seen}"
        assert len(added) + len(removed) == 1, f"v{v1} -> v{v2} changed {added} {removed}"
        steps.append(f"+{added[0]}" if added else f"-{removed[0]}")
    return steps


def log_of(kafka: KafkaCluster, name: str) -> str:
    return (kafka.member_dir(name) / "member.log").read_text(errors="replace")


def agent_tails(kafka: KafkaCluster, names: list[str], lines: int = 25) -> str:
    """The last lines the agents of ``names`` logged (not their servers'), for a failure."""
    return "\n".join(
        f"{name}: {line}"
        for name in names
        for line in [
            row for row in log_of(kafka, name).splitlines() if row.startswith("cluster-bootstrap:")
        ][-lines:]
    )


def test_split_controllers_grow_3_to_5_and_shrink_back_to_3_one_change_at_a_time(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves, with split roles (3 controller-only + 3 broker-only members formed through the
    agent, quorum dynamic): two controller joiners started together are promoted by their own
    agents one after the other (each roster version adds one voter; roster and describe
    --status agree on 5 voters, the joiners with the random directory ids of their disks);
    two controllers lost for good are removed one after the other after --remove-after
    (back to 3, agreed); a third loss is not removed, the floor (--min-size 3) holds; every
    message acknowledged meanwhile is read back."""
    lib = peer_libs()["kafka4"]
    options = dynamic_quorum(lib)
    first = 151  # c1..c3 .151-.153, b1..b3 .154-.156, joiners c4 c5 .157 .158
    members = split(cluster, controllers=3, brokers=3, first_host=first, **options)
    joiners = [
        controller_only(cluster, f"c{n}", kafka_host(n + 3, first), **options) for n in (4, 5)
    ]
    with KafkaCluster(consul, tmp_path, cluster, members, agent_extra=SUPERVISED) as kafka:
        kafka.start_all(controllers_first=True)
        kafka.wait_formed()
        three = kafka.roster_voters()
        assert [v[0] for v in three] == [1, 2, 3]
        wait_until(lambda: kafka.quorum_voters("b1") == three, 60, "the quorum of 3")
        history = RosterHistory(consul, cluster)
        kafka.create_topic("acked", replicas=3, via="b1", configs={"min.insync.replicas": 2})
        bootstrap = ",".join(kafka.bootstrap(f"b{n}") for n in (1, 2, 3))
        producer = AckedProducer(lib, bootstrap, "acked", tmp_path / "producer.log")
        try:
            time.sleep(2.0)  # acks before the change
            for joiner in joiners:
                kafka.members[joiner.name] = joiner
            joined_at = time.monotonic()
            for joiner in joiners:
                kafka.start(joiner.name)
            wait_until(lambda: len(kafka.roster_voters()) == 5, TIMEOUT_S, "5 voters")
            to_five_s = time.monotonic() - joined_at
            five = agreed_on(kafka, consul, 5)
            ids = {j.name: int(kafka.meta(j.name)["node.id"]) for j in joiners}
            assert sorted(ids.values()) == [4, 5]
            for joiner in joiners:
                n, meta = ids[joiner.name], kafka.meta(joiner.name)
                assert (n, meta["directory.id"], f"CONTROLLER://{joiner.host}:9093") in five
                assert meta["directory.id"] != directory_id(meta["cluster.id"], n)  # random
                assert f"add voter {n}: done (the service committed it" in log_of(
                    kafka, joiner.name
                )
            assert five[:3] == three and roster(consul, cluster)["version"] == 3

            time.sleep(2.0)  # acks with 5 voters
            gone = ["c1", "c4"]  # one formed with the derived directory id, one joiner
            gone_ids = sorted(int(kafka.meta(n)["node.id"]) for n in gone)
            for name in gone:
                kafka.lose(name)
            lost_at = time.monotonic()
            wait_until(lambda: len(kafka.roster_voters()) == 3, TIMEOUT_S, "3 voters")
            to_three_s = time.monotonic() - lost_at
            back = agreed_on(kafka, consul, 3)
            assert sorted({1, 2, 3, 4, 5} - {v[0] for v in back}) == gone_ids
            assert roster(consul, cluster)["version"] == 5
            staying = ["c2", "c3", "c5"]
            for n in gone_ids:
                removers = [s for s in staying if f"removed voter {n} (" in log_of(kafka, s)]
                assert len(removers) == 1, (n, removers)

            # A third loss would leave 2 live voters, below --min-size 3: never removed.
            third = int(kafka.meta("c2")["node.id"])
            kafka.lose("c2")
            floor_line = f"remove lost voter {third}: not now, 2 live voters would be left"
            try:
                wait_until(
                    lambda: any(floor_line in log_of(kafka, s) for s in ("c3", "c5")),
                    60,
                    "the floor refusing the third removal",
                )
            except TimeoutError as exc:  # what the staying agents did instead
                raise AssertionError(f"{exc}\n{agent_tails(kafka, ['c3', 'c5'])}") from exc
            time.sleep(REMOVE_AFTER_S + 2.0)  # a tick later: still refused
            assert kafka.roster_voters() == back
            assert kafka.quorum_voters("b2") == back
            time.sleep(2.0)  # acks after the last change
        finally:
            producer.stop()
            seen = history.stop()
        steps = one_change_at_a_time(seen)
        assert sorted(steps[:2]) == ["+4", "+5"], seen  # promoted first, one at a time
        assert sorted(steps[2:]) == sorted(f"-{n}" for n in gone_ids), seen
        print(
            f"\nkafka split 3->5->3: joiners start -> both voters {to_five_s:.1f}s, 2 lost -> "
            f"both removed {to_three_s:.1f}s (--remove-after {REMOVE_AFTER_S}s), roster "
            f"{seen}, {kafka.read_back(producer, 'b2')}"
        )


def agreed_on(kafka: KafkaCluster, consul: ConsulAgent, size: int) -> list[tuple[int, str, str]]:
    """The roster's ``size`` voters once describe --status (through a broker) lists the same."""
    found: list[tuple[int, str, str]] = []

    def same() -> bool:
        found[:] = kafka.agreed(kafka.brokers()[0].name)
        return len(found) == size

    wait_until(same, 60, f"the quorum and the roster agreeing on {size} voters")
    return found


def test_a_controller_lost_with_its_disk_is_replaced_on_a_new_host_add_first_then_remove(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a combined controller lost with its host and disk (killed, deregistered, its
    data dir deleted) and replaced as Nomad does it, under the same member name (the alloc
    name) on another address with an empty disk, does not take its old id back: with it, it
    formatted with the lost disk's derived directory id and took the lost voter's seat with an
    empty log (seen before the fix), and a new directory under the same id cannot be added
    first (Kafka 4.4: DuplicateVoterException while the id votes). It joins under a new id,
    formatted with --no-initial-controllers (a random directory id: not the lost disk's, not
    the derived one), is promoted by its own agent, and only then is the lost (id, directory
    id) removed and its claim released: the floor of 3 (--min-size) held the removal back
    while the replacement caught up, so the roster went 3 -> 4 -> 3 voters, never 2; every
    acknowledged message is read back."""
    lib = peer_libs()["kafka4"]
    options = dynamic_quorum(lib)
    first = 161  # k1..k3 .161-.163, k2's replacement .164
    members = combined(cluster, first_host=first, **options)
    replacement = dataclasses.replace(members[1], host=kafka_host(4, first))  # name k2
    with KafkaCluster(consul, tmp_path, cluster, members, agent_extra=SUPERVISED) as kafka:
        kafka.start_all()
        kafka.wait_formed()
        three = kafka.roster_voters()
        wait_until(lambda: kafka.quorum_voters("k1") == three, 60, "the quorum of 3")
        history = RosterHistory(consul, cluster)
        kafka.create_topic("acked", replicas=3, via="k1", configs={"min.insync.replicas": 2})
        bootstrap = ",".join(f"{m.host}:{PORTS['broker']}" for m in members)
        producer = AckedProducer(lib, bootstrap, "acked", tmp_path / "producer.log")
        try:
            time.sleep(2.0)  # acks before the loss
            lost = int(kafka.meta("k2")["node.id"])
            lost_directory = kafka.meta("k2")["directory.id"]
            cluster_id = kafka.meta("k2")["cluster.id"]
            assert lost_directory == directory_id(cluster_id, lost)  # formed: derived
            kafka.lose("k2")
            shutil.rmtree(kafka.member_dir("k2") / "data")  # the host and its disk are gone
            lost_at = time.monotonic()
            kafka.members["k2"] = replacement
            kafka.start("k2")
            wait_until(lambda: len(kafka.roster_voters()) == 4, TIMEOUT_S, "promoted")
            to_voter_s = time.monotonic() - lost_at
            wait_until(lambda: len(kafka.roster_voters()) == 3, TIMEOUT_S, "removed")
            to_removed_s = time.monotonic() - lost_at
            after = agreed_on(kafka, consul, 3)
            new_id = int(kafka.meta("k2")["node.id"])
            new_directory = kafka.meta("k2")["directory.id"]
            assert new_id == 4 and new_id != lost
            assert new_directory not in (lost_directory, directory_id(cluster_id, new_id))
            assert (new_id, new_directory, f"CONTROLLER://{replacement.host}:9093") in after
            assert [v for v in after if v[0] != new_id] == [v for v in three if v[0] != lost]
            assert f"id {lost} (this member's claim) votes at {members[1].host}" in log_of(
                kafka, "k2"
            )
            status, _ = consul.request("GET", f"/v1/kv/cluster-bootstrap/{cluster}/ids/{lost}")
            assert status == 404, f"claim {lost} not released"
            removers = [
                n for n in ("k1", "k2", "k3") if f"removed voter {lost} (" in log_of(kafka, n)
            ]
            assert len(removers) == 1, removers
            held = f"remove lost voter {lost}: not now, 2 live voters would be left, below"
            assert any(held in log_of(kafka, n) for n in ("k1", "k3")), "the floor held it"
            time.sleep(2.0)  # acks after the change
        finally:
            producer.stop()
            seen = history.stop()
        assert one_change_at_a_time(seen) == [f"+{new_id}", f"-{lost}"], seen
        print(
            f"\nkafka replacement: loss -> replacement voter {to_voter_s:.1f}s, loss -> old "
            f"removed {to_removed_s:.1f}s (--remove-after {REMOVE_AFTER_S}s), roster {seen}, "
            f"{kafka.read_back(producer, 'k3')}"
        )
