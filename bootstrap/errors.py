"""The one exception tree of cluster-bootstrap, and the exit code of each branch.

::

    BootstrapError                  1  unexpected (a bug: please report it)
    ├── UsageError                  2  bad flag, bad config file, bad environment
    ├── ConsulError
    │   ├── ConsulUnavailable       3  agent unreachable / 5xx / timeouts past the deadline
    │   ├── ConsulDenied            4  the agent refused the token (HTTP 403, ACL)
    │   └── ConsulBadAnswer         9  an answer that is not what the API documents
    ├── PeersMissing                5  fewer members than expected when the deadline passed
    ├── RenderError                 6  the configuration cannot be rendered
    │   └── UntrustedValue          6  a value read from Consul failed validation
    ├── MemberIdError               7  no stable member id (range full, id on disk owned by another)
    ├── PrepareError                8  a service's preparation step failed (e.g. storage format)
    ├── CannotJoin                 10  a newcomer to a formed cluster the service cannot take online
    ├── VoterChangeError           11  the service refused an online voter change (not a conflict)
    ├── LockBusy                    -  another member held the cluster lock past the voter
    │                                  keeper's patience (never an exit: it looks again)
    └── ExecError                 126  the command after ``--`` cannot be executed
        └── CommandNotFound       127  the command after ``--`` does not exist

Adapters translate library errors into this tree with ``raise ... from exc``.
Only ``ConsulUnavailable`` is transient: retries retry it and nothing else.
Every error prints one line on stderr (``--debug`` adds the traceback).
"""

from __future__ import annotations


class BootstrapError(Exception):
    """Base of every error cluster-bootstrap raises on purpose."""

    exit_code: int = 1


class UsageError(BootstrapError):
    """A flag, config file or environment variable is wrong; ``problems`` lists each one."""

    exit_code = 2

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class ConsulError(BootstrapError):
    """Something went wrong while talking to the Consul agent."""


class ConsulUnavailable(ConsulError):
    """The agent could not be reached or answered 5xx: transient until the deadline passes."""

    exit_code = 3


class ConsulDenied(ConsulError):
    """The agent answered 403: the token lacks a permission. Never retried."""

    exit_code = 4


class ConsulBadAnswer(ConsulError):
    """The agent answered something the API does not document (not JSON, wrong shape, too big)."""

    exit_code = 9


class PeersMissing(BootstrapError):
    """The deadline passed before the expected number of members had registered."""

    exit_code = 5


class RenderError(BootstrapError):
    """The service's configuration cannot be rendered from what is known."""

    exit_code = 6


class UntrustedValue(RenderError):
    """A value that came from Consul (address, port, id, ...) failed validation."""


class MemberIdError(BootstrapError):
    """No stable member id can be had: the range is full or the id on disk is someone else's."""

    exit_code = 7


class PrepareError(BootstrapError):
    """A step the service needs before it starts (writing myid, formatting storage) failed."""

    exit_code = 8


class CannotJoin(BootstrapError):
    """A member outside the roster would have to vote, and the service cannot add a voter
    online (ZooKeeper without reconfig, Kafka static voters). The message names the fix."""

    exit_code = 10


class VoterChangeError(BootstrapError):
    """The service refused an online voter change for a reason a retry will not fix."""

    exit_code = 11


class LockBusy(BootstrapError):
    """Another member held the cluster lock longer than the waiter's patience
    (``ClusterLock.hold(patience_s=...)``); nothing is held. Only the voter keeper waits with
    patience, and it looks at the cluster again: never an exit."""


class ExecError(BootstrapError):
    """The command after ``--`` exists but cannot be executed."""

    exit_code = 126


class CommandNotFound(ExecError):
    """The command after ``--`` is not on PATH (or the path does not exist)."""

    exit_code = 127


EXIT_CODES: dict[int, str] = {
    0: "never seen on success: the service's own command replaces cluster-bootstrap "
    "(with `--supervise`: the server's own exit code, 128+N for signal N)",
    1: "unexpected internal error (a bug)",
    UsageError.exit_code: "usage or configuration error (flags, config file, environment)",
    ConsulUnavailable.exit_code: "Consul agent unreachable (or answering 5xx) until the deadline",
    ConsulDenied.exit_code: "Consul refused the request (ACL: the token lacks a permission)",
    PeersMissing.exit_code: "expected peers not registered by the deadline "
    "(malformed registrations are named, not counted)",
    RenderError.exit_code: "render error (including an untrusted shared value from Consul)",
    MemberIdError.exit_code: "no stable member id (range full, or id on disk owned by another)",
    PrepareError.exit_code: "service preparation failed (e.g. Kafka storage format)",
    ConsulBadAnswer.exit_code: "Consul answered something that is not what its API documents",
    CannotJoin.exit_code: "a newcomer to a formed cluster cannot join as the service is set up",
    VoterChangeError.exit_code: "the service refused an online membership change",
    ExecError.exit_code: "the command after -- cannot be executed",
    CommandNotFound.exit_code: "the command after -- was not found",
    130: "interrupted (SIGINT)",
}
