"""The voter keeper over fakes: a joiner promoted once it caught up, a moved voter re-added, a
lost voter removed after --remove-after and only above the floor, one change at a time."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path

import pytest

from bootstrap import keeper as keeper_module
from bootstrap.day2 import Day2
from bootstrap.deadline import Deadline
from bootstrap.errors import LockBusy, VoterChangeError
from bootstrap.flow import Plan, Start
from bootstrap.keeper import VoterKeeper, removal_refused
from bootstrap.lock import ClusterLock
from bootstrap.model import ClusterView, Instance, Member
from bootstrap.roster import Rosters
from bootstrap.settings import Settings
from bootstrap.voters import Committed, Voter, VoterChanges
from tests.fakes import FakeDiscovery, ListService
from tests.unit.test_flow import settings_for

ROSTER = "cluster-bootstrap/c1/roster"
LOCK = "cluster-bootstrap/c1/lock"


@dataclasses.dataclass
class Ensemble:
    """What the fake service has committed, shared by every member's handle."""

    voters: dict[int, Voter] = dataclasses.field(default_factory=dict)
    version: int = 1
    caught_up: set[int] = dataclasses.field(default_factory=set)
    busy: int = 0  # the next N changes are refused as conflicts
    changes: list[str] = dataclasses.field(default_factory=list)


class FakeVoters(VoterChanges):
    def __init__(self, ensemble: Ensemble) -> None:
        self.ensemble = ensemble

    async def committed(self) -> Committed:
        voters = tuple(sorted(self.ensemble.voters.values(), key=lambda v: v.member_id))
        return Committed(voters, (), format(self.ensemble.version, "x"))

    async def caught_up(self, member_id: int) -> bool:
        return member_id in self.ensemble.caught_up

    async def add(self, voter: Voter, *, version: str) -> bool:
        return self._change(version, f"add {voter.member_id}={voter.member.address}", voter)

    async def remove(self, voter: Voter, *, version: str) -> bool:
        return self._change(version, f"remove {voter.member_id}", None, voter.member_id)

    def _change(self, version: str, what: str, voter: Voter | None, gone: int = 0) -> bool:
        if self.ensemble.busy:
            self.ensemble.busy -= 1
            return False
        if int(version, 16) != self.ensemble.version:
            return False
        if voter is not None:
            self.ensemble.voters[voter.member_id] = voter
        else:
            del self.ensemble.voters[gone]
        self.ensemble.version += 1
        self.ensemble.changes.append(what)
        return True


class VotingList(ListService):
    def __init__(self, ensemble: Ensemble) -> None:
        super().__init__()
        self.ensemble = ensemble
        self.reached: list[list[int]] = []  # the member ids of each view a change was made from

    def voter_changes(self, view: ClusterView) -> VoterChanges | None:
        self.reached.append([m.member_id for m in view.members])
        return FakeVoters(self.ensemble)


async def formed(tmp_path: Path, fake: FakeDiscovery, ensemble: Ensemble, size: int = 3) -> None:
    """``size`` members formed through the fake (roster written), the service agreeing."""
    starts = [
        Start(settings_for(tmp_path, n, expect=size), fake, VotingList(ensemble), Deadline(5))
        for n in range(1, size + 1)
    ]
    await asyncio.gather(*(start.plan() for start in starts))
    roster = await starts[0].rosters.read()
    assert roster is not None
    ensemble.voters = {v.member_id: v for v in roster.voters}
    ensemble.caught_up |= set(ensemble.voters)


async def keeper_of(
    tmp_path: Path, fake: FakeDiscovery, ensemble: Ensemble, n: int, **over: object
) -> VoterKeeper:
    """Member n started (a joiner when it is outside the roster) and its keeper."""
    settings = settings_for(tmp_path, n, expect=3, **over)
    start = Start(settings, fake, VotingList(ensemble), Deadline(5))
    plan = await start.plan()
    lock = ClusterLock(fake, "cluster-bootstrap/c1/lock", settings.member_name)
    return VoterKeeper(start, lock, plan.view.member_id)


async def roster_ids(fake: FakeDiscovery) -> list[int]:
    roster = await Rosters(
        fake, prefix="cluster-bootstrap/c1", port_labels=ListService.port_labels, id_range=(1, 255)
    ).read()
    assert roster is not None
    return roster.ids()


