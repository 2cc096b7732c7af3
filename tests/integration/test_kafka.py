"""Kafka clusters formed through cluster-bootstrap and a real Consul agent (KRaft and ZooKeeper)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from adapters.kafka import directory_id
from testbed.consul import ConsulAgent
from testbed.jvm import METADATA_QUORUM, peer_libs, zookeeper_cli_command
from testbed.kafka import KafkaCluster, combined, split
from testbed.zookeeper import PORTS as ZK_PORTS
from testbed.zookeeper import ZkEnsemble


def node_ids(cluster: KafkaCluster) -> dict[str, int]:
    return {name: int(cluster.meta(name)["node.id"]) for name in cluster.procs}


def test_three_combined_members_form_one_cluster(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves 3 simultaneous combined members share one cluster id and replicate a topic."""
    with KafkaCluster(consul, tmp_path, cluster, combined(cluster)) as kafka:
        kafka.start_all()
        answers = kafka.wait_formed()
        cluster_ids = {kafka.meta(name)["cluster.id"] for name in kafka.procs}
        assert len(cluster_ids) == 1
        assert {answer[0] for answer in answers.values()} == cluster_ids
        assert sorted(node_ids(kafka).values()) == [1, 2, 3]
        kafka.create_topic("bootstrap", replicas=3, via="k1")
        kafka.produce("bootstrap", "hello-from-k1", via="k1")
        assert kafka.consume_one("bootstrap", via="k3") == "hello-from-k1"


def test_split_controllers_and_brokers_form_one_cluster(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves 3 controllers and 2 brokers in two Consul services form one cluster, ids apart."""
    with KafkaCluster(consul, tmp_path, cluster, split(cluster)) as kafka:
        kafka.start_all()
        answers = kafka.wait_formed()
        ids = node_ids(kafka)
        assert sorted(ids[f"c{n}"] for n in (1, 2, 3)) == [1, 2, 3]
        assert sorted(ids[f"b{n}"] for n in (1, 2)) == [100, 101]
        assert {answer[1] == [100, 101] for answer in answers.values()} == {True}
        assert len({kafka.meta(name)["cluster.id"] for name in kafka.procs}) == 1
        voters = {
            line.partition("=")[2]
            for name in kafka.procs
            for line in kafka.conf_file(name).read_text().splitlines()
            if line.startswith("controller.quorum.voters=")
        }
        controllers = sorted((ids[f"c{n}"], f"127.0.0.{20 + n}") for n in (1, 2, 3))
        assert voters == {",".join(f"{i}@{address}:9093" for i, address in controllers)}
        kafka.create_topic("split", replicas=2, via="b1")
        kafka.produce("split", "hello-from-b1", via="b1")
        assert kafka.consume_one("split", via="b2") == "hello-from-b1"


def test_dynamic_quorum_forms_with_three_voters(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves KIP-853 members formatted with derived directory ids form a 3-voter quorum."""
    members = combined(cluster, quorum="dynamic")
    with KafkaCluster(consul, tmp_path, cluster, members) as kafka:
        kafka.start_all()
        kafka.wait_formed()
        status = kafka.tool(
            METADATA_QUORUM, ["--bootstrap-server", kafka.bootstrap("k2"), "describe", "--status"]
        )
        line = next(x for x in status.splitlines() if x.startswith("CurrentVoters:"))
        voters = json.loads(line.partition(":")[2])
        cluster_id = kafka.meta("k1")["cluster.id"]
        assert sorted(v["id"] for v in voters) == [1, 2, 3]
        assert {v["directoryId"] for v in voters} == {
            directory_id(cluster_id, n) for n in (1, 2, 3)
        }
        for name, node_id in node_ids(kafka).items():
            assert kafka.meta(name)["directory.id"] == directory_id(cluster_id, node_id)


def test_restarted_member_keeps_node_id_and_cluster_id(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a killed member restarts with its node.id and storage unformatted, and rejoins."""
    with KafkaCluster(consul, tmp_path, cluster, combined(cluster)) as kafka:
        kafka.start_all()
        kafka.wait_formed()
        before = kafka.meta("k2")
        kafka.kill("k2")
        kafka.start("k2")
        answers = kafka.wait_formed()
        assert kafka.meta("k2") == before
        assert answers["k2"][1] == [1, 2, 3]
        log = (kafka.member_dir("k2") / "member.log").read_text()
        assert f"keeps id {before['node.id']}" in log


def test_kafka39_brokers_join_a_zookeeper_ensemble_formed_by_the_agent(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves ZooKeeper-mode brokers find the agent-formed ensemble and register their ids."""
    chroot = f"/{cluster}"
    zk_cluster = f"{cluster}-zk"
    members = combined(
        cluster,
        size=2,
        mode="zookeeper",
        zookeeper_cluster=zk_cluster,
        zookeeper_expect=3,
        zookeeper_chroot=chroot,
    )
    lib = peer_libs()["kafka39"]
    with (
        ZkEnsemble(consul, tmp_path / "zk", 3, zk_cluster, first_host=31) as ensemble,
        KafkaCluster(consul, tmp_path / "kafka", cluster, members, lib=lib) as kafka,
    ):
        ensemble.start_all()
        ensemble.wait_quorum()
        kafka.start_all()
        kafka.wait_formed()
        connect = {
            line.partition("=")[2]
            for name in kafka.procs
            for line in kafka.conf_file(name).read_text().splitlines()
            if line.startswith("zookeeper.connect=")
        }
        assert len(connect) == 1, "every broker names the same ensemble, in the same order"
        servers, _, rendered_chroot = connect.pop().partition("/")
        assert sorted(servers.split(",")) == [f"127.0.0.3{n}:2181" for n in (1, 2, 3)]
        assert f"/{rendered_chroot}" == chroot
        ls = subprocess.run(
            zookeeper_cli_command(
                f"127.0.0.32:{ZK_PORTS['client']}", ["ls", f"{chroot}/brokers/ids"]
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        registered = json.loads(ls.stdout.strip().splitlines()[-1])
        assert sorted(registered) == sorted(int(kafka.meta(n)["broker.id"]) for n in kafka.procs)
        assert sorted(registered) == [1, 2]
