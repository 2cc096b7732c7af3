"""Day 2 on real ZooKeeper and Kafka through a real Consul agent: the roster.

Nomad's semantics are played by hand: a lost member's process is killed and its Consul
registration removed (Nomad deregisters an allocation's services when it stops).
ZooKeeper members live on 127.0.0.31.., Kafka members on 127.0.0.41...
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from adapters.kafka import directory_id
from testbed.consul import ConsulAgent
from testbed.jvm import METADATA_QUORUM, kafka_tool_command, zk_mode
from testbed.kafka import KafkaCluster, KafkaMember, combined
from testbed.kafka import host as kafka_host
from testbed.procs import wait_until
from testbed.zookeeper import PORTS, ZkEnsemble, server_view
from tests.integration.conftest import run_agent

ZK_FIRST = 31
KAFKA_FIRST = 41
RECONFIG = ["--set", "reconfig=true"]


def roster(consul: ConsulAgent, cluster: str) -> dict[str, object]:
    answer = consul.roster(cluster)
    assert answer is not None, f"no roster of {cluster}"
    return answer


def roster_ids(consul: ConsulAgent, cluster: str) -> list[int]:
    voters = roster(consul, cluster)["voters"]
    assert isinstance(voters, list)
    return [int(v["id"]) for v in voters]


def member_id(ensemble: ZkEnsemble, n: int) -> int:
    return int((ensemble.member_dir(n) / "data" / "myid").read_text())


def lose(ensemble: ZkEnsemble, n: int) -> None:
    """Member n is gone: its process killed, its registration removed (as Nomad does)."""
    ensemble.procs.pop(n).kill()
    ensemble.consul.deregister(f"{ensemble.cluster}-{member_id(ensemble, n)}")


def server_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("server.")]


def serving(host: str) -> bool:
    return zk_mode(host, PORTS["client"]) is not None


def test_zookeeper_member_restarts_while_a_peer_is_lost(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a restarted roster member serves again with the other survivor, not waiting for
    the lost member's registration (before: it waited for 3 and exited 5)."""
    with ZkEnsemble(consul, tmp_path, 3, cluster, first_host=ZK_FIRST) as ensemble:
        ensemble.start_all()
        ensemble.wait_quorum()
        lose(ensemble, 3)
        lose(ensemble, 2)
        ensemble.start(2)
        modes = ensemble.wait_quorum(timeout_s=60)
        assert sorted(m or "" for m in modes.values()) == ["follower", "leader"]
        log = (ensemble.member_dir(2) / "member.log").read_text()
        assert "the cluster is formed (roster version 1" in log
        assert "members here" not in log.split("keeps id")[-1], "it must not wait"


