"""Kafka day 2 in supervise mode, on real Kafka 4.4.0 and a real Consul agent: the members'
own agents promote a joining combined member to a voter of the dynamic quorum (KIP-853) and
remove it once it is lost (``bootstrap.keeper``), while a producer with acks=all keeps sending.

Nomad's semantics are played by hand: a lost member's process group is killed and its
registration removed. Members live on 127.0.0.131 .. 127.0.0.134 and 127.0.0.141 .. .147.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from adapters.kafka_voters import unregister_broker
from bootstrap.model import Member
from testbed.consul import ConsulAgent
from testbed.jvm import CLUSTER_TOOL, METADATA_QUORUM, TOPIC_COMMAND, kafka_tool_command, peer_libs
from testbed.kafka import PORTS, AckedProducer, KafkaCluster, KafkaMember, combined
from testbed.kafka import host as kafka_host
from testbed.procs import wait_until
from tests.integration.test_roster import roster

FIRST_HOST = 131
REMOVE_AFTER_S = 3
SUPERVISED = ["--supervise", "--remove-after", f"{REMOVE_AFTER_S}s"]  # the bed adds --register
TIMEOUT_S = 240


def test_a_combined_kafka_joiner_becomes_a_voter_and_is_removed_once_lost(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a 4th combined member of a supervised dynamic quorum, formatted with
    --no-initial-controllers, is made a voter by its own agent (roster and describe --status
    list the same 4 voters, the 4th with the directory id of its meta.properties); lost for
    good, it is removed by a live member after --remove-after (roster and quorum back to 3, its
    id claim released, its broker unregistered); every message acknowledged meanwhile is read
    back."""
    lib = peer_libs()["kafka4"]
    options = {
        "quorum": "dynamic",
        "quorum_tool": kafka_tool_command(lib, METADATA_QUORUM, []),
        "cluster_tool": kafka_tool_command(lib, CLUSTER_TOOL, []),
    }
    members = combined(cluster, first_host=FIRST_HOST, **options)
    fourth = KafkaMember("k4", kafka_host(4, FIRST_HOST), cluster, 3, options)
    with KafkaCluster(consul, tmp_path, cluster, members, agent_extra=SUPERVISED) as kafka:
        kafka.start_all()
        kafka.wait_formed()
        three = kafka.roster_voters()
        assert [v[0] for v in three] == [1, 2, 3]
        wait_until(lambda: kafka.quorum_voters("k1") == three, 60, "the quorum of 3")
        kafka.create_topic("acked", replicas=3, via="k1", configs={"min.insync.replicas": 2})
        bootstrap = ",".join(f"{m.host}:{PORTS['broker']}" for m in members)
        producer = AckedProducer(lib, bootstrap, "acked", tmp_path / "producer.log")
        try:
            time.sleep(2.0)  # acks before the change
            kafka.members["k4"] = fourth
            joined_at = time.monotonic()
            kafka.start("k4")
            # The roster changes only after Kafka committed: polled cheaply, it times the change.
            wait_until(lambda: len(kafka.roster_voters()) == 4, TIMEOUT_S, "4 voters")
            to_voter_s = time.monotonic() - joined_at
            wait_until(lambda: len(kafka.agreed("k1")) == 4, 60, "the quorum agreeing")
            four = kafka.roster_voters()
            k4 = int(kafka.meta("k4")["node.id"])
            assert [v[0] for v in four] == [1, 2, 3, k4] and k4 == 4
            assert four[3] == (
                k4,
                kafka.meta("k4")["directory.id"],
                f"CONTROLLER://{fourth.host}:9093",
            )
            assert four[:3] == three
            assert roster(consul, cluster)["version"] == 2
            log4 = (kafka.member_dir("k4") / "member.log").read_text(errors="replace")
            assert f"add voter {k4}: done (the service committed it" in log4

            time.sleep(2.0)  # acks with 4 voters
            kafka.lose("k4")
            lost_at = time.monotonic()
            wait_until(lambda: kafka.roster_voters() == three, TIMEOUT_S, "removed")
            to_removed_s = time.monotonic() - lost_at
            wait_until(lambda: kafka.agreed("k1") == three, 60, "the quorum agreeing")
            assert roster(consul, cluster)["version"] == 3
            status, _ = consul.request("GET", f"/v1/kv/cluster-bootstrap/{cluster}/ids/{k4}")
            assert status == 404, f"claim {k4} not released"
            removed = [
                n
                for n in ("k1", "k2", "k3")
                if f"removed voter {k4} (" in (kafka.member_dir(n) / "member.log").read_text()
            ]
            assert len(removed) == 1, removed
            # Removed as a voter, the combined member is unregistered as a broker too.
            wait_until(lambda: kafka.endpoint_ids("k1") == [1, 2, 3], 60, "4 unregistered")
            assert f"unregistered removed voter {k4}" in (
                kafka.member_dir(removed[0]) / "member.log"
            ).read_text(errors="replace")
            for n in ("k1", "k2", "k3", "k4"):  # the tool's exit came from the supervisor
                log = (kafka.member_dir(n) / "member.log").read_text(errors="replace")
                assert "Unknown child process" not in log, n
            time.sleep(2.0)  # acks after the last change
        finally:
            producer.stop()
        print(
            f"\nkafka day 2: joiner start -> voter {to_voter_s:.1f}s, loss -> removed "
            f"{to_removed_s:.1f}s (--remove-after {REMOVE_AFTER_S}s), "
            f"{kafka.read_back(producer, 'k2')}"
        )


