"""Properties of every renderer, for any member list Consul could hand over.

Members are built from raw values (any string or JSON value as an address, any value as a
port) through the path the core takes: claim records parsed by ``Membership.parse_claims``
(``Claim.from_json``), registrations checked and matched by ``Membership.match``
(``valid_address``, ``valid_port``). Then, for each service, either a clear refusal
(``UntrustedValue`` / ``RenderError``) or a config in which every member contributes exactly
its own line (or list item), holding its own address and ports, and nothing else depends on
the members.

An independent oracle says which raw values are well formed: an IP address without a scope,
or an RFC 1123 host name; a port is an int in 1..65535. Hostile values must be refused, and
well-formed ones must not be.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pyhocon import ConfigFactory

from adapters import SERVICES
from adapters.emqx import EmqxService
from adapters.kafka import KafkaService, new_cluster_id
from adapters.template import TemplateService
from adapters.zookeeper import SUPERUSER_SHARED, ZooKeeperService, new_super_password
from bootstrap.errors import RenderError, UntrustedValue
from bootstrap.membership import Membership
from bootstrap.model import (
    ClusterView,
    Instance,
    Me,
    Member,
    Rendering,
    is_any_address,
    valid_address,
    valid_port,
)
from bootstrap.ports import KVEntry
from tests.fakes import FakeDiscovery

PROPERTY = settings(
    max_examples=200,
    derandomize=True,  # the same examples on every run and in CI
    database=None,
    deadline=None,  # no timed assertions
    suppress_health_check=[HealthCheck.too_slow],
)
SERVICE = "prop"
PREFIX = f"cluster-bootstrap/{SERVICE}"
BASE = Path("/srv/prop")  # never written: rendering only computes paths
COVERED = {"zookeeper", "template", "emqx", "kafka"}

# Characters that end a line, a key, a value, a list item or a name in some config syntax.
HOSTILE = [
    "\n", "\r", "\t", "\x00", "\x0b", "\x85", "\u2028", "\ufeff", " ", "=", ";", ":", ",",
    "#", "!", "\\", '"', "'", "[", "]", "{", "}", "@", "/", "%", "$", "é",
]  # fmt: skip
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"


# -- raw members and the oracle -------------------------------------------------------------


@dataclass(frozen=True)
class RawMember:
    """One member as Consul holds it: the claim's id, address and ports, unchecked."""

    member_id: int
    address: object
    ports: Mapping[str, object]

    @property
    def registered_address(self) -> str:
        """The address as adapters/consul.py puts a health entry's into an ``Instance``."""
        return self.address if isinstance(self.address, str) else repr(self.address)


def addresses() -> st.SearchStrategy[object]:
    """Mostly well-formed addresses; the rest hostile in every way a string (or not) can be."""
    label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
    hostname = st.lists(label, min_size=1, max_size=4).map(".".join)
    ip = st.ip_addresses().map(str)
    good = st.one_of(st.ip_addresses(v=4).map(str), ip, hostname, hostname.map(lambda h: f"{h}."))
    junk = st.text(st.sampled_from([*"ab1.-:", *HOSTILE]), min_size=1, max_size=6)
    hostile = st.one_of(
        st.tuples(good, st.sampled_from(HOSTILE)).map("".join),
        st.tuples(st.sampled_from(HOSTILE), good).map("".join),
        st.tuples(good, junk, good).map("".join),
        st.tuples(st.ip_addresses(v=6).map(str), junk).map("%".join),  # IPv6 scope ids
        st.text(max_size=24),
        st.integers() | st.none() | st.booleans() | st.lists(st.integers(), max_size=2),
    )
    return st.one_of(good, good, hostile)


def ports() -> st.SearchStrategy[object]:
    """Mostly ports in 1..65535; the rest out of range, or not integers at all."""
    good = st.integers(1, 65535)
    not_digits = st.text(st.sampled_from([*"0123456789", *HOSTILE]), max_size=7).filter(
        lambda text: not (text.isascii() and text.isdigit())
    )
    hostile = st.one_of(st.integers(-3, 70000), not_digits, st.booleans(), st.none(), st.floats())
    return st.one_of(good, good, hostile)


def raw_members(
    labels: Mapping[str, int], fixed: Mapping[str, int] | None = None
) -> st.SearchStrategy[list[RawMember]]:
    """1..5 members with unique ids; ``fixed`` ports are usually their required value."""
    fixed = fixed or {}
    port_values = {
        label: st.one_of(st.just(fixed[label]), st.just(fixed[label]), ports())
        if label in fixed
        else ports()
        for label in labels
    }
    member = st.builds(
        RawMember, st.integers(1, 255), addresses(), st.fixed_dictionaries(port_values)
    )
    return st.lists(member, min_size=1, max_size=5, unique_by=lambda m: m.member_id)


