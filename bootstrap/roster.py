"""The roster: who is in the cluster, as opposed to who owns an id (claims) or who is alive
(registrations).

One KV value per cluster, ``<kv_prefix>/<cluster>/roster``, next to ``ids/`` and ``shared/``::

    {"version": 1, "origin": "formation",
     "voters": [{"id": 1, "address": "10.0.0.1", "ports": {...}, "directory_id": ""}, ...]}

The voters are the members the running service has agreed to: ZooKeeper participants, Kafka
controllers (with their directory ids for a dynamic quorum), EMQX nodes, a template cluster's
members. Rules:

- **Formation writes it once.** The first member that sees ``expect`` members creates it with a
  create-only compare-and-set (the ``expect`` lowest ids among the members it sees); every
  member of the formation reads back the winner and renders exactly that, so members started at
  once render one list even when more than ``expect`` show up.
- **A roster member restarts from it at once**: it waits for nobody's registration, since its
  peers already form a cluster and will come back (``Seat.restart``).
- **Anyone else is a joiner** (``Seat.joining``): it starts in the service's non-voting form,
  or fails with ``CannotJoin`` where the service cannot take a voter online.
- **Upgrade**: a member with an id on disk finds no roster when its cluster was formed by a
  release without one; it builds the roster from the ``expect`` lowest claims of its group
  (origin ``upgrade``) and says so.
- Changes after formation (the next issues) replace it with a CAS on its ``ModifyIndex`` and
  bump ``version``: ``Rosters.replace``.

The value is untrusted like every other read from Consul: it is parsed and validated here
(ids in range, addresses, ports, directory ids) before it reaches a rendered file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bootstrap.errors import RenderError, UntrustedValue
from bootstrap.log import log
from bootstrap.membership import Claims
from bootstrap.model import Me, Member, valid_address, valid_member_id, valid_port
from bootstrap.ports import DiscoveryPort
from bootstrap.voters import Voter

ROSTER_KEY = "roster"
ORIGINS = ("formation", "upgrade", "change")
MAX_VOTERS = 255
_DIRECTORY_ID = re.compile(r"[A-Za-z0-9_-]{22}")


@dataclass(frozen=True)
class Roster:
    """The cluster's voters (sorted by id) with the version and how the roster came to be."""

    version: int
    origin: str
    voters: tuple[Voter, ...]
    modify_index: int = 0  # the KV entry's, for a compare-and-set; not part of the value

    def ids(self) -> list[int]:
        return [voter.member_id for voter in self.voters]

    def voter(self, member_id: int) -> Voter | None:
        return next((v for v in self.voters if v.member_id == member_id), None)

    def members(self) -> tuple[Member, ...]:
        return tuple(voter.member for voter in self.voters)

    def describe(self) -> str:
        return f"version {self.version}, voters " + ", ".join(
            f"{v.member_id}={v.member.address}" for v in self.voters
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "origin": self.origin,
                "voters": [
                    {
                        "id": v.member_id,
                        "address": v.member.address,
                        "ports": dict(sorted(v.member.ports.items())),
                        "directory_id": v.directory_id,
                    }
                    for v in self.voters
                ],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(
        cls,
        raw: str,
        labels: Mapping[str, int],
        id_range: tuple[int, int],
        origin: str,
        modify_index: int = 0,
    ) -> Roster:
        """Parse and validate a roster read from KV; ``UntrustedValue`` when it is unusable."""
        try:
            data: Any = json.loads(raw)
        except ValueError as exc:
            raise UntrustedValue(f"{origin}: roster is not JSON") from exc
        if not isinstance(data, dict):
            raise UntrustedValue(f"{origin}: roster is not a JSON object")
        version, kind, entries = data.get("version"), data.get("origin"), data.get("voters")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise UntrustedValue(f"{origin}: roster version {version!r} is not a number >= 1")
        if kind not in ORIGINS:
            raise UntrustedValue(f"{origin}: roster origin {kind!r} is not one of {ORIGINS}")
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_VOTERS:
            raise UntrustedValue(f"{origin}: roster has no list of 1..{MAX_VOTERS} voters")
        voters = [_voter(entry, labels, id_range, origin) for entry in entries]
        ids = [v.member_id for v in voters]
        if len(set(ids)) != len(ids):
            raise UntrustedValue(f"{origin}: roster names an id twice: {ids}")
        voters.sort(key=lambda v: v.member_id)
        return cls(version, kind, tuple(voters), modify_index)


def _voter(
    entry: object, labels: Mapping[str, int], id_range: tuple[int, int], origin: str
) -> Voter:
    if not isinstance(entry, dict) or not isinstance(entry.get("ports"), dict):
        raise UntrustedValue(f"{origin}: a roster voter is not an object with ports")
    member_id = valid_member_id(entry.get("id"), id_range, origin)
    where = f"{origin} voter {member_id}"
    ports = {
        label: valid_port(entry["ports"].get(label, default), f"{where} port {label!r}")
        for label, default in labels.items()
    }
    directory = entry.get("directory_id", "")
    if not isinstance(directory, str) or (directory and not _DIRECTORY_ID.fullmatch(directory)):
        raise UntrustedValue(f"{where}: directory id {directory!r} is not a Kafka uuid")
    address = valid_address(entry.get("address"), where)
    return Voter(Member(member_id, address, ports), directory)


@dataclass(frozen=True)
class Seat:
    """Where this member sits: the roster, and whether it is a voter or a joiner.

    ``members`` is what the service renders from: the roster's voters, with this member's own
    entry at its current address (a voter), or followed by this member (a joiner).
    """

    roster: Roster | None  # None: a member that never votes (no roster for it)
    members: tuple[Member, ...]
    joining: bool


class Rosters:
    """The roster of one cluster in KV, through a ``DiscoveryPort`` (see the module rules)."""

    def __init__(
        self,
        discovery: DiscoveryPort,
        *,
        prefix: str,
        port_labels: Mapping[str, int],
        id_range: tuple[int, int],
    ) -> None:
        self.discovery = discovery
        self.key = f"{prefix}/{ROSTER_KEY}"
        self.port_labels = port_labels
        self.id_range = id_range

    async def read(self) -> Roster | None:
        """The roster, or ``None`` when the cluster has none yet. Unusable: ``UntrustedValue``."""
        entry = await self.discovery.kv_get(self.key)
        if entry is None:
            return None
        return Roster.from_json(
            entry.value, self.port_labels, self.id_range, f"KV {self.key}", entry.modify_index
        )

    async def create(self, voters: Sequence[Voter], origin: str) -> Roster:
        """Create the roster (version 1) unless one exists; the roster that won, either way."""
        proposal = Roster(1, origin, tuple(sorted(voters, key=lambda v: v.member_id)))
        if await self.discovery.kv_create(self.key, proposal.to_json()):
            log.info("wrote the cluster's roster (%s): %s", origin, proposal.describe())
        roster = await self.read()
        if roster is None:
            raise RenderError(f"KV {self.key}: the roster vanished right after it was written")
        return roster

    async def replace(self, roster: Roster, voters: Sequence[Voter]) -> bool:
        """Replace ``roster`` by ``voters`` (next version) if unchanged since it was read.

        ``False``: someone changed it first (read it again and decide again).
        """
        changed = Roster(
            roster.version + 1, "change", tuple(sorted(voters, key=lambda v: v.member_id))
        )
        return await self.discovery.kv_replace(self.key, changed.to_json(), roster.modify_index)

    async def from_claims(
        self, claims: Claims, group: str, expect: int, directory_id: Callable[[int], str]
    ) -> Roster | None:
        """Upgrade: the roster of a cluster formed before rosters, from its ``expect`` lowest
        claims; ``None`` when fewer than ``expect`` claims are left to build it from."""
        mine = sorted(
            (claim for claim, _ in claims.by_id.values() if claim.group == group),
            key=lambda claim: claim.member_id,
        )[:expect]
        if len(mine) < expect:
            return None
        roster = await self.create(
            [Voter(claim.member(), directory_id(claim.member_id)) for claim in mine], "upgrade"
        )
        log.warning(
            "this cluster was formed without a roster (an earlier release): built it from the "
            "id claims, %s",
            roster.describe(),
        )
        return roster


def seat(roster: Roster, member_id: int, me: Me) -> Seat:
    """This member's place in ``roster`` and the member list it renders (see ``Seat``)."""
    mine = Member(member_id, me.address, me.ports, me.owner)
    voter = roster.voter(member_id)
    if voter is None:
        members = sorted([*roster.members(), mine], key=lambda m: m.member_id)
        return Seat(roster, tuple(members), joining=True)
    old = voter.member
    if (old.address, dict(old.ports)) != (me.address, dict(me.ports)):
        log.warning(
            "id %d moved from %s to %s: the other voters still know it at %s until the "
            "service's voters are changed online (reconfig / add-controller: supervise mode) "
            "or they restart with the roster updated",
            member_id,
            old.address,
            me.address,
            old.address,
        )
    members = [mine if m.member_id == member_id else m for m in roster.members()]
    return Seat(roster, tuple(members), joining=False)


def formation_voters(
    members: Sequence[Member], expect: int, directory_id: Callable[[int], str]
) -> list[Voter]:
    """The roster a forming member proposes: the ``expect`` lowest ids among those it sees."""
    chosen = sorted(members, key=lambda m: m.member_id)[:expect]
    return [
        Voter(Member(m.member_id, m.address, m.ports), directory_id(m.member_id)) for m in chosen
    ]
