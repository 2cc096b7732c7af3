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
    """Proves (a) m2 partitioned from m1 only for 3x --remove-after stays in the roster and in
    every serving server's config, Consul's servers reporting it alive throughout; (b) m2's
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

    # (a) the partition was real, and only between m1 and m2 ...
    assert out.notes["m1 reaches m2"] is False
    assert out.notes["m3 reaches m2"] is True
    # ... Consul's servers kept m2 alive, so no member ever counted it lost
    assert out.notes["m2 serfHealth while partitioned"] == {"passing"}, out.notes
    assert out.notes["lost lines while partitioned"] == []
    assert out.notes["roster while partitioned"] == {tuple(all_ids)}
    assert out.notes["version after partition"] == version
    confs, disks = out.notes["conf while partitioned"], out.notes["disk while partitioned"]
    assert isinstance(confs, dict)
    serving = {n: voters for n, voters in confs.items() if voters is not None}
    assert len(serving) >= 2, (confs, out.notes["modes while partitioned"])  # a quorum served
    assert all(voters == all_ids for voters in serving.values()), confs
    assert disks == {1: all_ids, 2: all_ids, 3: all_ids}  # what a server not serving runs

    # (b) the cut host is removed, once
    assert "failed declared" in out.seconds
    removed = out.notes["removed lines"]
    assert isinstance(removed, list) and len(removed) == 1, removed
    assert f"removed voter {lost} " in removed[0]
    assert out.notes["version after removal"] == version + 1
    left = [i for i in all_ids if i != lost]
    assert out.notes["roster after removal"] == left
    assert out.notes["conf after removal"] == {1: left, 3: left}
    print(f"\nseconds from the cut: {out.seconds}; m2 led: {out.notes['m2 leads at the cut']}")
