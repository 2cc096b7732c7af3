"""The roster over fakes: formation writes it once, restarts read it, newcomers are joiners."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

from bootstrap.deadline import Deadline
from bootstrap.errors import CannotJoin, UntrustedValue
from bootstrap.flow import Start
from bootstrap.membership import Membership
from bootstrap.model import Me, Member
from bootstrap.ports import Observation
from bootstrap.roster import Roster, Rosters
from bootstrap.settings import Settings
from bootstrap.status import gather
from tests.fakes import FakeDiscovery, ListService
from tests.unit.test_flow import settings_for

ROSTER = "cluster-bootstrap/c1/roster"
LABELS = ListService.port_labels


class DiskListService(ListService):
    """ListService with an id on disk, as ZooKeeper's myid: a member that ran before."""

    def member_id_on_disk(self, me: Me) -> int | None:
        path = me.data_dir / "myid"
        return int(path.read_text()) if path.exists() else None


async def start_member(
    fake: FakeDiscovery, settings: Settings, service: ListService | None = None
) -> tuple[int, str]:
    start = Start(settings, fake, service or ListService(), Deadline(settings.timeout_s))
    plan = await start.plan()
    await start.write(plan)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "myid").write_text(str(plan.view.member_id))
    return plan.view.member_id, (settings.conf_dir / "members.cfg").read_text()


def roster_of(fake: FakeDiscovery) -> Roster:
    return Roster.from_json(fake.kv[ROSTER].value, LABELS, (1, 255), "test")


async def formed(fake: FakeDiscovery, tmp_path: Path, size: int = 3) -> None:
    await asyncio.gather(
        *(start_member(fake, settings_for(tmp_path, n, expect=size)) for n in range(1, size + 1))
    )


async def test_four_started_at_once_with_expect_three_make_one_roster_of_three(
    tmp_path: Path,
) -> None:
    """Proves one roster of 3 wins, every voter renders it, and the fourth is a joiner."""
    fake = FakeDiscovery()
    results = await asyncio.gather(
        *(start_member(fake, settings_for(tmp_path, n)) for n in (1, 2, 3, 4))
    )
    roster = roster_of(fake)
    assert (roster.version, roster.origin, len(roster.voters)) == (1, "formation", 3)
    voters = [text for n, text in results if n in roster.ids()]
    joiner = [text for n, text in results if n not in roster.ids()]
    assert len(voters) == 3 and len(set(voters)) == 1
    assert len(joiner) == 1 and joiner[0].startswith(voters[0])
    assert joiner[0].rstrip().endswith(":observer")


async def test_restart_while_a_voter_is_gone_renders_from_the_roster_at_once(
    tmp_path: Path,
) -> None:
    """Proves a roster member restarts without waiting for the lost member's registration."""
    fake = FakeDiscovery()
    await formed(fake, tmp_path)
    before = (tmp_path / "m2" / "conf" / "members.cfg").read_text()
    await fake.deregister("c1-3")
    await fake.deregister("c1-2")
    member_id, text = await start_member(fake, settings_for(tmp_path, 2, timeout_s=0.5))
    assert member_id == 2 and text == before


async def test_newcomer_to_a_static_cluster_fails_with_cannot_join(tmp_path: Path) -> None:
    """Proves a would-be voter the service cannot take gets CannotJoin, and no file."""
    fake = FakeDiscovery()
    await formed(fake, tmp_path)
    await fake.deregister("c1-3")
    newcomer = settings_for(tmp_path, 4)
    with pytest.raises(CannotJoin, match="id 4 is not in the formed cluster's roster"):
        await start_member(fake, newcomer, ListService({"static": True}))
    assert not (newcomer.conf_dir / "members.cfg").exists()


async def test_newcomer_renders_the_roster_and_itself_as_observer(tmp_path: Path) -> None:
    """Proves a joiner renders the roster's voters unchanged, itself last as a non-voter."""
    fake = FakeDiscovery()
    await formed(fake, tmp_path)
    voters = (tmp_path / "m1" / "conf" / "members.cfg").read_text()
    member_id, text = await start_member(fake, settings_for(tmp_path, 4, expect=5))
    assert member_id == 4
    assert text == voters + "member.4=127.0.0.14:2888:observer\n"
    assert roster_of(fake).ids() == [1, 2, 3]