async def lose(fake: FakeDiscovery, member_id: int) -> None:
    """Member ``member_id`` is gone: its registration removed, as Nomad does."""
    await fake.deregister(f"c1-{member_id}")


def lost_long_ago(keeper: VoterKeeper, member_id: int) -> None:
    keeper.lost_since[member_id] = -1e9


@pytest.mark.parametrize(
    ("voters", "lost", "live", "floor", "refused"),
    [
        ([1, 2, 3], 3, {1, 2}, 3, "below the floor of 3"),
        ([1, 2, 3], 3, {1, 2}, 2, ""),
        ([1, 2, 3, 4, 5], 5, {1, 2, 3}, 3, ""),
        ([1, 2, 3, 4], 4, {1, 2, 3}, 3, ""),
        ([1, 2, 3, 4, 5], 5, {1, 2}, 1, "would not be a majority"),
        ([1, 2, 3, 4], 4, {1}, 1, "would not be a majority"),
    ],
)
def test_removal_keeps_the_floor_and_a_majority(
    voters: list[int], lost: int, live: set[int], floor: int, refused: str
) -> None:
    """Proves the removal rule: live voters left >= floor and a majority of those left."""
    reason = removal_refused(voters, lost, live, floor)
    assert (refused in reason and reason) if refused else reason == ""


async def test_a_joiner_becomes_a_voter_only_once_caught_up(tmp_path: Path) -> None:
    """Proves a joiner waits while the service says it has not caught up, then is added by the
    service first and the roster after, under the lock, which it leaves free."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble)
    keeper = await keeper_of(tmp_path, fake, ensemble, 4)
    assert keeper.member_id == 4
    assert await keeper.step() is True
    assert ensemble.changes == [] and await roster_ids(fake) == [1, 2, 3]
    ensemble.caught_up.add(4)
    assert await keeper.step() is False
    assert ensemble.changes == ["add 4=127.0.0.14"]
    assert await roster_ids(fake) == [1, 2, 3, 4]
    assert fake.kv["cluster-bootstrap/c1/lock"].session is None
    assert await keeper.step() is False and len(ensemble.changes) == 1  # nothing more to do


async def test_a_busy_service_is_asked_again_and_the_roster_waits_for_it(tmp_path: Path) -> None:
    """Proves a conflict (another change in progress) changes nothing and is tried again."""
    fake, ensemble = FakeDiscovery(), Ensemble(caught_up={4})
    await formed(tmp_path, fake, ensemble)
    keeper = await keeper_of(tmp_path, fake, ensemble, 4)
    ensemble.busy = 1
    assert await keeper.step() is True
    assert await roster_ids(fake) == [1, 2, 3] and 4 not in ensemble.voters
    assert await keeper.step() is False
    assert await roster_ids(fake) == [1, 2, 3, 4]


async def test_a_change_the_service_committed_but_the_roster_missed_is_recorded(
    tmp_path: Path,
) -> None:
    """Proves an add that got through before the roster was written is not asked twice."""
    fake, ensemble = FakeDiscovery(), Ensemble(caught_up={4})
    await formed(tmp_path, fake, ensemble)
    keeper = await keeper_of(tmp_path, fake, ensemble, 4)
    me = keeper.service.own_voter((await keeper.start.preview()).view)
    ensemble.voters[4] = me
    assert await keeper.step() is False
    assert ensemble.changes == [] and await roster_ids(fake) == [1, 2, 3, 4]


async def test_a_moved_voter_re_adds_its_own_id_at_its_new_address(tmp_path: Path) -> None:
    """Proves a roster voter whose address changed asks the service to move it, same id."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble)
    keeper = await keeper_of(tmp_path, fake, ensemble, 3, address="127.0.0.23")
    assert keeper.member_id == 3
    assert await keeper.step() is False
    assert ensemble.changes == ["add 3=127.0.0.23"]
    roster = await keeper.start.rosters.read()
    assert roster is not None and roster.ids() == [1, 2, 3]
    assert (voter := roster.voter(3)) is not None and voter.member.address == "127.0.0.23"


