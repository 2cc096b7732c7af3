"""ZooKeeper in real containers whose ENTRYPOINT is the agent (Dockerfile.glibc on the service
image), formed through a real Consul agent on the host; and the Nomad prestart form played with
two containers sharing a volume; and the agent supervising the server as the container's PID 1.

Members bind 127.0.0.61-63 (the ensemble), .64 (the prestart member) and .68 (supervised; the
Kafka containers use .65-.67) on the host network. A member's /conf, /data and /datalog are
host directories owned by the image's user.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.consul import ConsulAgent
from testbed.containers import SERVICE_UID, Container, owned_dir, proc_cmdline, proc_uid
from testbed.images import Images
from testbed.jvm import FAST_START_JVM, zk_mode
from testbed.procs import wait_until

SIZE = 3
FIRST = 61
AGENT = "/opt/cluster-bootstrap/bin/cluster-bootstrap"
JVM_ENV = {"SERVER_JVMFLAGS": " ".join(FAST_START_JVM), "ZK_SERVER_HEAP": "256"}


def address(n: int) -> str:
    return f"127.0.0.{FIRST - 1 + n}"


@dataclass
class Member:
    n: int
    container: Container
    root: Path

    @property
    def address(self) -> str:
        return address(self.n)

    def myid(self) -> str:
        return (self.root / "data" / "myid").read_text().strip()

    def mode(self) -> str | None:
        return zk_mode(self.address, 2181)


def wait_quorum(members: list[Member], timeout_s: float = 180) -> dict[int, str | None]:
    modes: dict[int, str | None] = {}

    def formed() -> bool:
        for member in members:
            if not member.container.running():
                raise RuntimeError(f"member {member.n} exited:\n{member.container.logs()}")
        modes.update({member.n: member.mode() for member in members})
        values = list(modes.values())
        return values.count("leader") == 1 and values.count("follower") == len(values) - 1

    wait_until(formed, timeout_s, f"quorum of {len(members)} containers", every_s=0.5)
    return modes


@pytest.fixture(scope="module")
def ensemble(
    images: Images, consul: ConsulAgent, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Member]]:
    """Three containers of the layer image, started at once, formed into one ensemble."""
    cluster = f"zkc-{uuid.uuid4().hex[:8]}"
    workdir = tmp_path_factory.mktemp("ensemble")
    members = []
    for n in range(1, SIZE + 1):
        root = workdir / f"zk{n}"
        volumes = {owned_dir(root / d): f"/{d}" for d in ("conf", "data", "datalog")}
        args = [
            "zookeeper",
            "--cluster", cluster,
            "--expect", str(SIZE),
            "--address", address(n),
            "--bind-address", address(n),
            "--register",
            "--member-name", f"{cluster}-zk{n}",
            "--timeout", "150",
            "--set", "datalog_dir=/datalog",
            "--",
            "zkServer.sh", "start-foreground",
        ]  # fmt: skip
        container = Container(
            f"{cluster}-zk{n}",
            images.zookeeper_agent,
            args,
            env={"CONSUL_HTTP_ADDR": consul.http_addr, **JVM_ENV},
            volumes=volumes,
            read_only=True,
        )
        members.append(Member(n, container, root))
    try:
        for member in members:
            member.container.start()
        wait_quorum(members)
        yield members
    finally:
        for member in members:
            member.container.remove()


def test_three_containers_form_one_ensemble_and_pid1_is_the_server(
    ensemble: list[Member],
) -> None:
    """Proves the agent found its peers through Consul, rendered one server list, and exec'd:
    each container's PID 1 is the ZooKeeper JVM on the rendered zoo.cfg, not the agent."""
    modes = {member.n: member.mode() for member in ensemble}
    assert sorted(modes.values(), key=str) == ["follower", "follower", "leader"], modes
    configs = {(member.root / "conf" / "zoo.cfg").read_text() for member in ensemble}
    assert len(configs) == 1, "every member rendered the same zoo.cfg"
    servers = {
        key: value.split(":", 1)[0]
        for key, _, value in (line.partition("=") for line in configs.pop().splitlines())
        if key.startswith("server.")
    }
    assert sorted(servers.values()) == [address(n) for n in range(1, SIZE + 1)], servers
    assert sorted(member.myid() for member in ensemble) == ["1", "2", "3"]
    for member in ensemble:
        argv = proc_cmdline(member.container.pid1())
        assert argv[0].endswith("java"), argv
        assert "org.apache.zookeeper.server.quorum.QuorumPeerMain" in argv
        assert argv[-1] == "/conf/zoo.cfg"