async def test_cluster_without_roster_gets_one_from_the_claims(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Proves the upgrade path: claims and an id on disk, no roster -> roster from the claims."""
    fake = FakeDiscovery()
    await formed(fake, tmp_path)
    del fake.kv[ROSTER]  # as an earlier release left the cluster
    await fake.deregister("c1-3")
    caplog.set_level(logging.INFO, logger="cluster-bootstrap")
    member_id, _ = await start_member(
        fake, settings_for(tmp_path, 2, timeout_s=0.5), DiskListService()
    )
    roster = roster_of(fake)
    assert member_id == 2 and (roster.origin, roster.ids()) == ("upgrade", [1, 2, 3])
    assert "formed without a roster" in caplog.text


async def test_moved_voter_says_the_others_know_its_old_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Proves a roster member on a new address stays a voter and the log names the old one."""
    fake = FakeDiscovery()
    await formed(fake, tmp_path)
    await fake.deregister("c1-2")
    caplog.set_level(logging.INFO, logger="cluster-bootstrap")
    _, text = await start_member(fake, settings_for(tmp_path, 2, address="127.0.0.42"))
    assert "member.2=127.0.0.42" in text
    assert "the other voters still know it at 127.0.0.12" in caplog.text


class DirectoryListService(DiskListService):
    """A voter is its id and its disk's directory id, as a Kafka dynamic quorum's controller."""

    def voter_directory_id(self, member_id: int, shared: Mapping[str, str]) -> str:
        return f"{'d' * 20}{member_id:02d}"


async def test_a_lost_voter_replaced_on_a_new_disk_joins_under_a_new_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Proves a member under a lost voter's name (Nomad reschedules a lost alloc under its
    name) on another address with an empty disk, where voters are (id, directory id), does
    not take the old id back (it would take the lost disk's seat with an empty log, and Kafka
    cannot add a second directory under one id): it joins under a new id, the old claim is
    kept for the keeper to release once it removes the old voter. With its disk (the id on
    it), or where voters have no directory id, a moved member keeps its id as before."""
    fake, service = FakeDiscovery(), DirectoryListService()
    await asyncio.gather(
        *(start_member(fake, settings_for(tmp_path, n), service) for n in (1, 2, 3))
    )
    await fake.deregister("c1-2")
    disk = settings_for(tmp_path, 2, address="127.0.0.42")
    assert (await start_member(fake, disk, service))[0] == 2  # the disk moved with it
    shutil.rmtree(disk.data_dir)
    await fake.deregister("c1-2")
    caplog.set_level(logging.WARNING, logger="cluster-bootstrap")
    new_disk = settings_for(tmp_path, 2, address="127.0.0.43", data_dir=tmp_path / "new")
    member_id, text = await start_member(fake, new_disk, service)
    assert member_id == 4 and "member.4=127.0.0.43:2888:observer" in text
    assert json.loads(fake.kv["cluster-bootstrap/c1/ids/2"].value)["owner"] == "member-2"
    assert "id 2 (this member's claim) votes at 127.0.0.12 with directory id" in caplog.text
    # Its disk names 4 now: a restart keeps 4, and a preview (the keeper's) says the same.
    again = Start(new_disk, fake, service, Deadline(5.0))
    assert (await again.preview()).view.member_id == 4
    # Without directory ids (ZooKeeper), a moved member on an empty disk keeps its id.
    fake = FakeDiscovery()
    await formed(fake, tmp_path / "zk")
    await fake.deregister("c1-2")
    moved = settings_for(tmp_path / "zk", 2, address="127.0.0.44", data_dir=tmp_path / "zk2")
    assert (await start_member(fake, moved))[0] == 2


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        json.dumps({"version": 0, "origin": "formation", "voters": []}),
        json.dumps({"version": 1, "origin": "x", "voters": [{"id": 1, "ports": {}}]}),
        json.dumps(
            {
                "version": 1,
                "origin": "formation",
                "voters": [{"id": 1, "address": "10.0.0.1\nmember.9=x", "ports": {}}],
            }
        ),
        json.dumps(
            {
                "version": 1,
                "origin": "formation",
                "voters": [{"id": 1, "address": "10.0.0.1", "ports": {}}] * 2,
            }
        ),
        json.dumps(
            {
                "version": 1,
                "origin": "formation",
                "voters": [{"id": 1, "address": "a", "ports": {}, "directory_id": "-x\n"}],
            }
        ),
    ],
)
async def test_hostile_roster_is_refused(tmp_path: Path, value: str) -> None:
    """Proves a roster that is not exactly what formation writes stops the start (exit 6)."""
    fake = FakeDiscovery()
    await fake.kv_create(ROSTER, value)
    settings = settings_for(tmp_path, 1, expect=1)
    with pytest.raises(UntrustedValue):
        await start_member(fake, settings)
    assert not (settings.conf_dir / "members.cfg").exists()


async def test_roster_replace_is_a_compare_and_set(tmp_path: Path) -> None:
    """Proves a change names the version it read: a second writer with a stale read loses."""
    fake = FakeDiscovery()
    await formed(fake, tmp_path)
    rosters = Rosters(fake, prefix="cluster-bootstrap/c1", port_labels=LABELS, id_range=(1, 255))
    read = await rosters.read()
    assert read is not None
    assert await rosters.replace(read, read.voters[:2]) is True
    assert await rosters.replace(read, read.voters) is False
    assert (roster_of(fake).version, roster_of(fake).ids()) == (2, [1, 2])


class SeeingService(ListService):
    """A service whose servers all report voters 1, 2, 3, whatever the roster says."""

    async def observe(self, member: Member) -> Observation | None:
        return Observation("follower", (1, 2, 3))


async def test_status_marks_a_server_that_runs_other_voters_than_the_roster(
    tmp_path: Path,
) -> None:
    """Proves status marks roster vs server disagreement and a voter that is gone."""
    fake = FakeDiscovery()
    await formed(fake, tmp_path)
    rosters = Rosters(fake, prefix="cluster-bootstrap/c1", port_labels=LABELS, id_range=(1, 255))
    read = await rosters.read()
    assert read is not None and await rosters.replace(read, read.voters[:2])
    await fake.deregister("c1-3")
    membership = Membership(
        fake,
        prefix="cluster-bootstrap/c1",
        consul_service="c1",
        port_labels=LABELS,
        id_range=(1, 255),
    )
    report = await gather(fake, SeeingService(), membership, rosters, "c1")
    marks = "\n".join(report.disagreements)
    assert "id 1: its server runs with voters [1, 2, 3], the roster says [1, 2]" in marks
    assert "voter 3" not in marks  # 3 is no voter any more, and is not registered
    assert report.roster is not None and report.roster["version"] == 2
    assert [r["member_id"] for r in report.registrations] == [1, 2]
