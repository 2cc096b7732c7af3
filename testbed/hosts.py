"""The production-shaped bed: Consul servers and member hosts on two subnets, in namespaces.

``HostsBed`` builds a ``testbed.netns.Network`` and starts three Consul servers (s1 and s3 on
subnet a, 198.51.100.0/24; s2 on subnet b, 203.0.113.0/24) and one Consul *client* agent per
member host (m1 and m3 on a, m2 on b by default). Every agent serves HTTP only on its own
host's 127.0.0.1:8500, so a member started on a host (``spawn``) can talk to nothing but its
host's client agent, as in production; Consul's gossip and RPC cross the router.

``HostsZk`` and ``HostsKafka`` are the loopback ensembles of ``testbed.zookeeper`` and
``testbed.kafka`` placed on the member hosts: the same agent command line, run inside the
host's namespace, with no ``CONSUL_*`` in its environment (the default address is the one).
Probes (ZooKeeper ``srvr``, Kafka metadata) run from the router namespace, which reaches every
host while its link is up. Never probe from the machine's own namespace: it has a default
route, and the machine's network may answer for any address.
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from testbed.consul import ConsulAgent, consul_binary
from testbed.kafka import KafkaCluster, KafkaMember, stop_together, wait_formed
from testbed.netns import Host, Network, in_netns, netns_exec
from testbed.procs import Process, wait_until
from testbed.zookeeper import ZkEnsemble

T = TypeVar("T")

SERVERS = (("s1", "a"), ("s2", "b"), ("s3", "a"))
MEMBERS = (("m1", "a"), ("m2", "b"), ("m3", "a"))
HTTP = "127.0.0.1:8500"  # every host's own agent, where a member finds it without being told


class HostAgent(ConsulAgent):
    """A Consul server or client agent on a bed host, bound to the host's address.

    Not dev mode: servers form a raft of three (``-bootstrap-expect``), clients join them; all
    keep their state in a data dir, so a restarted agent comes back as the same node.
    """

    def __init__(self, workdir: Path, host: Host, *, server: bool, join: Sequence[str]) -> None:
        super().__init__(workdir)
        self.host = host
        self.server = server
        self.join = list(join)
        self.http_port = 8500

    @property
    def node(self) -> str:
        return self.host.short

    def argv(self) -> list[str]:
        argv = [
            consul_binary(),
            "agent",
            "-node", self.node,
            "-bind", self.host.address,
            "-advertise", self.host.address,
            "-client", "127.0.0.1",
            "-data-dir", str(self.workdir / "data"),
            "-disable-host-node-id",  # one machine: host-derived node ids would collide
            "-dns-port", "-1",
            "-grpc-port", "-1",
            "-log-level", "info",
            "-hcl", "disable_update_check = true",
            "-hcl", "performance { raft_multiplier = 1 }",  # Consul's production advice
            # a stopped agent just stops (as a crash would); a graceful leave costs 3.5 s each
            "-hcl", "leave_on_terminate = false",
            *(arg for address in self.join for arg in ("-retry-join", address)),
            "-retry-interval", "1s",
        ]  # fmt: skip
        if self.server:
            argv += ["-server", "-bootstrap-expect", str(len(self.join))]
        return netns_exec(self.host.netns, argv)

    def send(self, req: urllib.request.Request, timeout_s: float) -> tuple[int, bytes]:
        parent = super().send
        return in_netns(self.host.netns, lambda: parent(req, timeout_s))

    def env(self) -> dict[str, str]:
        return {"CONSUL_HTTP_ADDR": HTTP}

    def kill(self) -> None:
        """SIGKILL: a crashed agent or a lost machine, with no leave message to the others."""
        if self.process is not None:
            self.process.kill()
            self.process = None


class HostsBed:
    """A network of servers and member hosts, their Consul agents started and joined."""

    def __init__(
        self,
        workdir: Path,
        members: Iterable[tuple[str, str]] = MEMBERS,
        servers: Iterable[tuple[str, str]] = SERVERS,
    ) -> None:
        self.workdir = workdir
        self.network = Network()
        self.agents: dict[str, HostAgent] = {}
        self.procs: list[Process] = []
        try:
            server_hosts = [self.network.add_host(s, subnet) for s, subnet in servers]
            self.members = [self.network.add_host(m, subnet) for m, subnet in members]
            join = [h.address for h in server_hosts]
            for h in [*server_hosts, *self.members]:
                self.agents[h.short] = HostAgent(
                    workdir / "consul" / h.short, h, server=h in server_hosts, join=join
                )
        except BaseException:
            self.network.close()
            raise

    def start(self, timeout_s: float = 60.0) -> HostsBed:
        """Start every agent at once; return when each has a leader and takes a KV write."""
        try:
            for agent in self.agents.values():
                agent.spawn()
            for agent in self.agents.values():
                agent.wait_ready(timeout_s)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop members and agents, then delete the namespaces (which kills any straggler)."""
        stop_together(self.procs)
        stop_together([a.process for a in self.agents.values() if a.process is not None])
        for agent in self.agents.values():
            agent.process = None
        self.network.close()

    def __enter__(self) -> HostsBed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- hosts ----------------------------------------------------------------------------------

    def host(self, short: str) -> Host:
        return self.network.hosts[short]

    def host_of(self, address: str) -> Host:
        return next(h for h in self.network.hosts.values() if h.address == address)

    def servers(self) -> list[HostAgent]:
        return [a for a in self.agents.values() if a.server]

    def spawn(self, short: str, argv: Sequence[str], log_path: Path) -> Process:
        """``argv`` run on host ``short``, its environment free of any Consul or Nomad setting."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "NOMAD_"))}
        proc = Process(netns_exec(self.host(short).netns, argv), log_path, env=env)
        self.procs.append(proc)
        return proc

    def probe(self, fn: Callable[[], T]) -> T:
        """``fn()`` run from the router namespace (it reaches every host whose link is up)."""
        return in_netns(self.network.router, fn)

    # -- Consul's own view ----------------------------------------------------------------------

    def leader(self, via: str | None = None) -> str | None:
        """The short name of the raft leader, as ``via`` (default: any live server) sees it."""
        agents = [self.agents[via]] if via else [a for a in self.servers() if a.process]
        for agent in agents:
            try:
                status, answer = agent.request("GET", "/v1/status/leader", timeout_s=2)
            except OSError:
                continue
            if status == 200 and isinstance(answer, str) and answer:
                return self.host_of(answer.rpartition(":")[0]).short
        return None

    def wait_leader(self, timeout_s: float = 60.0, other_than: str | None = None) -> str:
        """Block until the servers agree on a leader (not ``other_than``); its short name."""
        found: list[str] = []

        def elected() -> bool:
            leader = self.leader()
            if leader and leader != other_than:
                found.append(leader)
                return True
            return False

        wait_until(elected, timeout_s, "a consul leader", every_s=0.1)
        return found[-1]

    def node_status(self, node: str, via: str) -> str | None:
        """``serfHealth`` of ``node`` as ``via``'s agent reports it (passing/critical), or None."""
        try:
            status, checks = self.agents[via].request("GET", f"/v1/health/node/{node}", timeout_s=2)
        except OSError:
            return None
        if status != 200 or not isinstance(checks, list):
            return None
        for check in checks:
            if isinstance(check, dict) and check.get("CheckID") == "serfHealth":
                return str(check.get("Status"))
        return None

    def service_nodes(self, service: str, via: str) -> dict[str, str]:
        """Registered address -> Consul node of each registration of ``service``."""
        status, entries = self.agents[via].request("GET", f"/v1/catalog/service/{service}")
        if status != 200 or not isinstance(entries, list):
            raise RuntimeError(f"catalog {service}: {status} {entries}")
        return {e["ServiceAddress"] or e["Address"]: e["Node"] for e in entries}


