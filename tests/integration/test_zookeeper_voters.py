"""ZooKeeper dynamic reconfig through the adapter's VoterChanges, on real ZooKeeper 3.9.5.

The ensemble is formed through the agent with ``--set reconfig=true`` (members .91-.93); its
servers start as the image's zkServer.sh starts them, with the rendered ``SERVER_JVMFLAGS``
(the superDigest). A fourth server (.94) boots as a joiner does: the last committed config
plus itself as an observer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from adapters.zookeeper import (
    SUPERUSER_SHARED,
    ZooKeeperService,
    super_digest,
)
from bootstrap.errors import VoterChangeError
from bootstrap.model import ClusterView, Me, Member
from bootstrap.voters import Committed, Voter, VoterChanges
from testbed.consul import ConsulAgent
from testbed.jvm import zk_mode
from testbed.procs import Process
from testbed.zookeeper import PORTS, ZkEnsemble, start_joiner

FIRST_HOST = 91  # .91-.93 the ensemble, .94 the joiner
RECONFIG = ["--set", "reconfig=true"]


def member(ensemble: ZkEnsemble, n: int) -> Member:
    """Bed member n (host .9n) with the id it claimed (ids are first come, not n)."""
    myid = ensemble.member_dir(n) / "data" / "myid"
    member_id = int(myid.read_text()) if myid.exists() else n
    return Member(member_id, ensemble.host(n), PORTS, f"zk{n}")


def voter_changes(ensemble: ZkEnsemble, password: str, size: int = 4) -> VoterChanges:
    """The adapter's handle, as member 1's agent would get it from a view that lists the
    joiner (the roster does): its committed config alone does not name an observer yet."""
    members = sorted((member(ensemble, n) for n in range(1, size + 1)), key=lambda m: m.member_id)
    d = ensemble.member_dir(1)
    me = Me("zk1", ensemble.host(1), PORTS, ensemble.host(1), PORTS, d / "data", d / "conf")
    shared = {SUPERUSER_SHARED: password}
    view = ClusterView(me, member(ensemble, 1).member_id, tuple(members), shared, {})
    changes = ZooKeeperService({"reconfig": True}).voter_changes(view)
    assert changes is not None
    return changes


def password_of(ensemble: ZkEnsemble) -> str:
    """The superuser password every member wrote (0600, the same on all)."""
    files = [ensemble.member_dir(n) / "conf" / "super.password" for n in ensemble.procs]
    assert {f.stat().st_mode & 0o777 for f in files} == {0o600}
    passwords = {f.read_text() for f in files}
    assert len(passwords) == 1
    return passwords.pop()


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.2)


def boot_joiner(ensemble: ZkEnsemble, n: int, committed: Committed, password: str) -> Process:
    """Server n booted with the committed config plus itself as an observer."""
    servers = [
        f"server.{v.member_id}={v.member.address}:2888:3888:participant;{v.member.address}:2181"
        for v in committed.voters
    ]
    return start_joiner(ensemble.workdir, n, ensemble.host(n), servers, super_digest(password))


async def test_a_fourth_server_becomes_a_voter_online_and_leaves_again(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves an observer is added as a voter and removed again while the ensemble serves,
    with the config version as compare-and-set (a stale one is a retry, not an error), that
    ACLs are on (a wrong password is refused), and that the password reaches no log."""
    with ZkEnsemble(
        consul, tmp_path, 3, cluster, RECONFIG, first_host=FIRST_HOST, server_jvmflags=True
    ) as ensemble:
        ensemble.start_all()
        ensemble.wait_quorum()
        password = password_of(ensemble)
        fourth = Voter(member(ensemble, 4))
        async with voter_changes(ensemble, password) as voters:
            before = await voters.committed()
            assert before.voter_ids() == [1, 2, 3] and before.observers == ()
            joiner = boot_joiner(ensemble, 4, before, password)
            try:
                await eventually(lambda: voters.caught_up(4))
                assert await voters.add(fourth, version=before.version)
                added = await voters.committed()
                assert added.voter_ids() == [1, 2, 3, 4] and added.version != before.version
                assert zk_mode(ensemble.host(4), PORTS["client"]) in ("follower", "leader")
                # The version moved: a change naming the old one loses, and nothing changes.
                assert await voters.remove(fourth, version=before.version) is False
                assert (await voters.committed()).voter_ids() == [1, 2, 3, 4]
                async with voter_changes(ensemble, "wrong-" + password[6:]) as intruder:
                    with pytest.raises(VoterChangeError, match="NoAuth"):
                        await intruder.remove(fourth, version=added.version)
                assert await voters.remove(fourth, version=added.version)
                removed = await voters.committed()
                assert removed.voter_ids() == [1, 2, 3] and 4 not in removed.observers
            finally:
                joiner.stop()
        ensemble.wait_quorum()
    assert_secret_in_no_log(tmp_path, password)


def assert_secret_in_no_log(workdir: Path, password: str) -> None:
    """Every file the members wrote (agent logs, server logs, configs) but the 0600 one."""
    files = [p for p in workdir.rglob("*") if p.is_file() and p.name != "super.password"]
    assert any(p.name == "zookeeper.log" for p in files)
    assert any(p.name == "member.log" for p in files)
    assert not [p for p in files if password.encode() in p.read_bytes()]


async def test_a_removal_that_would_lose_quorum_is_refused(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves that with one of three voters down, removing a live one (leaving one live voter
    of two) is refused by ZooKeeper as a retryable conflict and the config stays; removing an
    id that is not a voter is idempotent."""
    with ZkEnsemble(
        consul, tmp_path, 3, cluster, RECONFIG, first_host=FIRST_HOST, server_jvmflags=True
    ) as ensemble:
        ensemble.start_all()
        ensemble.wait_quorum()
        password = password_of(ensemble)
        live = member(ensemble, 2)
        ensemble.stop(3)
        async with voter_changes(ensemble, password) as voters:
            before = await voters.committed()
            assert before.voter_ids() == [1, 2, 3]
            assert await voters.remove(Voter(live), version=before.version) is False
            after = await voters.committed()
            assert after == before
            # Removing an id that is not a voter is done already: a retry after a lost answer
            # sees True, and nothing changes.
            stranger = Voter(Member(9, live.address, PORTS))
            assert await voters.remove(stranger, version=before.version)
            assert (await voters.committed()).voter_ids() == before.voter_ids()
