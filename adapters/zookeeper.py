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
import contextlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from adapters.images import zookeeper_dir_problems, zookeeper_options
from bootstrap.errors import CannotJoin, MemberIdError, RenderError
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
from bootstrap.options import PATH, Bool, Custom, Int, Option, OptionSet, Refusals, Text
from bootstrap.ports import HealthCheck, HealthReport, Observation, ServicePort

IMAGE_DATALOG_DIR = "/datalog"  # the official image's volume for transaction logs
# Keys only the adapter may write: they decide who is in the ensemble and how it forms.
RESERVED = re.compile(
    r"^(server\.\d+|group\.\d+|weight\.\d+|dataDir|dataLogDir|clientPort|clientPortAddress|"
    r"standaloneEnabled|quorumListenOnAllIPs|reconfigEnabled|dynamicConfigFile|"
    r"4lw\.commands\.whitelist|admin\.enableServer)$"
)
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
        with contextlib.suppress(OSError):
            await writer.wait_closed()