def test_runs_as_the_images_user_on_a_read_only_root(ensemble: list[Member]) -> None:
    """Proves the server runs as the image's non-root user with a read-only root filesystem,
    writes only to its volumes, and cannot change the agent's root-owned files."""
    for member in ensemble:
        assert proc_uid(member.container.pid1()) == SERVICE_UID
        host_config = member.container.inspect()["HostConfig"]
        assert isinstance(host_config, dict) and host_config["ReadonlyRootfs"] is True
        for rendered in ("conf/zoo.cfg", "data/myid"):
            assert (member.root / rendered).stat().st_uid == SERVICE_UID, rendered
        # ZooKeeper made its transaction log directory on the /datalog volume, as its user.
        assert (member.root / "datalog" / "version-2").stat().st_uid == SERVICE_UID
    probe = ensemble[0].container
    # Everything under /opt/cluster-bootstrap is root's and not writable by group or others.
    loose = probe.exec(
        "find", "/opt/cluster-bootstrap", "!", "-type", "l",
        "(", "!", "-user", "root", "-o", "-perm", "/022", ")", "-print",
    )  # fmt: skip
    assert loose.returncode == 0 and loose.stdout == "", loose.stdout[:500]
    for path in ("/opt/cluster-bootstrap/bin/x", "/etc/x", "/x"):
        refused = probe.exec("touch", path)
        assert refused.returncode != 0, path
        assert "Read-only file system" in refused.stderr or "denied" in refused.stderr


def test_stop_sends_sigterm_to_the_server_and_start_keeps_the_id(
    ensemble: list[Member],
) -> None:
    """Proves podman stop's SIGTERM reaches the exec'd server (PID 1), the container exits with
    the server's own code (JVM on SIGTERM: 143), and podman start brings the member back
    into the ensemble with the same id."""
    member = ensemble[2]
    myid = member.myid()
    code = member.container.stop(timeout_s=30)
    assert code == 128 + signal.SIGTERM, member.container.logs()
    assert member.container.state()["OOMKilled"] is False
    others = [m for m in ensemble if m is not member]
    wait_quorum(others)  # two of three keep serving
    member.container.start()
    modes = wait_quorum(ensemble)
    assert sorted(modes.values(), key=str) == ["follower", "follower", "leader"], modes
    assert member.myid() == myid


