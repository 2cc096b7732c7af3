"""The values the flow passes around, and the checks that make Consul's answers safe to use.

Everything read from Consul (addresses, ports, ids, claim records) is untrusted: it reaches a
rendered file only through the validators below, which refuse anything that is not exactly an
IP address or hostname, a port in 1..65535, or an id in the service's range.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap.errors import UntrustedValue

# Patterns are used with fullmatch: with match, "$" would let a final newline through.
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MAX_MEMBER_ID = 999_999  # ids are small numbers in every service's config


def is_name(text: str) -> bool:
    """A cluster or Consul service name: letters, digits, '_', '.', '-' (up to 128)."""
    return _NAME.fullmatch(text) is not None


def valid_address(value: object, origin: str) -> str:
    """Return ``value`` if it is an IP address or an RFC 1123 hostname; raise otherwise."""
    if not isinstance(value, str) or not value or len(value) > 253:
        raise UntrustedValue(f"{origin}: address {value!r} is not an IP address or hostname")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        # ipaddress takes any text after an IPv6 '%' as a scope id, newlines included.
        if getattr(ip, "scope_id", None) is not None:
            raise UntrustedValue(f"{origin}: address {value!r} carries an IPv6 scope")
        return str(ip)
    labels = value.removesuffix(".").split(".")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise UntrustedValue(f"{origin}: address {value!r} is not an IP address or hostname")
    return value


def is_any_address(address: str) -> bool:
    """True for 0.0.0.0 and ::, the addresses that mean "bind every interface"."""
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False


def local_address(bind_address: str) -> str:
    """Where a local client reaches a server bound to ``bind_address``."""
    return "127.0.0.1" if is_any_address(bind_address) else bind_address


def host_literal(address: str) -> str:
    """``address`` as it stands before ``:port`` in a URL or config: IPv6 in brackets."""
    return f"[{address}]" if ":" in address else address


def endpoint(address: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"{host_literal(address)}:{port}"


def valid_port(value: object, origin: str) -> int:
    """Return ``value`` as an int if it is a port in 1..65535 (int or plain decimal string)."""
    port = _plain_int(value)
    if port is None or not 1 <= port <= 65535:
        raise UntrustedValue(f"{origin}: port {value!r} is not a number in 1..65535")
    return port


def valid_member_id(value: object, id_range: tuple[int, int], origin: str) -> int:
    """Return ``value`` as an int if it is a member id inside ``id_range`` (inclusive)."""
    member_id = _plain_int(value)
    low, high = id_range
    if member_id is None or not low <= member_id <= high:
        raise UntrustedValue(f"{origin}: member id {value!r} is not a number in {low}..{high}")
    return member_id


def _plain_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        return int(value)
    return None


@dataclass(frozen=True)
class Member:
    """One member of the cluster as every peer renders it: id, advertised address and ports."""

    member_id: int
    address: str
    ports: Mapping[str, int]
    owner: str = ""

    def port(self, label: str) -> int:
        return self.ports[label]


@dataclass(frozen=True)
class Instance:
    """One registration of the service in Consul, as discovery reports it (not yet trusted)."""

    service_id: str
    node: str
    address: str
    port: int
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    health: str = ""  # the worst of its checks: passing, warning, critical ("" if unknown)

    def describe(self) -> str:
        return f"{self.service_id} on {self.node} ({self.address}:{self.port})"

    def matches(self, tags: Collection[str], meta: Mapping[str, str]) -> bool:
        """True if the instance carries every tag and every meta key=value asked for."""
        return set(tags) <= set(self.tags) and all(self.meta.get(k) == v for k, v in meta.items())


@dataclass(frozen=True)
class Claim:
    """The record stored under ``<prefix>/<cluster>/ids/<id>``: who owns the id, where it lives."""

    member_id: int
    owner: str
    address: str
    ports: Mapping[str, int]
    group: str = ""  # the Consul service the member registers as (one cluster, several groups)

    def to_json(self) -> str:
        return json.dumps(
            {
                "owner": self.owner,
                "address": self.address,
                "group": self.group,
                "ports": dict(sorted(self.ports.items())),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, member_id: int, raw: str, labels: Mapping[str, int], origin: str) -> Claim:
        """Parse and validate a claim record; ``labels`` are the port labels the service uses."""
        try:
            data: Any = json.loads(raw)
        except ValueError as exc:
            raise UntrustedValue(f"{origin}: claim record is not JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("owner"), str):
            raise UntrustedValue(f"{origin}: claim record has no owner")
        raw_ports = data.get("ports")
        if not isinstance(raw_ports, dict):
            raise UntrustedValue(f"{origin}: claim record has no ports")
        ports = {
            label: valid_port(raw_ports.get(label, default), f"{origin} port {label!r}")
            for label, default in labels.items()
        }
        owner, group = data["owner"], data.get("group", "")
        for name, text in (("owner", owner), ("group", group)):
            if not isinstance(text, str) or len(text) > 512 or not text.isprintable():
                raise UntrustedValue(f"{origin}: claim {name} {text!r} is not a printable name")
        if not owner:
            raise UntrustedValue(f"{origin}: claim record has no owner")
        return cls(member_id, owner, valid_address(data.get("address"), origin), ports, group)

    def member(self) -> Member:
        return Member(self.member_id, self.address, self.ports, self.owner)


@dataclass(frozen=True)
class Me:
    """This member: who it is to its peers, and where it binds locally."""

    owner: str
    address: str
    ports: Mapping[str, int]
    bind_address: str
    bind_ports: Mapping[str, int]
    data_dir: Path
    conf_dir: Path
    alloc_index: int | None = None


@dataclass(frozen=True)
class ClusterView:
    """What a service adapter renders from: me, every member (sorted by id), shared values.

    ``members`` are the roster's voters (this member among them at its current address), or,
    when ``joining``, the roster's voters plus this member, which is not a voter (yet).
    """

    me: Me
    member_id: int
    members: tuple[Member, ...]
    shared: Mapping[str, str]
    options: Mapping[str, Any]
    groups: Mapping[str, tuple[Member, ...]] = field(default_factory=dict)  # related groups
    joining: bool = False

    def voters(self) -> tuple[Member, ...]:
        """The voting members: every member, less this one when it is joining."""
        if not self.joining:
            return self.members
        return tuple(m for m in self.members if m.member_id != self.member_id)

    def __post_init__(self) -> None:
        ids = [m.member_id for m in self.members]
        if ids != sorted(set(ids)):
            raise UntrustedValue(f"member ids are not unique: {ids}")


@dataclass(frozen=True)
class RenderedFile:
    """One file to write atomically; ``secret`` files are written 0600 and never printed."""

    path: Path
    content: str
    mode: int = 0o644
    secret: bool = False
    write_once: bool = False  # a file the service owns after its first start (never rewritten)


@dataclass(frozen=True)
class Rendering:
    """What a service adapter returns: files to write and environment for the command."""

    files: tuple[RenderedFile, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SharedValue:
    """A value the whole cluster must share, created once by whoever comes first."""

    name: str
    secret: bool
    create: Callable[[], str] = field(compare=False)
