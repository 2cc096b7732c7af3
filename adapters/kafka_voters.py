"""Kafka KRaft dynamic quorum (KIP-853): ``VoterChanges`` through ``kafka-metadata-quorum``.

Every method runs the metadata quorum tool (the ``quorum_tool`` option: the image's
``kafka-metadata-quorum.sh``, or ``java -cp <jars> org.apache.kafka.tools.MetadataQuorumCommand``)
against the controllers (``--bootstrap-controller h1:9093,h2:9093,...``):

- ``committed``: ``describe --status``; its ``CurrentVoters`` line is JSON
  (``[{"id": 1, "directoryId": "...", "endpoints": ["CONTROLLER://h:9093"]}, ...]``),
  ``CurrentObservers`` the same without endpoints. Kafka has no configuration version: the
  cluster lock orders changes, so ``Committed.version`` is ``""``.
- ``caught_up(id)``: ``describe --replication``, a whitespace table with a header row
  (``NodeId DirectoryId LogEndOffset Lag LastFetchTimestamp LastCaughtUpTimestamp Status``):
  the row of ``id`` as a Follower or Observer with a lag of at most ``CAUGHT_UP_LAG`` records.
  The table is read once per ``KafkaVoterChanges`` (one ``async with`` of the keeper): a
  removal asks it of every voter that stays, one snapshot instead of one JVM start each.
- ``add``: ``--command-config <this member's server.properties> add-controller``. The tool reads
  node.id, the controller listener and the directory id from that file and the
  ``meta.properties`` beside the log dirs, so only the joiner itself can add itself: ``voter``
  must be this member, with the directory id its disk holds (the tool's ``Added controller N
  with directory id D`` line must name that pair, else ``VoterChangeError``).
- ``remove``: ``remove-controller --controller-id N --controller-directory-id D``, from any
  member. Stop the controller first (SERVICES.md, "Day 2 facts").

Every value read back (ids, directory ids, hosts, ports) is validated like Consul's
(``bootstrap.model``); a line that does not parse is a ``VoterChangeError``, never a guess.

Outcomes (the port's contract): the tool's exit 0 is ``True``; a refusal Kafka means as "not now"
(another change pending, no leader or no high watermark yet, a request timed out) is ``False``;
everything else (``DuplicateVoterException`` for an id that votes with another directory,
``VoterNotFoundException``, a static quorum's ``UnsupportedVersionException``, a tool that cannot
run or hangs past ``timeout_s``) is a ``VoterChangeError`` with one line.

Supervise mode: the supervisor reaps every child with ``waitpid(-1)``, so while the server runs
as its child the tool must be started through it. ``run`` is that seam: the adapter passes the
supervisor's ``Child.run_tool`` (``ServicePort.tool_runner``, set by ``bootstrap.day2``); the
default starts the tool with asyncio (fine before the server starts, in tests, and from
``status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap.errors import BootstrapError, UntrustedValue, VoterChangeError
from bootstrap.model import Member, endpoint, valid_address, valid_member_id, valid_port
from bootstrap.ports import ToolRunner
from bootstrap.voters import Committed, Voter, VoterChanges

QUORUM_TOOL_TIMEOUT_S = 60.0
# A joiner fetching alongside the leader's writes trails by a few records at any instant.
CAUGHT_UP_LAG = 100
CONTROLLER_LABEL = "controller"
# Kafka's text form of a UUID: 16 bytes in base64url without padding.
DIRECTORY_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")  # 16 bytes, base64url
_ADDED = re.compile(r"^Added controller (\d{1,6}) with directory id (\S+) ", re.MULTILINE)
_ENDPOINT = re.compile(r"([A-Z][A-Z0-9_]*)://(\[[0-9A-Fa-f:.]+\]|[^:/\[\]]+):(\d{1,5})")
# Refusals a retry can fix (Kafka's error classes, as the tool prints them).
_CONFLICTS = (
    "RequestTimedOutException",  # another voter change pending, or no high watermark yet
    "NotLeaderOrFollowerException",
    "NotControllerException",
    "LeaderNotAvailableException",
    "org.apache.kafka.common.errors.TimeoutException",  # no leader answered within the tool's wait
)

RunResult = tuple[int, str]
Runner = ToolRunner  # (argv, timeout) -> (exit code, output): run_tool, or the supervisor's


async def run_program(
    argv: Sequence[str],
    timeout_s: float,
    *,
    what: str = "the Kafka tool",
    error: type[BootstrapError] = VoterChangeError,
) -> RunResult:
    """Run ``argv`` without a shell: (exit code, stdout and stderr together). ``error`` (one
    line naming ``what``) when it cannot start or runs past ``timeout_s`` (then it is killed).
    The one subprocess runner of the Kafka adapter: its tools and the storage format use it."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        raise error(f"cannot run {what} {argv[0]}: {exc.strerror}") from exc
    try:
        async with asyncio.timeout(timeout_s):
            output, _ = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise error(f"{what} did not finish within {timeout_s:g}s") from None
    assert proc.returncode is not None
    return proc.returncode, output.decode(errors="replace")


