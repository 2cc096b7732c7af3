"""The service's own online membership changes: the room day 2 acts through.

A service that can change its voters while it runs (ZooKeeper dynamic reconfig, Kafka
KIP-853 dynamic quorum) hands the core a ``VoterChanges`` for one member
(``ServicePort.voter_changes``). The core decides *what* changes and *when*: one change at a
time, cluster-wide, under the cluster lock, never below the floor, and it updates the roster
only after the service confirmed. This port says *how*, and what the service itself has
committed. A service that cannot change voters online returns ``None`` from
``voter_changes``; a would-be voter then fails with a clear line instead of running with a
server list of its own.

Contract for every method:

- ``True``: the service confirmed the change: its committed configuration now has (``add``)
  or no longer has (``remove``) the voter.
- ``False``: a conflict the caller retries after a backoff, inside its deadline: another change
  is in progress, the configuration version moved since ``version`` (compare-and-set lost), or
  the new configuration has no connected quorum yet.
- ``VoterChangeError``: the service refused for a reason a retry will not fix, or could not be
  reached before the deadline. Never reported as ``False``.

Values read back from the service (addresses, ports, ids) are validated like Consul's
(``bootstrap.model``) before they reach a file or a decision.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from bootstrap.model import Member
from bootstrap.ports import AsyncResource


@dataclass(frozen=True)
class Voter:
    """A voting member as the service knows it: the member, and (Kafka) its directory id."""

    member: Member
    directory_id: str = ""

    @property
    def member_id(self) -> int:
        return self.member.member_id


@dataclass(frozen=True)
class Committed:
    """The membership the service has committed: voters (sorted by id), observers, version.

    ``version`` is the service's own configuration version (ZooKeeper's ``version=`` line),
    ``""`` where the service has none (Kafka: one change at a time is the lock's job).
    """

    voters: tuple[Voter, ...]
    observers: tuple[int, ...] = ()
    version: str = ""

    def voter_ids(self) -> list[int]:
        return [voter.member_id for voter in self.voters]


class VoterChanges(AsyncResource, abc.ABC):
    """Online voter changes of one running service, seen from one member."""

    @abc.abstractmethod
    async def committed(self) -> Committed:
        """What the running service has committed now."""

    @abc.abstractmethod
    async def caught_up(self, member_id: int) -> bool:
        """True once ``member_id`` has synced enough to vote: a joiner running as a non-voter,
        or a voter that stays when another is removed. The leader is always caught up."""

    @abc.abstractmethod
    async def add(self, voter: Voter, *, version: str) -> bool:
        """Make ``voter`` a voter (or move its id to a new address). See the module contract."""

    @abc.abstractmethod
    async def remove(self, voter: Voter, *, version: str) -> bool:
        """Take ``voter`` out of the voters. See the module contract."""
