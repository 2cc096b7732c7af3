"""``cluster-bootstrap status <service>``: what an operator reads on day 2.

Side by side: the roster (who is in the cluster), the id claims (who owns an id, where), the
registrations with their health (who is alive), and, where the service answers, each server's
own view (ZooKeeper ``srvr`` and ``conf``). Every place where two of them disagree is marked,
in words that say what it means. Nothing is written: it only reads.

Exit code: 0 when everything agrees, 1 when a disagreement is marked (for scripts), the usual
codes when Consul cannot be asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bootstrap.errors import UntrustedValue
from bootstrap.membership import Membership
from bootstrap.model import Claim, Instance, Member, valid_address, valid_port
from bootstrap.ports import DiscoveryPort, Observation, ServicePort
from bootstrap.roster import Roster, Rosters


@dataclass
class Status:
    """The report: plain data, printed as text or JSON."""

    cluster: str
    consul_service: str
    roster: dict[str, Any] | None = None
    claims: list[dict[str, Any]] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    servers: list[dict[str, Any]] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "consul_service": self.consul_service,
            "roster": self.roster,
            "claims": self.claims,
            "registrations": self.registrations,
            "servers": self.servers,
            "disagreements": self.disagreements,
        }

    def text(self) -> str:
        out = [f"cluster {self.cluster!r} (Consul service {self.consul_service!r})"]
        if self.roster is None:
            out.append("roster: none")
        else:
            r = self.roster
            out.append(f"roster: version {r['version']} ({r['origin']})")
            out += [f"  voter {v['id']}  {v['address']}  {v['directory_id']}" for v in r["voters"]]
        out.append("claims:")
        out += [f"  id {c['id']}  {c['address']}  owner {c['owner']}" for c in self.claims]
        out.append("registrations:")
        out += [
            f"  {g['service_id']}  {g['address']}:{g['port']}  {g['health'] or '?'}  "
            f"id {g['member_id'] if g['member_id'] is not None else '-'}"
            for g in self.registrations
        ]
        if self.servers:
            out.append("servers (their own view):")
            for s in self.servers:
                voters = "?" if s["voters"] is None else ",".join(map(str, s["voters"]))
                observers = ",".join(map(str, s["observers"])) or "-"
                out.append(
                    f"  id {s['member_id']}  {s['state']}  voters {voters}  observers {observers}"
                )
        if self.disagreements:
            out.append("DISAGREEMENTS:")
            out += [f"  ! {d}" for d in self.disagreements]
        else:
            out.append("everything agrees")
        return "\n".join(out) + "\n"


async def gather(
    discovery: DiscoveryPort,
    service: ServicePort,
    membership: Membership,
    rosters: Rosters,
    cluster: str,
) -> Status:
    """Read roster, claims and registrations, ask the servers, and mark the disagreements."""
    report = Status(cluster, membership.consul_service)
    marks = report.disagreements
    roster = await _roster(rosters, marks)
    _, claims = await membership.read_claims()
    _, instances = await discovery.instances(membership.consul_service)
    mine = {
        claim.member_id: claim
        for claim, _ in claims.by_id.values()
        if claim.group == membership.consul_service
    }
    report.claims = [_claim_json(claim) for claim in sorted(mine.values(), key=_by_id)]
    registered = _registrations(instances, mine, membership, report)
    if roster is not None:
        report.roster = _roster_json(roster)
        _compare_roster(roster, mine, registered, marks)
    marks += [f"id {n} is unusable in KV: {membership.claim_key(n)}" for n in claims.unusable]
    for member in _to_ask(roster, mine, registered):
        seen = await service.observe(member)
        if seen is not None:
            report.servers.append(_server_json(member.member_id, seen))
            if roster is not None:
                _compare_server(member.member_id, seen, roster, marks)
    return report


async def _roster(rosters: Rosters, marks: list[str]) -> Roster | None:
    try:
        roster = await rosters.read()
    except UntrustedValue as exc:
        marks.append(f"the roster is unusable: {exc}")
        return None
    if roster is None:
        marks.append(
            "no roster: the cluster has not formed yet, or an earlier release formed it (the "
            "next start of a member with its data builds the roster from the claims)"
        )
    return roster


def _registrations(
    instances: Sequence[Instance],
    mine: Mapping[int, Claim],
    membership: Membership,
    report: Status,
) -> dict[int, Instance]:
    """Registrations (listed in the report), and which claimed id each belongs to."""
    by_endpoint = {(c.address, c.ports[membership.primary]): c.member_id for c in mine.values()}
    registered: dict[int, Instance] = {}
    for instance in instances:
        if not instance.matches(membership.tags, membership.meta):
            continue
        origin = f"Consul registration {instance.describe()!r}"
        try:
            endpoint = (valid_address(instance.address, origin), valid_port(instance.port, origin))
        except UntrustedValue as exc:
            report.disagreements.append(str(exc))
            continue
        member_id = by_endpoint.get(endpoint)
        report.registrations.append(
            {
                "service_id": instance.service_id,
                "node": instance.node,
                "address": endpoint[0],
                "port": endpoint[1],
                "health": instance.health,
                "member_id": member_id,
            }
        )
        if member_id is None:
            report.disagreements.append(
                f"registration {instance.service_id} ({endpoint[0]}:{endpoint[1]}) has no id "
                "claim: a member still starting, or not one of this cluster's"
            )
        else:
            registered[member_id] = instance
    return registered


def _compare_roster(
    roster: Roster,
    mine: Mapping[int, Claim],
    registered: Mapping[int, Instance],
    marks: list[str],
) -> None:
    for voter in roster.voters:
        n, known = voter.member_id, voter.member.address
        claim = mine.get(n)
        if claim is None:
            marks.append(f"voter {n} ({known}) has no id claim")
        elif claim.address != known:
            marks.append(
                f"voter {n} moved: its claim says {claim.address}, the roster and the other "
                f"voters still know {known} (an online voter change fixes it)"
            )
        if n not in registered:
            marks.append(f"voter {n} ({known}) is not registered: down or gone")
        elif registered[n].health == "critical":
            marks.append(f"voter {n} ({known}) is registered but its checks are critical")
    for n in sorted(set(registered) - set(roster.ids())):
        marks.append(
            f"id {n} ({mine[n].address}) runs but is not in the roster: a joiner, not a voter "
            "until it is promoted"
        )


def _to_ask(
    roster: Roster | None, mine: Mapping[int, Claim], registered: Mapping[int, Instance]
) -> list[Member]:
    """Every roster voter (at its claimed address) and every registered joiner."""
    ids = sorted(set(roster.ids() if roster else ()) | set(registered))
    members = []
    for n in ids:
        if n in mine:
            members.append(mine[n].member())
        elif roster is not None and (voter := roster.voter(n)) is not None:
            members.append(voter.member)
    return members


def _compare_server(member_id: int, seen: Observation, roster: Roster, marks: list[str]) -> None:
    if seen.state == "down":
        if roster.voter(member_id) is not None:
            marks.append(f"voter {member_id}: its server does not answer")
        return
    if seen.voters is not None and list(seen.voters) != roster.ids():
        marks.append(
            f"id {member_id}: its server runs with voters {list(seen.voters)}, "
            f"the roster says {roster.ids()}"
        )


def _by_id(claim: Claim) -> int:
    return claim.member_id


def _claim_json(claim: Claim) -> dict[str, Any]:
    return {
        "id": claim.member_id,
        "owner": claim.owner,
        "address": claim.address,
        "ports": dict(claim.ports),
    }


def _roster_json(roster: Roster) -> dict[str, Any]:
    return {
        "version": roster.version,
        "origin": roster.origin,
        "voters": [
            {
                "id": v.member_id,
                "address": v.member.address,
                "ports": dict(v.member.ports),
                "directory_id": v.directory_id,
            }
            for v in roster.voters
        ],
    }


def _server_json(member_id: int, seen: Observation) -> dict[str, Any]:
    return {
        "member_id": member_id,
        "state": seen.state,
        "voters": None if seen.voters is None else list(seen.voters),
        "observers": list(seen.observers),
    }