async def run_tool(argv: Sequence[str], timeout_s: float) -> RunResult:
    """The default ``Runner``: ``run_program`` with ``VoterChangeError``."""
    return await run_program(argv, timeout_s)


@dataclass(frozen=True)
class Replica:
    """One row of ``describe --replication``."""

    node_id: int
    directory_id: str
    lag: int
    status: str


class KafkaVoterChanges(VoterChanges):
    """The dynamic quorum of one KRaft cluster, seen from one member."""

    def __init__(
        self,
        tool: Sequence[str],
        controllers: Sequence[Member],
        conf_file: Path,
        *,
        id_range: tuple[int, int] = (1, 999),
        listener: str = "CONTROLLER",
        timeout_s: float = QUORUM_TOOL_TIMEOUT_S,
        run: Runner = run_tool,
    ) -> None:
        if not controllers:
            raise VoterChangeError("no controller to ask about the quorum")
        self.tool = list(tool)
        self.bootstrap = ",".join(
            endpoint(m.address, m.port(CONTROLLER_LABEL)) for m in controllers
        )
        self.conf_file = conf_file
        self.id_range = id_range
        self.listener = listener
        self.timeout_s = timeout_s
        self.run = run
        self._replication: list[Replica] | None = None

    # -- the port -------------------------------------------------------------------------------

    async def committed(self) -> Committed:
        output = await self._checked("describe", "--status")
        return parse_status(output, self.id_range, self.listener)

    async def caught_up(self, member_id: int) -> bool:
        if self._replication is None:  # one snapshot per use: the removal asks of each voter
            output = await self._checked("describe", "--replication")
            self._replication = parse_replication(output, self.id_range)
        for replica in self._replication:
            if replica.node_id == member_id and replica.status == "Leader":
                return True  # the log the others catch up with (a joiner is never the leader)
            if replica.node_id == member_id and replica.status in ("Follower", "Observer"):
                return replica.lag <= CAUGHT_UP_LAG
        return False

    async def add(self, voter: Voter, *, version: str) -> bool:
        if not voter.directory_id:
            raise VoterChangeError(
                f"controller {voter.member_id}: add-controller needs the joiner's directory id"
            )
        code, output = await self._run("--command-config", str(self.conf_file), "add-controller")
        if code == 0:
            return self._added_is(voter, output)
        if (
            _error_class(output) == "DuplicateVoterException"
            and voter in (await self.committed()).voters
        ):
            return True  # an earlier attempt got through: the id votes with this very disk
        return self._refused("add-controller", voter, code, output)

    async def remove(self, voter: Voter, *, version: str) -> bool:
        if not DIRECTORY_ID_PATTERN.fullmatch(voter.directory_id):
            raise VoterChangeError(
                f"controller {voter.member_id}: directory id {voter.directory_id[:40]!r} "
                "is not a Kafka directory id"
            )
        code, output = await self._run(
            "remove-controller",
            "--controller-id",
            str(voter.member_id),
            "--controller-directory-id",
            voter.directory_id,
        )
        if code == 0:
            return True
        return self._refused("remove-controller", voter, code, output)

    def _added_is(self, voter: Voter, output: str) -> bool:
        """The tool adds the node its config and disk describe: that must be ``voter``."""
        added = _ADDED.search(output)
        if added is None or (int(added[1]), added[2]) != (voter.member_id, voter.directory_id):
            raise VoterChangeError(
                f"add-controller for controller {voter.member_id} ({voter.directory_id}) "
                f"added another node, or said nothing of it: {_error_line(output)}"
            )
        return True

    # -- running the tool -----------------------------------------------------------------------

    async def _run(self, *args: str) -> RunResult:
        argv = [*self.tool, "--bootstrap-controller", self.bootstrap, *args]
        try:
            return await self.run(argv, self.timeout_s)
        except TimeoutError:  # a runner other than run_tool (the supervisor's); an OSError too
            raise VoterChangeError(
                f"the quorum tool did not finish within {self.timeout_s:g}s"
            ) from None
        except OSError as exc:
            raise VoterChangeError(f"cannot run the quorum tool {argv[0]}: {exc.strerror}") from exc

    async def _checked(self, *args: str) -> str:
        code, output = await self._run(*args)
        if code != 0:
            raise VoterChangeError(
                f"kafka-metadata-quorum {' '.join(args)} failed (exit {code}): "
                f"{_error_line(output)}"
            )
        return output

    def _refused(self, what: str, voter: Voter, code: int, output: str) -> bool:
        error = _error_class(output)
        if error in _CONFLICTS:
            return False
        raise VoterChangeError(
            f"{what} of controller {voter.member_id} ({voter.directory_id}) refused "
            f"(exit {code}): {_error_line(output)}"
        )


