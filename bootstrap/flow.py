"""One start, step by step (README, "One start, step by step").

who am I -> member id -> register -> shared values -> roster (day 1: wait for peers and write
it; day 2: read it) -> render -> write -> prepare -> exec. The ports are handed in; this
module never imports an adapter.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bootstrap.deadline import Deadline
from bootstrap.errors import CommandNotFound, ExecError, RenderError, UsageError
from bootstrap.files import write_all
from bootstrap.health import supervised_check
from bootstrap.log import log, redact
from bootstrap.membership import Membership
from bootstrap.model import MAX_MEMBER_ID, ClusterView, Me, Member, Rendering
from bootstrap.ports import DiscoveryPort, Group, Registration, ServicePort
from bootstrap.roster import Roster, Rosters, Seat, formation_voters, seat
from bootstrap.settings import Settings

SHARED_MAX_LEN = 4096


def resolve_command(command: Sequence[str], env: Mapping[str, str]) -> str:
    """The executable for ``command``, checked before anything is written or claimed."""
    if not command:
        raise UsageError("no command after '--' (the server to exec once the config is written)")
    program = command[0]
    if os.sep in program:
        path = Path(program)
        if not path.exists():
            raise CommandNotFound(f"command not found: {program}")
        if path.is_dir() or not os.access(path, os.X_OK):
            raise ExecError(f"command is not executable: {program}")
        return program
    found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        raise CommandNotFound(f"command not found on PATH: {program}")
    return found


def who_am_i(settings: Settings) -> Me:
    return Me(
        owner=settings.member_name,
        address=settings.address,
        ports=settings.ports,
        bind_address=settings.bind_address,
        bind_ports=settings.bind_ports,
        data_dir=settings.data_dir,
        conf_dir=settings.conf_dir,
        alloc_index=settings.alloc_index,
    )


@dataclass(frozen=True)
class Plan:
    """What a start has decided: the view it rendered from and the rendering itself."""

    view: ClusterView
    rendering: Rendering
    status: tuple[str, ...] = ()  # a preview's account of who is missing (one line per group)


class Start:
    """One start of one member, over a discovery port and a service port."""

    def __init__(
        self,
        settings: Settings,
        discovery: DiscoveryPort,
        service: ServicePort,
        deadline: Deadline,
    ) -> None:
        self.settings = settings
        self.discovery = discovery
        self.service = service
        self.deadline = deadline
        self.me = who_am_i(settings)
        self.membership = Membership(
            discovery,
            prefix=settings.cluster_prefix,
            consul_service=settings.consul_service,
            port_labels=type(service).port_labels,
            id_range=service.id_range,
            tags=settings.tags,
            meta=settings.meta,
        )
        self.groups = {
            group.name: (
                group,
                Membership(
                    discovery,
                    prefix=f"{settings.kv_prefix}/{group.cluster or settings.cluster}",
                    consul_service=group.consul_service,
                    port_labels=group.port_labels,
                    id_range=service.id_range,
                    tags=settings.tags,
                    meta=settings.meta,
                ),
            )
            for group in service.related_groups()
        }
        self.rosters = Rosters(
            discovery,
            prefix=settings.cluster_prefix,
            port_labels=type(service).port_labels,
            id_range=service.id_range,
        )

    async def plan(self) -> Plan:
        """Claim an id, register, agree on shared values, find this member's seat in the
        roster (day 1: wait for the peers and write the roster), render."""
        disk_id = self.service.member_id_on_disk(self.me)
        known = await self.rosters.read() if disk_id is None and self.service.votes() else None
        retired = self.retired_ids(disk_id, known)
        if retired:
            await self._say_retired(known, retired)
        member_id = await self.membership.obtain_id(
            self.me, disk_id, str(self.me.data_dir), retired
        )
        if self.settings.register:
            await self.discovery.register(self.registration(member_id))
        shared = await self.shared_values(create=True)
        roster = await self.formed_roster(disk_id, shared)
        if roster is None:
            members = await self.membership.wait_for(member_id, self.settings.expect, self.deadline)
            if self.service.votes():
                roster = await self.rosters.create(
                    formation_voters(members, self.settings.expect, self._directory_id(shared)),
                    "formation",
                )
        place = seat(roster, member_id, self.me) if roster else Seat(None, members, False)
        groups = {
            name: await self.group_members(group, membership)
            for name, (group, membership) in self.groups.items()
        }
        return self._render(member_id, place, shared, groups)

    def retired_ids(self, disk_id: int | None, roster: Roster | None) -> frozenset[int]:
        """Roster voters this member must not claim again with an empty disk: those whose
        identity includes their disk (a directory id: a Kafka dynamic quorum) and whose entry
        names another address. Such a member is a lost voter's replacement on a new disk
        (Nomad reschedules a lost alloc under the same name): under the old id it would take
        the lost disk's seat with an empty log (its derived directory id), and Kafka cannot
        add a second directory under one id before the old one is removed, below the floor.
        So it joins under a new id, is promoted, and the old pair is removed after
        --remove-after (its claim, still this member's, released then). A voter whose disk
        moved with it keeps its id (the disk names it); one on an empty disk at the same
        address is not told apart from a formation member."""
        if disk_id is not None or roster is None:
            return frozenset()
        return frozenset(
            v.member_id
            for v in roster.voters
            if v.directory_id and v.member.address != self.me.address
        )

    async def _say_retired(self, roster: Roster | None, retired: frozenset[int]) -> None:
        """One warning per retired voter whose id claim is this member's (``plan`` only)."""
        _, claims = await self.membership.read_claims()
        mine = {claim.member_id for claim in claims.owned_by(self.me.owner)}
        for voter in roster.voters if roster is not None else ():
            if voter.member_id in retired and voter.member_id in mine:
                log.warning(
                    "id %d (this member's claim) votes at %s with directory id %s, but this "
                    "disk is empty: a replacement on a new disk joins under a new id; the old "
                    "voter is removed once it has been lost for --remove-after",
                    voter.member_id,
                    voter.member.address,
                    voter.directory_id,
                )

    async def formed_roster(self, disk_id: int | None, shared: dict[str, str]) -> Roster | None:
        """The roster of a cluster that already formed; ``None`` on day 1 (or for a member
        that never votes). A member with an id on disk and no roster upgrades the cluster."""
        if not self.service.votes():
            return None
        roster = await self.rosters.read()
        if roster is None and disk_id is not None:
            _, claims = await self.membership.read_claims()
            roster = await self.rosters.from_claims(
                claims, self.settings.consul_service, self.settings.expect,
                self._directory_id(shared),
            )  # fmt: skip
        if roster is not None:
            log.info("the cluster is formed (roster %s): no waiting", roster.describe())
        return roster

    async def group_members(self, group: Group, membership: Membership) -> tuple[Member, ...]:
        """Another group's voters: from its roster once it formed, else wait for them."""
        rosters = Rosters(
            self.discovery,
            prefix=f"{self.settings.kv_prefix}/{group.cluster or self.settings.cluster}",
            port_labels=group.port_labels,
            id_range=(0, MAX_MEMBER_ID),
        )
        roster = await rosters.read()
        if roster is not None:
            return roster.members()
        return await membership.wait_for(None, group.expect, self.deadline)

    def _directory_id(self, shared: dict[str, str]) -> Callable[[int], str]:
        return lambda member_id: self.service.voter_directory_id(member_id, shared)

    async def preview(self) -> Plan:
        """What ``plan`` would decide now, changing nothing in Consul and not waiting."""
        disk_id = self.service.member_id_on_disk(self.me)
        roster = await self.rosters.read() if self.service.votes() else None
        member_id = await self.membership.preview_id(
            self.me, disk_id, str(self.me.data_dir), self.retired_ids(disk_id, roster)
        )
        found = await self.membership.survey()
        status = [self.membership.status(found, member_id, self.settings.expect)]
        members = list(found.members)
        if member_id not in {m.member_id for m in members}:
            members.append(Member(member_id, self.me.address, self.me.ports, self.me.owner))
            members.sort(key=lambda m: m.member_id)
        place = seat(roster, member_id, self.me) if roster else Seat(None, tuple(members), False)
        if roster and type(self.service).reloads_on_change:
            # A service that takes newcomers by re-rendering (no vote) lists every registered
            # member next to the roster's: this is how supervise mode's reload admits them.
            known = {m.member_id for m in place.members}
            more = [m for m in members if m.member_id not in known]
            everyone = sorted([*place.members, *more], key=lambda m: m.member_id)
            place = Seat(roster, tuple(everyone), place.joining)
        groups = {}
        for name, (group, membership) in self.groups.items():
            group_found = await membership.survey()
            status.append(membership.status(group_found, None, group.expect))
            groups[name] = tuple(group_found.members)
        shared = await self.shared_values(create=False)
        plan = self._render(member_id, place, shared, groups)
        return Plan(plan.view, plan.rendering, tuple(status))

    def registration(self, member_id: int) -> Registration:
        primary = type(self.service).primary_port()
        return Registration(
            service_id=f"{self.settings.consul_service}-{member_id}",
            name=self.settings.consul_service,
            address=self.me.address,
            port=self.me.ports[primary],
            tags=self.settings.tags,
            meta={
                **self.settings.meta,
                "cluster-bootstrap-id": str(member_id),
                "cluster-bootstrap-cluster": self.settings.cluster,
            },
            check=supervised_check()
            if self.settings.supervise
            else self.service.health_check(self.me),
        )

    async def shared_values(self, *, create: bool) -> dict[str, str]:
        """Each shared value: read it, or create it first (CAS) and read back the winner's."""
        values = {}
        for spec in self.service.shared_values():
            key = f"{self.settings.cluster_prefix}/shared/{spec.name}"
            entry = await self.discovery.kv_get(key)
            if entry is None:
                fresh = spec.create()
                if spec.secret:
                    redact(fresh)
                if not create:
                    log.info(
                        "shared value %r does not exist yet; a start would create it", spec.name
                    )
                    values[spec.name] = fresh
                    continue
                if await self.discovery.kv_create(key, fresh):
                    log.info("created the cluster's shared value %r", spec.name)
                entry = await self.discovery.kv_get(key)
                if entry is None:
                    raise RenderError(f"shared value {key!r} vanished right after it was created")
            value = _valid_shared(entry.value, key)
            if spec.secret:
                redact(value)
            values[spec.name] = value
        return values

    def _render(
        self,
        member_id: int,
        place: Seat,
        shared: dict[str, str],
        groups: dict[str, tuple[Member, ...]],
    ) -> Plan:
        view = ClusterView(
            self.me, member_id, place.members, shared, self.settings.options, groups, place.joining
        )
        if place.joining and place.roster is not None:
            form = self.service.joiner_form(view)
            log.warning(
                "id %d is not in the roster (%s): it joins as %s, and waits to be promoted to "
                "voter (by the service's online change; supervise mode does it)",
                member_id,
                place.roster.describe(),
                form,
            )
        rendering = self.service.render(view)
        for name in rendering.secret_env:
            redact(rendering.env.get(name))
        return Plan(view, rendering)

    async def write(self, plan: Plan) -> None:
        """Write the rendered files atomically, then run the service's preparation."""
        for path in write_all(plan.rendering.files):
            log.info("wrote %s", path)
        await self.service.prepare(plan.view, plan.rendering, self.settings.command)


def _valid_shared(value: str, key: str) -> str:
    # U+FFFD: the agent sent bytes that are not UTF-8 (decoded with errors="replace").
    if not value or len(value) > SHARED_MAX_LEN or not value.isprintable() or "\ufffd" in value:
        raise RenderError(f"KV {key}: shared value is empty, too long or not printable")
    return value


# The agent's credentials are not the server's: they do not cross the exec.
AGENT_ONLY_ENV = ("CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "CONSUL_HTTP_AUTH")


def child_env(rendering: Rendering) -> dict[str, str]:
    """The server's environment: ours without the agent's credentials, plus the rendered one."""
    return {k: v for k, v in os.environ.items() if k not in AGENT_ONLY_ENV} | dict(rendering.env)


def exec_command(program: str, command: Sequence[str], rendering: Rendering) -> None:
    """Replace this process with the service (it becomes PID 1 in a container)."""
    env = child_env(rendering)
    log.info("exec %s", " ".join(command))
    try:
        os.execve(program, list(command), env)
    except OSError as exc:
        raise ExecError(f"cannot exec {program}: {exc.strerror}") from exc