def test_prestart_renders_into_a_shared_volume_for_the_unchanged_image(
    images: Images, consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves the prestart form of entrypoints/nomad/prestart.nomad.hcl: the agent's container
    renders into a shared volume and exits 0; the unchanged service image then starts from
    the rendered files through its own entrypoint and serves."""
    host = "127.0.0.64"
    # Nomad registers the group's service before any task starts; the test plays Nomad.
    consul.register(cluster, f"{cluster}-1", host, 2181)
    alloc = owned_dir(tmp_path / "alloc")
    render_args = [
        "render", "zookeeper",
        "--cluster", cluster,
        "--expect", "1",
        "--address", host,
        "--bind-address", host,
        "--member-name", f"{cluster}-1",
        "--conf-dir", "/alloc/conf",
        "--data-dir", "/alloc/data",
        "--timeout", "60",
    ]  # fmt: skip
    render = Container(
        f"{cluster}-prestart",
        images.zookeeper_agent,
        render_args,
        # as entrypoints/nomad/prestart.nomad.hcl: the image's ZOO_*_DIR name the alloc dir
        env={
            "CONSUL_HTTP_ADDR": consul.http_addr,
            "ZOO_DATA_DIR": "/alloc/data",
            "ZOO_CONF_DIR": "/alloc/conf",
        },
        volumes={alloc: "/alloc"},
        entrypoint=AGENT,
    )
    server = Container(
        f"{cluster}-zookeeper",
        images.zookeeper,
        ["zkServer.sh", "start-foreground", "/alloc/conf/zoo.cfg"],
        env={"ZOO_DATA_DIR": "/alloc/data", **JVM_ENV},
        volumes={alloc: "/alloc"},
    )
    with render, server:
        assert render.start().wait(timeout_s=90) == 0, render.logs()
        assert (alloc / "data" / "myid").read_text().strip() == "1"
        assert f"server.1={host}:2888:3888" in (alloc / "conf" / "zoo.cfg").read_text()
        server.start()
        wait_until(lambda: zk_mode(host, 2181) is not None, 120, "prestart-rendered server")
        # standaloneEnabled=false: even one member runs as a quorum, and leads it.
        assert zk_mode(host, 2181) == "leader"
        assert proc_cmdline(server.pid1())[-1] == "/alloc/conf/zoo.cfg"
        assert proc_uid(server.pid1()) == SERVICE_UID, "the image's entrypoint dropped root"
        assert server.stop(timeout_s=30) == 128 + signal.SIGTERM


def host_children(pid: int) -> list[tuple[int, str, list[str]]]:
    """(pid, state, argv) of every host process whose parent is ``pid``."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rpartition(")")[2].split()  # after "(comm)": state, ppid, ...
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            try:
                argv = proc_cmdline(child)
            except OSError:
                argv = []
            children.append((child, fields[0], argv))
    return children


def test_supervised_agent_is_pid1_reaps_orphans_and_forwards_sigterm(
    images: Images, consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves supervise mode inside a real container: PID 1 is the agent with the server as its
    child; processes the server's start script leaves behind are adopted by the agent and reaped
    when they exit (no zombie stays); ``podman stop`` reaches the server through the agent, and
    the container exits with the server's own code."""
    host = "127.0.0.68"
    volumes = {owned_dir(tmp_path / d): f"/{d}" for d in ("conf", "data", "datalog")}
    # Two orphans per start: each subshell backgrounds a sleep and exits at once.
    script = "(sleep 300 &); (sleep 300 &); exec zkServer.sh start-foreground"
    args = [
        "zookeeper",
        "--cluster", cluster,
        "--expect", "1",
        "--address", host,
        "--bind-address", host,
        "--timeout", "60",
        "--register",
        "--supervise",
        "--kill-timeout", "15",
        "--",
        "sh", "-c", script,
    ]  # fmt: skip
    with Container(
        f"{cluster}-supervised",
        images.zookeeper_agent,
        args,
        env={"CONSUL_HTTP_ADDR": consul.http_addr, **JVM_ENV},
        volumes=volumes,
        read_only=True,
    ) as container:
        container.start()

        def serving() -> bool:
            assert container.running(), container.logs()
            return zk_mode(host, 2181) is not None

        wait_until(serving, 120, "supervised server serving", 0.5)
        pid1 = container.pid1()
        assert "cluster-bootstrap" in " ".join(proc_cmdline(pid1)), proc_cmdline(pid1)
        children = host_children(pid1)
        assert any("QuorumPeerMain" in " ".join(argv) for _, _, argv in children), children
        sleepers = [pid for pid, _, argv in children if argv[:1] == ["sleep"]]
        assert len(sleepers) == 2, children  # orphans: their parent shell exited at once
        for pid in sleepers:  # they die; only their parent, PID 1, can reap them
            os.kill(pid, signal.SIGKILL)

        def reaped() -> bool:
            return not any(pid in sleepers for pid, _, _ in host_children(pid1))

        wait_until(reaped, 15, "the killed orphans reaped by the agent", 0.2)
        assert container.stop(timeout_s=30) == 143, container.logs()
