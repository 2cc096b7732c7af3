"""Consul's own failures during formation, on real servers and client agents: the raft leader
killed, a member host cut off, the member's local agent down. Heal times are printed by
``python -m bench.hosts_faults``; here only the outcome counts."""

from __future__ import annotations

from pathlib import Path

from testbed.faults import exited, leader_killed, link_cut, local_agent_down, myids, server_lines
from testbed.hosts import HostsBed, HostsZk
from testbed.procs import AGENT, agent_args


def assert_one_ensemble(zk: HostsZk, modes: dict[int, str | None]) -> None:
    assert sorted(modes.values()) == ["follower", "follower", "leader"], modes
    assert sorted(myids(zk).values()) == [1, 2, 3]
    assert len(server_lines(zk)) == 1, server_lines(zk)
    assert exited(zk) == {}


def test_consul_leader_killed_while_members_form(bed: HostsBed, zk: HostsZk) -> None:
    """The raft leader is SIGKILLed while two members wait and the third starts: another
    server takes over, the ensemble forms, ids stay unique, no member exits."""
    outcome = leader_killed(bed, zk)

    assert outcome.notes["new leader"] != outcome.notes["old leader"]
    assert_one_ensemble(zk, outcome.modes)


def test_host_cut_off_during_formation_forms_nothing_until_its_link_is_back(
    bed: HostsBed, zk: HostsZk
) -> None:
    """Member 2's link goes down as it starts: Consul declares its host failed, nobody renders
    a config or serves (no cluster of two), nobody exits; with the link back the three form."""
    outcome = link_cut(bed, zk, hold_s=15)

    assert "failed declared" in outcome.seconds  # the cut was real: Consul saw it
    assert outcome.notes["served while cut"] == []
    assert outcome.notes["configs while cut"] == []
    assert outcome.notes["exited while cut"] == {}
    assert_one_ensemble(zk, outcome.modes)


def test_local_agent_back_in_time_lets_its_member_join(bed: HostsBed, zk: HostsZk) -> None:
    """Member 2 starts while its host's Consul agent is down: it waits (does not exit) and
    joins the ensemble once the agent is back."""
    outcome = local_agent_down(bed, zk, down_s=5)

    assert outcome.notes["exited while down"] == {}
    assert_one_ensemble(zk, outcome.modes)


def test_local_agent_never_back_exits_3_at_the_deadline(
    bed: HostsBed, tmp_path: Path, cluster: str
) -> None:
    """With its host's agent down for good, a member exits 3 at its deadline, saying which
    agent it could not reach; the agents of the other hosts do not stand in for it."""
    host = bed.members[1]
    bed.agents[host.short].stop()
    member_dir = tmp_path / "m2"
    proc = bed.spawn(
        host.short,
        [
            AGENT,
            *agent_args(
                "zookeeper",
                cluster=cluster,
                expect=3,
                address=host.address,
                member_name=f"{cluster}-m2",
                member_dir=member_dir,
                command=["true"],
                timeout_s=8,
            ),
        ],
        member_dir / "member.log",
    )

    assert proc.popen.wait(timeout=60) == 3, proc.log_tail()
    last = proc.log_tail(1)
    assert last.startswith("cluster-bootstrap: error:"), last
    assert "127.0.0.1:8500" in last, last
    assert not (member_dir / "conf" / "zoo.cfg").exists()