async def unregister_broker(
    tool: Sequence[str],
    controllers: Sequence[Member],
    node_id: int,
    *,
    run: Runner = run_tool,
    timeout_s: float = QUORUM_TOOL_TIMEOUT_S,
) -> bool:
    """``kafka-cluster unregister --bootstrap-controller <controllers> --id N``: the broker
    registration of ``node_id`` leaves the cluster's metadata (the ``cluster_tool`` option:
    the image's ``kafka-cluster.sh`` or ``org.apache.kafka.tools.ClusterTool``). ``True``:
    unregistered, or not registered at all (a controller-only joiner, or done by another
    member); ``False``: a refusal a retry may fix; else ``VoterChangeError``."""
    if not controllers:
        raise VoterChangeError("no controller to ask to unregister a broker")
    bootstrap = ",".join(endpoint(m.address, m.port(CONTROLLER_LABEL)) for m in controllers)
    argv = [*tool, "unregister", "--bootstrap-controller", bootstrap, "--id", str(node_id)]
    try:
        code, output = await run(argv, timeout_s)
    except TimeoutError:
        raise VoterChangeError(f"the cluster tool did not finish within {timeout_s:g}s") from None
    except OSError as exc:
        raise VoterChangeError(f"cannot run the cluster tool {argv[0]}: {exc.strerror}") from exc
    if code == 0:
        return True
    error = _error_class(output)
    if error == "BrokerIdNotRegisteredException":
        return True
    if error in _CONFLICTS:
        return False
    raise VoterChangeError(
        f"kafka-cluster unregister --id {node_id} refused (exit {code}): {_error_line(output)}"
    )


# -- parsers (module level: the unit tests feed them hostile output) ---------------------------


def parse_status(output: str, id_range: tuple[int, int], listener: str = "CONTROLLER") -> Committed:
    """``describe --status`` as ``Committed``: voters with their controller endpoint."""
    fields = _fields(output)
    voters_raw = _json_list(fields, "CurrentVoters")
    observers_raw = _json_list(fields, "CurrentObservers") if "CurrentObservers" in fields else []
    voters = [_voter(raw, id_range, listener) for raw in voters_raw]
    ids = [v.member_id for v in voters]
    if not voters or len(set(ids)) != len(ids):
        raise VoterChangeError(f"describe --status: voters {ids} are not one voter per id")
    observers = sorted({_node_id(raw, id_range, "CurrentObservers") for raw in observers_raw})
    return Committed(tuple(sorted(voters, key=lambda v: v.member_id)), tuple(observers))


def parse_replication(output: str, id_range: tuple[int, int]) -> list[Replica]:
    """``describe --replication``'s rows, every value checked; the header names the columns."""
    lines = [line.split() for line in output.splitlines() if line.strip()]
    header_at = next((i for i, cells in enumerate(lines) if cells[:1] == ["NodeId"]), None)
    if header_at is None:
        raise VoterChangeError("describe --replication: no 'NodeId' header in the tool's output")
    header = lines[header_at]
    wanted = ("NodeId", "DirectoryId", "Lag", "Status")
    if len(set(header)) != len(header) or not all(name in header for name in wanted):
        raise VoterChangeError(
            f"describe --replication: unexpected header {' '.join(header)[:200]!r}"
        )
    at = {name: header.index(name) for name in wanted}
    replicas = []
    for cells in lines[header_at + 1 :]:
        if len(cells) != len(header):
            raise VoterChangeError(
                f"describe --replication: row {' '.join(cells)[:200]!r} "
                f"has not {len(header)} columns"
            )
        origin = "describe --replication"
        try:
            node_id = valid_member_id(cells[at["NodeId"]], id_range, origin)
        except UntrustedValue as exc:
            raise VoterChangeError(str(exc)) from None
        lag = cells[at["Lag"]]
        status = cells[at["Status"]]
        if not (lag.isascii() and lag.isdigit() and len(lag) <= 19):
            raise VoterChangeError(f"{origin}: lag {lag[:40]!r} of node {node_id} is not a count")
        if status not in ("Leader", "Follower", "Observer"):
            raise VoterChangeError(f"{origin}: status {status[:40]!r} of node {node_id} is unknown")
        replicas.append(
            Replica(node_id, _directory_id(cells[at["DirectoryId"]], origin), int(lag), status)
        )
    return replicas