def test_zookeeper_newcomers_to_a_static_ensemble_exit_10(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a replacement (--expect 3) and a scale-out member (--expect 5) of a static
    ensemble each fail with exit 10 and one line naming reconfig, writing no zoo.cfg (before:
    they ran with a server list of their own)."""
    with ZkEnsemble(consul, tmp_path, 3, cluster, first_host=ZK_FIRST) as ensemble:
        ensemble.start_all()
        ensemble.wait_quorum()
        lose(ensemble, 3)
        for n, expect in ((4, 3), (5, 5)):
            result = run_agent(ensemble.agent_argv(n, expect=expect)[1:], consul.env())
            assert result.code == 10, result.stderr
            errors = [line for line in result.stderr.splitlines() if "error:" in line]
            assert len(errors) == 1 and "reconfig=true" in errors[0], result.stderr
            assert not (ensemble.member_dir(n) / "conf" / "zoo.cfg").exists()
        assert roster_ids(consul, cluster) == [1, 2, 3]


def test_zookeeper_newcomers_with_reconfig_run_as_observers(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves with reconfig a replacement and a scale-out member start as non-voters, and
    every member's server runs with the roster's voters."""
    with ZkEnsemble(
        consul, tmp_path, 5, cluster, extra_args=RECONFIG, first_host=ZK_FIRST, expect=3
    ) as ensemble:
        for n in (1, 2, 3):
            ensemble.start(n)
        ensemble.wait_quorum()
        lost = member_id(ensemble, 3)
        lose(ensemble, 3)
        ensemble.start(4)
        ensemble.start(5)
        wait_until(lambda: all(serving(ensemble.host(n)) for n in (1, 2, 4, 5)), 90, "joiners")
        ids = roster_ids(consul, cluster)
        assert ids == [1, 2, 3]
        for n in (1, 2, 4, 5):
            assert server_view(ensemble.host(n))[0] == ids, n
        for n in (4, 5):
            log = (ensemble.member_dir(n) / "member.log").read_text()
            assert "joins as a ZooKeeper observer" in log
            assert zk_mode(ensemble.host(n), PORTS["client"]) in ("observer", "follower")
        status = run_agent(["status", "zookeeper", "--cluster", cluster, "--json"], consul.env())
        assert status.code == 1, status.stderr
        marks = "\n".join(json.loads(status.stdout)["disagreements"])
        assert f"voter {lost} (127.0.0.33) is not registered" in marks
        for n in (4, 5):
            joiner = (
                f"id {member_id(ensemble, n)} ({ensemble.host(n)}) runs but is not in the roster"
            )
            assert joiner in marks


def test_four_started_at_once_with_expect_three_form_one_roster_of_three(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves 4 members started together with --expect 3 agree on one roster of 3: the voters
    render identical server lines and the fourth runs as a joiner."""
    with ZkEnsemble(
        consul, tmp_path, 4, cluster, extra_args=RECONFIG, first_host=ZK_FIRST, expect=3
    ) as ensemble:
        ensemble.start_all()
        wait_until(lambda: all(serving(ensemble.host(n)) for n in range(1, 5)), 90, "4 members")
        ids = roster_ids(consul, cluster)
        assert len(ids) == 3
        by_id = {member_id(ensemble, n): n for n in range(1, 5)}
        dynamic = {
            tuple(server_lines(ensemble.member_dir(by_id[i]) / "conf" / "zoo.cfg.dynamic"))
            for i in ids
        }
        assert len(dynamic) == 1 and len(dynamic.pop()) == 3
        (joiner,) = set(by_id) - set(ids)
        joiner_lines = server_lines(ensemble.member_dir(by_id[joiner]) / "conf" / "zoo.cfg.dynamic")
        assert joiner_lines[-1].startswith(f"server.{joiner}=") and ":observer;" in joiner_lines[-1]
        modes = [zk_mode(ensemble.host(n), PORTS["client"]) for n in range(1, 5)]
        assert modes.count("leader") == 1
        for n in range(1, 5):
            assert server_view(ensemble.host(n))[0] == ids


def test_cluster_formed_without_roster_gets_one_on_the_next_start(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves the upgrade path: all stopped, the roster deleted (as a cluster formed by the
    earlier release), all started again: quorum with the same ids, roster from the claims."""
    with ZkEnsemble(consul, tmp_path, 3, cluster, first_host=ZK_FIRST) as ensemble:
        ensemble.start_all()
        ensemble.wait_quorum()
        ids = {n: member_id(ensemble, n) for n in (1, 2, 3)}
        ensemble.stop_all()
        status, _ = consul.request("DELETE", f"/v1/kv/cluster-bootstrap/{cluster}/roster")
        assert status == 200
        ensemble.start_all()
        ensemble.wait_quorum()
        assert {n: member_id(ensemble, n) for n in (1, 2, 3)} == ids
        assert roster(consul, cluster)["origin"] == "upgrade"
        assert roster_ids(consul, cluster) == [1, 2, 3]
        logs = [(ensemble.member_dir(n) / "member.log").read_text() for n in (1, 2, 3)]
        assert any("formed without a roster" in log for log in logs)


def test_status_marks_servers_that_run_other_voters_than_the_roster(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves status reads the servers' own voters and marks a planted roster that differs."""
    with ZkEnsemble(consul, tmp_path, 3, cluster, first_host=ZK_FIRST) as ensemble:
        ensemble.start_all()
        ensemble.wait_quorum()
        args = ["status", "zookeeper", "--cluster", cluster]
        # Consul starts every check critical; the TCP checks pass within their 10 s interval.
        wait_until(lambda: run_agent(args, consul.env()).code == 0, 40, "status agreeing")
        assert "everything agrees" in run_agent(args, consul.env()).stdout
        planted = roster(consul, cluster)
        voters = planted["voters"]
        assert isinstance(voters, list)
        consul.kv_put(
            f"cluster-bootstrap/{cluster}/roster",
            json.dumps({**planted, "version": 2, "origin": "change", "voters": voters[:2]}),
        )
        result = run_agent([*args, "--json"], consul.env())
        assert result.code == 1, result.stderr
        report = json.loads(result.stdout)
        assert report["roster"]["version"] == 2
        assert [s["voters"] for s in report["servers"]] == [[1, 2, 3]] * 3
        marks = report["disagreements"]
        assert "id 1: its server runs with voters [1, 2, 3], the roster says [1, 2]" in marks
        assert re.search(
            r"^id 3 \(127\.0\.0\.3\d\) runs but is not in the roster", "\n".join(marks), re.M
        )


def test_kafka_member_restarts_while_a_peer_is_lost(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a restarted combined Kafka member serves again with the other survivor, not
    waiting for the lost member's registration (before: it waited for 3 and exited 5)."""
    members = combined(cluster, first_host=KAFKA_FIRST)
    with KafkaCluster(consul, tmp_path, cluster, members) as kafka:
        kafka.start_all()
        kafka.wait_formed()
        # On all three: with two replicas placed on k2 and k3, the read waits for whichever of
        # them the controller kept last in the ISR, sometimes the lost k3 (Kafka elects no
        # leader outside the ISR): the test failed on placement, not on the agent.
        kafka.create_topic("kept", replicas=3, via="k1")
        kafka.produce("kept", "before-the-loss", via="k1")
        kafka.lose("k3")
        kafka.lose("k2")
        started = time.monotonic()
        kafka.start("k2")
        kafka.wait_formed(timeout_s=90)
        assert time.monotonic() - started < 90
        assert kafka.consume_one("kept", via="k2") == "before-the-loss"
        assert (
            "the cluster is formed (roster" in (kafka.member_dir("k2") / "member.log").read_text()
        )


def test_fourth_combined_kafka_member_with_static_voters_exits_10(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a 4th combined member of a static quorum exits 10 naming quorum=dynamic (before:
    it rendered 4 static voters against a quorum of 3)."""
    members = combined(cluster, first_host=KAFKA_FIRST)
    with KafkaCluster(consul, tmp_path, cluster, members) as kafka:
        kafka.start_all()
        kafka.wait_formed()
        fourth = KafkaMember("k4", kafka_host(4, KAFKA_FIRST), cluster, 3)
        kafka.members["k4"] = fourth
        result = run_agent(kafka.agent_argv(fourth)[1:], consul.env(), timeout_s=120)
        assert result.code == 10, result.stderr
        errors = [line for line in result.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and "quorum=dynamic" in errors[0], result.stderr
        assert not kafka.conf_file("k4").exists()
        del kafka.members["k4"]


def test_fourth_combined_kafka_member_with_dynamic_quorum_joins_as_observer(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves with a dynamic quorum a 4th combined member is formatted with
    --no-initial-controllers and serves as a broker and controller observer, while the voters
    stay the roster's three, with the roster's directory ids."""
    members = combined(cluster, first_host=KAFKA_FIRST, quorum="dynamic")
    fourth = KafkaMember("k4", kafka_host(4, KAFKA_FIRST), cluster, 3, {"quorum": "dynamic"})
    with KafkaCluster(consul, tmp_path, cluster, members) as kafka:
        kafka.start_all()
        kafka.wait_formed()
        kafka.members["k4"] = fourth
        kafka.start("k4")
        kafka.wait_formed()
        described = kafka.tool(
            METADATA_QUORUM, ["--bootstrap-server", kafka.bootstrap("k1"), "describe", "--status"]
        )
        status = dict(line.split(":", 1) for line in described.splitlines() if ":" in line)
        voters = json.loads(status["CurrentVoters"])
        observers = json.loads(status["CurrentObservers"])
        record = roster(consul, cluster)
        assert isinstance(record["voters"], list)
        assert sorted((v["id"], v["directoryId"]) for v in voters) == [
            (v["id"], v["directory_id"]) for v in record["voters"]
        ]
        k4 = int(kafka.meta("k4")["node.id"])
        assert k4 == 4 and k4 in [o["id"] for o in observers]
        cluster_id = kafka.meta("k1")["cluster.id"]
        assert kafka.meta("k4")["directory.id"] != directory_id(cluster_id, 4)
        log = (kafka.member_dir("k4") / "member.log").read_text()
        assert "joins as a controller observer formatted with --no-initial-controllers" in log
        tool = json.dumps(kafka_tool_command(kafka.lib, METADATA_QUORUM, []))
        args = ["status", "kafka", "--cluster", cluster, "--set", "quorum=dynamic"]
        result = run_agent([*args, "--set", f"quorum_tool={tool}", "--json"], consul.env(), 180)
        assert result.code == 1, result.stderr
        report = json.loads(result.stdout)
        servers = {s["member_id"]: s for s in report["servers"]}
        assert sorted(servers) == [1, 2, 3, 4]
        assert {tuple(s["voters"]) for s in servers.values()} == {(1, 2, 3)}
        assert servers[4]["state"] == "observer" and 4 in servers[4]["observers"]
        assert "id 4 (127.0.0.44) runs but is not in the roster" in "\n".join(
            report["disagreements"]
        )
