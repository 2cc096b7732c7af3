"""ZooKeeper 3.8 / 3.9: zoo.cfg with one identical server list on every member, and myid.

Rendered ``zoo.cfg`` (static ensemble)::

    tickTime=2000 ... dataDir=/data
    standaloneEnabled=false          # one server line must never mean "standalone forever"
    quorumListenOnAllIPs=true        # when binding 0.0.0.0: the advertised host IP is not ours
    4lw.commands.whitelist=srvr,mntr,ruok,conf
    admin.enableServer=false
    server.1=10.0.0.1:2888:3888;2181 # identical on every member, sorted by id

ZooKeeper binds the client address of its own server line, so with a specific bind address
(several members on one machine) each line carries its member's address: ``;10.0.0.1:2181``.

With ``reconfig`` on, the ensemble can change its voters online (``ZooKeeperVoters``, the
``VoterChanges`` port of ``bootstrap.voters``) and the agent is ZooKeeper's superuser: a password
created once per cluster (a secret shared value, CAS, never logged), written 0600 to
``<conf dir>/super.password``; the server gets only its digest, as
``-Dzookeeper.DigestAuthenticationProvider.superDigest=super:<digest>`` appended to
``SERVER_JVMFLAGS`` (the variable the image's ``zkServer.sh`` reads). Never ``skipACL``.

Options: ``tick_time``, ``init_limit``, ``sync_limit``, ``datalog_dir``, ``four_letter_words``,
``admin_server`` (bool), ``reconfig`` (bool: ``reconfigEnabled`` with a dynamic file seeded on
the first start and never rewritten: ZooKeeper owns both files from then on), ``conf_file``,
``extra`` (a mapping of further zoo.cfg keys, like the official image's ZOO_CFG_EXTRA; keys
that shape the ensemble are refused).

The official image's ``ZOO_*`` variables are read with the image's meaning (``adapters/images.py``;
options win): ``ZOO_TICK_TIME``, ``ZOO_INIT_LIMIT``, ``ZOO_SYNC_LIMIT``, ``ZOO_DATA_LOG_DIR``,
``ZOO_4LW_COMMANDS_WHITELIST``, ``ZOO_ADMINSERVER_ENABLED``, ``ZOO_MAX_CLIENT_CNXNS``,
``ZOO_AUTOPURGE_PURGEINTERVAL``, ``ZOO_AUTOPURGE_SNAPRETAINCOUNT`` and ``ZOO_CFG_EXTRA``.
``ZOO_MY_ID``, ``ZOO_SERVERS`` and a ``ZOO_STANDALONE_ENABLED`` other than the image's ``true``
are refused: the agent decides the ensemble. ``ZOO_DATA_DIR``/``ZOO_CONF_DIR`` must name the
agent's directories. With the image's data dir ``/data`` and no ``datalog_dir``, transaction
logs go to ``/datalog``, the image's own volume.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from adapters.images import zookeeper_dir_problems, zookeeper_options
from bootstrap.errors import (
    CannotJoin,
    MemberIdError,
    RenderError,
    UntrustedValue,
    VoterChangeError,
)
from bootstrap.model import (
    ClusterView,
    Me,
    Member,
    RenderedFile,
    Rendering,
    SharedValue,
    endpoint,
    is_any_address,
    local_address,
    valid_address,
    valid_member_id,
    valid_port,
)
from bootstrap.options import PATH, Bool, Custom, Int, Option, OptionSet, Refusals, Text
from bootstrap.ports import HealthCheck, HealthReport, Observation, ServicePort
from bootstrap.voters import Committed, Voter, VoterChanges

if TYPE_CHECKING:
    from kazoo.client import KazooClient

IMAGE_DATALOG_DIR = "/datalog"  # the official image's volume for transaction logs
# Keys only the adapter may write: they decide who is in the ensemble and how it forms.
RESERVED = re.compile(
    r"^(server\.\d+|group\.\d+|weight\.\d+|dataDir|dataLogDir|clientPort|clientPortAddress|"
    r"standaloneEnabled|quorumListenOnAllIPs|reconfigEnabled|dynamicConfigFile|"
    r"4lw\.commands\.whitelist|admin\.enableServer)$"
)
SUPERUSER_SHARED = "zookeeper-super-password"  # the shared value's name
_PASSWORD = re.compile(r"[A-Za-z0-9_-]{24,128}")
SUPER_DIGEST_PROPERTY = "zookeeper.DigestAuthenticationProvider.superDigest"
CONFIG_ZNODE = "/zookeeper/config"
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*$")
_VALUE = re.compile(r"^[^\r\n\\]*$")


def _extra(value: Any) -> dict[str, str]:
    """Further zoo.cfg lines: names to one-line values; keys that shape the ensemble refused."""
    if not isinstance(value, dict):
        raise ValueError(f"{value!r} is not a mapping of zoo.cfg keys to values")
    refused = []
    for key, item in value.items():
        if (
            isinstance(item, (dict, list))
            or not _KEY.fullmatch(str(key))
            or not _VALUE.fullmatch(str(item))
        ):
            refused.append(f"{key!r}={item!r} is not a zoo.cfg line")
        elif RESERVED.fullmatch(str(key)):
            refused.append(f"{key!r} shapes the ensemble; the agent writes it")
    if refused:
        raise Refusals(refused)
    return {str(k): str(v) for k, v in sorted(value.items())}


OPTIONS = OptionSet(
    "ZooKeeper",
    Option("tick_time", 2000, Int(1, 10**6)),
    Option("init_limit", 10, Int(1, 10**4)),
    Option("sync_limit", 5, Int(1, 10**4)),
    Option("datalog_dir", None, PATH),
    Option(
        "four_letter_words",
        "srvr,mntr,ruok,conf",
        Text(r"\*|[a-z]{4}(,[a-z]{4})*", "'*' or four-letter words like 'srvr,mntr'", "srvr,x"),
    ),
    Option("admin_server", False, Bool()),
    Option("reconfig", False, Bool()),
    Option("conf_file", None, PATH),
    Option(
        "extra",
        {},
        Custom(
            _extra,
            (("wrong-type", "tickTime=1"), ("out-of-range", {"dataDir": "/evil"})),
            "a mapping of zoo.cfg keys to one-line values",
        ),
    ),
)


class ZooKeeperService(ServicePort):
    key = "zookeeper"
    id_range = (1, 255)
    port_labels: ClassVar[Mapping[str, int]] = {"client": 2181, "quorum": 2888, "election": 3888}
    default_data_dir = "/data"  # the official image's layout
    default_conf_dir = "/conf"
    option_set = OPTIONS
    # Started first, a rescheduled voter's server adopts the ensemble's committed config from
    # its peers' election messages (a later version than its rendered file) and rebinds its
    # ports to the old address it names: the agent re-adds it at its new address first.
    moves_before_start = True

    def image_options(self, options: Mapping[str, Any], problems: list[str]) -> Mapping[str, Any]:
        return zookeeper_options(self.environ, options, problems)

    def configure(self, problems: list[str]) -> None:
        self.extra: dict[str, str] = self.opts["extra"]

    def conf_file(self, me: Me) -> Path:
        return Path(self.opts["conf_file"] or me.conf_dir / "zoo.cfg")

    def member_id_on_disk(self, me: Me) -> int | None:
        path = me.data_dir / "myid"
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise MemberIdError(f"{path}: cannot read: {exc}") from exc
        if not text.isdigit():
            raise MemberIdError(f"{path}: holds {text[:20]!r}, not a member id")
        return int(text)

    def joiner_form(self, view: ClusterView) -> str:
        if not self.opts["reconfig"]:
            voters = ",".join(str(m.member_id) for m in view.voters())
            raise CannotJoin(
                f"id {view.member_id} is not in the ensemble's roster (voters {voters}) and the "
                "ensemble has no dynamic reconfig, so it cannot take a voter while it runs: form "
                "it with --set reconfig=true, or start this member with a roster member's id "
                "(its data dir or --member-name)"
            )
        return "a ZooKeeper observer listed after the roster's voters"

    def render(self, view: ClusterView) -> Rendering:
        me = view.me
        dirs = {"data dir": str(me.data_dir), "conf dir": str(me.conf_dir)}
        if problems := zookeeper_dir_problems(self.environ, dirs):
            raise RenderError("; ".join(problems))
        any_address = is_any_address(me.bind_address)
        servers = [self.server_line(m, with_client_address=not any_address) for m in view.voters()]
        if view.joining:
            mine = next(m for m in view.members if m.member_id == view.member_id)
            servers.append(
                self.server_line(mine, with_client_address=not any_address, role="observer")
            )
        o = self.opts
        static = [
            "# Written by cluster-bootstrap. The server list is the same on every member.",
            f"tickTime={o['tick_time']}",
            f"initLimit={o['init_limit']}",
            f"syncLimit={o['sync_limit']}",
            f"dataDir={me.data_dir}",
        ]
        datalog = o["datalog_dir"]
        if datalog is None and me.data_dir == Path(self.default_data_dir):
            datalog = IMAGE_DATALOG_DIR  # the image's layout: transaction logs on their own volume
        if datalog:
            static.append(f"dataLogDir={datalog}")
        static += [
            "standaloneEnabled=false",
            f"quorumListenOnAllIPs={'true' if any_address else 'false'}",
            f"4lw.commands.whitelist={o['four_letter_words']}",
            f"admin.enableServer={'true' if o['admin_server'] else 'false'}",
        ]
        static += [f"{key}={value}" for key, value in self.extra.items()]
        conf = self.conf_file(me)
        files = []
        env = {"ZOOCFGDIR": str(conf.parent), "ZOO_MY_ID": str(view.member_id)}
        secret_env: frozenset[str] = frozenset()
        if o["reconfig"]:
            dynamic = conf.with_name(conf.name + ".dynamic")
            static += ["reconfigEnabled=true", f"dynamicConfigFile={dynamic}"]
            files.append(RenderedFile(dynamic, "\n".join(servers) + "\n", write_once=True))
            files.append(RenderedFile(conf, "\n".join(static) + "\n", write_once=True))
            password = super_password(view)
            files.append(RenderedFile(conf.with_name("super.password"), password, secret=True))
            given = self.environ.get("SERVER_JVMFLAGS", "").strip()
            flag = f"-D{SUPER_DIGEST_PROPERTY}={super_digest(password)}"
            env["SERVER_JVMFLAGS"] = f"{given} {flag}".lstrip()
            secret_env = frozenset({"SERVER_JVMFLAGS"})
        else:
            files.append(RenderedFile(conf, "\n".join(static + servers) + "\n"))
        # myid last: the id is on disk only once the config that names it is.
        files.append(RenderedFile(me.data_dir / "myid", f"{view.member_id}\n"))
        return Rendering(tuple(files), env, secret_env)

    def shared_values(self) -> Sequence[SharedValue]:
        """With ``reconfig``: the superuser's password, created once for the cluster."""
        if not self.opts["reconfig"]:
            return ()
        return (SharedValue(SUPERUSER_SHARED, secret=True, create=new_super_password),)

    def voter_changes(self, view: ClusterView) -> VoterChanges | None:
        """Dynamic reconfig as the superuser, when ``reconfig`` is on; ``None`` otherwise."""
        if not self.opts["reconfig"]:
            return None
        return ZooKeeperVoters(view.members, super_password(view), self.id_range)

    @staticmethod
    def server_line(member: Member, *, with_client_address: bool, role: str = "") -> str:
        client_port = member.port("client")
        client = endpoint(member.address, client_port) if with_client_address else str(client_port)
        return (
            f"server.{member.member_id}={endpoint(member.address, member.port('quorum'))}:"
            f"{member.port('election')}{':' + role if role else ''};{client}"
        )

    async def observe(self, member: Member) -> Observation | None:
        """``srvr`` for the state, ``conf`` for the voters and observers the server runs with."""
        host, port = member.address, member.port("client")
        srvr = await four_letter(host, port, "srvr")
        if srvr is None:
            return Observation("down")
        mode = re.search(r"^Mode: (\w+)", srvr, re.MULTILINE)
        state = mode.group(1) if mode else "not serving"
        conf = await four_letter(host, port, "conf") or ""
        lines = re.findall(r"^server\.(\d+)=[^;\n]*?(?::(participant|observer))?;", conf, re.M)
        if not lines:
            return Observation(state)
        voters = tuple(sorted(int(n) for n, role in lines if role != "observer"))
        observers = tuple(sorted(int(n) for n, role in lines if role == "observer"))
        return Observation(state, voters, observers)

    def health_check(self, me: Me) -> HealthCheck:
        return HealthCheck(tcp=endpoint(me.address, me.ports["client"]))

    async def health(self, me: Me) -> HealthReport:
        """``srvr`` on the client port: serving in a quorum, up without quorum, or down."""
        host = local_address(me.bind_address)
        answer = await four_letter(host, me.bind_ports["client"], "srvr")
        if answer is None:
            return HealthReport(2, f"down: nothing answers on {host}:{me.bind_ports['client']}")
        mode = re.search(r"^Mode: (\w+)", answer, re.MULTILINE)
        if mode:
            return HealthReport(0, f"serving as {mode.group(1)}")
        first = answer.strip().splitlines()[0] if answer.strip() else "empty answer"
        return HealthReport(1, f"up, not serving: {first}")