# Always tried, whatever the random draw: a line break after a host name, and an IPv6 scope id
# (Python's ipaddress takes any text after '%') carrying a whole config line.
KNOWN_HOSTILE = ("10.0.0.1\n", "fe80::1%x\nserver.99=6.6.6.6:2888:3888;2181")


def hostile_pair(labels: Mapping[str, int], address: str) -> list[RawMember]:
    """A well-formed member 1, and member 2 at ``address``, both with default ports."""
    return [RawMember(1, "10.0.0.2", dict(labels)), RawMember(2, address, dict(labels))]


def well_formed_address(value: object) -> str | None:
    """The address as it must be rendered, or None if it must be refused."""
    if not isinstance(value, str) or not value or len(value) > 253:
        return None
    if "%" not in value and value.isascii():
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
    labels = value.removesuffix(".").split(".")
    if all(re.fullmatch(_LABEL, label) for label in labels) and not labels[-1].isdigit():
        return value
    return None


def well_formed_port(value: object) -> bool:
    return type(value) is int and 1 <= value <= 65535


def through_the_core(raw: Sequence[RawMember], labels: Mapping[str, int]) -> list[Member]:
    """Members as the core's wait loop sees them: claims parsed, registrations matched."""
    membership = Membership(
        FakeDiscovery(),
        prefix=PREFIX,
        consul_service=SERVICE,
        port_labels=labels,
        id_range=(1, 255),
    )
    entries = {
        f"{PREFIX}/ids/{m.member_id}": KVEntry(
            json.dumps(
                {
                    "owner": f"member-{m.member_id}",
                    "address": m.address,
                    "group": SERVICE,
                    "ports": dict(m.ports),
                }
            ),
            modify_index,
        )
        for modify_index, m in enumerate(raw, 1)
    }
    primary = next(iter(labels))
    instances = [
        Instance(f"{SERVICE}-{m.member_id}", "n", m.registered_address, cast(int, m.ports[primary]))
        for m in raw
    ]
    found = membership.sort_out(instances, membership.parse_claims(entries))
    refused = {
        i.service_id for i in instances if any(repr(i.describe()) in r for r in found.refused)
    }
    for member in found.members:  # a refused registration is never a member
        assert f"{SERVICE}-{member.member_id}" not in refused, member
    if found.refused:
        raise UntrustedValue(found.refused[0])
    return found.members


def members_or_refusal(raw: Sequence[RawMember], labels: Mapping[str, int]) -> list[Member] | None:
    """The members, checked against the oracle; None when the core (rightly) refused."""
    primary = next(iter(labels))
    registrations_ok = all(
        well_formed_address(m.registered_address) is not None and well_formed_port(m.ports[primary])
        for m in raw
    )
    try:
        members = through_the_core(raw, labels)
    except UntrustedValue as exc:
        assert not registrations_ok, f"a well-formed registration was refused: {exc}"
        assert str(exc).startswith("Consul registration"), exc
        return None
    assert registrations_ok, f"a hostile registration got through: {[m.address for m in raw]}"
    expected = {
        m.member_id: (well_formed_address(m.address), dict(m.ports))
        for m in raw
        if isinstance(m.address, str) and all(well_formed_port(p) for p in m.ports.values())
    }
    endpoints = [(address, ports[primary]) for address, ports in expected.values()]
    if len(set(endpoints)) != len(endpoints):
        return None  # two claims on one endpoint: only the newest is a member (tested elsewhere)
    got = {m.member_id: (m.address, dict(m.ports)) for m in members}
    assert got == expected
    return members


