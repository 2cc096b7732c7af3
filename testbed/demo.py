"""`make demo`: a dev Consul agent and three ZooKeeper members formed by cluster-bootstrap.

Starts Consul (built by .ci/install-consul, or `consul` on PATH), then three members on
127.0.0.11-13, each `cluster-bootstrap zookeeper ... -- java ... QuorumPeerMain`. Waits for
one leader and two followers, prints the state and the client connection string, and keeps
everything running until Ctrl-C, when it stops all it started.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path

from testbed.consul import ConsulAgent
from testbed.zookeeper import PORTS, ZkEnsemble, host


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="cluster-bootstrap-demo-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"demo: working in {workdir} (logs: */member.log, consul-1.log)")
    with ConsulAgent(workdir / "consul") as consul:
        print(f"demo: consul agent up at {consul.url} (CONSUL_HTTP_ADDR={consul.http_addr})")
        with ZkEnsemble(consul, workdir, 3, "demo") as ensemble:
            started = time.monotonic()
            ensemble.start_all()
            print("demo: started 3 members: cluster-bootstrap zookeeper --expect 3 ... -- java ...")
            try:
                modes = ensemble.wait_quorum(timeout_s=180)
            except (TimeoutError, RuntimeError) as exc:
                print(f"demo: the ensemble did not form: {exc}", file=sys.stderr)
                return 1
            print(f"demo: quorum after {time.monotonic() - started:.1f}s")
            for n, mode in modes.items():
                myid = (ensemble.member_dir(n) / "data" / "myid").read_text().strip()
                print(f"demo:   {host(n)}:{PORTS['client']}  myid={myid}  {mode}")
            connect = ",".join(f"{host(n)}:{PORTS['client']}" for n in modes)
            print(f"demo: connection string: {connect}")
            print(f"demo: zoo.cfg of member 1: {ensemble.member_dir(1) / 'conf' / 'zoo.cfg'}")
            if not sys.stdin.isatty():
                return 0
            print("demo: running; press Ctrl-C to stop everything")
            try:
                while all(p.alive() for p in ensemble.procs.values()):
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
            print("demo: stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
