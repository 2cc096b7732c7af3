"""Kafka clusters on loopback (127.0.0.21, .22, ...), formed through cluster-bootstrap.

Each member runs ``cluster-bootstrap kafka ... -- java ... kafka.Kafka server.properties``: the
agent finds its peers through Consul, claims a node id, writes server.properties, formats the
storage once (with the real ``kafka.tools.StorageTool`` as ``storage_tool``), then execs the
server, so the process the bed started *is* the Kafka server afterwards.

Readiness is asked of Kafka itself, without a JVM: ``metadata`` sends a Metadata request (v4,
which Kafka 3.9 and 4.x both serve) and reads the cluster id and the live brokers from the
answer. A broker answers only once it serves requests, and lists only unfenced brokers.
``hand_written`` writes the same cluster by hand (configs plus format), for the benchmark.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testbed.consul import ConsulAgent
from testbed.jvm import (
    CLUSTER_TOOL,
    CONSOLE_CONSUMER,
    FAST_START_JVM,
    METADATA_QUORUM,
    TOPIC_COMMAND,
    VERIFIABLE_PRODUCER,
    console_producer_class,
    kafka_command,
    kafka_storage_command,
    kafka_tool_command,
    peer_libs,
)
from testbed.procs import AGENT, Process, agent_args, wait_until

PORTS = {"broker": 9092, "controller": 9093}
FIRST_HOST = 21  # Kafka members live on 127.0.0.21 .. 127.0.0.29


def host(n: int, first_host: int = FIRST_HOST) -> str:
    """Member n's loopback address: 127.0.0.21 for member 1 by default."""
    return f"127.0.0.{first_host - 1 + n}"


def small_cluster_extras(brokers: int) -> dict[str, object]:
    """Properties a cluster of a few brokers needs (internal topics fit, no rebalance delay)."""
    replicas = min(3, brokers)
    return {
        "num.partitions": 1,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": max(1, replicas - 1),
        "group.initial.rebalance.delay.ms": 0,
    }


@dataclass(frozen=True)
class KafkaMember:
    """One member: its name (and directory), address, Consul service and adapter options."""

    name: str
    host: str
    service: str
    expect: int
    options: Mapping[str, object] = field(default_factory=dict)
    heap: str = "384m"

    @property
    def broker(self) -> bool:
        roles = str(self.options.get("roles", "broker,controller"))
        return "broker" in roles.split(",") or self.options.get("mode") == "zookeeper"


def dynamic_quorum(lib: Path) -> dict[str, object]:
    """Adapter options of a dynamic quorum (KIP-853) whose voters supervise mode changes:
    the quorum and cluster tools run from the bed's jars."""
    return {
        "quorum": "dynamic",
        "quorum_tool": kafka_tool_command(lib, METADATA_QUORUM, []),
        "cluster_tool": kafka_tool_command(lib, CLUSTER_TOOL, []),
    }


def combined(
    cluster: str, size: int = 3, first_host: int = FIRST_HOST, **options: object
) -> list[KafkaMember]:
    """``size`` members with both roles, registered as the Consul service ``cluster``."""
    return [
        KafkaMember(f"k{n}", host(n, first_host), cluster, size, options)
        for n in range(1, size + 1)
    ]


def split(
    cluster: str,
    controllers: int = 3,
    brokers: int = 2,
    first_host: int = FIRST_HOST,
    **options: object,
) -> list[KafkaMember]:
    """Controllers c1.. (service ``<cluster>-controller``) on the first hosts, then brokers
    b1.. (``<cluster>-broker``); ``options`` go to every member (``quorum``, the tools)."""
    members = [
        controller_only(cluster, f"c{n}", host(n, first_host), controllers, **options)
        for n in range(1, controllers + 1)
    ]
    members += [
        KafkaMember(
            f"b{n}",
            host(controllers + n, first_host),
            f"{cluster}-broker",
            brokers,
            {
                **options,
                "roles": "broker",
                "controller_service": f"{cluster}-controller",
                "controllers": controllers,
            },
        )
        for n in range(1, brokers + 1)
    ]
    return members


def controller_only(
    cluster: str, name: str, address: str, expect: int = 3, **options: object
) -> KafkaMember:
    """A controller-only member of ``split``'s controller service (a joiner too: started
    after formation, it claims an id outside the roster and starts as an observer)."""
    return KafkaMember(
        name,
        address,
        f"{cluster}-controller",
        expect,
        {**options, "roles": "controller"},
        heap="256m",
    )