def _fields(output: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition(":")
        if sep and re.fullmatch(r"[A-Za-z]+", key):
            if key in fields:
                raise VoterChangeError(f"describe --status: {key} appears twice")
            fields[key] = value.strip()
    return fields


def _json_list(fields: dict[str, str], key: str) -> list[Any]:
    if key not in fields:
        raise VoterChangeError(f"describe --status: no {key} line in the tool's output")
    try:
        value = json.loads(fields[key])
    except ValueError:
        value = None
    if not isinstance(value, list) or len(value) > 1000:
        raise VoterChangeError(
            f"describe --status: {key} is not a JSON list: {fields[key][:100]!r}"
        )
    return value


def _node_id(raw: Any, id_range: tuple[int, int], origin: str) -> int:
    if not isinstance(raw, dict):
        raise VoterChangeError(
            f"describe --status: {origin} entry {str(raw)[:100]!r} is not an object"
        )
    try:
        return valid_member_id(raw.get("id"), id_range, f"describe --status {origin}")
    except UntrustedValue as exc:
        raise VoterChangeError(str(exc)) from None


def _voter(raw: Any, id_range: tuple[int, int], listener: str) -> Voter:
    node_id = _node_id(raw, id_range, "CurrentVoters")
    origin = f"describe --status voter {node_id}"
    if "directoryId" not in raw:
        raise VoterChangeError(
            f"{origin} has no directory id: a static quorum (kraft.version 0), which cannot "
            "change voters online (Kafka 4.x converts it with kafka-features upgrade "
            "--feature kraft.version=1; the agent does not)"
        )
    directory = _directory_id(raw["directoryId"], origin)
    endpoints = raw.get("endpoints")
    if not isinstance(endpoints, list):
        raise VoterChangeError(f"{origin}: endpoints {str(endpoints)[:100]!r} are not a list")
    found = []
    for text in endpoints:
        match = _ENDPOINT.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise VoterChangeError(
                f"{origin}: endpoint {str(text)[:100]!r} is not NAME://host:port"
            )
        if match[1] == listener:
            found.append(match)
    if len(found) != 1:
        raise VoterChangeError(
            f"{origin}: not exactly one {listener} endpoint in {endpoints!r}"[:300]
        )
    try:
        address = valid_address(found[0][2].strip("[]"), origin)
        port = valid_port(found[0][3], origin)
    except UntrustedValue as exc:
        raise VoterChangeError(str(exc)) from None
    return Voter(Member(node_id, address, {CONTROLLER_LABEL: port}), directory)


def _directory_id(value: Any, origin: str) -> str:
    if not isinstance(value, str) or not DIRECTORY_ID_PATTERN.fullmatch(value):
        raise VoterChangeError(f"{origin}: directory id {str(value)[:40]!r} is not a Kafka UUID")
    return value


_EXCEPTION = re.compile(r"\b((?:[a-z][a-z0-9_]*\.)+[A-Z][A-Za-z0-9_]*(?:Exception|Error))\b")


def _error_class(output: str) -> str | None:
    """The Kafka error the tool reported: the innermost class on its first exception line
    (``java.util.concurrent.ExecutionException: org...errors.FooException: text`` is Foo)."""
    line = _error_line(output)
    found = _EXCEPTION.findall(line)
    if not found:
        return None
    name: str = found[-1]
    # Kafka's own TimeoutException (no leader answered) is a conflict; java.util's is not.
    return name if name.endswith(".TimeoutException") else name.rpartition(".")[2]


def _error_line(output: str) -> str:
    """The tool's message: its first line naming an exception (a stack trace follows it), or
    its last line; one printable line of at most 300 characters."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    line = next((x for x in lines if _EXCEPTION.search(x)), lines[-1] if lines else "no output")
    return "".join(c if c.isprintable() else "?" for c in line)[:300]
