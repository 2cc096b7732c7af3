"""Member ids and the member list: claims in KV, instances in the catalog, and the wait.

Layout in Consul KV, under ``<kv_prefix>/<cluster>/``::

    ids/<n>          the claim on member id n: {"owner", "address", "ports"} (create-only CAS)
    shared/<name>    a value created once for the whole cluster (cluster id, cookie)

A *member* is a claim whose address and primary port match a registered instance of the
service. The claim gives the id and every port; the registration says the member is there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from bootstrap.deadline import Deadline
from bootstrap.errors import MemberIdError, PeersMissing, UntrustedValue
from bootstrap.log import log
from bootstrap.model import (
    MAX_MEMBER_ID,
    Claim,
    Instance,
    Me,
    Member,
    valid_address,
    valid_port,
)
from bootstrap.ports import DiscoveryPort, KVEntry

PROGRESS_EVERY_S = 5.0
MIN_ROUND_S = 0.05  # rate limit of the wait loop, even if the agent answers at once


@dataclass(frozen=True)
class Claims:
    """Every claim under ``ids/``, plus the keys that hold something unusable."""

    by_id: Mapping[int, tuple[Claim, int]]  # id -> (claim, ModifyIndex)
    unusable: frozenset[int]

    def taken(self) -> set[int]:
        return set(self.by_id) | set(self.unusable)

    def owned_by(self, owner: str) -> list[Claim]:
        return sorted(
            (claim for claim, _ in self.by_id.values() if claim.owner == owner),
            key=lambda claim: claim.member_id,
        )


@dataclass(frozen=True)
class Found:
    """What the registrations say: members, registrations waiting for a claim, refused ones."""

    members: list[Member]
    waiting: list[str]
    refused: list[str]  # why each refused registration is not a member


@dataclass(frozen=True)
class IdChoice:
    """Where an id comes from: ``disk``, this member's own ``claim``, or the ``free`` ones
    (``candidates`` in the order to try; ``member_id`` is the first)."""

    source: str
    member_id: int
    candidates: tuple[int, ...] = ()


class Membership:
    """Ids and members of one cluster, through a ``DiscoveryPort``."""

    def __init__(
        self,
        discovery: DiscoveryPort,
        *,
        prefix: str,
        consul_service: str,
        port_labels: Mapping[str, int],
        id_range: tuple[int, int],
        tags: Sequence[str] = (),
        meta: Mapping[str, str] | None = None,
    ) -> None:
        self.discovery = discovery
        self.tags = frozenset(tags)
        self.meta = dict(meta or {})
        self.ids_prefix = f"{prefix}/ids/"
        self.consul_service = consul_service
        self.port_labels = port_labels
        self.primary = next(iter(port_labels))
        self.id_range = id_range
        self._warned: set[str] = set()

    def claim_key(self, member_id: int) -> str:
        return f"{self.ids_prefix}{member_id}"

    # -- claims ---------------------------------------------------------------------------

    def parse_claims(self, entries: Mapping[str, KVEntry]) -> Claims:
        by_id: dict[int, tuple[Claim, int]] = {}
        unusable: set[int] = set()
        for key, entry in entries.items():
            suffix = key.removeprefix(self.ids_prefix)
            if not (suffix.isascii() and suffix.isdigit()) or int(suffix) > MAX_MEMBER_ID:
                log.warning("ignoring KV key %r: not a member id", key)
                continue
            member_id = int(suffix)
            try:
                claim = Claim.from_json(member_id, entry.value, self.port_labels, f"KV {key}")
            except UntrustedValue as exc:
                log.warning("id %d is taken by an unusable claim (%s); skipping it", member_id, exc)
                unusable.add(member_id)
                continue
            by_id[member_id] = (claim, entry.modify_index)
        return Claims(by_id, frozenset(unusable))

    async def read_claims(self, *, index: int = 0, wait_s: float = 0.0) -> tuple[int, Claims]:
        new_index, entries = await self.discovery.kv_list(
            self.ids_prefix, index=index, wait_s=wait_s
        )
        return new_index, self.parse_claims(entries)

    def choose_id(
        self,
        claims: Claims,
        me: Me,
        disk_id: int | None,
        disk_origin: str,
        retired: Collection[int] = (),
    ) -> IdChoice:
        """The id rules, in one place, for ``obtain_id`` and ``preview_id`` alike.

        An id on disk wins (inside the range, and not claimed by another member); else this
        member's own claim, less the ``retired`` ones (a voter whose disk is lost: see
        ``Start.retired_ids``), which stay claimed until the voter is removed; else the free
        ids, the ``alloc_index`` hint first.
        """
        low, high = self.id_range
        if disk_id is not None:
            if not low <= disk_id <= high:
                raise MemberIdError(f"{disk_origin}: id {disk_id} is outside {low}..{high}")
            self._disk_id_holder(disk_id, disk_origin, claims, me.owner)
            return IdChoice("disk", disk_id)
        mine = [claim for claim in claims.owned_by(me.owner) if claim.member_id not in retired]
        if mine:
            return IdChoice("claim", mine[0].member_id)
        candidates = tuple(self._candidates(me.alloc_index, claims.taken()))
        if not candidates:
            raise MemberIdError(
                f"every member id in {low}..{high} is claimed under {self.ids_prefix}"
            )
        return IdChoice("free", candidates[0], candidates)

    def _disk_id_holder(
        self, disk_id: int, origin: str, claims: Claims, owner: str
    ) -> tuple[Claim, int] | None:
        """This member's own claim on its disk id, or None when the id is free; raises when
        another member or an unusable record holds it."""
        held = claims.by_id.get(disk_id)
        if held is None and disk_id in claims.unusable:
            raise MemberIdError(f"{origin}: id {disk_id} is held by an unusable KV record")
        if held is not None and held[0].owner != owner:
            raise MemberIdError(
                f"{origin}: id {disk_id} is claimed in Consul by {held[0].owner!r}, "
                f"not by this member {owner!r}"
            )
        return held

    async def obtain_id(
        self,
        me: Me,
        disk_id: int | None,
        disk_origin: str = "disk",
        retired: Collection[int] = (),
    ) -> int:
        """This member's stable id: the one on disk, else its own claim (not ``retired``),
        else the lowest free.

        A lost create race moves on to the next id; an unreachable agent raises.
        """
        _, claims = await self.read_claims()
        record = Claim(0, me.owner, me.address, dict(me.ports), self.consul_service)
        choice = self.choose_id(claims, me, disk_id, disk_origin, retired)
        if choice.source == "disk":
            return await self._keep_disk_id(choice.member_id, disk_origin, claims, record)
        if choice.source == "claim":
            await self._refresh(claims.by_id[choice.member_id][0], claims, record)
            log.info("member %r reclaims its id %d", me.owner, choice.member_id)
            return choice.member_id
        for candidate in choice.candidates:
            if await self.discovery.kv_create(
                self.claim_key(candidate), _with_id(record, candidate)
            ):
                log.info("member %r claimed id %d", me.owner, candidate)
                return candidate
            log.debug("id %d was taken first by another member; trying the next", candidate)
        low, high = self.id_range
        raise MemberIdError(f"every member id in {low}..{high} is claimed under {self.ids_prefix}")

    async def _keep_disk_id(self, disk_id: int, origin: str, claims: Claims, record: Claim) -> int:
        for _ in range(3):
            held = self._disk_id_holder(disk_id, origin, claims, record.owner)
            if held is None:
                if await self.discovery.kv_create(
                    self.claim_key(disk_id), _with_id(record, disk_id)
                ):
                    log.info("member %r claimed id %d found on %s", record.owner, disk_id, origin)
                    return disk_id
            else:
                await self._refresh(held[0], claims, record)
                log.info("member %r keeps id %d found on %s", record.owner, disk_id, origin)
                return disk_id
            _, claims = await self.read_claims()
        raise MemberIdError(f"{origin}: id {disk_id} kept changing hands in Consul")

    async def _refresh(self, claim: Claim, claims: Claims, record: Claim) -> None:
        """Move my claim to my current address and ports (a rescheduled member)."""
        wanted = _with_id(record, claim.member_id)
        current, modify_index = claims.by_id[claim.member_id]
        if current.to_json() == wanted:
            return
        if not await self.discovery.kv_replace(
            self.claim_key(claim.member_id), wanted, modify_index
        ):
            raise MemberIdError(f"claim on id {claim.member_id} changed while it was being moved")
        log.info("id %d now points at %s", claim.member_id, record.address)

    async def preview_id(
        self,
        me: Me,
        disk_id: int | None,
        disk_origin: str = "disk",
        retired: Collection[int] = (),
    ) -> int:
        """The id ``obtain_id`` would settle on now, by the same rules, without writing."""
        _, claims = await self.read_claims()
        return self.choose_id(claims, me, disk_id, disk_origin, retired).member_id

    def _candidates(self, alloc_index: int | None, taken: set[int]) -> Iterable[int]:
        low, high = self.id_range
        order = list(range(low, high + 1))
        if alloc_index is not None and low + alloc_index <= high:
            order.remove(low + alloc_index)
            order.insert(0, low + alloc_index)
        return (candidate for candidate in order if candidate not in taken)

    # -- members ----------------------------------------------------------------------------

    def match(
        self, instances: Sequence[Instance], claims: Claims
    ) -> tuple[list[Member], list[str]]:
        """Members (claims with a live registration), and registrations still without a claim."""
        found = self.sort_out(instances, claims)
        return found.members, found.waiting

    def sort_out(self, instances: Sequence[Instance], claims: Claims) -> Found:
        """Each registration: a member, waiting for its claim, or refused (fails validation).

        A refused registration is not a member: one bad entry must not stop the cluster. It is
        named in a warning (once) and in the progress line, and never reaches a file.
        """
        by_endpoint: dict[tuple[str, int], tuple[Claim, int]] = {}
        for claim, modify_index in claims.by_id.values():
            if claim.group != self.consul_service:
                continue
            endpoint = (claim.address, claim.ports[self.primary])
            # Two claims on one endpoint: the newest write is the live member.
            if endpoint not in by_endpoint or modify_index > by_endpoint[endpoint][1]:
                by_endpoint[endpoint] = (claim, modify_index)
        members: dict[int, Member] = {}
        waiting = []
        refused = []
        for instance in instances:
            if not instance.matches(self.tags, self.meta):
                continue
            origin = f"Consul registration {instance.describe()!r}"
            try:
                endpoint = (
                    valid_address(instance.address, origin),
                    valid_port(instance.port, origin),
                )
            except UntrustedValue as exc:
                refused.append(str(exc))
                if str(exc) not in self._warned:
                    self._warned.add(str(exc))
                    log.warning("not a member, skipped: %s", exc)
                continue
            if endpoint in by_endpoint:
                claim = by_endpoint[endpoint][0]
                members[claim.member_id] = claim.member()
            else:
                waiting.append(f"{endpoint[0]}:{endpoint[1]}")
        return Found(
            sorted(members.values(), key=lambda m: m.member_id), sorted(waiting), sorted(refused)
        )

    async def snapshot(self) -> tuple[list[Member], list[str]]:
        """The members there are now, without waiting."""
        found = await self.survey()
        return found.members, found.waiting

    async def survey(self) -> Found:
        """Members, waiting and refused registrations now, without waiting."""
        _, instances = await self.discovery.instances(self.consul_service)
        _, claims = await self.read_claims()
        return self.sort_out(instances, claims)

    def status(self, found: Found, me_id: int | None, expect: int) -> str:
        """One line for ``render --dry-run``: who is here, who is missing, whether a start waits."""
        line = f"{self.consul_service}: {_progress(found, me_id, expect)}"
        here = {m.member_id for m in found.members}
        if len(found.members) >= expect and (me_id is None or me_id in here):
            return f"{line}; a start would not wait"
        return f"{line}; a start would wait for them (until --timeout)"

    async def wait_for(
        self, me_id: int | None, expect: int, deadline: Deadline
    ) -> tuple[Member, ...]:
        """Block until ``expect`` members (this one among them, if given) are there.

        Raises ``PeersMissing`` at the deadline.

        Blocking queries on the catalog and on the claims run side by side; whichever
        changes first wakes the loop. Progress is logged at start and every few seconds.
        """
        service_index, instances = await self.discovery.instances(self.consul_service)
        claims_index, claims = await self.read_claims()
        last_progress = float("-inf")
        last_line = ""
        while True:
            round_started = time.monotonic()
            found = self.sort_out(instances, claims)
            members = found.members
            here = [m.member_id for m in members]
            if len(members) >= expect and (me_id is None or me_id in here):
                log.info("%d of %d members are here: %s", len(members), expect, _names(members))
                return tuple(members)
            line = f"{self.consul_service}: {_progress(found, me_id, expect)}"
            if line != last_line or time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                log.info("%s; %.0fs left", line, deadline.remaining())
                last_progress, last_line = time.monotonic(), line
            if deadline.expired():
                raise PeersMissing(f"deadline of {deadline.seconds:g}s passed: {line}")
            wait_s = max(0.1, min(PROGRESS_EVERY_S, deadline.remaining()))
            service_task = asyncio.create_task(
                self.discovery.instances(self.consul_service, index=service_index, wait_s=wait_s)
            )
            claims_task = asyncio.create_task(self.read_claims(index=claims_index, wait_s=wait_s))
            try:
                done, _ = await asyncio.wait(
                    {service_task, claims_task}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in (service_task, claims_task):
                    if not task.done():
                        task.cancel()
                await asyncio.gather(service_task, claims_task, return_exceptions=True)
            if service_task in done:
                new_index, instances = service_task.result()
                service_index = next_index(service_index, new_index)
            if claims_task in done:
                new_index, claims = claims_task.result()
                claims_index = next_index(claims_index, new_index)
            spent = time.monotonic() - round_started
            if spent < MIN_ROUND_S:
                await asyncio.sleep(MIN_ROUND_S - spent)


def next_index(previous: int, returned: int) -> int:
    """The index for the next blocking query: reset when it went backwards, never below 1."""
    if returned < previous:
        return 0
    return max(1, returned)


def _with_id(record: Claim, member_id: int) -> str:
    return Claim(member_id, record.owner, record.address, record.ports, record.group).to_json()


def _names(members: Sequence[Member]) -> str:
    return ", ".join(f"{m.member_id}={m.address}" for m in members) or "none"


def _progress(found: Found, me_id: int | None, expect: int) -> str:
    members = found.members
    missing = max(0, expect - len(members))
    parts = [f"{len(members)} of {expect} members here ({_names(members)})"]
    if me_id is not None and me_id not in {m.member_id for m in members}:
        parts.append(f"this member (id {me_id}) is not registered yet")
    if found.waiting:
        parts.append(f"registered without a claimed id yet: {', '.join(found.waiting)}")
    if found.refused:
        parts.append(f"refused, not counted: {' | '.join(found.refused)}")
    parts.append(f"missing {missing}")
    return "; ".join(parts)
