"""Many independent rounds of members started at once, through one real Consul agent."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from testbed.consul import ConsulAgent
from testbed.zookeeper import ZkEnsemble
from tests.integration.conftest import finish, spawn_agent
from tests.reliability.conftest import (
    FIRST_HOST,
    assert_exited_zero,
    assert_one_cluster,
    claim_keys,
    deregister_members,
    member_args,
    round_addresses,
)

# Rounds at once: enough to keep 2 cores busy with Python starts, few enough that every
# member of a round still starts within a second or so of the others.
PARALLEL_MEMBERS = 12


def form_round(consul: ConsulAgent, workdir: Path, cluster: str, size: int) -> None:
    """Start ``size`` members of one cluster together; check the cluster they formed."""
    procs = [
        spawn_agent(member_args(workdir, cluster, n, expect=size), consul.env())
        for n in range(1, size + 1)
    ]
    try:
        results = [finish(proc, timeout_s=180) for proc in procs]
        assert_exited_zero(results)
        assert_one_cluster(workdir, round_addresses(size))
        assert len(claim_keys(consul, cluster)) == size
    finally:
        deregister_members(consul, cluster, size)


def run_rounds(consul: ConsulAgent, tmp_path: Path, cluster: str, size: int, rounds: int) -> None:
    """``rounds`` independent rounds, several at a time; every failed round is reported."""
    started = time.monotonic()
    with ThreadPoolExecutor(max(1, PARALLEL_MEMBERS // size)) as pool:
        futures = [
            pool.submit(form_round, consul, tmp_path / f"r{i}", f"{cluster}-r{i}", size)
            for i in range(rounds)
        ]
    failures = [f"round {i}: {f.exception()!r}" for i, f in enumerate(futures) if f.exception()]
    print(f"{rounds} rounds of {size}: {time.monotonic() - started:.1f}s")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_hundred_rounds_of_three(consul: ConsulAgent, cluster: str, tmp_path: Path) -> None:
    """Proves 100 rounds of 3 simultaneous members each end in exit 0, ids 1..3, one list."""
    run_rounds(consul, tmp_path, cluster, size=3, rounds=100)


@pytest.mark.slow
def test_thirty_rounds_of_five(consul: ConsulAgent, cluster: str, tmp_path: Path) -> None:
    """Proves 30 rounds of 5 simultaneous members each end in exit 0, ids 1..5, one list."""
    run_rounds(consul, tmp_path, cluster, size=5, rounds=30)


@pytest.mark.slow
@pytest.mark.parametrize("size", [3, 3, 5], ids=["first-of-3", "second-of-3", "of-5"])
def test_real_zookeeper_round_elects_one_leader(
    consul: ConsulAgent, cluster: str, tmp_path: Path, size: int
) -> None:
    """Proves a sampled round on real ZooKeeper servers elects one leader over one list."""
    with ZkEnsemble(consul, tmp_path, size, cluster, first_host=FIRST_HOST) as ensemble:
        ensemble.start_all()
        modes = ensemble.wait_quorum()
        assert sorted(modes.values()) == ["follower"] * (size - 1) + ["leader"]
        assert_one_cluster(
            tmp_path, {n: ensemble.host(n) for n in range(1, size + 1)}, executed=False
        )
    deregister_members(consul, cluster, size)