async def test_a_moved_voter_re_adds_itself_before_its_server_starts(tmp_path: Path) -> None:
    """Proves ``move_first`` re-adds a moved voter (service, then roster), does nothing for a
    voter at its own address, and gives up at its timeout while the service stays busy (the
    server then starts; ``step`` tries again)."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble)
    still = await keeper_of(tmp_path, fake, ensemble, 2)
    await still.move_first(timeout_s=5)
    assert ensemble.changes == []
    keeper = await keeper_of(tmp_path, fake, ensemble, 3, address="127.0.0.23")
    ensemble.busy = 1000
    await keeper.move_first(timeout_s=0.3)
    assert ensemble.changes == []
    ensemble.busy = 1
    await keeper.move_first(timeout_s=5)
    assert ensemble.changes == ["add 3=127.0.0.23"]
    roster = await keeper.start.rosters.read()
    assert roster is not None and (voter := roster.voter(3)) is not None
    assert voter.member.address == "127.0.0.23"
    assert await keeper.step() is False and ensemble.changes == ["add 3=127.0.0.23"]


async def test_a_lost_voter_is_removed_after_remove_after_above_the_floor(tmp_path: Path) -> None:
    """Proves a voter without a registration is kept until --remove-after, then removed by the
    service, the roster and its claim, when the floor allows (min-size 2 of 3)."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble)
    keeper = await keeper_of(tmp_path, fake, ensemble, 1, min_size=2, remove_after_s=600.0)
    await lose(fake, 3)
    assert await keeper.step() is True
    assert 3 in keeper.lost_since and ensemble.changes == []
    lost_long_ago(keeper, 3)
    await keeper.step()
    assert ensemble.changes == ["remove 3"]
    assert await roster_ids(fake) == [1, 2]
    assert "cluster-bootstrap/c1/ids/3" not in fake.kv
    assert keeper.done == ["remove lost voter 3"]


