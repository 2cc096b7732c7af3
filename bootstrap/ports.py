"""The two ports the core talks through: discovery (Consul) and the service being bootstrapped.

Both are async context managers: connections open in ``__aenter__`` and close in ``__aexit__``,
never at import or construction time. Test doubles subclass these classes.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

from bootstrap.errors import CannotJoin, UsageError
from bootstrap.model import (
    MAX_MEMBER_ID,  # noqa: F401 - moved to model; importable here too
    ClusterView,
    Instance,
    Me,
    Member,
    Rendering,
    SharedValue,
    endpoint,
    local_address,
)

if TYPE_CHECKING:
    from bootstrap.options import OptionSet
    from bootstrap.voters import Voter, VoterChanges

# Runs a program to its end: (argv, timeout in seconds) -> (exit code, its output). Raises
# OSError if it cannot start, TimeoutError if it runs too long. See ServicePort.tool_runner.
ToolRunner = Callable[[Sequence[str], float], Awaitable[tuple[int, str]]]


@dataclass(frozen=True)
class KVEntry:
    """A KV value with the ``ModifyIndex`` a compare-and-set must name to replace it."""

    value: str
    modify_index: int
    session: str | None = None  # the session holding it as a lock, if any


@dataclass(frozen=True)
class HealthCheck:
    """A check attached to a registration. Exactly one of tcp/http/ttl is set."""

    tcp: str | None = None
    http: str | None = None
    ttl: str | None = None
    status: str | None = None  # the initial status (Consul's default: critical)
    interval: str = "10s"
    timeout: str = "2s"
    deregister_critical_after: str = "10m"


@dataclass(frozen=True)
class Registration:
    """A service instance this member registers for itself (when Nomad does not)."""

    service_id: str
    name: str
    address: str
    port: int
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    check: HealthCheck | None = None


@dataclass(frozen=True)
class Group:
    """Another group of members this service's config names (Kafka controllers for brokers,
    the ZooKeeper ensemble for ZooKeeper-mode brokers). The core waits for ``expect`` of them
    and hands them to ``render`` in ``view.groups[name]``.

    ``cluster`` is the KV namespace the group claims its ids in (``None``: this member's own
    cluster, so ids stay unique across both groups); ``consul_service`` is what it registers as.
    """

    name: str
    consul_service: str
    port_labels: Mapping[str, int]
    expect: int
    cluster: str | None = None


@dataclass(frozen=True)
class HealthReport:
    """A member's health as a script check reports it: 0 passing, 1 warning, 2 critical."""

    code: int
    detail: str


@dataclass(frozen=True)
class Observation:
    """One member's running server as ``status`` sees it: its state (leader, follower,
    observer, down, ...) and the voters and observers it reports (``None``: it did not say)."""

    state: str
    voters: tuple[int, ...] | None = None
    observers: tuple[int, ...] = ()


