"""The EMQX adapter's names, cookie and seeds, proven on a real Erlang distribution.

Three Erlang nodes (``testbed/erlang.py``) start with exactly the ``-name`` and ``-setcookie``
that EMQX would get from the agent's rendering through the official image's scripts
(``tests/emqx_image.py``), epmd-less on port 4370 of 127.0.0.71-.73, as three hosts would. Each
pings every seed the rendering lists; a fourth node with another cookie must reach none.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest
from pyhocon import ConfigFactory

from adapters.emqx import EmqxService, new_cookie
from bootstrap.files import write_all
from bootstrap.model import ClusterView, Me, Member, RenderedFile, Rendering
from testbed.consul import ConsulAgent
from testbed.erlang import ErlangNode
from testbed.procs import agent_args
from tests import emqx_image
from tests.integration.conftest import finish, spawn_agent

ADDRESSES = ("127.0.0.71", "127.0.0.72", "127.0.0.73")
OUTSIDER = "127.0.0.74"
PORTS = dict(EmqxService.port_labels)


def view(me_index: int, cookie: str, base: Path) -> ClusterView:
    members = tuple(Member(i + 1, a, PORTS, f"m{i + 1}") for i, a in enumerate(ADDRESSES))
    address = ADDRESSES[me_index]
    me = Me(f"m{me_index + 1}", address, PORTS, address, PORTS, base / "data", base / "etc")
    return ClusterView(me, me_index + 1, members, {"cookie": cookie}, {})


def started_5(rendering: Rendering) -> tuple[str, str, list[str]]:
    """(-name, -setcookie, seeds) of EMQX 5 started through the image with ``rendering``."""
    write_all(rendering.files)
    include = str(rendering.files[0].path) if rendering.files else None
    emqx_conf = emqx_image.emqx_conf_5(include)
    name, cookie = emqx_image.bin_emqx_5(emqx_image.entrypoint_5(rendering.env), emqx_conf)
    if rendering.files:
        seeds = ConfigFactory.parse_string(emqx_conf)["cluster"]["static"]["seeds"]
    else:
        raw = rendering.env["EMQX_CLUSTER__STATIC__SEEDS"]
        seeds = ConfigFactory.parse_string(f"k = {raw}")["k"]
    return name, cookie, list(seeds)


def started_44(rendering: Rendering) -> tuple[str, str, list[str]]:
    """(-name, -setcookie, seeds) of EMQX 4.4 started through the image with ``rendering``."""
    settings = emqx_image.cuttlefish_44(emqx_image.entrypoint_44(rendering.env))
    seeds = [s.strip() for s in settings["cluster.static.seeds"].split(",")]
    return settings["node.name"], settings["node.cookie"], seeds


def prove_one_cluster(started: list[tuple[str, str, list[str]]], cookie: str) -> None:
    """Start one Erlang node per (name, cookie, seeds); each must reach every seed, an outsider
    with another cookie none."""
    names = [name for name, _, _ in started]
    assert names == [f"emqx@{a}" for a in ADDRESSES]
    assert {c for _, c, _ in started} == {cookie}
    seed_lists = {tuple(seeds) for _, _, seeds in started}
    assert len(seed_lists) == 1, seed_lists  # one list (in member-id order) on every node
    assert sorted(seed_lists.pop()) == sorted(names)
    with ExitStack() as stack:
        nodes = [stack.enter_context(ErlangNode(n, c, s)) for n, c, s in started]
        probes = [node.probe(timeout_s=60) for node in nodes]
        outsider = stack.enter_context(
            ErlangNode(f"emqx@{OUTSIDER}", new_cookie(), names, ping_deadline_s=2)
        )
        stranger = outsider.probe(timeout_s=30)
    assert [p.node for p in probes] == names  # the seeds parse as the nodes' real names
    for probe in probes:
        assert probe.pings == dict.fromkeys(names, "pong"), probe
    assert stranger.pings == dict.fromkeys(names, "pang")


FORMS: dict[str, tuple[dict[str, object], Callable[[Rendering], tuple[str, str, list[str]]]]] = {
    "emqx5-file": ({"output": "file"}, started_5),
    "emqx5-env": ({"output": "env"}, started_5),
    "emqx44-env": ({"version": 4}, started_44),
}


@pytest.mark.parametrize("form", FORMS)
def test_rendered_names_and_cookie_form_an_erlang_cluster(form: str, tmp_path: Path) -> None:
    """Proves every node reaches every seed (pong) with the rendered names and shared cookie,
    the seeds are the nodes' own names, and a node with another cookie reaches none (pang)."""
    options, start = FORMS[form]
    cookie = new_cookie()
    started = [
        start(EmqxService(options).render(view(n, cookie, tmp_path / f"m{n}")))
        for n in range(len(ADDRESSES))
    ]
    prove_one_cluster(started, cookie)


def test_a_seed_that_is_not_a_node_name_is_unreachable() -> None:
    """Proves the probe can fail: a seed with the wrong host part answers pang, not pong."""
    cookie = new_cookie()
    with ErlangNode(f"emqx@{ADDRESSES[0]}", cookie, ["emqx@127.0.0.79"], ping_deadline_s=1) as node:
        probe = node.probe(timeout_s=30)
    assert probe.pings == {"emqx@127.0.0.79": "pang"}


@pytest.mark.parametrize("form", FORMS)
def test_names_from_real_agent_starts_form_an_erlang_cluster(
    consul: ConsulAgent, cluster: str, form: str, tmp_path: Path
) -> None:
    """Proves the same end to end: three agents find each other through a real Consul agent and
    exec a command that keeps their environment; the nodes started from it form one cluster."""
    options, start = FORMS[form]
    sets = [arg for k, v in options.items() for arg in ("--set", f"{k}={v}")]
    procs = [
        spawn_agent(
            agent_args(
                "emqx",
                cluster=cluster,
                expect=len(ADDRESSES),
                address=address,
                member_name=f"{cluster}-{n}",
                member_dir=tmp_path / f"m{n}",
                command=["sh", "-c", f"env -0 > '{tmp_path}/m{n}.env'"],
                extra=sets,
            ),
            consul.env(),
        )
        for n, address in enumerate(ADDRESSES)
    ]
    for proc in procs:
        result = finish(proc)
        assert result.code == 0, result.stderr[-1500:]
    started = []
    for n in range(len(ADDRESSES)):
        raw = (tmp_path / f"m{n}.env").read_bytes().decode().split("\0")
        env = dict(item.split("=", 1) for item in raw if item.startswith("EMQX_"))
        files = tuple(
            RenderedFile(path, path.read_text()) for path in (tmp_path / f"m{n}" / "conf").glob("*")
        )
        started.append(start(Rendering(files, env)))
    status, cookie = consul.request("GET", f"/v1/kv/cluster-bootstrap/{cluster}/shared/cookie?raw")
    assert status == 200 and isinstance(cookie, str)
    prove_one_cluster(started, cookie)