async def test_the_floor_keeps_a_lost_voter_and_zero_never_removes(tmp_path: Path) -> None:
    """Proves the default floor (--expect 3) keeps the third voter of three, and that
    --remove-after 0 never removes anyone."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble)
    floor = await keeper_of(tmp_path, fake, ensemble, 1)
    never = await keeper_of(tmp_path, fake, ensemble, 2, min_size=1, remove_after_s=0.0)
    await lose(fake, 3)
    for keeper in (floor, never):
        await keeper.step()
        lost_long_ago(keeper, 3)
        await keeper.step()
    assert ensemble.changes == [] and await roster_ids(fake) == [1, 2, 3]


async def test_a_critical_registration_is_lost_and_one_that_comes_back_is_not(
    tmp_path: Path,
) -> None:
    """Proves the catalog's worst check decides: critical counts as lost, passing again resets
    the clock (a partition Consul's servers do not see never removes anyone)."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble)
    keeper = await keeper_of(tmp_path, fake, ensemble, 1, min_size=2)
    instance = fake.services["c1-3"]
    critical = dataclasses.replace(instance, health="critical")
    put_back(fake, critical)
    await keeper.step()
    assert 3 in keeper.lost_since
    put_back(fake, dataclasses.replace(instance, health="passing"))
    await keeper.step()
    assert keeper.lost_since == {} and ensemble.changes == []


async def test_a_lost_voter_is_removed_through_the_live_voters_only(tmp_path: Path) -> None:
    """Proves the removal asks the service through the live voters, never at the lost one's
    address: a host cut off (registered, critical) would hold the connection up until its
    timeout (seen on the hosts bed: kazoo's 10 s start spent on the cut host)."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble)
    keeper = await keeper_of(tmp_path, fake, ensemble, 1, min_size=2)
    put_back(fake, dataclasses.replace(fake.services["c1-3"], health="critical"))
    await keeper.step()
    lost_long_ago(keeper, 3)
    service = keeper.service
    assert isinstance(service, VotingList)
    service.reached.clear()
    await keeper.step()
    assert ensemble.changes == ["remove 3"]
    assert service.reached == [[1, 2]]


def put_back(fake: FakeDiscovery, instance: Instance) -> None:
    fake.services.pop(instance.service_id)
    fake.add_instance("c1", instance)


async def test_two_members_remove_a_lost_voter_once(tmp_path: Path) -> None:
    """Proves two members whose clocks ran out at once remove it once: the second decides
    again under the lock and finds it gone."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble, size=4)
    keepers = [await keeper_of(tmp_path, fake, ensemble, n, min_size=2) for n in (1, 2)]
    await lose(fake, 4)
    for keeper in keepers:
        await keeper.step()
        lost_long_ago(keeper, 4)
    await asyncio.gather(*(keeper.step() for keeper in keepers))
    assert ensemble.changes == ["remove 4"]
    assert sum(len(k.done) for k in keepers) == 1
    roster = await keepers[0].start.rosters.read()
    assert roster is not None and roster.ids() == [1, 2, 3] and roster.version == 2


async def held_by_another(fake: FakeDiscovery, what: str) -> str:
    """The cluster lock held by another member's session (slow, or dead with its TTL to run)."""
    session = await fake.session_create("member-2", 10, 1)
    assert await fake.lock_acquire(LOCK, session, f"member-2: {what}")
    return session


async def test_a_change_waiting_on_a_busy_lock_gives_up_and_the_next_look_decides_again(
    tmp_path: Path,
) -> None:
    """Proves a removal that waits on the lock another member holds gives up after the
    keeper's patience, holding nothing, and the next look decides from fresh reads: the voter
    that member removed meanwhile is not asked again, and a second loss the floor refuses is
    refused while the lock is still busy (it needs none). Seen on real Kafka before: a member
    queued behind a slow remover for a voter already removed kept that refusal back."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble, size=4)
    keeper = await keeper_of(tmp_path, fake, ensemble, 1, min_size=3)
    other = await keeper_of(tmp_path, fake, ensemble, 2, min_size=3)
    keeper.lock_patience_s = 0.2
    await lose(fake, 4)
    for k in (keeper, other):
        await k.step()
        lost_long_ago(k, 4)
    busy = await held_by_another(fake, "remove lost voter 4")
    with pytest.raises(LockBusy, match="member-2: remove lost voter 4"):
        await asyncio.wait_for(keeper.step(), 5)
    assert fake.kv[LOCK].session == busy and set(fake.sessions) == {busy}  # nothing left held
    assert await fake.lock_release(LOCK, busy)
    await other.step()  # the other member's removal
    assert ensemble.changes == ["remove 4"]
    await lose(fake, 3)
    busy = await held_by_another(fake, "something slow")
    await asyncio.wait_for(keeper.step(), 5)  # the clock starts; no lock wanted
    lost_long_ago(keeper, 3)
    assert await asyncio.wait_for(keeper.step(), 5) is True  # refused at the floor, no lock
    assert ensemble.changes == ["remove 4"] and keeper.done == []
    assert "remove lost voter 3: not now, 2 live voters would be left" in "".join(keeper._said)
    assert fake.kv[LOCK].session == busy


async def test_the_loop_looks_again_while_the_lock_is_busy_and_acts_once_it_is_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves the keeper's loop takes a busy lock as a reason to look again on the next tick
    (not an error with a growing backoff), and makes the change once the lock is free."""
    monkeypatch.setattr(keeper_module, "TICK_S", 0.02)
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble, size=4)
    keeper = await keeper_of(tmp_path, fake, ensemble, 1, min_size=3, remove_after_s=0.05)
    keeper.lock_patience_s = 0.05
    busy = await held_by_another(fake, "something slow")
    await lose(fake, 4)
    gave_up: list[str] = []
    real_step = keeper.step

    async def step() -> bool:
        try:
            return await real_step()
        except LockBusy as exc:
            gave_up.append(str(exc))
            raise

    monkeypatch.setattr(keeper, "step", step)
    task = asyncio.create_task(keeper.run())
    try:
        for _ in range(250):
            await asyncio.sleep(0.02)
            if len(gave_up) >= 3:
                break
        assert len(gave_up) >= 3 and ensemble.changes == []
        assert await fake.lock_release(LOCK, busy)
        for _ in range(250):
            await asyncio.sleep(0.02)
            if keeper.done:
                break
        assert ensemble.changes == ["remove 4"] and keeper.done == ["remove lost voter 4"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_only_a_supervised_member_of_a_voting_service_keeps_voters(tmp_path: Path) -> None:
    """Proves the keeper runs in supervise mode for a service with online voter changes, and
    not for the watch-only sidecar or a service without them."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    settings: Settings = settings_for(tmp_path, 1, expect=1)
    start = Start(settings, fake, VotingList(ensemble), Deadline(5))
    plan: Plan = await start.plan()
    child = object()
    assert Day2(settings, fake, VotingList(ensemble), plan, child).keeper is not None  # type: ignore[arg-type]
    assert Day2(settings, fake, VotingList(ensemble), plan, None).keeper is None
    assert Day2(settings, fake, ListService(), plan, child).keeper is None  # type: ignore[arg-type]


async def test_a_member_never_counts_itself_lost(tmp_path: Path) -> None:
    """Proves a member whose own registration is missing (or still critical at its start) does
    not start the clock on itself: it runs, so it is not lost."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble)
    keeper = await keeper_of(tmp_path, fake, ensemble, 1, min_size=1)
    await lose(fake, 1)
    assert await keeper.step() is False
    assert keeper.lost_since == {}


async def test_remove_by_hand_keeps_the_floor_unless_forced(tmp_path: Path) -> None:
    """Proves ``remove --id`` of a live voter is refused when the live voters left would be
    below the floor, done with --force, and the removed member does not ask to vote again."""
    fake, ensemble = FakeDiscovery(), Ensemble(caught_up={1, 2, 3})
    await formed(tmp_path, fake, ensemble)
    removed = await keeper_of(tmp_path, fake, ensemble, 3)
    by_hand = await keeper_of(tmp_path, fake, ensemble, 1)  # floor: --expect 3
    with pytest.raises(VoterChangeError, match=r"below the floor of 3.*--force"):
        await by_hand.remove_by_hand(3, force=False, deadline_s=5)
    assert ensemble.changes == [] and await roster_ids(fake) == [1, 2, 3]
    await by_hand.remove_by_hand(3, force=True, deadline_s=5)
    assert ensemble.changes == ["remove 3"] and await roster_ids(fake) == [1, 2]
    assert await removed.step() is False  # its claim is gone: it does not undo the removal
    assert ensemble.changes == ["remove 3"]
    with pytest.raises(VoterChangeError, match="id 3 is not a voter"):
        await by_hand.remove_by_hand(3, force=True, deadline_s=5)


async def test_remove_by_hand_above_the_floor(tmp_path: Path) -> None:
    """Proves a planned scale-in 4 -> 3 with the floor at 3 needs no --force."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble, size=4)
    keeper = await keeper_of(tmp_path, fake, ensemble, 1)
    await keeper.remove_by_hand(4, force=False, deadline_s=5)
    assert ensemble.changes == ["remove 4"] and await roster_ids(fake) == [1, 2, 3]


async def test_a_voter_that_stays_behind_holds_a_removal_back(tmp_path: Path) -> None:
    """Proves a lost voter is not removed while a live voter that stays has not caught up (the
    service would be left with a quorum still syncing), and is once it has."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble, size=4)
    keeper = await keeper_of(tmp_path, fake, ensemble, 1, min_size=2)
    await lose(fake, 4)
    await keeper.step()
    lost_long_ago(keeper, 4)
    ensemble.caught_up.discard(2)
    assert await keeper.step() is True
    assert ensemble.changes == [] and await roster_ids(fake) == [1, 2, 3, 4]
    ensemble.caught_up.add(2)
    await keeper.step()
    assert ensemble.changes == ["remove 4"] and await roster_ids(fake) == [1, 2, 3]


# -- non-voters gone longer than --remove-after (ServicePort.unregister) -------------------------


class ForgettingList(VotingList):
    """A service that keeps a record of non-voters: ``answers`` is what unregister gives (an
    exception is raised)."""

    answers: list[bool | VoterChangeError | None]

    def unregisters(self) -> bool:
        return True

    async def unregister(self, view: ClusterView, member: Member) -> bool | None:
        self.ensemble.changes.append(f"unregister {member.member_id}={member.address}")
        answer = self.answers.pop(0) if self.answers else True
        if isinstance(answer, VoterChangeError):
            raise answer
        return answer


class StaticForgettingList(ForgettingList):
    """A static quorum (its voters cannot change online) that keeps a record of brokers."""

    def voter_changes(self, view: ClusterView) -> VoterChanges | None:
        return None


class BrokerList(ForgettingList):
    def votes(self) -> bool:
        return False


async def forgetting_keeper(
    tmp_path: Path,
    fake: FakeDiscovery,
    ensemble: Ensemble,
    answers: list[bool | VoterChangeError | None],
    remove_after_s: float = 5.0,
    **over: object,
) -> VoterKeeper:
    settings = settings_for(tmp_path, 1, expect=3, remove_after_s=remove_after_s, **over)
    service = ForgettingList(ensemble)
    service.answers = answers
    start = Start(settings, fake, service, Deadline(5))
    await start.plan()
    return VoterKeeper(start, ClusterLock(fake, "cluster-bootstrap/c1/lock", "member-1"), 1)


async def broker(tmp_path: Path, fake: FakeDiscovery, ensemble: Ensemble, n: int) -> int:
    """A non-voting member n in the cluster's other Consul service ``c1-broker``."""
    settings = settings_for(tmp_path, n, expect=1, consul_service="c1-broker")
    plan = await Start(settings, fake, BrokerList(ensemble), Deadline(5)).plan()
    return plan.view.member_id


def claimed(fake: FakeDiscovery, member_id: int) -> bool:
    return f"cluster-bootstrap/c1/ids/{member_id}" in fake.kv


async def test_a_broker_gone_longer_than_remove_after_is_unregistered_then_its_claim_freed(
    tmp_path: Path,
) -> None:
    """Proves a non-voter of another Consul service of the cluster, deregistered, is timed
    like a lost voter: nothing before --remove-after, then the service unregisters it under
    the lock (left free) and its claim is released; once, and never a voter change."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble)
    keeper = await forgetting_keeper(tmp_path, fake, ensemble, [])
    b = await broker(tmp_path, fake, ensemble, 5)
    assert await keeper.step() is False and keeper.gone_since == {}  # registered: not gone
    await fake.deregister(f"c1-broker-{b}")
    assert await keeper.step() is True
    assert b in keeper.gone_since and ensemble.changes == [] and claimed(fake, b)
    keeper.gone_since[b] = -1e9
    assert await keeper.step() is False
    assert ensemble.changes == [f"unregister {b}=127.0.0.15"]
    assert not claimed(fake, b) and keeper.done == [f"unregister gone member {b}"]
    assert fake.kv["cluster-bootstrap/c1/lock"].session is None
    assert await keeper.step() is False and len(ensemble.changes) == 1
    assert await roster_ids(fake) == [1, 2, 3]


async def test_a_critical_broker_is_not_gone_and_one_back_resets_the_clock(
    tmp_path: Path,
) -> None:
    """Proves only a missing registration counts for a non-voter (a critical one is starting
    or stuck, its agent alive), and a registration back before --remove-after stops the clock;
    one back while this member waited for the lock is not unregistered either."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble)
    keeper = await forgetting_keeper(tmp_path, fake, ensemble, [])
    b = await broker(tmp_path, fake, ensemble, 5)
    instance = fake.services[f"c1-broker-{b}"]
    fake.services[instance.service_id] = dataclasses.replace(instance, health="critical")
    await keeper.step()
    assert keeper.gone_since == {}
    await fake.deregister(instance.service_id)
    await keeper.step()
    assert b in keeper.gone_since
    fake.add_instance("c1-broker", instance)
    await keeper.step()
    assert keeper.gone_since == {}
    _, claims = await keeper.start.membership.read_claims()
    view = (await keeper.start.preview()).view
    await keeper._unregister_gone(view, claims.by_id[b][0])  # judged gone, back by the lock
    assert ensemble.changes == [] and claimed(fake, b)


async def test_unregister_busy_is_tried_again_and_none_leaves_the_member_alone(
    tmp_path: Path,
) -> None:
    """Proves False from the service keeps the claim and is asked again; None (a service that
    keeps nothing of a member that left) keeps the claim and is never asked again."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble)
    keeper = await forgetting_keeper(tmp_path, fake, ensemble, [False, True])
    b = await broker(tmp_path, fake, ensemble, 5)
    await fake.deregister(f"c1-broker-{b}")
    await keeper.step()
    keeper.gone_since[b] = -1e9
    assert await keeper.step() is True and claimed(fake, b)
    assert await keeper.step() is False and not claimed(fake, b)
    assert len(ensemble.changes) == 2

    fake2, ensemble2 = FakeDiscovery(), Ensemble()
    await formed(tmp_path / "2", fake2, ensemble2)
    alone = await forgetting_keeper(tmp_path / "2", fake2, ensemble2, [None])
    b2 = await broker(tmp_path / "2", fake2, ensemble2, 5)
    await fake2.deregister(f"c1-broker-{b2}")
    await alone.step()
    alone.gone_since[b2] = -1e9
    assert await alone.step() is False
    assert claimed(fake2, b2) and alone.left_alone == {b2}
    assert await alone.step() is False and len(ensemble2.changes) == 1


async def test_two_members_unregister_a_gone_broker_once_and_zero_never(tmp_path: Path) -> None:
    """Proves the decision is taken again under the lock (the second member finds the claim
    gone and does nothing), and --remove-after 0 never unregisters."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble)
    keepers = [await forgetting_keeper(tmp_path, fake, ensemble, []) for _ in range(2)]
    keepers[1].member_id = 2
    b = await broker(tmp_path, fake, ensemble, 5)
    await fake.deregister(f"c1-broker-{b}")
    for keeper in keepers:
        await keeper.step()
        keeper.gone_since[b] = -1e9
    await asyncio.gather(*(keeper.step() for keeper in keepers))
    assert ensemble.changes == [f"unregister {b}=127.0.0.15"] and not claimed(fake, b)

    never = await forgetting_keeper(tmp_path, fake, ensemble, [])
    never.settings = dataclasses.replace(never.settings, remove_after_s=0.0)
    b6 = await broker(tmp_path, fake, ensemble, 6)
    await fake.deregister(f"c1-broker-{b6}")
    assert await never.step() is False
    never.gone_since[b6] = -1e9
    assert await never.step() is False and claimed(fake, b6)


async def test_run_watches_the_other_service_so_a_broker_gone_wakes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves the keeper's loop watches the registrations of another Consul service its
    claims name (Day2's watch covers this member's own only): a broker deregistered there
    wakes it, and it is unregistered without any other change in the cluster."""
    monkeypatch.setattr(keeper_module, "TICK_S", 0.05)
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble)
    keeper = await forgetting_keeper(tmp_path, fake, ensemble, [], remove_after_s=0.1)
    b = await broker(tmp_path, fake, ensemble, 5)
    task = asyncio.create_task(keeper.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0.02)
            if keeper.other_groups:
                break
        await asyncio.sleep(0.2)  # settled: nothing pending, waiting for a change
        assert keeper.other_groups == {"c1-broker"} and claimed(fake, b)
        await fake.deregister(f"c1-broker-{b}")
        for _ in range(250):
            await asyncio.sleep(0.02)
            if not claimed(fake, b):
                break
        assert ensemble.changes == [f"unregister {b}=127.0.0.15"] and not claimed(fake, b)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def removed_lost_3(
    tmp_path: Path, answers: list[bool | VoterChangeError | None]
) -> tuple[FakeDiscovery, Ensemble, VoterKeeper]:
    """Three formed, member 1's keeper (min-size 2) has removed lost voter 3 (one step past its
    clock), its unregister answered by ``answers``."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble)
    keeper = await forgetting_keeper(tmp_path, fake, ensemble, answers, min_size=2)
    await lose(fake, 3)
    await keeper.step()
    lost_long_ago(keeper, 3)
    assert await keeper.step() is True  # a removal: look again
    return fake, ensemble, keeper


