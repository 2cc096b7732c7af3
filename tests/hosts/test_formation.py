"""Clusters form across two subnets, each member asking only its own host's Consul agent; the
UDP-broadcast discovery the agent replaces finds only the peers on its own subnet."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from testbed.faults import myids, server_lines
from testbed.hosts import HostsBed, HostsKafka, HostsZk
from testbed.netns import in_netns
from testbed.procs import AGENT, agent_args
from testbed.zookeeper import PORTS

BROADCAST_PORT = 4999


def test_zookeeper_forms_across_subnets_through_each_hosts_own_agent(
    bed: HostsBed, zk: HostsZk, cluster: str
) -> None:
    """One leader, two followers, ids 1..3, one server list; each registration came in
    through the client agent of the member's own host (the catalog names that node)."""
    zk.start_all()
    modes = zk.wait_quorum(timeout_s=120)

    assert sorted(modes.values()) == ["follower", "follower", "leader"]
    assert sorted(myids(zk).values()) == [1, 2, 3]
    (servers,) = server_lines(zk)
    assert {h.subnet for h in bed.members} == {"a", "b"}
    for h in bed.members:
        assert any(f"={h.address}:" in line for line in servers), servers
    assert bed.service_nodes(cluster, via="m2") == {h.address: h.short for h in bed.members}


def test_kafka_forms_across_subnets(bed: HostsBed, tmp_path: Path, cluster: str) -> None:
    """Three combined Kafka members on both subnets: every broker lists all three, one cluster
    id, and every registration came through its own host's agent."""
    with HostsKafka(bed, tmp_path / "kafka", cluster) as kafka:
        kafka.start_all()
        answers = kafka.wait_formed(timeout_s=180)

    assert [ids for _, ids in answers.values()] == [[1, 2, 3]] * 3
    assert len({cluster_id for cluster_id, _ in answers.values()}) == 1
    assert bed.service_nodes(cluster, via="m1") == {h.address: h.short for h in bed.members}


def broadcast_discovery(bed: HostsBed, listen_s: float = 1.5) -> dict[str, set[str]]:
    """The old glue in a few lines: every host announces itself to 255.255.255.255 and
    collects who else announced. Returns, per host, the peer addresses it heard."""

    def listener() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("", BROADCAST_PORT))
        sock.setblocking(False)
        return sock

    def announce(address: str) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.bind((address, 0))  # like socat's UDP-DATAGRAM:255.255.255.255,broadcast
            sock.sendto(address.encode(), ("255.255.255.255", BROADCAST_PORT))

    socks = {h.short: in_netns(h.netns, listener) for h in bed.members}
    try:
        for h in bed.members:
            in_netns(h.netns, lambda h=h: announce(h.address))  # type: ignore[misc]
        heard: dict[str, set[str]] = {short: set() for short in socks}
        end = time.monotonic() + listen_s
        while time.monotonic() < end:
            for short, sock in socks.items():
                try:
                    data, _ = sock.recvfrom(512)
                except BlockingIOError:
                    continue
                if data.decode() != bed.host(short).address:
                    heard[short].add(data.decode())
            time.sleep(0.01)
        return heard
    finally:
        for sock in socks.values():
            sock.close()


def test_broadcast_finds_only_its_subnet_while_the_agent_finds_everyone(
    bed: HostsBed, tmp_path: Path, cluster: str
) -> None:
    """UDP broadcast: each host hears only the peers on its own subnet (m2, alone on subnet b,
    hears nobody). The agent, started on the same hosts, renders all three everywhere."""
    heard = broadcast_discovery(bed)
    for h in bed.members:
        same_subnet = {o.address for o in bed.members if o.subnet == h.subnet and o != h}
        assert heard[h.short] == same_subnet, heard
    assert heard["m2"] == set()

    procs = {
        h.short: bed.spawn(
            h.short,
            [
                AGENT,
                *agent_args(
                    "zookeeper",
                    cluster=cluster,
                    expect=3,
                    address=h.address,
                    member_name=f"{cluster}-{h.short}",
                    member_dir=tmp_path / h.short,
                    command=["true"],
                ),
            ],
            tmp_path / h.short / "member.log",
        )
        for h in bed.members
    }
    for short, proc in procs.items():
        assert proc.popen.wait(timeout=120) == 0, proc.log_tail()
        cfg = (tmp_path / short / "conf" / "zoo.cfg").read_text()
        servers = [line for line in cfg.splitlines() if line.startswith("server.")]
        assert len(servers) == 3
        for h in bed.members:
            assert any(f"={h.address}:{PORTS['quorum']}" in s for s in servers), servers
