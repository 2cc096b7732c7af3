"""A lost voter's removal on the hosts bed: a partition that hides a member from some members
only never removes it; a host cut off at the router is removed once, after ``--remove-after``.

The rule (``bootstrap.keeper``): a voter is lost when Consul's catalog, the servers' view, has
no registration of it whose worst check is not critical; lost without a break for longer than
``--remove-after``, it is removed by a live member under the cluster lock, only if the live
voters left are at least ``--min-size`` and a majority of the voters left. One member's reach
of a peer never counts: m1 cannot reach m2 here, yet Consul's servers still hear m2 (serf's
indirect probes go through the other hosts), so m2 stays. Times: ``python -m bench.hosts_faults
--only "partition then cut"``.
"""

from __future__ import annotations

from pathlib import Path

from testbed.faults import partition_then_cut, supervised_args
from testbed.hosts import HostsBed, HostsZk

REMOVE_AFTER_S = 3


def test_partition_from_one_member_keeps_the_voter_a_cut_host_is_removed_once(
    bed: HostsBed, tmp_path: Path, cluster: str
) -> None:
    """Proves (a) m2 partitioned from m1 only for 3x --remove-after (and then from m3 only,
    when m3 leads ZooKeeper) stays in the roster and in every server's config, Consul's
    servers reporting it alive throughout, even while its own server does not serve; (b) m2's
    link cut at the router: Consul declares it failed, one member removes it (one "removed
    voter" line, the roster one version further), the two servers left run 2 voters."""
    with HostsZk(
        bed, tmp_path / "zk", cluster, supervised_args(REMOVE_AFTER_S), server_jvmflags=True
    ) as zk:
        out = partition_then_cut(bed, zk, REMOVE_AFTER_S)
    ids = out.notes["ids"]
    assert isinstance(ids, dict)
    lost, all_ids = ids[2], sorted(ids.values())
    version = out.notes["version before"]
    assert isinstance(version, int)

    # (a) m2 hidden from m1 only (and from m3 only when m3 led ZooKeeper): each partition was
    # real and partial, Consul's servers kept m2's registration non-critical throughout (a
    # server that lost its leader says "up, not serving": a warning), so nobody counted m2 lost
    partitions = out.notes["partitions"]
    assert isinstance(partitions, dict) and 1 in partitions
    for peer, seen in partitions.items():
        third = 3 if peer == 1 else 1
        assert seen["reaches"] == {peer: False, third: True}, (peer, seen)
        assert seen["serf"] == {"passing"}, (peer, seen)
        registration = seen["registration"]
        assert isinstance(registration, set) and registration <= {"passing", "warning"}, seen
        assert seen["roster"] == {tuple(all_ids)}, (peer, seen)
        confs = seen["conf"]
        assert isinstance(confs, dict)
        serving = {n: voters for n, voters in confs.items() if voters is not None}
        assert len(serving) >= 2, (peer, seen)  # a quorum served throughout
        assert all(voters == all_ids for voters in serving.values()), (peer, seen)
        assert seen["disk"] == {1: all_ids, 2: all_ids, 3: all_ids}, (peer, seen)
    assert out.notes["lost lines while partitioned"] == []
    assert out.notes["version after partitions"] == version

    # (b) the cut host is removed, once
    assert "failed declared" in out.seconds
    removed = out.notes["removed lines"]
    assert isinstance(removed, list) and len(removed) == 1, removed
    assert f"removed voter {lost} " in removed[0]
    assert out.notes["version after removal"] == version + 1
    left = [i for i in all_ids if i != lost]
    assert out.notes["roster after removal"] == left
    assert out.notes["conf after removal"] == {1: left, 3: left}
    m2_modes = {peer: seen["modes"][2] for peer, seen in partitions.items()}  # type: ignore[index]
    print(f"\nm2's mode at the end of each partition (by peer): {m2_modes}")
    print(f"seconds from the cut: {out.seconds}; m2 led: {out.notes['m2 leads at the cut']}")
