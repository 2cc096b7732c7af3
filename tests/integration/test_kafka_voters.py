"""KafkaVoterChanges on real Kafka 4.4.0: a dynamic quorum formed through the agent grows to
four voters and shrinks back while a producer with acks=all keeps writing.

Members live on 127.0.0.101 .. 127.0.0.105.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from adapters.kafka import directory_id
from adapters.kafka_voters import KafkaVoterChanges
from bootstrap.errors import VoterChangeError
from bootstrap.model import Member
from bootstrap.voters import Voter
from testbed.consul import ConsulAgent
from testbed.jvm import METADATA_QUORUM, kafka_tool_command, peer_libs
from testbed.kafka import (
    PORTS,
    AckedProducer,
    KafkaCluster,
    combined,
    read_properties,
    start_joiner,
)
from testbed.procs import Process

FIRST_HOST = 101
JOINER_HOST = "127.0.0.104"
REPLACEMENT_HOST = "127.0.0.105"
JOINER_ID = 4
DEADLINE_S = 120.0


def quorum_tool() -> list[str]:
    return kafka_tool_command(peer_libs()["kafka4"], METADATA_QUORUM, [])


def controllers(kafka: KafkaCluster) -> list[Member]:
    """The formed controllers as the agent numbered them (ids follow claims, not addresses)."""
    found = [
        Member(int(kafka.meta(m.name)["node.id"]), m.host, {"controller": PORTS["controller"]})
        for m in kafka.members.values()
    ]
    return sorted(found, key=lambda m: m.member_id)


async def until_true(step: Callable[[], Awaitable[bool]], what: str) -> float:
    """Await ``step()`` until it returns True; seconds it took. False is a retryable conflict."""
    start = time.monotonic()
    while time.monotonic() - start < DEADLINE_S:
        if await step():
            return time.monotonic() - start
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{what}: not done after {DEADLINE_S:.0f}s")


def test_a_fourth_controller_becomes_a_voter_and_leaves_again(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves add makes a --no-initial-controllers joiner a voter online and committed lists
    four voters with directory ids; a new disk under a voting id is refused until the old
    (id, directory id) is removed, then added; a remove of an unknown directory id is refused;
    remove takes the controller out; every message acknowledged meanwhile is consumable."""
    lib = peer_libs()["kafka4"]
    members = combined(cluster, first_host=FIRST_HOST, quorum="dynamic")
    hosts = [m.host for m in members]
    with KafkaCluster(consul, tmp_path, cluster, members) as kafka:
        kafka.start_all()
        kafka.wait_formed()
        cluster_id = kafka.meta("k1")["cluster.id"]
        kafka.create_topic("acked", replicas=3, via="k1", configs={"min.insync.replicas": 2})
        producer = AckedProducer(
            lib, ",".join(f"{h}:{PORTS['broker']}" for h in hosts), "acked", tmp_path / "prod.log"
        )
        started: list[Process] = []

        def start(name: str, address: str) -> tuple[Process, Path]:
            proc, conf = start_joiner(lib, tmp_path / name, address, JOINER_ID, cluster_id, hosts)
            started.append(proc)
            return proc, conf

        try:
            asyncio.run(grow_and_shrink(kafka, cluster_id, start))
        finally:
            for proc in started:
                proc.stop()
            producer.stop()
        acked = producer.acked()
        assert len(acked) >= 20, f"the producer got too few acks: {producer.log_path}"
        consumed = kafka.consume_all("acked", len(acked), via="k2")
        assert set(acked) <= set(consumed), sorted(set(acked) - set(consumed), key=int)[:20]


def joining_voter(conf: Path, address: str) -> Voter:
    """The joiner as a voter: its address, and the directory id its new disk was given."""
    meta = read_properties(conf.parent.parent / "data" / "meta.properties")
    return Voter(
        Member(JOINER_ID, address, {"controller": PORTS["controller"]}), meta["directory.id"]
    )


async def grow_and_shrink(
    kafka: KafkaCluster, cluster_id: str, start: Callable[[str, str], tuple[Process, Path]]
) -> None:
    formed = controllers(kafka)
    joiner, conf = start("c4", JOINER_HOST)
    changes = KafkaVoterChanges(quorum_tool(), formed, conf)
    before = await changes.committed()
    assert before.voter_ids() == [1, 2, 3]
    assert [v.directory_id for v in before.voters] == [
        directory_id(cluster_id, n) for n in (1, 2, 3)
    ]
    assert [v.member for v in before.voters] == formed

    await until_true(lambda: changes.caught_up(JOINER_ID), "joiner caught up")
    new = joining_voter(conf, JOINER_HOST)
    assert new.directory_id not in {directory_id(cluster_id, n) for n in range(1, 5)}
    await until_true(lambda: changes.add(new, version=""), "add-controller")

    grown = await changes.committed()
    assert grown.voter_ids() == [1, 2, 3, 4]
    assert grown.voters[3] == new
    assert all(v.directory_id for v in grown.voters)

    # The same id on a new disk (a replacement): Kafka refuses it while the old pair votes.
    replacement, replacement_conf = start("c4-new-disk", REPLACEMENT_HOST)
    replacing = KafkaVoterChanges(quorum_tool(), formed, replacement_conf)
    newer = joining_voter(replacement_conf, REPLACEMENT_HOST)
    assert newer.directory_id != new.directory_id
    with pytest.raises(VoterChangeError, match="DuplicateVoterException"):
        await until_true(lambda: replacing.add(newer, version=""), "duplicate add-controller")

    stranger = Voter(new.member, "AAAAAAAAAAAAAAAAAAAAAQ")
    with pytest.raises(VoterChangeError, match="remove-controller of controller 4"):
        await changes.remove(stranger, version="")

    joiner.stop()
    await until_true(lambda: changes.remove(new, version=""), "remove-controller")
    assert (await changes.committed()).voters == before.voters

    await until_true(lambda: replacing.add(newer, version=""), "add-controller, new disk")
    assert (await changes.committed()).voters == (*before.voters, newer)

    replacement.stop()
    await until_true(lambda: replacing.remove(newer, version=""), "remove-controller, new disk")
    assert (await changes.committed()).voters == before.voters