class AsyncResource:
    """Base for ports: ``async with port:`` opens and closes what the port needs."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class DiscoveryPort(AsyncResource, abc.ABC):
    """Where members are found and where the cluster keeps its shared, atomic records.

    Contract for every method:

    - A transient failure (agent unreachable, 5xx, timeout) raises ``ConsulUnavailable``
      after the implementation's own retries, bounded by the run's deadline.
    - A refused request (403) raises ``ConsulDenied`` at once.
    - An answer that is not what the API documents raises ``ConsulBadAnswer``.
    - Losing a compare-and-set race is a normal outcome and returns ``False``; it never
      raises. An error is never reported as ``False``.
    """

    @abc.abstractmethod
    async def instances(
        self, service: str, *, index: int = 0, wait_s: float = 0.0
    ) -> tuple[int, list[Instance]]:
        """Every registered instance of ``service``, in any health state.

        With ``index > 0`` this is a blocking query: it returns when the result may have
        changed or after about ``wait_s`` seconds. Returns the new index (always >= 1).
        """

    @abc.abstractmethod
    async def kv_list(
        self, prefix: str, *, index: int = 0, wait_s: float = 0.0
    ) -> tuple[int, dict[str, KVEntry]]:
        """Every key under ``prefix`` (full key -> entry); blocking like ``instances``."""

    @abc.abstractmethod
    async def kv_get(self, key: str) -> KVEntry | None:
        """The entry at ``key``, or ``None`` if it does not exist."""

    @abc.abstractmethod
    async def kv_create(self, key: str, value: str) -> bool:
        """Create ``key`` only if it does not exist. ``True``: created; ``False``: it existed."""

    @abc.abstractmethod
    async def kv_replace(self, key: str, value: str, modify_index: int) -> bool:
        """Replace ``key`` only if unchanged since ``modify_index``. ``False``: lost the race."""

    @abc.abstractmethod
    async def kv_delete(self, key: str, modify_index: int) -> bool:
        """Delete ``key`` only if unchanged since ``modify_index``. ``False``: lost the race."""

    @abc.abstractmethod
    async def register(self, registration: Registration) -> None:
        """Register (or re-register, idempotently) a service instance with the local agent."""

    @abc.abstractmethod
    async def deregister(self, service_id: str) -> None:
        """Remove a service instance from the local agent; a missing one is not an error."""

    # -- day 2: the cluster lock and health (bootstrap.lock, bootstrap.day2) --

    @abc.abstractmethod
    async def session_create(self, name: str, ttl_s: int, lock_delay_s: int) -> str:
        """A new session that dies ``ttl_s`` after its last renewal (Consul may take up to
        twice that); the locks it held are released and stay refused for ``lock_delay_s``."""

    @abc.abstractmethod
    async def session_renew(self, session_id: str) -> bool:
        """Extend the session's TTL. ``False``: the session no longer exists (it expired)."""

    @abc.abstractmethod
    async def session_destroy(self, session_id: str) -> None:
        """End the session, releasing its locks; a missing session is not an error."""

    @abc.abstractmethod
    async def lock_acquire(self, key: str, session_id: str, value: str) -> bool:
        """Take the lock at ``key`` for the session. ``False``: another session holds it, or
        the lock-delay of a dead holder is still running."""

    @abc.abstractmethod
    async def lock_release(self, key: str, session_id: str) -> bool:
        """Give the lock back. ``False``: the session did not hold it."""

    @abc.abstractmethod
    async def report_health(self, check_id: str, status: str, output: str) -> None:
        """Set a TTL check of the local agent: ``passing``, ``warning`` or ``critical``."""

    async def describe(self) -> dict[str, str]:
        """What ``doctor`` shows of the connection: address, TLS, token (masked), reachability."""
        return {}