class KafkaCluster:
    """The members of one Kafka cluster: start, stop and kill them, ask them questions."""

    def __init__(
        self,
        consul: ConsulAgent,
        workdir: Path,
        cluster: str,
        members: Iterable[KafkaMember],
        lib: Path | None = None,
        extras: Mapping[str, object] | None = None,
        agent_extra: Sequence[str] = (),
    ) -> None:
        self.consul = consul
        self.workdir = workdir
        self.cluster = cluster
        self.members = {m.name: m for m in members}
        self.lib = lib or peer_libs()["kafka4"]
        brokers = sum(m.broker for m in self.members.values())
        self.extras = dict(small_cluster_extras(brokers) if extras is None else extras)
        self.agent_extra = list(agent_extra)  # more agent flags (--supervise, ...), every member
        self.procs: dict[str, Process] = {}

    # -- members --------------------------------------------------------------------------------

    def member_dir(self, name: str) -> Path:
        return self.workdir / name

    def conf_file(self, name: str) -> Path:
        return self.member_dir(name) / "conf" / "server.properties"

    def server_command(self, member: KafkaMember) -> list[str]:
        d = self.member_dir(member.name)
        return kafka_command(
            self.lib, self.conf_file(member.name), d / "log", member.heap, FAST_START_JVM
        )

    def agent_argv(self, member: KafkaMember) -> list[str]:
        d = self.member_dir(member.name)
        options = {
            **member.options,
            "storage_tool": kafka_storage_command(self.lib, []),
            "extra": self.extras,
        }
        sets = [arg for k, v in options.items() for arg in ("--set", f"{k}={json.dumps(v)}")]
        return [
            AGENT,
            *agent_args(
                "kafka",
                cluster=self.cluster,
                expect=member.expect,
                address=member.host,
                member_name=f"{self.cluster}-{member.name}",
                member_dir=d,
                command=self.server_command(member),
                extra=["--consul-service", member.service, *sets, *self.agent_extra],
            ),
        ]

    def start(self, name: str, env_more: Mapping[str, str] | None = None) -> Process:
        """Start member ``name``'s agent; ``env_more`` adds variables (the image's, say)."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "NOMAD_", "KAFKA_"))
        }
        env.update(self.consul.env())
        env.update(env_more or {})
        member = self.members[name]
        self.procs[name] = Process(
            self.agent_argv(member), self.member_dir(name) / "member.log", env=env
        )
        return self.procs[name]

    def start_all(self, *, controllers_first: bool = False) -> None:
        """Every member at once; ``controllers_first``: the controller-only members, then the
        rest once the controllers have a leader. Kafka 4.4 on 2 CPUs: a broker that starts
        during the controllers' first election can take the candidate that lost it for the
        active controller, never register, and exit after 60 s (seen once in 11 runs of the
        split test). Under Nomad its restart would register; a test needs a first start."""
        first = [
            name
            for name, member in self.members.items()
            if controllers_first and member.options.get("roles") == "controller"
        ]
        for name in first:
            self.start(name)
        if first:
            wait_until(
                lambda: self.quorum_voters(first[0]) is not None, 120, "a controller leader", 1.0
            )
        for name in self.members:
            if name not in first:
                self.start(name)

    def brokers(self) -> list[KafkaMember]:
        return [m for m in self.members.values() if m.broker and m.name in self.procs]

    def bootstrap(self, name: str | None = None) -> str:
        member = self.members[name] if name else self.brokers()[0]
        return f"{member.host}:{PORTS['broker']}"

    def meta(self, name: str) -> dict[str, str]:
        """The member's ``meta.properties`` (what the storage format or the broker wrote)."""
        return read_properties(self.member_dir(name) / "data" / "meta.properties")

    # -- readiness ------------------------------------------------------------------------------

    def wait_formed(self, timeout_s: float = 120.0) -> dict[str, tuple[str | None, list[int]]]:
        """Block until every started broker answers metadata listing all of them, one cluster id."""
        brokers = self.brokers()
        hosts = [m.host for m in brokers]
        return wait_formed(
            hosts, len(brokers), timeout_s, self.procs, names=[m.name for m in brokers]
        )

    # -- tools ----------------------------------------------------------------------------------

    def tool(
        self,
        main_class: str,
        args: Sequence[str],
        stdin: str | None = None,
        ok_codes: Sequence[int] = (0,),
    ) -> str:
        """Run a Kafka CLI tool; its stdout, or AssertionError with its stderr."""
        proc = subprocess.run(
            kafka_tool_command(self.lib, main_class, args),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode not in ok_codes:
            raise AssertionError(f"{main_class} {' '.join(args)} failed: {proc.stderr[-2000:]}")
        return proc.stdout

    def create_topic(
        self,
        topic: str,
        replicas: int,
        via: str | None = None,
        configs: Mapping[str, object] | None = None,
    ) -> None:
        self.tool(
            TOPIC_COMMAND,
            [
                "--bootstrap-server",
                self.bootstrap(via),
                "--create",
                "--topic",
                topic,
                "--partitions",
                "1",
                "--replication-factor",
                str(replicas),
                *(arg for k, v in (configs or {}).items() for arg in ("--config", f"{k}={v}")),
            ],
        )

    def produce(self, topic: str, message: str, via: str | None = None) -> None:
        self.tool(
            console_producer_class(self.lib),
            ["--bootstrap-server", self.bootstrap(via), "--topic", topic],
            stdin=message + "\n",
        )

    def read_back(self, producer: AckedProducer, via: str, topic: str = "acked") -> str:
        """Every message ``producer`` had acknowledged is read back through ``via`` (asserted:
        at least 50 acks, none missing); the figures, as text for the test's output."""
        acked = producer.acked()
        consumed = self.consume_all(topic, len(acked), via=via)
        missing = sorted(set(acked) - set(consumed), key=int)
        assert len(acked) >= 50, f"the producer got too few acks: {producer.log_path}"
        assert not missing, missing[:20]
        return (
            f"acked {len(acked)}, longest acked gap {producer.longest_gap_s():.2f}s, failed "
            f"sends {producer.failed()}, acked missing {len(missing)}"
        )

    def consume_all(self, topic: str, count: int, via: str | None = None) -> list[str]:
        """The first ``count`` values of ``topic`` (fewer if the timeout hits first)."""
        out = self.tool(
            CONSOLE_CONSUMER,
            [
                "--bootstrap-server",
                self.bootstrap(via),
                "--topic",
                topic,
                "--from-beginning",
                "--max-messages",
                str(count),
                "--timeout-ms",
                "30000",
            ],
            ok_codes=(0, 1),  # a timeout ends the consumer with 1 after printing what it read
        )
        return [line for line in out.splitlines() if line]

    def consume_one(self, topic: str, via: str | None = None, attempts: int = 3) -> str:
        """The topic's first message read through ``via``. A read that finds nothing in 60 s
        is tried again (a partition may still be electing its leader on a loaded machine)."""
        for _ in range(attempts - 1):
            if message := self._consume_one(topic, via):
                return message
        return self._consume_one(topic, via)

    def _consume_one(self, topic: str, via: str | None) -> str:
        out = self.tool(
            CONSOLE_CONSUMER,
            [
                "--bootstrap-server",
                self.bootstrap(via),
                "--topic",
                topic,
                "--from-beginning",
                "--max-messages",
                "1",
                "--timeout-ms",
                "60000",
            ],
        )
        return out.strip()

    # -- the quorum and the roster (day 2) ------------------------------------------------------

    def quorum_voters(self, via: str) -> list[tuple[int, str, str]] | None:
        """(id, directory id, controller endpoint) of each voter ``describe --status`` lists
        through member ``via`` (its broker port, or a controller-only member's controller
        port); None when it cannot tell (no leader yet, the tool timed out)."""
        member = self.members[via]
        reach = (
            ["--bootstrap-server", self.bootstrap(via)]
            if member.broker
            else ["--bootstrap-controller", f"{member.host}:{PORTS['controller']}"]
        )
        try:
            described = self.tool(METADATA_QUORUM, [*reach, "describe", "--status"])
        except (AssertionError, subprocess.TimeoutExpired):
            return None
        status = dict(line.split(":", 1) for line in described.splitlines() if ":" in line)
        return sorted(
            (int(v["id"]), str(v["directoryId"]), ",".join(v["endpoints"]))
            for v in json.loads(status["CurrentVoters"])
        )

    def roster_voters(self) -> list[tuple[int, str, str]]:
        """The roster's voters in ``quorum_voters``' shape ([] before there is a roster)."""
        roster = self.consul.roster(self.cluster) or {"voters": []}
        voters = roster["voters"]
        assert isinstance(voters, list), roster
        return sorted(
            (
                int(v["id"]),
                str(v["directory_id"]),
                f"CONTROLLER://{v['address']}:{v['ports']['controller']}",
            )
            for v in voters
        )

    def agreed(self, via: str) -> list[tuple[int, str, str]]:
        """The roster's voters when the quorum lists exactly those, else []."""
        listed = self.roster_voters()
        return listed if self.quorum_voters(via) == listed else []

    def endpoint_ids(self, via: str) -> list[int] | None:
        """The broker ids ``kafka-cluster list-endpoints --include-fenced-brokers`` lists (Kafka
        4.4 takes that flag with --bootstrap-server only); None when the tool failed."""
        try:
            listed = self.tool(
                CLUSTER_TOOL,
                [
                    "list-endpoints",
                    "--include-fenced-brokers",
                    "--bootstrap-server",
                    self.bootstrap(via),
                ],
            )
        except (AssertionError, subprocess.TimeoutExpired):
            return None
        rows = [line.split() for line in listed.splitlines()]
        return sorted(int(row[0]) for row in rows if row and row[0].isdigit())

    # -- stopping -------------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        self.procs.pop(name).kill()

    def lose(self, name: str) -> None:
        """Member ``name`` is gone: its process group killed, its registration removed (as
        Nomad deregisters an allocation's services when it stops)."""
        node_id = int(self.meta(name)["node.id"])
        self.kill(name)
        self.consul.deregister(f"{self.members[name].service}-{node_id}")

    def stop_all(self) -> None:
        """Broker-only members first (their controlled shutdown needs the controllers), then
        the rest, each phase at once."""
        broker_only = [n for n in self.procs if self.members[n].options.get("roles") == "broker"]
        rest = [n for n in self.procs if n not in broker_only]
        for phase in (broker_only, rest):
            stop_together([self.procs.pop(name) for name in phase])

    def __enter__(self) -> KafkaCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


class AckedProducer:
    """Kafka's VerifiableProducer with ``acks=all``: one numbered message every 100 ms (by
    default), and a JSON line per acknowledgement, so a test knows which sends were acked."""

    def __init__(
        self, lib: Path, bootstrap: str, topic: str, log_path: Path, per_second: int = 10
    ) -> None:
        argv = kafka_tool_command(
            lib,
            VERIFIABLE_PRODUCER,
            [
                "--bootstrap-server",
                bootstrap,
                "--topic",
                topic,
                "--acks",
                "-1",
                "--throughput",
                str(per_second),
            ],
        )
        self.log_path = log_path
        self.proc = Process(argv, log_path)

    def stop(self) -> None:
        self.proc.stop(timeout_s=15)

    def events(self, name: str) -> list[dict[str, object]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if isinstance(event, dict) and event.get("name") == name:
                        found.append(event)
        return found

    def acked(self) -> list[str]:
        """The values Kafka acknowledged, in order."""
        return [str(e["value"]) for e in self.events("producer_send_success")]

    def failed(self) -> int:
        return len(self.events("producer_send_error"))

    def longest_gap_s(self) -> float:
        """The longest time between two acknowledgements."""
        stamps = [int(str(e["timestamp"])) / 1000 for e in self.events("producer_send_success")]
        return max((b - a for a, b in itertools.pairwise(stamps)), default=0.0)


def joiner_properties(
    name_dir: Path, address: str, node_id: int, controllers: Sequence[str], broker: bool = False
) -> Path:
    """server.properties of a joiner that bootstraps from ``controllers``: a controller only,
    or with ``broker`` a combined member (a broker too, as the agent's combined joiners are)."""
    conf = name_dir / "conf" / "server.properties"
    conf.parent.mkdir(parents=True, exist_ok=True)
    listeners = [f"CONTROLLER://{address}:{PORTS['controller']}"]
    if broker:
        listeners.insert(0, f"PLAINTEXT://{address}:{PORTS['broker']}")
    lines = [
        f"process.roles={'broker,controller' if broker else 'controller'}",
        f"node.id={node_id}",
        "controller.listener.names=CONTROLLER",
        f"listeners={','.join(listeners)}",
        f"advertised.listeners={','.join(listeners)}",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        *(["inter.broker.listener.name=PLAINTEXT"] if broker else []),
        f"log.dirs={name_dir / 'data'}",
        "controller.quorum.bootstrap.servers="
        + ",".join(f"{h}:{PORTS['controller']}" for h in controllers),
    ]
    conf.write_text("\n".join(lines) + "\n")
    return conf


def start_joiner(
    lib: Path,
    name_dir: Path,
    address: str,
    node_id: int,
    cluster_id: str,
    controllers: Sequence[str],
    broker: bool = False,
) -> tuple[Process, Path]:
    """A new controller (a combined member with ``broker``) on an empty disk, formatted with
    ``--no-initial-controllers`` (so Kafka gives it a random directory id) and started: an
    observer until someone adds it."""
    conf = joiner_properties(name_dir, address, node_id, controllers, broker)
    subprocess.run(
        kafka_storage_command(
            lib, ["format", "-t", cluster_id, "-c", str(conf), "--no-initial-controllers"]
        ),
        capture_output=True,
        check=True,
        timeout=120,
    )
    proc = Process(
        kafka_command(lib, conf, name_dir / "log", "256m", FAST_START_JVM),
        name_dir / "member.log",
    )
    return proc, conf


def stop_together(procs: Sequence[Process], timeout_s: float = 30.0) -> None:
    """SIGTERM every process at once, then wait for each. Stopped one by one, the last KRaft
    controller waits for a quorum that is gone (see docs/testbed-jvm.md)."""
    for proc in procs:
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        proc.stop(timeout_s=timeout_s)


def read_properties(path: Path) -> dict[str, str]:
    """A properties file as a dict (the bed's own reader: it does not trust the adapter's)."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def wait_formed(
    hosts: Sequence[str],
    brokers: int,
    timeout_s: float,
    procs: Mapping[str, Process],
    names: Sequence[str] = (),
) -> dict[str, tuple[str | None, list[int]]]:
    """Block until each of ``hosts`` answers metadata with ``brokers`` brokers, one cluster id.

    Raises RuntimeError at once if a member process died, TimeoutError at the deadline.
    """
    end = time.monotonic() + timeout_s
    answers: dict[str, tuple[str | None, list[int]] | None] = {}
    while time.monotonic() < end:
        answers = {h: metadata(h, PORTS["broker"]) for h in hosts}
        ok = [a for a in answers.values() if a is not None and len(a[1]) == brokers]
        if len(ok) == len(hosts) and len({a[0] for a in ok}) == 1 and ok[0][0]:
            keys = list(names) or list(hosts)
            return {k: a for k, a in zip(keys, ok, strict=True)}
        for name, proc in procs.items():
            if not proc.alive():
                raise RuntimeError(
                    f"member {name} exited {proc.popen.returncode}:\n{proc.log_tail()}"
                )
        time.sleep(0.1)
    raise TimeoutError(f"no Kafka cluster after {timeout_s:.0f}s: {answers}")


def metadata(host: str, port: int, timeout_s: float = 2.0) -> tuple[str | None, list[int]] | None:
    """(cluster id, sorted live broker ids) from a Metadata v4 request; None if no answer."""
    client = b"cluster-bootstrap-bed"
    body = struct.pack(">hhih", 3, 4, 1, len(client)) + client + struct.pack(">ib", -1, 0)
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", _read_exactly(sock, 4))[0]
            reader = _Reader(_read_exactly(sock, size))
        reader.int32()  # correlation id
        reader.int32()  # throttle time
        ids = []
        for _ in range(reader.int32()):
            ids.append(reader.int32())
            reader.string()  # host
            reader.int32()  # port
            reader.string()  # rack
        return reader.string(), sorted(ids)
    except (OSError, struct.error, UnicodeDecodeError):
        return None


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = sock.recv(min(size, 65536))
        if not chunk:
            raise ConnectionError("closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def int32(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.at)
        self.at += 4
        return int(value)

    def string(self) -> str | None:
        (size,) = struct.unpack_from(">h", self.data, self.at)
        self.at += 2
        if size < 0:
            return None
        text = self.data[self.at : self.at + size].decode()
        self.at += size
        return text


def hand_written(
    workdir: Path,
    size: int,
    cluster_id: str,
    lib: Path,
    first_host: int = FIRST_HOST,
    heap: str = "384m",
) -> list[tuple[list[str], list[str]]]:
    """Hand-written configs of ``size`` combined members: (format command, server command) each."""
    voters = ",".join(f"{n}@{host(n, first_host)}:9093" for n in range(1, size + 1))
    extras = small_cluster_extras(size)
    commands = []
    for n in range(1, size + 1):
        d = workdir / f"k{n}"
        (d / "conf").mkdir(parents=True, exist_ok=True)
        h = host(n, first_host)
        conf = d / "conf" / "server.properties"
        lines = [
            "process.roles=broker,controller",
            f"node.id={n}",
            "controller.listener.names=CONTROLLER",
            f"listeners=PLAINTEXT://{h}:9092,CONTROLLER://{h}:9093",
            f"advertised.listeners=PLAINTEXT://{h}:9092,CONTROLLER://{h}:9093",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={d / 'data'}",
            f"controller.quorum.voters={voters}",
            *(f"{k}={v}" for k, v in extras.items()),
        ]
        conf.write_text("\n".join(lines) + "\n")
        commands.append(
            (
                kafka_storage_command(lib, ["format", "-t", cluster_id, "-c", str(conf)]),
                kafka_command(lib, conf, d / "log", heap, FAST_START_JVM),
            )
        )
    return commands
