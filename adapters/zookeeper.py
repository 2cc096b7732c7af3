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

Options: ``tick_time``, ``init_limit``, ``sync_limit``, ``datalog_dir``, ``four_letter_words``,
``admin_server`` (bool), ``reconfig`` (bool: ``reconfigEnabled`` with a dynamic file seeded on
the first start and never rewritten: ZooKeeper owns both files from then on), ``conf_file``,
``extra`` (a mapping of further zoo.cfg keys, like the official image's ZOO_CFG_EXTRA; keys
that shape the ensemble are refused).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from bootstrap.errors import CannotJoin, MemberIdError, UsageError
from bootstrap.model import (
    ClusterView,
    Me,
    Member,
    RenderedFile,
    Rendering,
    endpoint,
    is_any_address,
    local_address,
)
from bootstrap.ports import (
    HealthCheck,
    HealthReport,
    Observation,
    ServicePort,
    options_with_defaults,
)

DEFAULTS: dict[str, Any] = {
    "tick_time": 2000,
    "init_limit": 10,
    "sync_limit": 5,
    "datalog_dir": None,
    "four_letter_words": "srvr,mntr,ruok,conf",
    "admin_server": False,
    "reconfig": False,
    "conf_file": None,
    "extra": {},
}
# Keys only the adapter may write: they decide who is in the ensemble and how it forms.
RESERVED = re.compile(
    r"^(server\.\d+|group\.\d+|weight\.\d+|dataDir|dataLogDir|clientPort|clientPortAddress|"
    r"standaloneEnabled|quorumListenOnAllIPs|reconfigEnabled|dynamicConfigFile|"
    r"4lw\.commands\.whitelist|admin\.enableServer)$"
)
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*$")
_VALUE = re.compile(r"^[^\r\n\\]*$")


class ZooKeeperService(ServicePort):
    key = "zookeeper"
    id_range = (1, 255)
    port_labels: ClassVar[Mapping[str, int]] = {"client": 2181, "quorum": 2888, "election": 3888}
    default_data_dir = "/data"  # the official image's layout
    default_conf_dir = "/conf"

    def __init__(
        self, options: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(options, environ)
        problems: list[str] = []
        self.opts = options_with_defaults("ZooKeeper", options, DEFAULTS, problems)
        for key in ("tick_time", "init_limit", "sync_limit"):
            value = self.opts[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"options.{key}: {value!r} is not a whole number >= 1")
        words = self.opts["four_letter_words"]
        if not isinstance(words, str) or not re.fullmatch(r"\*|[a-z]{4}(,[a-z]{4})*", words):
            problems.append(f"options.four_letter_words: {words!r} is not like 'srvr,mntr'")
        extra = self.opts["extra"]
        if not isinstance(extra, dict):
            problems.append("options.extra: must be a mapping of zoo.cfg keys to values")
            extra = {}
        for key, value in extra.items():
            if not _KEY.fullmatch(str(key)) or not _VALUE.fullmatch(str(value)):
                problems.append(f"options.extra: {key!r}={value!r} is not a zoo.cfg line")
            elif RESERVED.fullmatch(str(key)):
                problems.append(f"options.extra: {key!r} shapes the ensemble; the agent writes it")
        self.extra = {str(k): str(v) for k, v in sorted(extra.items())}
        if problems:
            raise UsageError(problems)

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
        if o["datalog_dir"]:
            static.append(f"dataLogDir={o['datalog_dir']}")
        static += [
            "standaloneEnabled=false",
            f"quorumListenOnAllIPs={'true' if any_address else 'false'}",
            f"4lw.commands.whitelist={o['four_letter_words']}",
            f"admin.enableServer={'true' if o['admin_server'] else 'false'}",
        ]
        static += [f"{key}={value}" for key, value in self.extra.items()]
        conf = self.conf_file(me)
        files = []
        if o["reconfig"]:
            dynamic = conf.with_name(conf.name + ".dynamic")
            static += ["reconfigEnabled=true", f"dynamicConfigFile={dynamic}"]
            files.append(RenderedFile(dynamic, "\n".join(servers) + "\n", write_once=True))
            files.append(RenderedFile(conf, "\n".join(static) + "\n", write_once=True))
        else:
            files.append(RenderedFile(conf, "\n".join(static + servers) + "\n"))
        # myid last: the id is on disk only once the config that names it is.
        files.append(RenderedFile(me.data_dir / "myid", f"{view.member_id}\n"))
        return Rendering(
            tuple(files), {"ZOOCFGDIR": str(conf.parent), "ZOO_MY_ID": str(view.member_id)}
        )

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
        return HealthCheck(tcp=f"{me.address}:{me.ports['client']}")

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
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(word.encode())
        await writer.drain()
        chunks: list[bytes] = []
        while len(chunks) < 16 and (chunk := await asyncio.wait_for(reader.read(65536), timeout_s)):
            chunks.append(chunk)  # until the server closes (at most 1 MiB)
        return b"".join(chunks).decode(errors="replace")
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