async def four_letter(host: str, port: int, word: str, timeout_s: float = 2.0) -> str | None:
    """Send a four-letter word; the answer, or ``None`` when nothing answers."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(word.encode())
        await writer.drain()
        chunks: list[bytes] = []
        while len(chunks) < 16:  # until the server closes (at most 1 MiB)
            async with asyncio.timeout(timeout_s):
                chunk = await reader.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def new_super_password() -> str:
    """A random superuser password (URL-safe: no ':' to split the digest's user from it)."""
    return secrets.token_urlsafe(32)


def super_password(view: ClusterView) -> str:
    """The cluster's superuser password from the shared values, checked (it came from Consul)."""
    password = view.shared.get(SUPERUSER_SHARED, "")
    if not _PASSWORD.fullmatch(password):
        raise UntrustedValue(f"shared value {SUPERUSER_SHARED!r} is not a password this agent made")
    return password


def super_digest(password: str) -> str:
    """``super:<base64 sha1("super:<password>")>``, as ZooKeeper's
    ``DigestAuthenticationProvider.generateDigest`` computes it (SHA-1 is ZooKeeper's choice)."""
    raw = hashlib.sha1(f"super:{password}".encode()).digest()  # noqa: S324
    return "super:" + base64.b64encode(raw).decode("ascii")


# -- dynamic reconfig: the VoterChanges port (bootstrap.voters) --

_SERVER_KEY = re.compile(r"server\.(\d{1,6})")
_VERSION = re.compile(r"[0-9a-f]{1,16}")
_ROLES = ("participant", "observer")
CONFIG_MAX_LEN = 64 * 1024


def _host_and_rest(text: str, origin: str) -> tuple[str, list[str]]:
    """``host:a:b`` or ``[v6]:a:b`` -> (host, [a, b])."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise UntrustedValue(f"{origin}: {text!r} is not [address]:port")
        return valid_address(host, origin), rest[1:].split(":") if rest else []
    host, _, rest = text.partition(":")
    return valid_address(host, origin), rest.split(":") if rest else []


def parse_config(text: str, id_range: tuple[int, int]) -> tuple[Committed, dict[int, Member]]:
    """The ``/zookeeper/config`` znode: ``server.N=host:quorum:election[:role];[addr:]client``
    lines and one ``version=<hex>``. Every value is checked like Consul's; anything else (a
    duplicate id, an unknown key or role, hierarchical quorum lines, no voter) is refused."""
    origin = CONFIG_ZNODE
    if len(text) > CONFIG_MAX_LEN:
        raise UntrustedValue(f"{origin}: {len(text)} characters, more than a config can hold")
    version: str | None = None
    members: dict[int, Member] = {}
    voters: list[Voter] = []
    observers: list[int] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        where = f"{origin} line {line[:60]!r}"
        if not sep:
            raise UntrustedValue(f"{where}: not key=value")
        if key == "version":
            if version is not None or not _VERSION.fullmatch(value):
                raise UntrustedValue(f"{where}: not one hexadecimal version")
            version = value
            continue
        match = _SERVER_KEY.fullmatch(key)
        if not match:
            raise UntrustedValue(f"{where}: unexpected key (only server.N and version)")
        member_id = valid_member_id(match.group(1), id_range, where)
        if member_id in members:
            raise UntrustedValue(f"{where}: server.{member_id} listed twice")
        server, sep, client = value.partition(";")
        if not sep:
            raise UntrustedValue(f"{where}: no client port")
        address, parts = _host_and_rest(server, where)
        if len(parts) == 2:
            parts.append("participant")
        if len(parts) != 3 or parts[2] not in _ROLES:
            raise UntrustedValue(f"{where}: not address:quorum:election[:participant|observer]")
        if ":" in client or client.startswith("["):
            _, client_parts = _host_and_rest(client, where)
            if len(client_parts) != 1:
                raise UntrustedValue(f"{where}: client part is not [address:]port")
            client = client_parts[0]
        ports = {
            "client": valid_port(client, where),
            "quorum": valid_port(parts[0], where),
            "election": valid_port(parts[1], where),
        }
        member = Member(member_id, address, ports)
        members[member_id] = member
        if parts[2] == "participant":
            voters.append(Voter(member))
        else:
            observers.append(member_id)
    if version is None:
        raise UntrustedValue(f"{origin}: no version line")
    if not voters:
        raise UntrustedValue(f"{origin}: no voter")
    voters.sort(key=lambda voter: voter.member_id)
    return Committed(tuple(voters), tuple(sorted(observers)), version), members


def participant_line(member: Member) -> str:
    """The ``server.N=...:participant;addr:client`` a reconfig ``-add`` names."""
    return (
        f"server.{member.member_id}={endpoint(member.address, member.port('quorum'))}:"
        f"{member.port('election')}:participant;{endpoint(member.address, member.port('client'))}"
    )


_T = TypeVar("_T")


class ZooKeeperVoters(VoterChanges):
    """Dynamic reconfig through kazoo (imported only here), as ZooKeeper's superuser.

    kazoo blocks, so every call runs in a worker thread: the event loop never waits on it.
    ``version`` is the committed config's ``version=`` (hexadecimal, as ``reconfig -v`` takes
    it); ``""`` asks for no compare-and-set.
    """

    def __init__(
        self,
        members: Sequence[Member],
        password: str,
        id_range: tuple[int, int] = (1, 255),
        timeout_s: float = 10.0,
    ) -> None:
        self.hosts = ",".join(endpoint(m.address, m.port("client")) for m in members)
        self.members = {m.member_id: m for m in members}
        self.id_range = id_range
        self.timeout_s = timeout_s
        self._password = password
        self._client: KazooClient | None = None

    async def __aenter__(self) -> ZooKeeperVoters:
        from kazoo.client import KazooClient
        from kazoo.handlers.threading import KazooTimeoutError

        client = KazooClient(
            hosts=self.hosts,
            timeout=self.timeout_s,
            auth_data=[("digest", f"super:{self._password}")],
        )
        try:
            await asyncio.to_thread(client.start, self.timeout_s)
        except KazooTimeoutError as exc:
            await asyncio.to_thread(client.close)
            raise VoterChangeError(f"ZooKeeper at {self.hosts} did not answer in time") from exc
        self._client = client
        return self

    async def __aexit__(self, *exc: object) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.stop)
            await asyncio.to_thread(client.close)

    def _connected(self) -> KazooClient:
        if self._client is None:
            raise RuntimeError("ZooKeeperVoters used outside 'async with'")
        return self._client

    async def _call(self, what: str, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` in a worker thread; kazoo's errors and a timeout as one clear line."""
        from kazoo.exceptions import KazooException

        try:
            async with asyncio.timeout(self.timeout_s * 2):
                return await asyncio.to_thread(fn, *args)
        except (KazooException, TimeoutError) as exc:
            raise VoterChangeError(f"ZooKeeper {what} failed: {type(exc).__name__}") from exc

    async def committed(self) -> Committed:
        return (await self._read())[0]

    async def _read(self) -> tuple[Committed, dict[int, Member]]:
        client = self._connected()
        await self._call(f"sync of {CONFIG_ZNODE}", client.sync, CONFIG_ZNODE)
        data, _ = await self._call(f"read of {CONFIG_ZNODE}", client.get, CONFIG_ZNODE)
        committed, members = parse_config(_decode(data), self.id_range)
        self.members = {**self.members, **members}
        return committed, members

    async def caught_up(self, member_id: int) -> bool:
        """True once the member's own server serves as observer or follower: it has synced
        with the leader (before that, ``srvr`` says it is not serving)."""
        member = self.members.get(member_id)
        if member is None:
            await self._read()
            member = self.members.get(member_id)
        if member is None:
            return False
        answer = await four_letter(member.address, member.port("client"), "srvr")
        mode = re.search(r"^Mode: (\w+)", answer or "", re.MULTILINE)
        return mode is not None and mode.group(1) in ("observer", "follower", "leader")

    async def add(self, voter: Voter, *, version: str) -> bool:
        return await self._reconfig(voter.member_id, participant_line(voter.member), version)

    async def remove(self, voter: Voter, *, version: str) -> bool:
        return await self._reconfig(voter.member_id, None, version)

    async def _reconfig(self, member_id: int, joining: str | None, version: str) -> bool:
        """``reconfig -add <joining>`` (or ``-remove <member_id>``) ``-v <version>``."""
        from kazoo.exceptions import (
            BadVersionError,
            KazooException,
            NewConfigNoQuorumError,
            ReconfigInProcessError,
        )

        what = f"-add {joining}" if joining else f"-remove {member_id}"
        if version and not _VERSION.fullmatch(version):
            raise VoterChangeError(f"reconfig {what}: {version!r} is not a config version")
        client = self._connected()
        joins, leaves = (joining, None) if joining else (None, str(member_id))
        from_config = int(version, 16) if version else -1
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                data, _ = await asyncio.to_thread(client.reconfig, joins, leaves, None, from_config)
        except (BadVersionError, NewConfigNoQuorumError, ReconfigInProcessError):
            return False  # a conflict: the caller retries after a backoff
        except (KazooException, TimeoutError) as exc:  # a refusal, a lost connection: no retry
            raise VoterChangeError(
                f"ZooKeeper refused reconfig {what}: {type(exc).__name__}"
            ) from exc
        committed, _ = parse_config(_decode(data), self.id_range)
        if (member_id in committed.voter_ids()) != bool(joining):
            raise VoterChangeError(
                f"reconfig {what} succeeded but the new config has voters {committed.voter_ids()}"
            )
        return True


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UntrustedValue(f"{CONFIG_ZNODE}: not UTF-8") from exc
