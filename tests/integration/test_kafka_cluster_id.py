"""The apache/kafka image's CLUSTER_ID: storage it formatted is adopted, a disagreement is one line.

One combined member on 127.0.0.71 (a cluster of one is enough: the id is the point). Its storage
is formatted first the way the image does it (the real storage tool, ``-t $CLUSTER_ID``, with the
image's fixed default id), then the agent starts on it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from adapters.images import IMAGE_DEFAULT_CLUSTER_ID
from testbed.consul import ConsulAgent
from testbed.jvm import kafka_storage_command
from testbed.kafka import PORTS, KafkaCluster, combined, metadata
from tests.integration.conftest import run_agent

FIRST_HOST = 71


def formatted_by_the_image(kafka: KafkaCluster, name: str) -> None:
    """Format ``name``'s storage as the image's launch script does, before any agent ran."""
    member = kafka.members[name]
    d = kafka.member_dir(name)
    (d / "data").mkdir(parents=True)
    props = d / "image-server.properties"
    props.write_text(
        "process.roles=broker,controller\nnode.id=1\ncontroller.listener.names=CONTROLLER\n"
        f"listeners=PLAINTEXT://{member.host}:{PORTS['broker']},"
        f"CONTROLLER://{member.host}:{PORTS['controller']}\n"
        f"controller.quorum.voters=1@{member.host}:{PORTS['controller']}\n"
        f"log.dirs={d / 'data'}\n"
    )
    argv = kafka_storage_command(
        kafka.lib, ["format", "-t", IMAGE_DEFAULT_CLUSTER_ID, "-c", str(props)]
    )
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert kafka.meta(name)["cluster.id"] == IMAGE_DEFAULT_CLUSTER_ID


def test_cluster_id_variable_adopts_storage_the_image_formatted(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves with CLUSTER_ID set, the shared id is created with it and the broker serves on the
    image-formatted storage; without it the start stops with exit 8 naming CLUSTER_ID. Also a
    set KAFKA_JMX_HOSTNAME becomes no property and is warned about in the start's log."""
    before = combined(f"{cluster}-a", size=1, first_host=FIRST_HOST)
    with KafkaCluster(consul, tmp_path / "without", f"{cluster}-a", before) as kafka:
        formatted_by_the_image(kafka, "k1")
        result = run_agent(kafka.agent_argv(kafka.members["k1"])[1:], consul.env())
        assert result.code == 8, result.stderr
        assert f"adopt it with CLUSTER_ID={IMAGE_DEFAULT_CLUSTER_ID}" in result.stderr
    after = combined(cluster, size=1, first_host=FIRST_HOST)
    with KafkaCluster(consul, tmp_path / "with", cluster, after) as kafka:
        formatted_by_the_image(kafka, "k1")
        image_env = {"CLUSTER_ID": IMAGE_DEFAULT_CLUSTER_ID, "KAFKA_JMX_HOSTNAME": "10.9.9.9"}
        kafka.start("k1", image_env)
        answers = kafka.wait_formed()
        assert answers["k1"][0] == IMAGE_DEFAULT_CLUSTER_ID
        status, value = consul.request(
            "GET", f"/v1/kv/cluster-bootstrap/{cluster}/shared/cluster_id?raw"
        )
        assert status == 200 and value == IMAGE_DEFAULT_CLUSTER_ID
        assert metadata(kafka.members["k1"].host, PORTS["broker"]) is not None
        # The launch script's variable is no property, and the start says it does nothing.
        assert "jmx" not in kafka.conf_file("k1").read_text()
        log = (kafka.member_dir("k1") / "member.log").read_text()
        assert "KAFKA_JMX_HOSTNAME is set but only the apache/kafka launch script" in log


def test_cluster_id_variable_against_another_shared_id_is_one_line_exit_6(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves CLUSTER_ID disagreeing with the id the cluster already shares stops the start with
    one error line (exit 6) before anything is written."""
    consul.kv_put(f"cluster-bootstrap/{cluster}/shared/cluster_id", "MkU3OEVBNTcwNTJENDM2Qg")
    kafka = KafkaCluster(consul, tmp_path, cluster, combined(cluster, 1, FIRST_HOST))
    argv = kafka.agent_argv(kafka.members["k1"])[1:]
    result = run_agent(argv, {**consul.env(), "CLUSTER_ID": IMAGE_DEFAULT_CLUSTER_ID})
    assert result.code == 6, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"CLUSTER_ID={IMAGE_DEFAULT_CLUSTER_ID} but" in errors[0]
    assert not kafka.conf_file("k1").exists()
