"""Kafka (KRaft, combined roles) in real containers whose ENTRYPOINT is the agent:
Dockerfile.glibc on a Kafka service image laid out like apache/kafka, formed through a real
Consul agent on the host. Members bind 127.0.0.65-67 on the host network.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

from testbed.consul import ConsulAgent
from testbed.containers import (
    SERVICE_UID,
    Container,
    owned_dir,
    proc_cmdline,
    proc_uid,
    stop_together,
)
from testbed.images import Images
from testbed.jvm import FAST_START_JVM
from testbed.kafka import metadata, read_properties, small_cluster_extras
from testbed.procs import wait_until

SIZE = 3
FIRST = 65
CONF = "/opt/kafka/config/cluster"
JVM_ENV = {"KAFKA_HEAP_OPTS": "-Xmx384m", "KAFKA_OPTS": " ".join(FAST_START_JVM)}


def address(n: int) -> str:
    return f"127.0.0.{FIRST - 1 + n}"


def test_three_kafka_containers_form_one_cluster_and_stop_cleanly(
    images: Images, consul: ConsulAgent, tmp_path: Path
) -> None:
    """Proves three containers of the Kafka layer image claim ids, share one cluster id, format
    their storage once and exec the broker (PID 1, the image's user, read-only root); the
    brokers list each other; podman stop's SIGTERM ends each broker with its own code."""
    cluster = f"kc-{uuid.uuid4().hex[:8]}"
    extra = json.dumps(small_cluster_extras(SIZE))
    containers = []
    for n in range(1, SIZE + 1):
        root = tmp_path / f"k{n}"
        args = [
            "kafka",
            "--cluster", cluster,
            "--expect", str(SIZE),
            "--address", address(n),
            "--bind-address", address(n),
            "--register",
            "--member-name", f"{cluster}-k{n}",
            "--timeout", "150",
            "--conf-dir", CONF,
            "--set", f"extra={extra}",
            "--",
            "/opt/kafka/bin/kafka-server-start.sh", f"{CONF}/server.properties",
        ]  # fmt: skip
        containers.append(
            Container(
                f"{cluster}-k{n}",
                images.kafka_agent,
                args,
                env={"CONSUL_HTTP_ADDR": consul.http_addr, **JVM_ENV},
                volumes={
                    owned_dir(root / "conf"): CONF,
                    owned_dir(root / "data"): "/var/lib/kafka/data",
                },
                read_only=True,
            )
        )
    try:
        for container in containers:
            container.start()

        def formed() -> bool:
            for container in containers:
                if not container.running():
                    raise RuntimeError(f"{container.name} exited:\n{container.logs()}")
            answers = [metadata(address(n), 9092) for n in range(1, SIZE + 1)]
            return all(a is not None and len(a[1]) == SIZE for a in answers)

        wait_until(formed, 180, "Kafka cluster of 3 containers", every_s=0.5)
        cluster_ids = {answer[0] for n in (1, 2, 3) if (answer := metadata(address(n), 9092))}
        assert len(cluster_ids) == 1, cluster_ids
        metas = [read_properties(tmp_path / f"k{n}/data/meta.properties") for n in (1, 2, 3)]
        assert sorted(m["node.id"] for m in metas) == ["1", "2", "3"]
        assert {m["cluster.id"] for m in metas} == cluster_ids
        for container in containers:
            argv = proc_cmdline(container.pid1())
            assert argv[0].endswith("java") and "kafka.Kafka" in argv, argv
            assert argv[-1] == f"{CONF}/server.properties"
            assert proc_uid(container.pid1()) == SERVICE_UID
        # All at once, as a cluster is stopped: a broker stopped last, alone, would wait for a
        # controller quorum that is gone.
        codes = stop_together(containers, timeout_s=60)
        assert codes == [128 + signal.SIGTERM] * SIZE, [c.logs() for c in containers]
    finally:
        for container in containers:
            container.remove()
