"""ZooKeeper ensembles on loopback (127.0.0.11, .12, ...), formed through cluster-bootstrap.

Each member runs ``cluster-bootstrap zookeeper ... -- java ... QuorumPeerMain zoo.cfg``: the
agent finds its peers through Consul, writes zoo.cfg and myid, then execs the server, so the
process the bed started *is* the ZooKeeper server afterwards (the agent is gone).
``static_config`` writes the same files by hand, for the baseline in the benchmarks.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from testbed.consul import ConsulAgent
from testbed.jvm import FAST_START_JVM, four_letter, zk_mode, zookeeper_command
from testbed.procs import AGENT, Process, agent_args

PORTS = {"client": 2181, "quorum": 2888, "election": 3888}
WRITE_EVERY_S = 0.1


def host(n: int, first_host: int = 11) -> str:
    """Member n's loopback address: 127.0.0.11 for member 1 by default."""
    return f"127.0.0.{first_host - 1 + n}"


_SERVER_LINE = re.compile(r"^server\.(\d+)=[^;\n]*?(?::(participant|observer))?;", re.MULTILINE)


def config_members(text: str) -> tuple[list[int], list[int]]:
    """(voters, observers) in ZooKeeper config text: ``conf``'s answer or a (dynamic) file."""
    lines = _SERVER_LINE.findall(text)
    voters = sorted(int(n) for n, role in lines if role != "observer")
    return voters, sorted(int(n) for n, role in lines if role == "observer")


def server_view(host: str) -> tuple[list[int], list[int]]:
    """(voters, observers) the ZooKeeper server at ``host`` runs with, from ``conf``."""
    return config_members(four_letter(host, PORTS["client"], "conf"))


def server_address(host: str, member_id: int) -> str | None:
    """The address of ``server.<member_id>`` in the config the server at ``host`` runs with
    (``conf``), or None when it lists no such server or does not answer."""
    conf = four_letter(host, PORTS["client"], "conf")
    found = re.search(rf"^server\.{member_id}=([^:;\s]+):", conf, re.MULTILINE)
    return found.group(1) if found else None


class ZkEnsemble:
    """Members 1..size of one ensemble; ``start``/``stop`` members, read their modes."""

    def __init__(
        self,
        consul: ConsulAgent,
        workdir: Path,
        size: int,
        cluster: str,
        extra_args: Iterable[str] = (),
        first_host: int = 11,
        member_env: Callable[[int], dict[str, str]] | None = None,
        expect: int | None = None,
        server_jvmflags: bool = False,
    ) -> None:
        self.first_host = first_host
        # Start the server the way the image's zkServer.sh does: with $SERVER_JVMFLAGS (the
        # superDigest of a reconfig ensemble) from the environment the agent rendered.
        self.server_jvmflags = server_jvmflags
        self.member_env = member_env  # more environment for member n's agent (image variables)
        self.expect = size if expect is None else expect
        self.consul = consul
        self.workdir = workdir
        self.size = size
        self.cluster = cluster
        self.extra_args = list(extra_args)
        self.procs: dict[int, Process] = {}
        # Member n's --member-name when it is not its own (a rescheduled member: the same name,
        # as Nomad's alloc name, on another address).
        self.names: dict[int, str] = {}

    def host(self, n: int) -> str:
        return host(n, self.first_host)

    def member_name(self, n: int) -> str:
        return self.names.get(n, f"{self.cluster}-zk{n}")

    def member_dir(self, n: int) -> Path:
        return self.workdir / f"zk{n}"

    def server_command(self, n: int) -> list[str]:
        d = self.member_dir(n)
        command = zookeeper_command(d / "conf" / "zoo.cfg", d / "log", extra_jvm=FAST_START_JVM)
        return with_server_jvmflags(command) if self.server_jvmflags else command

    def agent_argv(self, n: int, expect: int | None = None) -> list[str]:
        return [
            AGENT,
            *agent_args(
                "zookeeper",
                cluster=self.cluster,
                expect=self.expect if expect is None else expect,
                address=self.host(n),
                member_name=self.member_name(n),
                member_dir=self.member_dir(n),
                command=self.server_command(n),
                extra=self.extra_args,
            ),
        ]

    def start(self, n: int) -> Process:
        env = {**os.environ, **self.consul.env(), **(self.member_env(n) if self.member_env else {})}
        self.procs[n] = Process(self.agent_argv(n), self.member_dir(n) / "member.log", env=env)
        return self.procs[n]

    def start_all(self) -> None:
        for n in range(1, self.size + 1):
            self.start(n)

    def modes(self) -> dict[int, str | None]:
        return {n: zk_mode(self.host(n), PORTS["client"]) for n in sorted(self.procs)}

    def wait_quorum(self, timeout_s: float = 120.0) -> dict[int, str | None]:
        """Block until one leader and followers for every started member, or raise."""
        end = time.monotonic() + timeout_s
        modes: dict[int, str | None] = {}
        while time.monotonic() < end:
            modes = self.modes()
            values = list(modes.values())
            if values.count("leader") == 1 and values.count("follower") == len(values) - 1:
                return modes
            for n, proc in self.procs.items():
                if not proc.alive():
                    raise RuntimeError(
                        f"member {n} exited {proc.popen.returncode}:\n{proc.log_tail()}"
                    )
            time.sleep(0.1)
        raise TimeoutError(f"no quorum after {timeout_s:.0f}s: {modes}")

    def stop(self, n: int) -> None:
        self.procs.pop(n).stop()

    def stop_all(self) -> None:
        for n in list(self.procs):
            self.stop(n)

    def __enter__(self) -> ZkEnsemble:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def static_config(workdir: Path, size: int, first_host: int = 11) -> list[list[str]]:
    """Hand-written zoo.cfg and myid for ``size`` members; returns their server commands."""
    servers = [
        f"server.{n}={host(n, first_host)}:2888:3888;{host(n, first_host)}:2181"
        for n in range(1, size + 1)
    ]
    commands = []
    for n in range(1, size + 1):
        d = workdir / f"zk{n}"
        (d / "data").mkdir(parents=True, exist_ok=True)
        (d / "conf").mkdir(parents=True, exist_ok=True)
        (d / "data" / "myid").write_text(f"{n}\n")
        (d / "conf" / "zoo.cfg").write_text(
            "\n".join(
                [
                    "tickTime=2000",
                    "initLimit=10",
                    "syncLimit=5",
                    f"dataDir={d / 'data'}",
                    "standaloneEnabled=false",
                    "quorumListenOnAllIPs=false",
                    "4lw.commands.whitelist=srvr,mntr,ruok,conf",
                    "admin.enableServer=false",
                    *servers,
                ]
            )
            + "\n"
        )
        commands.append(
            zookeeper_command(d / "conf" / "zoo.cfg", d / "log", extra_jvm=FAST_START_JVM)
        )
    return commands


