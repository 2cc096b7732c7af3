"""Heal times of Consul's failures on the hosts bed (``testbed.hosts``, ``testbed.faults``).

::

    python -m bench.hosts_faults              # 3 rounds of each scenario (needs root)
    python -m bench.hosts_faults --rounds 5
    python -m bench.hosts_faults --only "link cut" --only kafka

Each round builds a new bed (network namespaces, three Consul servers, a client agent per
member host) and a new 3-member ZooKeeper ensemble, starts members 1 and 3, then member 2 at
the moment of the fault, and times from that moment:

- no fault (the baseline, same run): until one leader and two followers serve;
- Consul leader SIGKILLed: until the other servers elect a new leader, and until the ensemble
  serves;
- member 2's host link cut for 15 s: until Consul declares the host failed, and until the
  ensemble serves after the link is back;
- member 2's local Consul agent down for 5 s: until the ensemble serves after the agent is back;
- partition then cut (a supervised ensemble, ``--remove-after 3s --min-size 2``, formed first):
  m2 hidden from m1 only for 9 s (never removed), then m2's link cut: from the cut until Consul
  declares m2 failed, until the roster drops m2, until both servers left run 2 voters (each
  round also prints whether m2 led ZooKeeper, which adds ZooKeeper's own failover).

Also the bed's own start (namespaces + 6 agents joined with a leader) and a 3-member Kafka
formation across the subnets. Medians over rounds, the per-round values beside them; the
ensemble heal times have the no-fault formation as their baseline. Nothing here is asserted:
the tests in ``tests/hosts/`` check the outcomes, this prints the times.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

from bench.common import Figure, machine, median, per_round, table
from testbed.faults import SCENARIOS, partition_then_cut, supervised_args
from testbed.hosts import HostsBed, HostsKafka, HostsZk

BASELINE = ("no fault", "ensemble serving")
PARTITION = "partition then cut"
REMOVE_AFTER_S = 3


def one_round(workdir: Path, samples: dict[tuple[str, str], list[float]], only: list[str]) -> None:
    for scenario, play in SCENARIOS.items():
        if only and scenario not in only:
            continue
        root = workdir / f"{scenario.replace(' ', '-')}-{uuid.uuid4().hex[:6]}"
        started = time.monotonic()
        with HostsBed(root / "bed") as bed:
            samples[("bed", "start")].append(time.monotonic() - started)
            with HostsZk(bed, root / "zk", f"bench-{uuid.uuid4().hex[:8]}") as zk:
                outcome = play(bed, zk)
        for step, seconds in outcome.seconds.items():
            samples[(scenario, step)].append(seconds)
    if not only or PARTITION in only:
        root = workdir / f"partition-{uuid.uuid4().hex[:6]}"
        args = supervised_args(REMOVE_AFTER_S)
        with (
            HostsBed(root / "bed") as bed,
            HostsZk(
                bed, root / "zk", f"bench-{uuid.uuid4().hex[:8]}", args, server_jvmflags=True
            ) as zk,
        ):
            outcome = partition_then_cut(bed, zk, REMOVE_AFTER_S)
        led = "m2 led ZooKeeper" if outcome.notes["m2 leads at the cut"] else "m2 followed"
        print(f"  {PARTITION}: {led}: {outcome.seconds}", flush=True)
        for step, seconds in outcome.seconds.items():
            samples[(PARTITION, step)].append(seconds)
    if only and "kafka" not in only:
        return
    root = workdir / f"kafka-{uuid.uuid4().hex[:6]}"
    with HostsBed(root / "bed") as bed, HostsKafka(bed, root / "kafka", "bench-kafka") as kafka:
        started = time.monotonic()
        kafka.start_all()
        kafka.wait_formed(timeout_s=180)
        samples[("kafka", "formed across subnets")].append(time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hosts_faults", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only", action="append", default=[], choices=[*SCENARIOS, PARTITION, "kafka"],
        help="run only this (repeatable; the no-fault baseline is always run)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args(argv)
    for key, value in machine(sys.argv).items():
        print(f"{key}: {value}")
    workdir = Path(tempfile.mkdtemp(prefix="cb-bench-hosts-"))
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    try:
        for n in range(1, args.rounds + 1):
            print(f"round {n}/{args.rounds}", flush=True)
            one_round(workdir, samples, [*args.only, "no fault"] if args.only else [])
    finally:
        if args.keep:
            print(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for (scenario, step), values in samples.items():
        print(per_round(f"{scenario}: {step}", values))
    baseline = median(samples[BASELINE])
    figures = []
    for (scenario, step), values in samples.items():
        compare = "serving" in step and (scenario, step) != BASELINE
        figures.append(
            Figure(
                f"{scenario}: {step}",
                median(values),
                "s",
                baseline=baseline if compare else None,
                baseline_name="no-fault formation" if compare else "",
            )
        )
    print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
