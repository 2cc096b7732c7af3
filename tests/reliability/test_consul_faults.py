"""Consul faults during a start (late, gone, hung, restarted), and a member killed mid-wait."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from testbed.consul import ConsulAgent
from testbed.zookeeper import host
from tests.reliability.conftest import (
    FIRST_HOST,
    LiveMember,
    assert_exited_zero,
    assert_one_cluster,
    claim_keys,
    deregister_members,
    member_args,
    round_addresses,
)

DEADLINE_S = 8


def start_members(
    agent: ConsulAgent, workdir: Path, cluster: str, numbers: tuple[int, ...], expect: int = 3
) -> dict[int, LiveMember]:
    env = agent.env()
    return {n: LiveMember(member_args(workdir, cluster, n, expect=expect), env) for n in numbers}


@pytest.mark.slow
def test_consul_down_for_the_first_ten_seconds(cluster: str, tmp_path: Path) -> None:
    """Proves members started 10 s before their agent appears at its address all succeed."""
    agent = ConsulAgent(tmp_path / "consul")  # its address is fixed now; it starts later
    members = start_members(agent, tmp_path, cluster, (1, 2, 3))
    time.sleep(10)
    assert [m.proc.poll() for m in members.values()] == [None] * 3, "gave up before the deadline"
    with agent:
        results = [m.finish() for m in members.values()]
        claims = claim_keys(agent, cluster)
    assert_exited_zero(results)
    assert all("retrying" in r.stderr for r in results)
    assert_one_cluster(tmp_path, round_addresses(3))
    assert len(claims) == 3


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
def test_consul_gone_for_good_gives_exit_3_by_the_deadline(
    cluster: str, tmp_path: Path, fault: str
) -> None:
    """Proves an agent lost mid-wait (stopped, or hung) ends in exit 3 by the deadline plus 1 s."""
    with ConsulAgent(tmp_path / "consul") as agent:
        args = member_args(tmp_path, cluster, 1, expect=2, timeout_s=DEADLINE_S)
        member = LiveMember(args, agent.env())
        # The deadline starts one KV read and one KV create before this first line.
        started = member.first_line_at()
        member.wait_line("1 of 2 members here")
        if fault == "stopped":
            agent.stop()
        else:
            agent.freeze()
        result = member.finish()
    took = member.exited_at - started
    assert result.code == 3, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("cluster-bootstrap: error: ")
    assert "Traceback" not in result.stderr
    assert took <= DEADLINE_S + 1, (
        f"deadline {DEADLINE_S}s, exit after {took:.1f}s:\n{result.stderr}"
    )


@pytest.mark.slow
def test_consul_restarted_mid_wait_loses_no_claim(cluster: str, tmp_path: Path) -> None:
    """Proves an agent restart while two members wait keeps their claims; a third joins them."""
    with ConsulAgent(tmp_path / "consul", persistent=True) as agent:
        waiting = start_members(agent, tmp_path, cluster, (1, 2))
        for member in waiting.values():
            member.wait_line("2 of 3 members here")
        claims = claim_keys(agent, cluster)
        agent.stop()
        agent.start()  # same ports and data dir: the address the members were given
        assert claim_keys(agent, cluster) == claims
        late = start_members(agent, tmp_path, cluster, (3,))
        results = [m.finish() for m in (*waiting.values(), *late.values())]
        claims_after = claim_keys(agent, cluster)
    assert_exited_zero(results)
    assert all("retrying" in r.stderr for r in results[:2]), "the restart went unnoticed"
    assert_one_cluster(tmp_path, round_addresses(3))
    assert len(claims) == 2 and set(claims) < set(claims_after) and len(claims_after) == 3


@pytest.mark.parametrize("moved", [False, True], ids=["same-address", "new-address"])
def test_member_killed_mid_wait_reclaims_its_id(
    consul: ConsulAgent, cluster: str, tmp_path: Path, moved: bool
) -> None:
    """Proves a member SIGKILLed while waiting, started again by name, gets its id back."""
    waiting = start_members(consul, tmp_path, cluster, (1, 2))
    for member in waiting.values():
        member.wait_line("2 of 3 members here")
    claims = claim_keys(consul, cluster)
    found = re.search(r"claimed id (\d+)", waiting[2].stderr())
    assert found, waiting[2].stderr()
    id_before = int(found.group(1))
    assert waiting[2].kill().code == -9
    addresses = round_addresses(3) | ({2: host(4, FIRST_HOST)} if moved else {})
    again = member_args(tmp_path, cluster, 2, expect=3, address=addresses[2])
    waiting[2] = LiveMember(again, consul.env())
    waiting[2].wait_line(f"reclaims its id {id_before}")
    late = start_members(consul, tmp_path, cluster, (3,))
    results = [m.finish() for m in (*waiting.values(), *late.values())]
    try:
        assert_exited_zero(results)
        assert assert_one_cluster(tmp_path, addresses)[2] == id_before
        claims_after = claim_keys(consul, cluster)
        assert len(claims_after) == 3 and set(claims) < set(claims_after)
    finally:
        deregister_members(consul, cluster, 3)