RESTART_HOST = 141  # 127.0.0.141 .. 143
RESTART_REMOVE_AFTER_S = 180  # longer than a restart: a restart is not a loss


def change_lines(kafka: KafkaCluster, node_id: int) -> list[str]:
    """Every agent line, in any member's log, that changed voter ``node_id``."""
    marks = (
        f"add voter {node_id}:",
        f"re-add id {node_id} ",
        f"remove lost voter {node_id}",
        f"removed voter {node_id} (",
    )
    return [
        f"{name}: {line}"
        for name in kafka.members
        for line in (kafka.member_dir(name) / "member.log").read_text(errors="replace").splitlines()
        if any(mark in line for mark in marks)
    ]


def test_a_restarted_kafka_controller_is_neither_removed_nor_re_added(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a supervised controller of a dynamic quorum that stops (its agent deregisters
    it, so its peers see it lost and start its clock) and starts again on the same disk keeps
    its seat: the roster's version does not move, no agent adds or removes it, and the quorum
    lists the same voters with the same directory ids afterwards (the Kubernetes operator's
    sidecar removes and re-adds a controller on every restart)."""
    lib = peer_libs()["kafka4"]
    options = {"quorum": "dynamic", "quorum_tool": kafka_tool_command(lib, METADATA_QUORUM, [])}
    members = combined(cluster, first_host=RESTART_HOST, **options)
    supervised = ["--supervise", "--remove-after", f"{RESTART_REMOVE_AFTER_S}s"]
    with KafkaCluster(consul, tmp_path, cluster, members, agent_extra=supervised) as kafka:
        kafka.start_all()
        kafka.wait_formed()
        three = kafka.roster_voters()
        wait_until(lambda: kafka.quorum_voters("k1") == three, 60, "the quorum of 3")
        version = roster(consul, cluster)["version"]
        k2 = int(kafka.meta("k2")["node.id"])
        directory = kafka.meta("k2")["directory.id"]
        assert (k2, directory) in [(v[0], v[1]) for v in three]

        stopped_at = time.monotonic()
        # SIGTERM to the group: the JVM's own exit (143) comes back through its agent.
        assert kafka.procs.pop("k2").stop(timeout_s=60) in (0, 143)
        seen_lost = f"voter {k2} ({members[1].host}) is not registered"

        def logs(*names: str) -> str:
            return "".join(
                (kafka.member_dir(n) / "member.log").read_text(errors="replace") for n in names
            )

        wait_until(lambda: seen_lost in logs("k1", "k3"), 60, "the peers seeing k2 lost")
        kafka.start("k2")
        kafka.wait_formed(timeout_s=120)
        wait_until(
            lambda: f"voter {k2} is back in Consul: it is not removed" in logs("k1", "k3"),
            TIMEOUT_S,
            "the peers seeing k2 back",
        )
        back_s = time.monotonic() - stopped_at
        wait_until(lambda: kafka.agreed("k1") == three, 60, "the same quorum")
        assert kafka.quorum_voters("k3") == three
        assert kafka.meta("k2")["directory.id"] == directory
        assert roster(consul, cluster)["version"] == version
        assert change_lines(kafka, k2) == []
        assert "the cluster is formed (roster" in logs("k2")
        print(f"\nkafka restart: stop -> back in Consul {back_s:.1f}s, roster v{version} kept")


BROKER_HOST = 144  # 127.0.0.144 .. 146 combined, .147 the broker-only member


@pytest.mark.parametrize("quorum", ["dynamic", "static"])
def test_a_kafka_broker_gone_longer_than_remove_after_is_unregistered(
    consul: ConsulAgent, cluster: str, tmp_path: Path, quorum: str
) -> None:
    """Proves a broker-only member that joined a supervised combined cluster (its own Consul
    service, claims in the cluster's namespace) and then is lost for good (killed and
    deregistered) is unregistered by one live member after --remove-after: kafka-cluster
    list-endpoints --include-fenced-brokers lists it before and not after, its id claim is
    released, the tool ran through the supervisor. A static quorum, whose controllers cannot
    change, unregisters it the same way. A producer (acks=all, RF 3, min ISR 2) runs
    throughout: every acknowledged message is read back. Prints what Kafka shows of a
    partition whose replicas it held (partition draining is left out)."""
    lib = peer_libs()["kafka4"]
    tools = {
        "quorum": quorum,
        "quorum_tool": kafka_tool_command(lib, METADATA_QUORUM, []),
        "cluster_tool": kafka_tool_command(lib, CLUSTER_TOOL, []),
    }
    members = combined(cluster, first_host=BROKER_HOST, **tools)
    broker = KafkaMember(
        "b1",
        kafka_host(4, BROKER_HOST),
        f"{cluster}-broker",
        1,
        {**tools, "roles": "broker", "controller_service": cluster, "controllers": 3},
    )
    with KafkaCluster(consul, tmp_path, cluster, members, agent_extra=SUPERVISED) as kafka:
        kafka.start_all()
        kafka.wait_formed()
        kafka.create_topic("acked", replicas=3, via="k1", configs={"min.insync.replicas": 2})
        bootstrap = ",".join(f"{m.host}:{PORTS['broker']}" for m in members)
        producer = AckedProducer(lib, bootstrap, "acked", tmp_path / "producer.log")
        try:
            _join_lose_and_unregister(kafka, consul, cluster, broker, tools, members)
            time.sleep(1.0)  # acks after the unregister
        finally:
            producer.stop()
        print(f"kafka broker day 2 ({quorum}): {kafka.read_back(producer, 'k2')}")


def _join_lose_and_unregister(
    kafka: KafkaCluster,
    consul: ConsulAgent,
    cluster: str,
    broker: KafkaMember,
    tools: dict[str, object],
    members: list[KafkaMember],
) -> None:
    """The broker-only member joins (and holds replicas of new topics), is lost, and is
    unregistered by one controller; what Kafka then shows of its partitions."""
    controllers = ",".join(f"{m.host}:{PORTS['controller']}" for m in members)
    kafka.members["b1"] = broker
    kafka.start("b1")
    kafka.wait_formed()
    b1 = int(kafka.meta("b1")["node.id"])
    assert b1 >= 100
    kafka.create_topic("held", replicas=4, via="k1", configs={"min.insync.replicas": 2})
    kafka.produce("held", "before-the-loss", via="k1")
    bed = ["--bootstrap-server", kafka.bootstrap("k1")]
    only = ["--create", "--topic", "only-on-b1", "--replica-assignment", str(b1)]
    kafka.tool(TOPIC_COMMAND, [*bed, *only])
    assert kafka.endpoint_ids("k1") == [1, 2, 3, b1]

    kafka.lose("b1")
    lost_at = time.monotonic()
    claim = f"/v1/kv/cluster-bootstrap/{cluster}/ids/{b1}"
    wait_until(lambda: consul.request("GET", claim)[0] == 404, TIMEOUT_S, "claim released")
    to_unregistered_s = time.monotonic() - lost_at
    listed = kafka.endpoint_ids("k1")
    assert listed == [1, 2, 3], listed
    # Asked again (another member late, or a controller-only joiner never registered as a
    # broker): Kafka 4.4 exits 1 with BrokerIdNotRegisteredException; the adapter: done.
    quorum = [Member(i + 1, m.host, PORTS) for i, m in enumerate(members)]
    assert asyncio.run(unregister_broker(tools["cluster_tool"], quorum, b1)) is True
    again = subprocess.run(
        [*tools["cluster_tool"], "unregister", "--bootstrap-controller", controllers,
         "--id", str(b1)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    answer = [line for line in (again.stdout + again.stderr).splitlines() if "Exception" in line]
    assert again.returncode == 1 and "BrokerIdNotRegisteredException" in answer[0], answer
    done = [
        n
        for n in ("k1", "k2", "k3")
        if f"unregistered member {b1} (" in (kafka.member_dir(n) / "member.log").read_text()
    ]
    assert len(done) == 1, done
    for n in ("k1", "k2", "k3"):
        log = (kafka.member_dir(n) / "member.log").read_text(errors="replace")
        assert "Unknown child process" not in log, n
    described = kafka.tool(TOPIC_COMMAND, [*bed, "--describe", "--topic", "held|only-on-b1"])
    rows = {
        line.split("Topic: ")[1].split()[0]: line
        for line in described.splitlines()
        if "Partition: 0" in line
    }

    # What Kafka 4.4 does (no draining): the unregistered id stays in the replica lists,
    # out of the ISR; a partition it alone held has no leader.
    def column(topic: str, name: str) -> list[str]:
        return rows[topic].split(f"{name}: ")[1].split()[0].split(",")

    assert str(b1) in column("held", "Replicas") and str(b1) not in column("held", "Isr")
    assert "Leader: none" in rows["only-on-b1"], rows
    assert kafka.consume_one("held", via="k2") == "before-the-loss"
    print(
        f"\nkafka broker gone -> unregistered {to_unregistered_s:.1f}s (--remove-after "
        f"{REMOVE_AFTER_S}s); after: list-endpoints {listed}; unregister again: exit "
        f"{again.returncode} {answer[:1]}; topic:\n{described}"
    )