def with_server_jvmflags(command: list[str]) -> list[str]:
    """``java $SERVER_JVMFLAGS <rest>`` through ``sh``, split into words as zkServer.sh does."""
    java, *rest = command
    return ["sh", "-c", 'exec "$0" $SERVER_JVMFLAGS "$@"', java, *rest]


def joiner_config(member_dir: Path, n: int, address: str, committed_servers: list[str]) -> Path:
    """A newcomer's files, by hand, as a joiner boots: the last committed config plus itself
    as an observer, reconfig on. Returns its zoo.cfg."""
    data, conf = member_dir / "data", member_dir / "conf"
    data.mkdir(parents=True, exist_ok=True)
    conf.mkdir(parents=True, exist_ok=True)
    (data / "myid").write_text(f"{n}\n")
    mine = f"server.{n}={address}:2888:3888:observer;{address}:2181"
    dynamic = conf / "zoo.cfg.dynamic"
    dynamic.write_text("\n".join([*committed_servers, mine]) + "\n")
    zoo_cfg = conf / "zoo.cfg"
    zoo_cfg.write_text(
        "\n".join(
            [
                "tickTime=2000",
                "initLimit=10",
                "syncLimit=5",
                f"dataDir={data}",
                "standaloneEnabled=false",
                "quorumListenOnAllIPs=false",
                "4lw.commands.whitelist=srvr,mntr,ruok,conf",
                "admin.enableServer=false",
                "reconfigEnabled=true",
                f"dynamicConfigFile={dynamic}",
            ]
        )
        + "\n"
    )
    return zoo_cfg


def start_joiner(
    workdir: Path, n: int, address: str, committed_servers: list[str], digest: str
) -> Process:
    """Server n (files by ``joiner_config`` under ``workdir/zk<n>``) started as zkServer.sh
    would, with the ensemble's superDigest (``super:<digest>``) in ``SERVER_JVMFLAGS``."""
    d = workdir / f"zk{n}"
    zoo_cfg = joiner_config(d, n, address, committed_servers)
    command = with_server_jvmflags(zookeeper_command(zoo_cfg, d / "log", extra_jvm=FAST_START_JVM))
    flags = f"-Dzookeeper.DigestAuthenticationProvider.superDigest={digest}"
    return Process(command, d / "server.log", env={**os.environ, "SERVER_JVMFLAGS": flags})


class Writer:
    """One sequential znode every 100 ms through kazoo; acked names, ack times, failures."""

    def __init__(self, hosts: str, path: str) -> None:
        from kazoo.client import KazooClient

        self.path = path
        self.client = KazooClient(hosts=hosts, timeout=10.0)
        self.acked: list[tuple[float, str]] = []
        self.failed = 0
        self.lost = 0  # acked writes missing afterwards (``count_lost``)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.client.start(30)
        self.client.ensure_path(self.path)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                name = self.client.create(f"{self.path}/w-", b"x", sequence=True)
                self.acked.append((time.monotonic(), name))
            except Exception:  # every failure counts, whatever kazoo raised
                self.failed += 1
            self._stop.wait(max(0.0, WRITE_EVERY_S - (time.monotonic() - began)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.client.stop()
        self.client.close()

    def longest_gap(self, since: float) -> float:
        times = [t for t, _ in self.acked if t >= since - 1.0]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def count_lost(self, hosts: list[str]) -> None:
        """Acked writes missing on the member that misses the most."""
        from kazoo.client import KazooClient

        acked = {name.rsplit("/", 1)[1] for _, name in self.acked}
        worst = 0
        for one in hosts:
            client = KazooClient(hosts=one, timeout=10.0)
            client.start(30)
            try:
                client.sync(self.path)
                worst = max(worst, len(acked - set(client.get_children(self.path))))
            finally:
                client.stop()
                client.close()
        self.lost = worst