@pytest.mark.parametrize("answer", [True, False, None])
async def test_a_removed_lost_voter_is_unregistered_too(
    tmp_path: Path, answer: bool | None
) -> None:
    """Proves a lost voter, once removed from the voters, is unregistered from the service
    under the same lock (a combined Kafka member is a broker too); a busy service leaves the
    removal done (roster, claim) and the unregister to try again, and None does nothing more."""
    fake, ensemble, keeper = await removed_lost_3(tmp_path, [answer])
    assert ensemble.changes == ["remove 3", "unregister 3=127.0.0.13"]
    assert await roster_ids(fake) == [1, 2] and not claimed(fake, 3)
    assert keeper.done == ["remove lost voter 3"]
    assert fake.kv["cluster-bootstrap/c1/lock"].session is None
    assert set(keeper.still_registered) == ({3} if answer is False else set())


async def test_a_failed_unregister_after_a_removal_is_tried_again_never_the_removal(
    tmp_path: Path,
) -> None:
    """Proves a removed voter whose unregister was refused is unregistered by the next steps
    of the member that removed it (its claim is released, so no look finds it): a busy service
    holds it back (the keeper's backoff), a refusal raises to ``run``'s backoff with the lock
    released, and neither the removal nor the roster change is made again."""
    refused = VoterChangeError("kafka-cluster unregister --id 3 refused (exit 1): timed out")
    answers = [refused, False, VoterChangeError("again"), True]
    fake, ensemble, keeper = await removed_lost_3(tmp_path, answers)
    assert ensemble.changes == ["remove 3", "unregister 3=127.0.0.13"]
    assert set(keeper.still_registered) == {3} and not claimed(fake, 3)
    roster = await keeper.start.rosters.read()
    assert roster is not None and roster.ids() == [1, 2] and roster.version == 2
    assert await keeper.step() is True and keeper.held_back  # busy: later, held back
    with pytest.raises(VoterChangeError, match="again"):
        await keeper.step()
    assert fake.kv["cluster-bootstrap/c1/lock"].session is None
    assert await keeper.step() is False
    assert ensemble.changes == ["remove 3"] + ["unregister 3=127.0.0.13"] * 4
    assert keeper.still_registered == {}
    assert keeper.done == ["remove lost voter 3", "unregister removed voter 3"]
    roster = await keeper.start.rosters.read()
    assert roster is not None and roster.ids() == [1, 2] and roster.version == 2
    assert await keeper.step() is False and len(ensemble.changes) == 5