class HostsZk(ZkEnsemble):
    """A ZooKeeper ensemble with member n on the bed's n-th member host."""

    def __init__(
        self,
        bed: HostsBed,
        workdir: Path,
        cluster: str,
        extra_args: Iterable[str] = (),
        server_jvmflags: bool = False,
    ) -> None:
        super().__init__(
            bed.agents[bed.members[0].short],
            workdir,
            len(bed.members),
            cluster,
            extra_args,
            server_jvmflags=server_jvmflags,
        )
        self.bed = bed

    def host(self, n: int) -> str:
        return self.bed.members[n - 1].address

    def start(self, n: int) -> Process:
        short = self.bed.members[n - 1].short
        self.procs[n] = self.bed.spawn(short, self.agent_argv(n), self.member_dir(n) / "member.log")
        return self.procs[n]

    def modes(self) -> dict[int, str | None]:
        parent = super().modes
        return self.bed.probe(parent)


class HostsKafka(KafkaCluster):
    """A combined-role Kafka cluster with one member on each of the bed's member hosts."""

    def __init__(self, bed: HostsBed, workdir: Path, cluster: str) -> None:
        members = [KafkaMember(f"k{n}", h.address, cluster, len(bed.members)) for n, h in
                   enumerate(bed.members, 1)]  # fmt: skip
        super().__init__(bed.agents[bed.members[0].short], workdir, cluster, members)
        self.bed = bed

    def start(self, name: str) -> Process:
        member = self.members[name]
        short = self.bed.host_of(member.host).short
        self.procs[name] = self.bed.spawn(
            short, self.agent_argv(member), self.member_dir(name) / "member.log"
        )
        return self.procs[name]

    def wait_formed(self, timeout_s: float = 120.0) -> dict[str, tuple[str | None, list[int]]]:
        hosts = [m.host for m in self.brokers()]
        names = [m.name for m in self.brokers()]
        return self.bed.probe(
            lambda: wait_formed(hosts, len(hosts), timeout_s, self.procs, names=names)
        )


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 1)