def view_for(
    members: Sequence[Member],
    me_index: int,
    *,
    bind_any: bool,
    shared: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> ClusterView:
    me = members[me_index % len(members)]
    return ClusterView(
        Me(
            me.owner,
            me.address,
            dict(me.ports),
            "0.0.0.0" if bind_any else me.address,
            dict(me.ports),
            BASE / "data",
            BASE / "conf",
        ),
        me.member_id,
        tuple(members),
        dict(shared or {}),
        dict(options or {}),
    )


def alone(view: ClusterView, address: str = "192.0.2.1") -> ClusterView:
    """The same member, with a benign address, as the only member: what must not vary."""
    me = Member(view.member_id, address, dict(view.me.ports), view.me.owner)
    return ClusterView(view.me, view.member_id, (me,), view.shared, view.options)


def lines_of(text: str) -> list[str]:
    """Lines as Java properties, HOCON and shells split them (any of CR, LF, CRLF)."""
    assert text.endswith("\n")
    return re.split(r"\r\n|\r|\n", text[:-1])


def host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def content(rendering: Rendering, name: str) -> str:
    (found,) = [f.content for f in rendering.files if f.path.name == name]
    return found


# -- the validators themselves ---------------------------------------------------------------


@PROPERTY
@example(KNOWN_HOSTILE[0])
@example(KNOWN_HOSTILE[1])
@given(addresses())
def test_valid_address_accepts_exactly_the_well_formed(value: object) -> None:
    """Proves valid_address returns well-formed addresses (IPs normalised) and refuses the rest."""
    expected = well_formed_address(value)
    if expected is None:
        with pytest.raises(UntrustedValue):
            valid_address(value, "test")
    else:
        assert valid_address(value, "test") == expected


@PROPERTY
@given(ports())
def test_valid_port_accepts_exactly_ports_in_range(value: object) -> None:
    """Proves valid_port returns ints in 1..65535 and refuses every other value drawn."""
    if well_formed_port(value):
        assert valid_port(value, "test") == value
    else:
        with pytest.raises(UntrustedValue):
            valid_port(value, "test")


# -- ZooKeeper ----------------------------------------------------------------------------------


@PROPERTY
@example(hostile_pair(ZooKeeperService.port_labels, KNOWN_HOSTILE[0]), 0, False, False)
@example(hostile_pair(ZooKeeperService.port_labels, KNOWN_HOSTILE[1]), 0, False, False)
@given(
    raw_members(ZooKeeperService.port_labels),
    st.integers(0, 5),
    st.booleans(),
    st.booleans(),
)
def test_zookeeper_gives_one_server_line_per_member_or_refuses(
    raw: list[RawMember], me_index: int, bind_any: bool, reconfig: bool
) -> None:
    """Proves zoo.cfg holds exactly one server.<id> line per member, its own, or is refused."""
    members = members_or_refusal(raw, ZooKeeperService.port_labels)
    if not members:
        return
    service = ZooKeeperService({"reconfig": reconfig})
    shared = {SUPERUSER_SHARED: new_super_password()} if reconfig else {}
    view = view_for(members, me_index, bind_any=bind_any, shared=shared)
    bind_any = is_any_address(view.me.bind_address)  # also when this member's address is 0.0.0.0
    rendering = service.render(view)
    conf = lines_of(content(rendering, "zoo.cfg"))
    servers = lines_of(content(rendering, "zoo.cfg.dynamic")) if reconfig else conf
    expected = []
    for m in members:
        h, p = host(m.address), m.ports
        client = f"{p['client']}" if bind_any else f"{h}:{p['client']}"
        expected.append(f"server.{m.member_id}={h}:{p['quorum']}:{p['election']};{client}")
    assert [line for line in servers if line.startswith("server.")] == expected
    if reconfig:
        assert servers == expected
    static = [line for line in conf if not line.startswith("server.")]
    reference = lines_of(content(service.render(alone(view)), "zoo.cfg"))
    assert static == [line for line in reference if not line.startswith("server.")]
    assert content(rendering, "myid") == f"{view.member_id}\n"


# -- template -----------------------------------------------------------------------------------

MEMBER_LINE = (
    "{% for m in members %}member.{{ m.member_id }}={{ m.address }}:{{ m.ports.service }}\n"
    "{% endfor %}"
)


@PROPERTY
@example(hostile_pair(TemplateService.port_labels, KNOWN_HOSTILE[0]), 0)
@example(hostile_pair(TemplateService.port_labels, KNOWN_HOSTILE[1]), 0)
@given(raw_members(TemplateService.port_labels), st.integers(0, 5))
def test_template_gives_one_line_per_member_or_refuses(raw: list[RawMember], me_index: int) -> None:
    """Proves a members template renders exactly one line per member, its own, or is refused."""
    members = members_or_refusal(raw, TemplateService.port_labels)
    if not members:
        return
    service = TemplateService(
        {
            "files": [{"path": str(BASE / "conf" / "members.conf"), "content": MEMBER_LINE}],
            "env": {"PEERS": "{{ members | map(attribute='address') | join(',') }}"},
        }
    )
    rendering = service.render(view_for(members, me_index, bind_any=True))
    expected = [f"member.{m.member_id}={m.address}:{m.ports['service']}" for m in members]
    assert lines_of(content(rendering, "members.conf")) == expected
    assert rendering.env["PEERS"].split(",") == [m.address for m in members]


# -- EMQX ---------------------------------------------------------------------------------------

COOKIE = "Kq3Xv9_Lm2-Zt7Pw4Rb8Yn1Hc6Jd0Fs5Ge"
FIXED = {"dist": 4370, "rpc": 5369}


def emqx_must_refuse(members: Sequence[Member]) -> bool:
    """IPv6, a host name without a dot, or a dist/rpc port other than the fixed one."""
    for m in members:
        if any(m.ports[label] != port for label, port in FIXED.items()):
            return True
        try:
            if ipaddress.ip_address(m.address).version == 6:
                return True
        except ValueError:
            if "." not in m.address.removesuffix("."):
                return True
    return False


@PROPERTY
@example(hostile_pair(EmqxService.port_labels, KNOWN_HOSTILE[0]), 0, False)
@example(hostile_pair(EmqxService.port_labels, KNOWN_HOSTILE[1]), 0, False)
@given(raw_members(EmqxService.port_labels, FIXED), st.integers(0, 5), st.booleans())
def test_emqx_gives_one_seed_per_member_or_refuses(
    raw: list[RawMember], me_index: int, env_output: bool
) -> None:
    """Proves the parsed EMQX seeds are exactly one emqx@<address> per member, or refused."""
    members = members_or_refusal(raw, EmqxService.port_labels)
    if not members:
        return
    service = EmqxService({"output": "env" if env_output else "file"})
    view = view_for(members, me_index, bind_any=True, shared={"cookie": COOKIE})
    if emqx_must_refuse(members):
        with pytest.raises(RenderError):
            service.render(view)
        return
    rendering = service.render(view)
    expected = [f"emqx@{m.address.removesuffix('.')}" for m in members]
    if env_output:
        seeds = ConfigFactory.parse_string(f"k = {rendering.env['EMQX_CLUSTER__STATIC__SEEDS']}")
        assert list(seeds["k"]) == expected
        assert rendering.env["EMQX_NODE__NAME"] == f"emqx@{view.me.address.removesuffix('.')}"
        return
    text = content(rendering, "cluster.hocon")
    reference = content(service.render(alone(view, "192.0.2.1")), "cluster.hocon")
    assert len(lines_of(text)) == len(lines_of(reference))
    conf = ConfigFactory.parse_string(text)
    assert list(conf["cluster"]["static"]["seeds"]) == expected
    assert conf["node"]["name"] == f"emqx@{view.me.address.removesuffix('.')}"
    assert conf["node"]["cookie"] == COOKIE


# -- Kafka --------------------------------------------------------------------------------------


@PROPERTY
@example(hostile_pair(KafkaService.port_labels, KNOWN_HOSTILE[0]), 0, False, False)
@example(hostile_pair(KafkaService.port_labels, KNOWN_HOSTILE[1]), 0, False, False)
@given(raw_members(KafkaService.port_labels), st.integers(0, 5), st.booleans(), st.booleans())
def test_kafka_names_each_member_once_in_the_quorum_or_refuses(
    raw: list[RawMember], me_index: int, bind_any: bool, dynamic: bool
) -> None:
    """Proves the quorum line lists exactly one entry per member, its own, or is refused."""
    members = members_or_refusal(raw, KafkaService.port_labels)
    if not members:
        return
    service = KafkaService({"quorum": "dynamic" if dynamic else "static"})
    view = view_for(members, me_index, bind_any=bind_any, shared={"cluster_id": new_cluster_id()})
    if is_any_address(view.me.address):
        with pytest.raises(RenderError):
            service.render(view)
        return
    rendering = service.render(view)
    key = "controller.quorum.bootstrap.servers" if dynamic else "controller.quorum.voters"
    lines = lines_of(content(rendering, "server.properties"))
    (quorum,) = [line for line in lines if line.startswith(f"{key}=")]
    expected = [
        ("" if dynamic else f"{m.member_id}@") + f"{host(m.address)}:{m.ports['controller']}"
        for m in members
    ]
    assert quorum.removeprefix(f"{key}=").split(",") == expected
    me = view.me
    advertised = (
        f"advertised.listeners=PLAINTEXT://{host(me.address)}:{me.ports['broker']},"
        f"CONTROLLER://{host(me.address)}:{me.ports['controller']}"
    )
    assert advertised in lines
    reference = lines_of(content(service.render(alone(view)), "server.properties"))
    assert [line for line in lines if not line.startswith(f"{key}=")] == [
        line for line in reference if not line.startswith(f"{key}=")
    ]


def test_every_registered_service_has_a_property_here() -> None:
    """Proves no service adapter is registered without a renderer property in this module."""
    assert set(SERVICES) == COVERED
