"""The seam between py-consul's API layer and our transport (adapters/consul.py).

py-consul calls its transport's ``get``/``put``/``delete``/``post``; ours answers them with our
own session, limits and error mapping. These tests fail when py-consul's side of that seam moves
(a renamed or new method, a new parameter), instead of calls quietly going around our code.
"""

from __future__ import annotations

import ast
import base64
import inspect
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp.web
import consul.aio
import consul.base
import pytest

from adapters.consul import ConsulDiscovery, _Client, _Transport
from bootstrap.deadline import Deadline
from bootstrap.errors import ConsulBadAnswer, ConsulDenied
from bootstrap.settings import ConsulSettings

VERBS = ("get", "put", "delete", "post")


def test_transport_offers_every_method_py_consul_calls() -> None:
    """Proves our transport has each public method of py-consul's transport interface."""
    interface = {n for n in vars(consul.base.HTTPClient) if not n.startswith("_")}
    assert interface == {*VERBS, "uri", "close"}, "py-consul's transport interface changed"
    assert interface <= set(dir(_Transport))
    assert not issubclass(_Transport, consul.base.HTTPClient), "composed, not inherited"


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_takes_what_py_consul_passes(verb: str) -> None:
    """Proves py-consul's transport verbs still take callback and path, then keywords ours
    reads (params, headers, data) or may ignore (raw, connections_timeout)."""
    theirs = list(inspect.signature(getattr(consul.aio.HTTPClient, verb)).parameters)
    assert theirs[:3] == ["self", "callback", "path"], theirs
    assert set(theirs[3:]) <= {"params", "headers", "data", "raw", "connections_timeout"}, theirs
    ours = inspect.signature(_Transport._verb).parameters
    assert {"params", "headers", "data"} <= set(ours)


def test_py_consul_passes_everything_after_the_path_by_keyword() -> None:
    """Proves every call in py-consul's API layer gives its transport only callback and path
    positionally (ours takes the rest by keyword)."""
    calls = 0
    for module in (Path(consul.__file__).parent / "api").glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in VERBS
                and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr == "http"
            ):
                calls += 1
                assert len(node.args) <= 2, f"{module.name}:{node.lineno}"
                assert not any(isinstance(a, ast.Starred) for a in node.args)
    assert calls > 50  # the API layer's calls were found


@pytest.fixture
async def agent() -> AsyncIterator[tuple[ConsulSettings, list[str]]]:
    """A tiny HTTP server answering a KV read, a 403 on PUT, and a body that is not JSON."""
    seen: list[str] = []

    async def handle(request: aiohttp.web.Request) -> aiohttp.web.Response:
        seen.append(f"{request.method} {request.path_qs}")
        if request.method == "PUT":
            return aiohttp.web.Response(status=403, text="Permission denied")
        if request.path.endswith("/garbage"):
            return aiohttp.web.Response(text="<html>", headers={"X-Consul-Index": "3"})
        value = base64.b64encode(b"hello").decode()
        body = [{"Key": "a/b", "Value": value, "ModifyIndex": 7, "Flags": 0}]
        return aiohttp.web.Response(text=json.dumps(body), headers={"X-Consul-Index": "7"})

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield ConsulSettings(host="127.0.0.1", port=port, namespace="team-a"), seen
    finally:
        await runner.cleanup()


async def test_calls_go_through_our_transport(agent: tuple[ConsulSettings, list[str]]) -> None:
    """Proves a KV read, a refusal and a bad answer all pass our transport's mapping."""
    settings, seen = agent
    async with ConsulDiscovery(settings, Deadline(5)) as discovery:
        assert isinstance(discovery.client.http, _Transport)
        assert isinstance(discovery.client, _Client)
        entry = await discovery.kv_get("a/b")
        assert entry is not None and (entry.value, entry.modify_index) == ("hello", 7)
        with pytest.raises(ConsulDenied, match="403"):
            await discovery.kv_create("a/b", "x")
        with pytest.raises(ConsulBadAnswer, match="not valid"):
            await discovery.kv_get("garbage")
    assert seen[0] == "GET /v1/kv/a/b?ns=team-a", seen  # our extra parameters were added
