"""EMQX 5 (and 4.4): node name, one shared cookie, and the ``static`` seed list from Consul.

EMQX has no Consul discovery strategy (emqx#4203). This adapter fills that gap: every member
renders ``cluster.discovery_strategy = static`` with all members as seeds, in member-id order, so
every node computes the same list. The cookie is created once for the cluster (a shared value in
Consul KV) and read by every member.

Rendered for EMQX 5 with ``output: file`` (the default), ``<conf_dir>/cluster.hocon``, mode 0600
because it holds the cookie::

    node.name = "emqx@10.0.0.1"
    node.cookie = "<cookie>"
    cluster.discovery_strategy = "static"
    cluster.static.seeds = ["emqx@10.0.0.1", "emqx@10.0.0.2", "emqx@10.0.0.3"]

EMQX does not read that file by itself: emqx.conf must include it as its *last* line
(``include "/opt/emqx/etc/cluster.hocon"``; in HOCON a later key wins over the image's
``node {...}`` block). Never point ``conf_file`` at ``<data_dir>/configs/cluster.hocon``: that
file belongs to EMQX, is copied between nodes and cannot hold ``node.*``. The node name is also
set in the environment (``EMQX_NODE_NAME`` and ``EMQX_NODE__NAME``): the image's
``docker-entrypoint.sh`` exports ``EMQX_NODE_NAME=emqx@<container IP>`` when it is unset,
``bin/emqx`` copies it into ``EMQX_NODE__NAME``, and the environment beats every file.

With ``output: env`` nothing is written; the server gets (EMQX 5)::

    EMQX_NODE_NAME=emqx@10.0.0.1
    EMQX_NODE__NAME=emqx@10.0.0.1
    EMQX_NODE__COOKIE=<cookie>                  (marked secret: never logged)
    EMQX_CLUSTER__DISCOVERY_STRATEGY="static"
    EMQX_CLUSTER__STATIC__SEEDS=["emqx@10.0.0.1","emqx@10.0.0.2","emqx@10.0.0.3"]

Values of ``EMQX_*`` variables are HOCON, so the strategy and the seeds are quoted. The node name
and the cookie are not: EMQX's start script (``bin/common_defs2.sh``) also reads those two
variables unparsed for ``-name`` and ``-setcookie``, and its HOCON reader takes a value that does
not parse as the plain string. That is why the cookie is held to ``[A-Za-z][A-Za-z0-9_-]{7,254}``:
the same string on both paths, nothing a shell, ``sed`` or HOCON could read differently.

EMQX 4.4 (``version: 4``) takes the environment only (``output: env``, its default):
``EMQX_NODE_NAME`` and ``EMQX_NODE__NAME``, ``EMQX_NODE_COOKIE`` and ``EMQX_NODE__COOKIE``,
``EMQX_CLUSTER__DISCOVERY=static``, ``EMQX_CLUSTER__STATIC__SEEDS=emqx@h1,emqx@h2``, unquoted.
Its entrypoint sets ``EMQX_NODE_NAME=<hostname>@<container IP>`` when unset, and that variable
wins over ``EMQX_NODE__NAME``; cuttlefish applies the ``EMQX_*`` overrides through the prefix
``bin/emqx`` exports (nothing is written into emqx.conf). A file form cannot work: the image's
emqx.conf sets ``node.name``, ``node.cookie`` and ``cluster.discovery = manual``, and its keys win
over an included file's, so ``output: file`` is refused for 4.4.

A user's own ``EMQX_NODE_*``, ``EMQX_NODE__*`` name or cookie and ``EMQX_CLUSTER__*`` discovery
variables are refused: they would beat what the agent renders.

Ports: ``mqtt`` 1883 (primary), ``dist`` 4370, ``rpc`` 5369, ``dashboard`` 18083. EMQX derives a
peer's Erlang distribution and RPC ports from its node name (4370 and 5369 for a name without a
numeric suffix): they cannot be dynamic host ports and must be the same on every node (Nomad:
``static = 4370`` / ``static = 5369``, one EMQX per host). Rendering refuses other values, and a
``node_name_prefix`` that ends in a digit (it would shift both ports).

Options (``options:`` in the config file, or ``--set``):

- ``version``: ``5`` (default) or ``4`` (EMQX 4.4);
- ``output``: ``file`` (default for 5) or ``env`` (default, and the only form, for 4.4);
- ``conf_file``: path of the rendered file (``output: file`` only);
- ``node_name_prefix``: the part before ``@`` (default ``emqx``; ``^[0-9A-Za-z_-]+$``, not
  ending in a digit), the same on every member.

Node names need an IPv4 address or a fully qualified host name (EMQX runs long names); IPv6 needs
``inet6_tcp`` distribution, which this adapter does not configure, and is refused.

No EMQX server runs in this project's tests: none can be had from the package registries this
machine reaches. The output is parsed back with pyhocon, run through a model of the images'
start scripts (``tests/emqx_image.py``), and its names, cookie and seeds form a cluster of real
Erlang nodes (``tests/integration/test_emqx_erlang.py``).
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from adapters.images import emqx_env_problems
from bootstrap.errors import RenderError
from bootstrap.model import (
    ClusterView,
    Me,
    RenderedFile,
    Rendering,
    SharedValue,
    endpoint,
    valid_address,
)
from bootstrap.options import PATH, Choice, Custom, Option, OptionSet
from bootstrap.ports import HealthCheck, ServicePort

DIST_PORT = 4370  # Erlang distribution for a node name without a numeric suffix
RPC_PORT = 5369  # gen_rpc, likewise
COOKIE_NAME = "cookie"
COOKIE_ENV = "EMQX_NODE__COOKIE"
# Both names: the image's entrypoint fills EMQX_NODE_NAME when it is unset (with the container's
# IP), and the start scripts prefer it over EMQX_NODE__NAME and over every file.
NAME_ENV = ("EMQX_NODE_NAME", "EMQX_NODE__NAME")
COOKIE_ENV_4 = ("EMQX_NODE_COOKIE", COOKIE_ENV)  # 4.4's bin/emqx reads the first for its tools

_PREFIX = re.compile(r"[0-9A-Za-z_-]+")  # used with fullmatch: "$" would let a final "\n" in
_COOKIE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{7,254}")


def _prefix(value: Any) -> str:
    if not isinstance(value, str) or not _PREFIX.fullmatch(value):
        raise ValueError(f"{value!r} is not ^[0-9A-Za-z_-]+$")
    if value[-1].isdigit():
        raise ValueError(
            f"{value!r} ends in a digit, which shifts the distribution and RPC ports away "
            "from 4370 and 5369"
        )
    return value


OPTIONS = OptionSet(
    "EMQX",
    Option("version", 5, Choice((5, 4), {"4.4": 4})),
    Option("output", None, Choice(("file", "env"))),  # None: file for 5, env for 4.4
    Option("conf_file", None, PATH),
    Option(
        "node_name_prefix",
        "emqx",
        Custom(
            _prefix, (("wrong-type", ["emqx"]), ("out-of-range", "emqx1")), "a node name prefix"
        ),
    ),
)


def hocon_string(value: str) -> str:
    """``value`` as a quoted HOCON string. HOCON accepts JSON strings; json.dumps escapes quotes,
    backslashes and control characters, and keeps other text as UTF-8 (HOCON files are UTF-8)."""
    return json.dumps(value, ensure_ascii=False)


def new_cookie() -> str:
    """A random cookie that passes ``_COOKIE``: a letter, then 43 URL-safe characters."""
    return secrets.choice(string.ascii_letters) + secrets.token_urlsafe(32)


class EmqxService(ServicePort):
    key = "emqx"
    port_labels: ClassVar[Mapping[str, int]] = {
        "mqtt": 1883,
        "dist": DIST_PORT,
        "rpc": RPC_PORT,
        "dashboard": 18083,
    }
    default_data_dir = "/opt/emqx/data"  # the official image's layout
    default_conf_dir = "/opt/emqx/etc"

    option_set = OPTIONS

    def configure(self, problems: list[str]) -> None:
        self.version: int = self.opts["version"]
        # file for EMQX 5; env for 4.4, the only form the 4.4 image cannot override
        self.output: str = self.opts["output"] or ("env" if self.version == 4 else "file")
        self.conf_file_option: str | None = self.opts["conf_file"]
        self.prefix: str = self.opts["node_name_prefix"]
        if self.conf_file_option is not None and self.output != "file":
            problems.append("options.conf_file: only used with output=file")
        if self.version == 4 and self.output == "file":
            problems.append(
                "options.output: file does not work with EMQX 4.4: the keys of the image's "
                "emqx.conf (node.name, node.cookie, cluster.discovery) win over an included "
                "file's; use output: env"
            )
        problems += emqx_env_problems(self.environ)

    def joiner_form(self, view: ClusterView) -> str:
        return "an EMQX node seeded with the roster's nodes (EMQX joins it online)"

    def shared_values(self) -> Sequence[SharedValue]:
        return [SharedValue(COOKIE_NAME, secret=True, create=new_cookie)]

    def health_check(self, me: Me) -> HealthCheck:
        """``GET /status`` on the dashboard port: 200 once the node runs.

        A failing check never hides a member: discovery counts members in any health state.
        """
        return HealthCheck(http=f"http://{endpoint(me.address, me.ports['dashboard'])}/status")

    def conf_file(self, me: Me) -> Path:
        default = "cluster.hocon" if self.version == 5 else "cluster.conf"
        return Path(self.conf_file_option or me.conf_dir / default)

    def node_name(self, address: str, origin: str) -> str:
        return f"{self.prefix}@{_node_host(address, origin)}"

    def render(self, view: ClusterView) -> Rendering:
        cookie = _cookie(view.shared)
        for member in view.members:
            _check_fixed_ports(member.ports, f"member {member.member_id} ({member.address})")
        name = self.node_name(view.me.address, "this member")
        seeds = [
            self.node_name(m.address, f"member {m.member_id}")
            for m in sorted(view.members, key=lambda m: m.member_id)
        ]
        if self.output == "env":
            return self._env(name, cookie, seeds)
        path = self.conf_file(view.me)
        if path == view.me.data_dir / "configs" / "cluster.hocon":
            raise RenderError(
                f"{path}: EMQX owns this file (cluster-synced, no node.* allowed); "
                "render to etc/ and include it from emqx.conf"
            )
        content = self._file(name, cookie, seeds)
        # The name goes in the environment too: the image's entrypoint would otherwise export
        # EMQX_NODE_NAME=emqx@<container IP>, which beats the file.
        return Rendering(
            (RenderedFile(path, content, mode=0o600, secret=True),),
            env=dict.fromkeys(NAME_ENV, name),
        )

    def _file(self, name: str, cookie: str, seeds: list[str]) -> str:
        if self.version == 4:
            lines = [
                "## Written by cluster-bootstrap: EMQX 4.4 clustering (emqx.conf syntax).",
                "## The seed list is the same on every node.",
                f"node.name = {name}",
                f"node.cookie = {cookie}",
                "cluster.discovery = static",
                f"cluster.static.seeds = {','.join(seeds)}",
            ]
        else:
            lines = [
                "# Written by cluster-bootstrap: EMQX 5 clustering (HOCON).",
                "# The seed list is the same on every node. Include this file from emqx.conf.",
                f"node.name = {hocon_string(name)}",
                f"node.cookie = {hocon_string(cookie)}",
                f"cluster.discovery_strategy = {hocon_string('static')}",
                f"cluster.static.seeds = [{', '.join(hocon_string(s) for s in seeds)}]",
            ]
        return "\n".join(lines) + "\n"

    def _env(self, name: str, cookie: str, seeds: list[str]) -> Rendering:
        # Node name and cookie stay unquoted: EMQX's start script reads them unparsed.
        cookie_names = COOKIE_ENV_4 if self.version == 4 else (COOKIE_ENV,)
        env = dict.fromkeys(NAME_ENV, name) | dict.fromkeys(cookie_names, cookie)
        if self.version == 4:
            env["EMQX_CLUSTER__DISCOVERY"] = "static"
            env["EMQX_CLUSTER__STATIC__SEEDS"] = ",".join(seeds)
        else:
            env["EMQX_CLUSTER__DISCOVERY_STRATEGY"] = hocon_string("static")
            env["EMQX_CLUSTER__STATIC__SEEDS"] = f"[{','.join(hocon_string(s) for s in seeds)}]"
        return Rendering(env=env, secret_env=frozenset(cookie_names))


def _cookie(shared: Mapping[str, str]) -> str:
    cookie = shared.get(COOKIE_NAME)
    if cookie is None:
        raise RenderError("shared value 'cookie' is missing")
    if not _COOKIE.fullmatch(cookie):
        # The value is a secret: say what is wrong, never what it is.
        raise RenderError(
            "shared value 'cookie' is not a usable EMQX cookie: it must be 8..255 characters "
            "of A-Z a-z 0-9 _ - starting with a letter"
        )
    return cookie


def _node_host(address: str, origin: str) -> str:
    """The host part of a long node name: an IPv4 address or a name with a dot."""
    address = valid_address(address, origin)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        host = address.removesuffix(".")
        if "." not in host:
            raise RenderError(
                f"{origin}: {address!r} has no dot; EMQX node names need an IPv4 address or a "
                "fully qualified host name"
            ) from None
        return host
    if ip.version == 6:
        raise RenderError(
            f"{origin}: {address} is IPv6; EMQX node names here need IPv4 or a host name "
            "(IPv6 needs inet6_tcp distribution, which this adapter does not configure)"
        )
    return address


def _check_fixed_ports(ports: Mapping[str, int], origin: str) -> None:
    for label, fixed in (("dist", DIST_PORT), ("rpc", RPC_PORT)):
        port = ports.get(label, fixed)
        if port != fixed:
            raise RenderError(
                f"{origin}: {label} port {port} is not {fixed}; EMQX derives a peer's {label} "
                "port from its node name, so it must be the same fixed port on every node"
            )
