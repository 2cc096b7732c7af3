"""Day 2 voter changes in supervise mode: a joiner promoted, a moved voter re-added, a lost
voter removed; one change at a time, through the service's ``VoterChanges``.

Rules:

- **One change at a time, cluster-wide.** Every change runs under the cluster lock and is
  decided again there from fresh reads (the roster, the registrations, the service's committed
  voters): what another member did while this one waited is never done twice.
- **A member raises only itself.** A joiner asks to become a voter once the service says it has
  caught up (``VoterChanges.caught_up``); a voter whose roster entry names another address (the
  same Nomad alloc rescheduled on a new host, its disk moved with it) re-adds its own id with
  the address it has now. Promotions come before removals, so a newcomer that arrives while a
  lost voter is still listed votes first and the floor is never crossed on the way.
- **A moved voter re-adds itself before its server starts** (``move_first``, for a service
  with ``moves_before_start``): a server started first would adopt the ensemble's committed
  config from its peers (a later version than the one it was rendered with), which names it
  at its old address, and move there. The other voters commit the change without it when
  they are a majority of the voters; if they cannot (``MOVE_FIRST_S``), the server starts
  anyway and the re-add is tried again later.
- **Lost** means Consul's catalog (the servers' view, not this member's reach) has no
  registration of the voter whose worst check is not critical. A voter lost for longer than
  ``remove_after`` without a break (timed by each member from the moment it saw it lost) is
  removed by a live voter, only if the remaining live voters are at least the floor
  (``min_size``, default ``expect``) and a majority of the voters left, and every live voter that
  stays has caught up (the service says so). A partition that hides a voter from some members
  only never removes it while Consul's servers still see it. The removal asks the service
  through the live voters only, never at the lost one's address.
- **Gone non-voters are unregistered.** A claim of this cluster that is not on the roster (a
  Kafka broker-only member, in this or another Consul service of the cluster; a joiner never
  promoted) whose registration is *missing* from its own service's catalog for longer than
  ``remove_after`` (the same clock: per member, from the moment it saw it gone, without a
  break) is unregistered from the service (``ServicePort.unregister``) by a live voter under
  the lock, decided again there; its id claim is released afterwards. A registration with a
  critical check does not count as gone here: a member whose agent still registers it is
  stuck, not gone (a starting one is a warning: ``bootstrap.health``); an
  agent that died leaves its TTL check critical until Consul deregisters it
  (``DeregisterCriticalServiceAfter``), and then it is gone. A service that keeps nothing
  of a member that left (``unregister`` gives ``None``) has it left alone, claim and all. A
  lost voter, once removed, is unregistered the same way (a combined Kafka member is a broker);
  when that fails (the service busy, a refusal), the member that removed it tries again with
  the same backoff, never repeating the removal, until the service forgets it or its id is
  claimed anew (the new member's registration then stands). That retry lives in the member
  that removed it: it is lost if that member stops first (one warning names the id).
- **Voters that cannot change online** (a static Kafka quorum): a service that can still
  forget members (``ServicePort.unregisters``) gets a keeper that only unregisters gone
  non-voters (a split cluster's brokers): it never adds, moves or removes a voter, and does
  not time lost voters.
- **The roster follows the service.** It changes only after the service committed (a
  compare-and-set on the roster, tried again on a fresh read); a removed voter's id claim is
  then released, so the id can be claimed again.
- **Waiting for the lock is bounded** (``LOCK_PATIENCE_S``). A member that decided a change
  while another held the lock gives up after that long and looks at the cluster again on the
  next tick: the change may be done already (two members whose clocks ran out together), and
  what needs no lock (a removal refused at the floor, a new loss's clock) is never kept
  waiting behind a slow holder or a dead one (up to twice the session TTL, then the
  lock-delay).
- Nothing here stops the server. A conflict (``False`` from the port), a Consul error or a
  refusal (``VoterChangeError``, one log line) is tried again later, with a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Collection, Sequence

from bootstrap.errors import BootstrapError, ConsulError, LockBusy, VoterChangeError
from bootstrap.flow import Start
from bootstrap.lock import ClusterLock
from bootstrap.log import log
from bootstrap.membership import Claims, Membership
from bootstrap.model import Claim, ClusterView, Member
from bootstrap.roster import Roster
from bootstrap.voters import Voter, VoterChanges

HELD_BACK_MAX_S = 16.0  # the longest wait between two tries of a removal held back
TICK_S = 2.0  # how often a pending change looks again (a joiner catching up, a lost voter's clock)
BACKOFF_MAX_S = 30.0
RECORD_TRIES = 5
MOVE_FIRST_S = 30.0  # how long a moved voter's server waits for its re-add before it starts
LOCK_PATIENCE_S = 10.0  # how long a change waits for the lock before the keeper looks again


def removal_refused(
    voter_ids: Collection[int], lost: int, live: Collection[int], floor: int
) -> str:
    """Why removing ``lost`` from ``voter_ids`` would be unsafe, or ``""`` when it is safe:
    the live voters left must be at least ``floor`` and a majority of the voters left."""
    left = [i for i in voter_ids if i != lost]
    live_left = [i for i in left if i in live]
    if len(live_left) < floor:
        return (
            f"{len(live_left)} live voters would be left, below the floor of {floor} (--min-size)"
        )
    if 2 * len(live_left) <= len(left):
        return f"{len(live_left)} live voters of {len(left)} left would not be a majority"
    return ""


def same_voter(a: Voter, b: Voter) -> bool:
    """The same id at the same address (and directory, where the service names one)."""
    return (a.member_id, a.member.address) == (b.member_id, b.member.address) and (
        not a.directory_id or not b.directory_id or a.directory_id == b.directory_id
    )


def _rewind(since: dict[int, float], missing: Sequence[int]) -> tuple[list[int], set[int]]:
    """One clock per missing id, kept without a break: ids no longer missing leave ``since``
    (returned first, sorted), ids missing for the first time enter it now (returned second)."""
    back = sorted(set(since) - set(missing))
    for member_id in back:
        del since[member_id]
    new = {member_id for member_id in missing if member_id not in since}
    now = time.monotonic()
    since.update(dict.fromkeys(new, now))
    return back, new


class VoterKeeper:
    """The voter changes of one supervised member; ``notice()`` on every cluster change."""

    def __init__(
        self, start: Start, lock: ClusterLock, member_id: int, *, voters_online: bool = True
    ) -> None:
        self.start = start
        self.settings = start.settings
        self.service = start.service
        self.lock = lock
        self.member_id = member_id
        self.floor = self.settings.min_size or self.settings.expect
        self.lost_since: dict[int, float] = {}
        self.gone_since: dict[int, float] = {}  # non-voters, the same clock
        self.left_alone: set[int] = set()  # non-voters the service keeps nothing of
        # False: the service cannot change its voters online (a static Kafka quorum); the
        # keeper only unregisters gone non-voters.
        self.voters_online = voters_online
        # Removed voters the service still lists: their unregister failed after the removal
        # (their claim is released, so nothing else remembers them); tried again each step.
        self.still_registered: dict[int, Member] = {}
        # Other Consul services of the cluster (brokers of a split cluster) that claims name:
        # ``run`` watches their registrations too, as ``Day2``'s watch does this member's own.
        self.other_groups: set[str] = set()
        self.done: list[str] = []  # one line per change this member made (tests, the log)
        self.held_back = False  # the last step's change could not be made yet
        self.lock_patience_s = LOCK_PATIENCE_S
        self._wake = asyncio.Event()
        self._said: set[str] = set()

    def notice(self) -> None:
        self._wake.set()

    def _changed(self, kind: str) -> None:
        self.notice()

    async def run(self) -> None:
        """Look, act, wait for a change (or the next tick while something is pending)."""
        watched: dict[str, asyncio.Task[None]] = {}
        try:
            await self._run(watched)
        finally:
            for task in watched.values():
                task.cancel()
            await asyncio.gather(*watched.values(), return_exceptions=True)

    async def _run(self, watched: dict[str, asyncio.Task[None]]) -> None:
        from bootstrap.watch import Watch  # a blocking query per other service: no polling

        delay = TICK_S
        while True:
            self._wake.clear()
            self.held_back = False
            try:
                pending = await self.step()
                # held back (a voter that stays is behind, the service busy): look again
                # later and later, so a long wait does not take the lock every tick
                delay = min(delay * 2, HELD_BACK_MAX_S) if self.held_back else TICK_S
            except LockBusy as exc:  # another member's change: look again, decide again
                log.info("voter changes: %s; looking again", exc)
                pending, delay = True, TICK_S
            except ConsulError as exc:
                self._once(f"voter changes: {exc}; trying again", warning=True)
                pending, delay = True, min(delay * 2, BACKOFF_MAX_S)
            except BootstrapError as exc:  # VoterChangeError, an untrusted value, ...
                log.error("voter changes: %s; trying again in %.0fs", exc, delay)
                pending, delay = True, min(delay * 2, BACKOFF_MAX_S)
            for group in sorted(self.other_groups - set(watched)):
                watch = Watch(
                    self.start.discovery, self.settings.cluster_prefix, group, self._changed
                )
                watched[group] = asyncio.create_task(watch.registrations())
                pending = True  # one more look: a change before its baseline is not missed
            if not pending:
                await self._wake.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def step(self) -> bool:
        """One look at the cluster and at most one change; ``True`` while something waits."""
        roster = await self.start.rosters.read()
        if roster is None:
            return False  # not formed (or a member that never votes): nothing to keep
        view = (await self.start.preview()).view
        live: set[int] = set()
        lost: list[Voter] = []
        if self.voters_online:
            me = self.service.own_voter(view)
            mine = roster.voter(self.member_id)
            if mine is None and not await self._still_mine():
                return False
            if mine is None or not same_voter(mine, me):
                return await self._raise_me(view, me, moved=mine is not None)
            live = await self.live() | {self.member_id}  # this member runs: it is not lost
            lost = [voter for voter in roster.voters if voter.member_id not in live]
            self._clock(roster, lost)
        gone = [c for c in await self.gone(roster) if c.member_id not in self.left_alone]
        self._clock_gone(gone)
        after = self.settings.remove_after_s
        due_lost, due_gone = self._due(roster, live, lost, gone)
        if due_lost is not None:
            await self._remove_lost(view, due_lost)
            return True
        if due_gone is not None:
            await self._unregister_gone(view, due_gone)
        elif self.still_registered:
            await self._unregister_removed_again(view)
        waiting = set(self.gone_since) - self.left_alone  # what this step did is off the clock
        clocks = bool(after) and (bool(lost) or any(c.member_id in waiting for c in gone))
        return clocks or bool(self.still_registered)

    def _due(
        self, roster: Roster, live: set[int], lost: Sequence[Voter], gone: Sequence[Claim]
    ) -> tuple[Voter | None, Claim | None]:
        """The lost voter to remove now, else the gone non-voter to unregister now (their
        clocks past ``remove_after``); a removal that cannot pass is one warning, no lock."""
        after = self.settings.remove_after_s
        if not after:
            return None, None
        now = time.monotonic()
        due = [v for v in lost if now - self.lost_since[v.member_id] >= after]
        refused = due and removal_refused(roster.ids(), due[0].member_id, live, self.floor)
        if refused:  # decided again under the lock; no lock taken for what cannot pass
            self._once(f"remove lost voter {due[0].member_id}: not now, {refused}", warning=True)
        elif due:
            return due[0], None
        due_gone = [c for c in gone if now - self.gone_since[c.member_id] >= after]
        return None, (due_gone[0] if due_gone else None)

    async def _still_mine(self) -> bool:
        """Whether this member's id claim is still its own. A voter removed by another member
        (lost too long, or ``remove`` by hand) has its claim released: it does not ask to vote
        again while it runs, which would undo the removal; a restart claims an id and joins anew.
        """
        _, claims = await self.start.membership.read_claims()
        claim = claims.by_id.get(self.member_id)
        if claim is not None and claim[0].owner == self.settings.member_name:
            return True
        self._once(
            f"id {self.member_id} was removed from the cluster (its claim is released): this "
            "member does not ask to vote again; restart it to join anew",
            warning=True,
        )
        return False

    async def live(self) -> set[int]:
        """Ids with a registration in Consul's catalog whose worst check is not critical."""
        membership = self.start.membership
        _, instances = await self.start.discovery.instances(self.settings.consul_service)
        _, claims = await membership.read_claims()
        found = membership.sort_out([i for i in instances if i.health != "critical"], claims)
        return {member.member_id for member in found.members}

    async def gone(self, roster: Roster) -> list[Claim]:
        """Claims of this cluster outside the roster (not this member's) whose registration
        is missing from their own Consul service (``Claim.group``), in any health state."""
        _, claims = await self.start.membership.read_claims()
        voters = {*roster.ids(), self.member_id}
        others = [c for c, _ in claims.by_id.values() if c.member_id not in voters and c.group]
        gone = []
        groups = {claim.group for claim in others}
        self.other_groups |= groups - {self.settings.consul_service}
        for group in sorted(groups):
            present = await self._registered(group, claims)
            gone += [c for c in others if c.group == group and c.member_id not in present]
        return sorted(gone, key=lambda claim: claim.member_id)

    async def _registered(self, group: str, claims: Claims) -> set[int]:
        """Ids registered in Consul service ``group`` at their claimed endpoint, in any health
        state (this member's tags and meta filter only its own service)."""
        own = group == self.settings.consul_service
        membership = Membership(
            self.start.discovery,
            prefix=self.settings.cluster_prefix,
            consul_service=group,
            port_labels=type(self.service).port_labels,
            id_range=self.service.id_range,
            tags=self.settings.tags if own else (),
            meta=self.settings.meta if own else None,
        )
        _, instances = await self.start.discovery.instances(group)
        return {member.member_id for member in membership.sort_out(instances, claims).members}

    def _clock_gone(self, gone: Sequence[Claim]) -> None:
        back, new = _rewind(self.gone_since, [claim.member_id for claim in gone])
        for member_id in back:
            log.info("member %d is registered again (or its claim is gone): kept", member_id)
        for claim in (c for c in gone if c.member_id in new):
            log.warning(
                "member %d (%s, Consul service %s), not a voter, is not registered: %s",
                claim.member_id,
                claim.address,
                claim.group,
                self._when("unregistered"),
            )

    def _clock(self, roster: Roster, lost: Sequence[Voter]) -> None:
        back, new = _rewind(self.lost_since, [voter.member_id for voter in lost])
        for member_id in back:
            if roster.voter(member_id) is not None:  # else: removed, by this member or another
                log.info("voter %d is back in Consul: it is not removed", member_id)
        for voter in (v for v in lost if v.member_id in new):
            log.warning(
                "voter %d (%s) is not registered, or its check is critical: %s",
                voter.member_id,
                voter.member.address,
                self._when("removed"),
            )

    def _when(self, done: str) -> str:
        after = self.settings.remove_after_s
        return (
            f"{done} after {after:.0f}s unless it is back"
            if after
            else (f"never {done} (--remove-after 0)")
        )

    # -- the changes -------------------------------------------------------------------------

    def _changes(self, view: ClusterView) -> VoterChanges:
        changes = self.service.voter_changes(view)
        if changes is None:
            raise VoterChangeError(
                f"the {self.service.key} adapter, as configured, cannot change voters online"
            )
        return changes

    async def move_first(self, timeout_s: float = MOVE_FIRST_S) -> None:
        """Before this member's server starts: when its roster entry names another address
        (rescheduled, its disk moved with it), re-add its own id at the address it has now, so
        the server never runs with a committed config that names it elsewhere. Tried again
        with a backoff for ``timeout_s`` (the service busy, Consul or the other voters slow);
        then the server starts anyway and ``run`` goes on trying."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._move_first()
        except TimeoutError:
            log.warning(
                "id %d was not re-added at its new address within %.0fs: the server starts; "
                "the re-add is tried again while it runs",
                self.member_id,
                timeout_s,
            )

    async def _move_first(self) -> None:
        delay = 0.5
        while True:
            try:
                roster = await self.start.rosters.read()
                mine = roster.voter(self.member_id) if roster is not None else None
                if mine is None:
                    return  # a joiner, or no roster: nothing moved
                view = (await self.start.preview()).view
                me = self.service.own_voter(view)
                if same_voter(mine, me) or not await self._raise_me(view, me, moved=True):
                    return
            except BootstrapError as exc:
                self._once(f"re-add id {self.member_id} before the server starts: {exc}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, TICK_S * 2)

    async def _raise_me(self, view: ClusterView, me: Voter, *, moved: bool) -> bool:
        what = (
            f"re-add id {me.member_id} at {me.member.address}"
            if moved
            else (f"add voter {me.member_id}")
        )
        if not moved:  # a moved voter has its data: there is nothing to catch up first
            async with self._changes(view) as changes:
                if not await changes.caught_up(me.member_id):
                    self._once(f"id {me.member_id} waits to catch up before it asks to vote")
                    return True
        async with self._hold(what):
            roster = await self.start.rosters.read()
            if roster is None:
                return True
            mine = roster.voter(me.member_id)
            if mine is not None and same_voter(mine, me):
                return False  # done by an earlier attempt
            async with self._changes(view) as changes:
                committed = await changes.committed()
                if not any(same_voter(v, me) for v in committed.voters) and not (
                    await changes.add(me, version=committed.version)
                ):
                    log.info("%s: the service is busy with another change; later", what)
                    return True
            await self._record(
                lambda voters: [v for v in voters if v.member_id != me.member_id] + [me]
            )
        self.done.append(what)
        log.info("%s: done (the service committed it, then the roster)", what)
        return False

    async def _remove_lost(self, view: ClusterView, lost: Voter) -> None:
        what = f"remove lost voter {lost.member_id}"
        async with self._hold(what):
            roster = await self.start.rosters.read()
            if roster is None or roster.voter(lost.member_id) is None:
                self.lost_since.pop(lost.member_id, None)
                return  # another member removed it while this one waited
            live = await self.live() | {self.member_id}
            if lost.member_id in live:
                return
            refused = removal_refused(roster.ids(), lost.member_id, live, self.floor)
            if refused:
                self._once(f"{what}: not now, {refused}", warning=True)
                return
            # the service is asked through the live voters only: the lost one's address (a
            # host cut off) would only hold the connection up until its timeout
            reach = dataclasses.replace(
                view,
                members=tuple(m for m in view.members if m.member_id in live | {self.member_id}),
            )
            staying = [i for i in roster.ids() if i in live and i != lost.member_id]
            if not await self.remove(reach, roster.voter(lost.member_id) or lost, staying):
                return
            await self._unregister_removed(view, lost.member)
        self.lost_since.pop(lost.member_id, None)
        self.done.append(what)

    async def _unregister_removed(self, view: ClusterView, member: Member) -> None:
        """A lost voter, once removed, is forgotten like a gone non-voter (a combined Kafka
        member is a broker too), still under the lock. Its claim is already released, so no
        look would find it again: a busy service or a refusal leaves it in
        ``still_registered``, which the next steps try again (``_unregister_removed_again``)."""
        try:
            done = await self.service.unregister(view, member)
        except VoterChangeError as exc:
            done, why = False, str(exc)
        else:
            why = "the service was busy"
        if done is False:
            self.still_registered[member.member_id] = member
            log.warning(
                "removed voter %d is still registered in the service (%s); trying again",
                member.member_id,
                why,
            )
        elif done:
            log.warning("unregistered removed voter %d from the service", member.member_id)

    async def _unregister_removed_again(self, view: ClusterView) -> None:
        """Unregister a removed voter whose unregister failed, decided again under the lock:
        not if its id is claimed anew or a voter again (a new member with that id registers
        with the service itself: unregistering it would undo that member's start). The
        removal is not repeated. Busy: held back (the keeper's backoff); a refusal
        (``VoterChangeError``) goes to ``run``'s backoff; either way it stays to try again."""
        member_id = min(self.still_registered)
        member = self.still_registered[member_id]
        what = f"unregister removed voter {member_id}"
        async with self._hold(what):
            roster = await self.start.rosters.read()
            _, claims = await self.start.membership.read_claims()
            if member_id in claims.by_id or (roster is not None and member_id in roster.ids()):
                del self.still_registered[member_id]
                log.info("%s: its id is claimed again; the new member's registration stands", what)
                return
            done = await self.service.unregister(view, member)
        if done is False:
            self.held_back = True
            log.info("%s: the service is busy; later", what)
            return
        del self.still_registered[member_id]
        if done:
            self.done.append(what)
            log.warning("unregistered removed voter %d from the service", member_id)

    async def _unregister_gone(self, view: ClusterView, gone: Claim) -> None:
        """Decided again under the lock: still claimed (the same claim), still not a voter,
        still not registered; then the service forgets it, then its claim is released."""
        what = f"unregister gone member {gone.member_id}"
        async with self._hold(what):
            roster = await self.start.rosters.read()
            _, claims = await self.start.membership.read_claims()
            held = claims.by_id.get(gone.member_id)
            if roster is None or held is None or held[0] != gone or gone.member_id in roster.ids():
                self.gone_since.pop(gone.member_id, None)
                return  # unregistered by another member meanwhile, claimed anew, or promoted
            if gone.member_id in await self._registered(gone.group, claims):
                return
            done = await self.service.unregister(view, gone.member())
            if done is None:
                self.left_alone.add(gone.member_id)
                self.gone_since.pop(gone.member_id, None)
                log.info(
                    "member %d is gone: the %s service keeps nothing of it; its claim is kept",
                    gone.member_id,
                    self.service.key,
                )
                return
            if not done:
                log.info("%s: the service is busy; later", what)
                return
            key = self.start.membership.claim_key(gone.member_id)
            if not await self.start.discovery.kv_delete(key, held[1]):
                log.info("claim %s changed while it was released: kept", key)
        self.gone_since.pop(gone.member_id, None)
        self.done.append(what)
        log.warning(
            "unregistered member %d (%s): gone longer than --remove-after; its id is free",
            gone.member_id,
            gone.address,
        )

    async def remove_by_hand(self, member_id: int, *, force: bool, deadline_s: float) -> None:
        """``cluster-bootstrap remove SERVICE --id N``: the same removal now, for a planned
        scale-in, with the same checks (the member need not be lost: it does not count as
        live). ``force`` removes it even when the checks refuse. Raises ``VoterChangeError``."""
        async with self.lock.hold(f"remove voter {member_id} by hand"):
            roster = await self.start.rosters.read()
            voter = roster.voter(member_id) if roster is not None else None
            if roster is None or voter is None:
                voters = ", ".join(map(str, roster.ids())) if roster else "none: not formed"
                raise VoterChangeError(f"id {member_id} is not a voter (roster voters: {voters})")
            live = await self.live() - {member_id}
            refused = removal_refused(roster.ids(), member_id, live, self.floor)
            if refused and not force:
                raise VoterChangeError(
                    f"removing voter {member_id} refused: {refused}; --force removes it anyway"
                )
            if refused:
                log.warning("removing voter %d with --force although %s", member_id, refused)
            shared = await self.start.shared_values(create=False)
            settings = self.settings
            view = ClusterView(self.start.me, member_id, roster.members(), shared, settings.options)
            end = time.monotonic() + deadline_s
            staying = [i for i in roster.ids() if i in live]
            while not await self.remove(view, voter, staying):
                if time.monotonic() > end:
                    raise VoterChangeError(
                        f"removing voter {member_id}: the service stayed busy with other "
                        f"changes, or a voter that stays stayed behind, for {deadline_s:.0f}s"
                    )
                await asyncio.sleep(TICK_S)

    async def remove(self, view: ClusterView, voter: Voter, staying: Collection[int]) -> bool:
        """Take ``voter`` out: the service first (reached through ``view``'s members), then the
        roster, then its claim. The caller holds the lock and has checked the floor;
        ``staying`` (the live voters left) must all have caught up, or the service would be left
        with a quorum still syncing. ``False``: not now (the service was busy, or a voter that
        stays is behind)."""
        async with self._changes(view) as changes:
            behind = [i for i in sorted(staying) if not await changes.caught_up(i)]
            if behind:
                self.held_back = True
                self._once(
                    f"removing voter {voter.member_id}: not now, voters {behind} that stay "
                    "have not caught up",
                    warning=True,
                )
                return False
            committed = await changes.committed()
            if voter.member_id in committed.voter_ids() and not (
                await changes.remove(voter, version=committed.version)
            ):
                log.info("removing voter %d: the service is busy; later", voter.member_id)
                self.held_back = True
                return False
        await self._record(lambda voters: [v for v in voters if v.member_id != voter.member_id])
        await self._release_claim(voter.member_id)
        log.warning(
            "removed voter %d (%s): the service committed it, then the roster; its id is free",
            voter.member_id,
            voter.member.address,
        )
        return True

    async def _record(self, change: Callable[[Sequence[Voter]], list[Voter]]) -> None:
        """Apply ``change`` to the roster's voters with a compare-and-set, on fresh reads."""
        for _ in range(RECORD_TRIES):
            roster = await self.start.rosters.read()
            if roster is None:
                break
            voters = change(roster.voters)
            if sorted((v.member_id, v.member.address) for v in voters) == [
                (v.member_id, v.member.address) for v in roster.voters
            ]:
                return  # already recorded
            if await self.start.rosters.replace(roster, voters):
                return
        raise ConsulError(
            f"the roster kept changing under the lock ({RECORD_TRIES} tries); the service has "
            "committed the change: the next look records it"
        )

    async def _release_claim(self, member_id: int) -> None:
        key = self.start.membership.claim_key(member_id)
        entry = await self.start.discovery.kv_get(key)
        if entry is not None and not await self.start.discovery.kv_delete(key, entry.modify_index):
            log.info("claim %s changed while it was released: kept", key)

    def _hold(self, what: str) -> contextlib.AbstractAsyncContextManager[None]:
        """The cluster lock for one change, waited for at most ``lock_patience_s``."""
        return self.lock.hold(what, patience_s=self.lock_patience_s)

    def _once(self, line: str, *, warning: bool = False) -> None:
        if line not in self._said:
            self._said.add(line)
            (log.warning if warning else log.info)("%s", line)
