"""Kafka formation: 3 combined KRaft members (Kafka 4.x, static quorum) until all serve metadata.

- Through the agent: ``testbed.kafka.KafkaCluster`` (127.0.0.27-29): each member is
  ``cluster-bootstrap kafka --register ... -- java ... kafka.Kafka server.properties``; the
  agents find each other through the real Consul agent, claim node ids, agree on the cluster id
  in KV, write server.properties, format the storage (the real StorageTool), exec.
- Baseline: the same servers (same JVM flags, heaps, addresses, ports, properties) with
  hand-written configs (``testbed.kafka.hand_written``) and a cluster id chosen beforehand:
  the three ``kafka-storage format`` runs at once, then the three servers.

The clock runs from just before the first process is started until each of the three brokers
answers a Metadata request listing all three (polled every 100 ms). Every round uses new data
dirs (and, through the agent, a new cluster name). The two kinds alternate, and which of them
goes first alternates too.

    python -m bench.kafka_formation [--rounds 5] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from adapters.kafka import new_cluster_id
from bench.common import Missing, bench_consul, median, per_round, require, rotated
from testbed.consul import ConsulAgent
from testbed.jvm import peer_libs
from testbed.kafka import (
    PORTS,
    KafkaCluster,
    combined,
    hand_written,
    host,
    stop_together,
    wait_formed,
)
from testbed.procs import Process, port_open

FIRST_HOST = 27  # this benchmark's loopback range: 127.0.0.27-29 (the tests use .21-.25)
SIZE = 3
TIMEOUT_S = 180.0
AGENT, STATIC = "through cluster-bootstrap", "hand-written configs + format"


def _hosts() -> list[str]:
    return [host(n, FIRST_HOST) for n in range(1, SIZE + 1)]


def _ports_free() -> None:
    """Wait until nothing of an earlier round listens; someone else there is an error."""
    end = time.monotonic() + 30
    while any(port_open(h, port, 0.2) for h in _hosts() for port in PORTS.values()):
        if time.monotonic() > end:
            raise RuntimeError(f"{_hosts()} still listen on {sorted(PORTS.values())}")
        time.sleep(0.2)


def through_agent(consul: ConsulAgent, workdir: Path, lib: Path) -> float:
    cluster = f"kf-{uuid.uuid4().hex[:8]}"
    _ports_free()
    members = combined(cluster, SIZE, FIRST_HOST)
    try:
        with KafkaCluster(consul, workdir, cluster, members, lib=lib) as kafka:
            started = time.monotonic()
            kafka.start_all()
            wait_formed(_hosts(), SIZE, TIMEOUT_S, kafka.procs)
            return time.monotonic() - started
    finally:
        for n in range(1, SIZE + 1):
            consul.deregister(f"{cluster}-{n}")


def by_hand(workdir: Path, lib: Path) -> float:
    _ports_free()
    commands = hand_written(workdir, SIZE, new_cluster_id(), lib, FIRST_HOST)
    procs: dict[str, Process] = {}
    try:
        started = time.monotonic()
        formats = [
            subprocess.Popen(fmt, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for fmt, _ in commands
        ]
        for proc in formats:
            _, err = proc.communicate(timeout=TIMEOUT_S)
            if proc.returncode != 0:
                raise RuntimeError(f"format failed: {err.decode(errors='replace')[-2000:]}")
        for n, (_, server) in enumerate(commands, start=1):
            procs[f"k{n}"] = Process(server, workdir / f"k{n}" / "member.log")
        wait_formed(_hosts(), SIZE, TIMEOUT_S, procs)
        return time.monotonic() - started
    finally:
        stop_together(list(procs.values()))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kafka_formation")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, configs)")
    args = parser.parse_args()
    try:
        require("java")
        lib = peer_libs()["kafka4"]
    except (Missing, RuntimeError) as exc:
        print(f"kafka_formation: missing: {exc}")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="cb-bench-kafka-"))
    print(f"Kafka formation, {SIZE} combined members, {args.rounds} rounds each ({workdir})")
    seconds: dict[str, list[float]] = {AGENT: [], STATIC: []}
    try:
        with bench_consul(workdir) as consul:
            for round_no in range(args.rounds):
                for kind in rotated([AGENT, STATIC], round_no):
                    where = workdir / f"round-{round_no}" / ("agent" if kind == AGENT else "hand")
                    took = (
                        through_agent(consul, where, lib) if kind == AGENT else by_hand(where, lib)
                    )
                    seconds[kind].append(took)
                    print(f"  round {round_no + 1}: {kind:<30} {took:.2f} s", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for kind, values in seconds.items():
        print(per_round(kind, values))
    agent, baseline = median(seconds[AGENT]), median(seconds[STATIC])
    print(f"  median through the agent: {agent:.2f} s; by hand: {baseline:.2f} s")
    print(f"  ratio of medians: {agent / baseline:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