async def test_a_removed_voter_whose_id_is_claimed_anew_is_not_unregistered(
    tmp_path: Path,
) -> None:
    """Proves the retried unregister is decided again under the lock: once a new member has
    claimed the freed id (its own registration with the service stands), it is dropped."""
    fake, ensemble, keeper = await removed_lost_3(tmp_path, [False])
    assert set(keeper.still_registered) == {3}
    newcomer = await keeper_of(tmp_path, fake, ensemble, 6)
    assert newcomer.member_id == 3 and claimed(fake, 3)
    assert await keeper.step() is False
    assert keeper.still_registered == {}
    assert ensemble.changes == ["remove 3", "unregister 3=127.0.0.13"]


async def test_the_loop_unregisters_a_removed_voter_after_a_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves ``run`` itself comes back to a failed unregister (nothing else changes in the
    cluster to wake it): refused twice, then done."""
    monkeypatch.setattr(keeper_module, "TICK_S", 0.02)
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble)
    answers = [False, VoterChangeError("refused"), True]
    keeper = await forgetting_keeper(tmp_path, fake, ensemble, answers, 0.05, min_size=2)
    await lose(fake, 3)
    task = asyncio.create_task(keeper.run())
    try:
        for _ in range(250):
            await asyncio.sleep(0.02)
            if "unregister removed voter 3" in keeper.done:
                break
        assert ensemble.changes == ["remove 3"] + ["unregister 3=127.0.0.13"] * 3
        assert keeper.still_registered == {} and await roster_ids(fake) == [1, 2]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_static_quorum_keeper_unregisters_gone_brokers_and_leaves_voters(
    tmp_path: Path,
) -> None:
    """Proves a supervised voter of a service whose voters cannot change online but that
    keeps a record of members (a static Kafka quorum) gets a keeper: a broker gone longer than
    --remove-after is unregistered and its claim freed; a lost voter is never timed nor
    removed, and no voter change is asked for (none could be made)."""
    fake, ensemble = FakeDiscovery(), Ensemble()
    await formed(tmp_path, fake, ensemble)
    settings = settings_for(tmp_path, 1, expect=3, remove_after_s=5.0, min_size=1)
    service = StaticForgettingList(ensemble)
    service.answers = []
    plan = await Start(settings, fake, service, Deadline(5)).plan()
    keeper = Day2(settings, fake, service, plan, object()).keeper  # type: ignore[arg-type]
    assert keeper is not None and keeper.voters_online is False
    b = await broker(tmp_path, fake, ensemble, 5)
    await lose(fake, 3)
    await fake.deregister(f"c1-broker-{b}")
    assert await keeper.step() is True
    assert keeper.lost_since == {} and b in keeper.gone_since
    keeper.gone_since[b] = -1e9
    assert await keeper.step() is False
    assert ensemble.changes == [f"unregister {b}=127.0.0.15"] and not claimed(fake, b)
    assert await roster_ids(fake) == [1, 2, 3] and service.reached == []
    assert Day2(settings, fake, service, plan, None).keeper is None
