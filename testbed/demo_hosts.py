"""`make demo-hosts`: the demo's ZooKeeper ensemble, formed across two subnets.

Builds the production-shaped bed (``testbed.hosts``: network namespaces, a router, three
Consul servers, a Consul client agent on each member host), then starts one
``cluster-bootstrap zookeeper ... -- java ... QuorumPeerMain`` on each member host. Prints
which host and subnet each member is on, its ``myid`` and mode, and keeps everything running
until Ctrl-C; run without a terminal it stops right after printing. Needs root.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path

from testbed.hosts import HostsBed, HostsZk
from testbed.netns import NetnsUnavailable
from testbed.zookeeper import PORTS


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="cluster-bootstrap-demo-hosts-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"demo-hosts: working in {workdir} (logs: zk/zk*/member.log, bed/consul/*/)")
    started = time.monotonic()
    try:
        bed = HostsBed(workdir / "bed")
    except NetnsUnavailable as exc:
        print(f"demo-hosts: {exc}", file=sys.stderr)
        return 1
    with bed:
        print(
            f"demo-hosts: bed up in {time.monotonic() - started:.1f}s, consul leader {bed.leader()}"
        )
        for agent in bed.agents.values():
            role = "consul server" if agent.server else "consul client agent + member"
            print(f"demo-hosts:   {agent.host.short}  {agent.host.address:<15} {role}")
        with HostsZk(bed, workdir / "zk", "demo-hosts") as ensemble:
            started = time.monotonic()
            ensemble.start_all()
            try:
                modes = ensemble.wait_quorum(timeout_s=180)
            except (TimeoutError, RuntimeError) as exc:
                print(f"demo-hosts: the ensemble did not form: {exc}", file=sys.stderr)
                return 1
            print(f"demo-hosts: quorum after {time.monotonic() - started:.1f}s")
            for n, mode in modes.items():
                host = bed.members[n - 1]
                myid = (ensemble.member_dir(n) / "data" / "myid").read_text().strip()
                print(
                    f"demo-hosts:   member {n} on host {host.short} (subnet {host.subnet}, "
                    f"{host.address}:{PORTS['client']})  myid={myid}  {mode}"
                )
            print(
                "demo-hosts: each member asked only its own host's agent at 127.0.0.1:8500; "
                f"registered nodes: {bed.service_nodes('demo-hosts', via='m1')}"
            )
            if not sys.stdin.isatty():
                return 0
            print(f"demo-hosts: a shell on a host: ip netns exec {bed.members[0].netns} sh")
            print("demo-hosts: running; press Ctrl-C to stop and remove everything")
            try:
                while all(p.alive() for p in ensemble.procs.values()):
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
            print("demo-hosts: stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
