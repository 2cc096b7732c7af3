"""The EMQX adapter's rendering, parsed back with pyhocon: names, one cookie, identical seeds.

No EMQX server runs here (none can be had from the reachable package registries): the checks
parse the output and compare it with what EMQX documents and what its start scripts read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyhocon import ConfigFactory
from pyparsing import ParseBaseException

from adapters.emqx import EmqxService, hocon_string, new_cookie
from bootstrap.errors import RenderError, UsageError
from bootstrap.files import write_all
from bootstrap.model import ClusterView, Me, Member, Rendering

PORTS = dict(EmqxService.port_labels)
COOKIE = "Kq3Xv9_Lm2-Zt7Pw4Rb8Yn1Hc6Jd0Fs5Ge"
ADDRESSES = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
BASE = Path("/srv/emqx-test")  # never written: render only computes paths


def build_view(
    addresses: tuple[str, ...] = ADDRESSES,
    me_index: int = 0,
    *,
    ids: tuple[int, ...] | None = None,
    shared: dict[str, str] | None = None,
    ports: dict[str, int] = PORTS,
    base: Path = BASE,
) -> ClusterView:
    member_ids = ids or tuple(range(1, len(addresses) + 1))
    members = tuple(
        sorted(
            (
                Member(i, a, dict(ports), f"m{i}")
                for i, a in zip(member_ids, addresses, strict=True)
            ),
            key=lambda m: m.member_id,
        )
    )
    me = Me(
        f"m{member_ids[me_index]}",
        addresses[me_index],
        dict(ports),
        "0.0.0.0",
        dict(ports),
        base / "data",
        base / "etc",
    )
    return ClusterView(me, member_ids[me_index], members, shared or {"cookie": COOKIE}, {})


def render(view: ClusterView, **options: Any) -> Rendering:
    return EmqxService(options).render(view)


def only_file(rendering: Rendering) -> str:
    assert len(rendering.files) == 1
    return rendering.files[0].content


def emqx_env_value(raw: str) -> Any:
    """An ``EMQX_*`` value as EMQX 5 reads it (hocon_tconf ``read_hocon_val``).

    The value is parsed as HOCON ``fake_key=<value>``; a value that does not parse is taken as
    the plain string.
    """
    try:
        return ConfigFactory.parse_string(f"fake_key = {raw}")["fake_key"]
    except ParseBaseException:
        return raw


def test_file_form_parses_to_node_name_cookie_and_static_seeds() -> None:
    """Proves the EMQX 5 file is HOCON holding node.name, node.cookie and the static seeds."""
    conf = ConfigFactory.parse_string(only_file(render(build_view())))
    assert conf["node"]["name"] == "emqx@10.0.0.1"
    assert conf["node"]["cookie"] == COOKIE
    assert conf["cluster"]["discovery_strategy"] == "static"
    assert list(conf["cluster"]["static"]["seeds"]) == [f"emqx@{a}" for a in ADDRESSES]


def test_every_member_renders_the_same_seeds_in_id_order() -> None:
    """Proves all members compute one seed list, ordered by member id, each with its own name."""
    addresses = ("10.0.0.30", "10.0.0.10", "10.0.0.20")
    ids = (3, 1, 2)
    parsed = [
        ConfigFactory.parse_string(only_file(render(build_view(addresses, n, ids=ids))))
        for n in range(3)
    ]
    seeds = {tuple(conf["cluster"]["static"]["seeds"]) for conf in parsed}
    assert seeds == {("emqx@10.0.0.10", "emqx@10.0.0.20", "emqx@10.0.0.30")}
    assert [conf["node"]["name"] for conf in parsed] == [f"emqx@{a}" for a in addresses]
    assert {conf["node"]["cookie"] for conf in parsed} == {COOKIE}


def test_file_holding_the_cookie_is_secret_and_written_0600(tmp_path: Path) -> None:
    """Proves the rendered file is flagged secret, 0600, and lands at <conf_dir>/cluster.hocon."""
    view = build_view(base=tmp_path)
    rendering = render(view)
    (rendered,) = rendering.files
    assert rendered.secret and rendered.mode == 0o600
    assert rendered.path == tmp_path / "etc" / "cluster.hocon"
    write_all(rendering.files)
    assert rendered.path.stat().st_mode & 0o777 == 0o600


def test_cookie_appears_only_on_the_cookie_line() -> None:
    """Proves the file form carries the cookie on node.cookie alone; the env holds only the name."""
    rendering = render(build_view())
    lines = [line for line in only_file(rendering).splitlines() if COOKIE in line]
    assert lines == [f'node.cookie = "{COOKIE}"']
    assert rendering.env == {"EMQX_NODE_NAME": "emqx@10.0.0.1", "EMQX_NODE__NAME": "emqx@10.0.0.1"}
    assert rendering.secret_env == frozenset()


def test_env_form_values_read_as_emqx_reads_them() -> None:
    """Proves EMQX 5 env values: HOCON seeds array and strategy, plain name and cookie."""
    rendering = render(build_view(), output="env")
    env = rendering.env
    assert rendering.files == ()
    assert set(env) == {
        "EMQX_NODE_NAME",
        "EMQX_NODE__NAME",
        "EMQX_NODE__COOKIE",
        "EMQX_CLUSTER__DISCOVERY_STRATEGY",
        "EMQX_CLUSTER__STATIC__SEEDS",
    }
    seeds = ConfigFactory.parse_string(f"k = {env['EMQX_CLUSTER__STATIC__SEEDS']}")["k"]
    assert list(seeds) == [f"emqx@{a}" for a in ADDRESSES]
    strategy = ConfigFactory.parse_string(f"k = {env['EMQX_CLUSTER__DISCOVERY_STRATEGY']}")["k"]
    assert strategy == "static"
    # bin/common_defs2.sh uses these two unparsed for -name/-setcookie: no quotes allowed.
    assert env["EMQX_NODE_NAME"] == env["EMQX_NODE__NAME"] == "emqx@10.0.0.1"
    assert env["EMQX_NODE__COOKIE"] == COOKIE
    assert emqx_env_value(env["EMQX_NODE__NAME"]) == "emqx@10.0.0.1"
    assert emqx_env_value(env["EMQX_NODE__COOKIE"]) == COOKIE


def test_env_form_marks_the_cookie_secret_and_keeps_it_out_of_other_values() -> None:
    """Proves only EMQX_NODE__COOKIE holds the cookie, and it is the one secret variable."""
    rendering = render(build_view(), output="env")
    assert rendering.secret_env == frozenset({"EMQX_NODE__COOKIE"})
    holders = {name for name, value in rendering.env.items() if COOKIE in value}
    assert holders == {"EMQX_NODE__COOKIE"}


def test_emqx_44_env_form_uses_plain_values() -> None:
    """Proves the 4.4 env form (its default): plain values, both spellings of name and cookie."""
    rendering = render(build_view(), version="4.4")
    assert rendering.files == ()
    assert rendering.env == {
        "EMQX_NODE_NAME": "emqx@10.0.0.1",
        "EMQX_NODE__NAME": "emqx@10.0.0.1",
        "EMQX_NODE_COOKIE": COOKIE,
        "EMQX_NODE__COOKIE": COOKIE,
        "EMQX_CLUSTER__DISCOVERY": "static",
        "EMQX_CLUSTER__STATIC__SEEDS": "emqx@10.0.0.1,emqx@10.0.0.2,emqx@10.0.0.3",
    }
    assert rendering.secret_env == frozenset({"EMQX_NODE_COOKIE", "EMQX_NODE__COOKIE"})


@pytest.mark.parametrize(
    "cookie",
    [
        'Abcdefgh"ij',
        "Abcdefgh\nnode.name = x",
        "Abcdefghij\n",
        "Abcdefgh\\ij",
        "Abcdefgh ij",
        "Abcdefgh#ij",
        "Abcdefgh'ij",
        "0bcdefghij",
        "Abc",
        "",
    ],
)
@pytest.mark.parametrize("output", ["file", "env"])
def test_hostile_cookie_is_refused_without_being_shown(cookie: str, output: str) -> None:
    """Proves a shared cookie with quotes, newline, spaces etc. is a RenderError naming no value."""
    with pytest.raises(RenderError, match="not a usable EMQX cookie") as caught:
        render(build_view(shared={"cookie": cookie}), output=output)
    assert cookie == "" or cookie not in str(caught.value)


def test_missing_cookie_is_a_render_error() -> None:
    """Proves rendering without the shared cookie fails instead of inventing one per node."""
    with pytest.raises(RenderError, match="'cookie' is missing"):
        render(build_view(shared={"other": "x"}))


@pytest.mark.parametrize("prefix", ["emqx1", "em qx", "", "emqx@host", "emqx\n", 7, None])
def test_bad_node_name_prefix_is_a_usage_error(prefix: object) -> None:
    """Proves a prefix with a numeric suffix or outside ^[0-9A-Za-z_-]+$ fails at construction."""
    with pytest.raises(UsageError, match="node_name_prefix"):
        EmqxService({"node_name_prefix": prefix})


def test_custom_prefix_names_this_node_and_every_seed() -> None:
    """Proves node_name_prefix is used for the node name and for every seed."""
    conf = ConfigFactory.parse_string(only_file(render(build_view(), node_name_prefix="broker")))
    assert conf["node"]["name"] == "broker@10.0.0.1"
    assert list(conf["cluster"]["static"]["seeds"]) == [f"broker@{a}" for a in ADDRESSES]


def test_all_option_problems_are_reported_at_once() -> None:
    """Proves unknown options and bad values are collected into one UsageError naming the known."""
    with pytest.raises(UsageError) as caught:
        EmqxService({"cookie": "x", "verison": 5, "version": 6, "output": "stdout"})
    problems = caught.value.problems
    assert len(problems) == 4
    assert "known: version, output, conf_file, node_name_prefix" in problems[0]
    assert any("options.version" in p for p in problems)
    assert any("options.output" in p for p in problems)


def test_conf_file_option_moves_the_file_and_is_refused_with_env(tmp_path: Path) -> None:
    """Proves conf_file sets the path for output file and is a usage error with output env."""
    target = tmp_path / "custom.hocon"
    (rendered,) = render(build_view(), conf_file=str(target)).files
    assert rendered.path == target
    with pytest.raises(UsageError, match="only used with output=file"):
        EmqxService({"conf_file": str(target), "output": "env"})


def test_emqx_own_cluster_hocon_is_never_the_target() -> None:
    """Proves rendering into <data_dir>/configs/cluster.hocon (EMQX's synced file) is refused."""
    with pytest.raises(RenderError, match="EMQX owns this file"):
        render(build_view(), conf_file=str(BASE / "data" / "configs" / "cluster.hocon"))


@pytest.mark.parametrize("address", ["fd00::1", "emqxhost"])
def test_addresses_emqx_cannot_use_as_long_names_are_refused(address: str) -> None:
    """Proves an IPv6 address or a host name without a dot is refused for a node name."""
    with pytest.raises(RenderError, match="node names"):
        render(build_view(("10.0.0.1", address), 0))


def test_fully_qualified_names_become_node_names() -> None:
    """Proves host names work, with a trailing dot dropped so every member spells them alike."""
    view = build_view(("a.emqx.example.", "b.emqx.example"), 0)
    conf = ConfigFactory.parse_string(only_file(render(view)))
    assert conf["node"]["name"] == "emqx@a.emqx.example"
    assert list(conf["cluster"]["static"]["seeds"]) == [
        "emqx@a.emqx.example",
        "emqx@b.emqx.example",
    ]


@pytest.mark.parametrize("label", ["dist", "rpc"])
def test_dynamic_distribution_ports_are_refused(label: str) -> None:
    """Proves a member advertising another dist/rpc port (a dynamic host port) is a RenderError."""
    with pytest.raises(RenderError, match=f"{label} port 31001"):
        render(build_view(ports={**PORTS, label: 31001}))


def test_cookie_is_one_secret_shared_value_and_new_cookies_render() -> None:
    """Proves the cookie is declared secret and every generated cookie is accepted by render."""
    (shared,) = EmqxService({}).shared_values()
    assert shared.name == "cookie" and shared.secret
    cookies = {shared.create() for _ in range(200)}
    assert len(cookies) == 200
    for cookie in cookies:
        rendering = render(build_view(shared={"cookie": cookie}), output="env")
        assert emqx_env_value(rendering.env["EMQX_NODE__COOKIE"]) == cookie
    assert new_cookie()[0].isalpha()


def test_health_check_asks_the_dashboard_status() -> None:
    """Proves the registered check is HTTP GET /status on this member's dashboard port."""
    check = EmqxService({}).health_check(build_view().me)
    assert check.http == "http://10.0.0.1:18083/status"
    assert check.tcp is None and check.ttl is None


def test_class_declares_ports_and_image_directories() -> None:
    """Proves the port labels (mqtt primary) and the official image's directories."""
    assert EmqxService.primary_port() == "mqtt"
    assert dict(EmqxService.port_labels) == {
        "mqtt": 1883,
        "dist": 4370,
        "rpc": 5369,
        "dashboard": 18083,
    }
    assert EmqxService.default_data_dir == "/opt/emqx/data"
    assert EmqxService.default_conf_dir == "/opt/emqx/etc"


@pytest.mark.parametrize("value", ['a"b', "line\nbreak", "back\\slash", "${x}", "é ✓", "}{]["])
def test_hocon_string_cannot_be_broken_out_of(value: str) -> None:
    """Proves the one quoting helper round-trips odd strings through a HOCON parser intact."""
    assert ConfigFactory.parse_string(f"k = {hocon_string(value)}")["k"] == value


@st.composite
def members_in_any_order(draw: st.DrawFn) -> tuple[tuple[str, ...], tuple[int, ...]]:
    size = draw(st.integers(1, 7))
    addresses = draw(
        st.lists(st.ip_addresses(v=4).map(str), min_size=size, max_size=size, unique=True)
    )
    ids = draw(st.lists(st.integers(1, 255), min_size=size, max_size=size, unique=True))
    return tuple(addresses), tuple(ids)


@given(members_in_any_order(), st.data())
def test_seeds_are_exactly_one_name_per_member_in_id_order(
    cluster: tuple[tuple[str, ...], tuple[int, ...]], data: st.DataObject
) -> None:
    """Proves for 1..7 random IPv4 members the parsed seeds are one emqx@addr each, by id."""
    addresses, ids = cluster
    me_index = data.draw(st.integers(0, len(addresses) - 1))
    view = build_view(addresses, me_index, ids=ids)
    expected = [f"emqx@{a}" for _, a in sorted(zip(ids, addresses, strict=True))]
    conf = ConfigFactory.parse_string(only_file(render(view)))
    assert list(conf["cluster"]["static"]["seeds"]) == expected
    env = render(view, output="env").env
    assert list(ConfigFactory.parse_string(f"k = {env['EMQX_CLUSTER__STATIC__SEEDS']}")["k"]) == (
        expected
    )