class ServicePort(AsyncResource, abc.ABC):
    """One clustered service: how its members are numbered and what its config looks like.

    Subclasses set the class attributes and implement ``render``. ``render`` must be
    deterministic: the same view gives the same bytes on every member. Values in the view that
    came from Consul are already validated; options come from the user.

    Options: an adapter declares ``option_set`` (``bootstrap.options``); ``__init__`` checks the
    given options against it into ``self.opts`` (defaults filled in), calls ``configure`` for
    the checks that span several options, and raises every problem as one ``UsageError``.
    """

    key: ClassVar[str]
    port_labels: ClassVar[Mapping[str, int]]  # label -> default port; the first is primary
    option_set: ClassVar[OptionSet | None] = None  # None: options are not checked (test fakes)
    id_range: tuple[int, int] = (1, 255)  # ids this member may claim; an instance may narrow it
    # Supervise mode re-renders on a cluster change and applies --on-change (bootstrap.day2);
    # such a service takes newcomers by that reload, so its rendering lists every registered
    # member next to the roster's (bootstrap.flow.Start.preview).
    reloads_on_change: ClassVar[bool] = False
    # A voter rescheduled to a new address (the roster names another) is re-added there before
    # its server starts (``VoterKeeper.move_first``): a server started first would take the
    # committed config from its peers, which names it at the old address (ZooKeeper). False:
    # the server starts at once and the keeper re-adds it while it runs.
    moves_before_start: ClassVar[bool] = False
    # Supervise mode sets it to the supervisor's ``Child.run_tool``: while the server is the
    # agent's child, the supervisor reaps every exit, so a program the adapter runs meanwhile
    # (Kafka's quorum tool) must start through it. ``None``: the adapter starts it itself.
    tool_runner: ToolRunner | None = None

    def __init__(
        self, options: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> None:
        self.options = dict(options)
        self.environ = dict(environ or {})
        problems: list[str] = []
        given = self.image_options(self.options, problems)
        option_set = type(self).option_set
        self.opts: dict[str, Any] = option_set.check(given, problems) if option_set else dict(given)
        self.configure(problems)
        if problems:
            raise UsageError(problems)

    def image_options(self, options: Mapping[str, Any], problems: list[str]) -> Mapping[str, Any]:
        """``options`` with what the service's official image reads from ``self.environ``
        (ZooKeeper's ``ZOO_*``) beneath them; the given options win. Checked like options."""
        return options

    def configure(self, problems: list[str]) -> None:
        """Derive what the adapter needs from ``self.opts``; append each problem found."""
        return None

    @classmethod
    def primary_port(cls) -> str:
        return next(iter(cls.port_labels))

    def member_id_on_disk(self, me: Me) -> int | None:
        """The id a previous start left on disk (myid, meta.properties), or ``None``."""
        return None

    def related_groups(self) -> Sequence[Group]:
        """Other groups whose members this member's config must name (none by default)."""
        return ()

    def shared_values(self) -> Sequence[SharedValue]:
        """Values created once for the whole cluster (cluster id, cookie)."""
        return ()

    def health_check(self, me: Me) -> HealthCheck | None:
        """The check to attach when this member registers itself.

        It must not hide a member from its peers before the cluster exists: discovery counts
        members in any health state.
        """
        return HealthCheck(tcp=endpoint(me.address, me.ports[self.health_label()]))

    def health_label(self) -> str:
        """The port whose listener says the member is up (the primary one by default)."""
        return self.primary_port()

    async def health(self, me: Me) -> HealthReport:
        """This member's health, for ``cluster-bootstrap health`` as a script check.

        The default only asks whether the ``health_label`` port accepts connections.
        """
        host, port = local_address(me.bind_address), me.bind_ports[self.health_label()]
        try:
            async with asyncio.timeout(2.0):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            return HealthReport(2, f"down: nothing listens on {host}:{port}")
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return HealthReport(0, f"up: {host}:{port} accepts connections")

    def voter_changes(self, view: ClusterView) -> VoterChanges | None:
        """This member's handle on the service's online voter changes (``bootstrap.voters``).

        ``None`` (the default): the service cannot change its voters while it runs.
        """
        return None

    def unregisters(self) -> bool:
        """Whether ``unregister`` can make the running service forget a member (``False``, the
        default: it keeps nothing of one that left). Supervise mode runs the keeper for such a
        service even when its voters cannot change online (a static Kafka quorum's brokers)."""
        return False

    async def unregister(self, view: ClusterView, member: Member) -> bool | None:
        """Make the running service forget ``member``: a member of this cluster that is not a
        voter (a Kafka broker-only member, a joiner never promoted) and whose registration has
        been gone for longer than ``--remove-after``. The core (``bootstrap.keeper``) decides
        when, under the cluster lock, from fresh reads; this says how. Runs through
        ``tool_runner`` in supervise mode.

        ``True``: the service no longer lists it (or never did); ``False``: not now (tried
        again later); ``VoterChangeError``: refused. ``None`` (the default): the service keeps
        nothing of a member that left, so the core leaves it, and its id claim, alone.
        """
        return None

    # -- the roster (bootstrap.roster) ------------------------------------------------------

    def votes(self) -> bool:
        """True (the default) when this member is one of its cluster's voters, and so on the
        roster. A member that never votes (a Kafka broker-only member) starts as before."""
        return True

    def voter_directory_id(self, member_id: int, shared: Mapping[str, str]) -> str:
        """What the roster records as voter ``member_id``'s directory id ("" by default; Kafka's
        dynamic quorum names each controller's metadata directory)."""
        return ""

    def own_voter(self, view: ClusterView) -> Voter:
        """This member as the voter it asks to become (a joiner) or to stay at its current
        address (a moved member). Kafka adds the directory id its storage was formatted with."""
        from bootstrap.voters import Voter  # voters imports ports: not at module level

        me = view.me
        return Voter(Member(view.member_id, me.address, me.ports, me.owner))

    def joiner_form(self, view: ClusterView) -> str:
        """How a member outside the roster (``view.joining``) starts, in a few words for the
        log: its non-voting form, waiting to be promoted.

        Raise ``CannotJoin`` with one line that names the fix where the service cannot take a
        new voter online; the default does, since a service that says nothing cannot.
        """
        raise CannotJoin(
            f"id {view.member_id} is not in the formed cluster's roster and the {self.key} "
            "adapter cannot add a member online: start it with a roster member's id"
        )

    async def observe(self, member: Member) -> Observation | None:
        """The running server of ``member`` as it sees the cluster, for ``status``; ``None``
        (the default) where the service has nothing to ask."""
        return None

    @abc.abstractmethod
    def render(self, view: ClusterView) -> Rendering:
        """Files and environment for this member. Raise ``RenderError`` when impossible."""

    async def prepare(
        self, view: ClusterView, rendering: Rendering, command: Sequence[str]
    ) -> None:
        """Steps before exec, after the files are written (e.g. format storage once).

        Raise ``PrepareError`` on failure.
        """
        return None
