"""One contract, two implementations: the in-memory fake and a real Consul agent.

If the fake drifts from Consul, these tests fail for one of the two parameters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.consul import ConsulDiscovery
from bootstrap.deadline import Deadline
from bootstrap.errors import ConsulBadAnswer, ConsulDenied, ConsulUnavailable
from bootstrap.model import Instance
from bootstrap.ports import DiscoveryPort, HealthCheck, Registration
from bootstrap.settings import ConsulSettings
from testbed.consul import ConsulAgent
from testbed.procs import free_port
from tests.fakes import FakeDiscovery
from tests.integration.conftest import ACL_TOKEN


def real(agent: ConsulAgent, token: str | None = None, timeout_s: float = 30) -> ConsulDiscovery:
    settings = ConsulSettings(host="127.0.0.1", port=agent.http_port, token=token)
    return ConsulDiscovery(settings, Deadline(timeout_s))


@pytest.fixture(params=["fake", "consul"])
async def discovery(
    request: pytest.FixtureRequest, consul: ConsulAgent
) -> AsyncIterator[DiscoveryPort]:
    port: DiscoveryPort = FakeDiscovery() if request.param == "fake" else real(consul)
    async with port:
        yield port


def reg(cluster: str, n: int, address: str = "", check: HealthCheck | None = None) -> Registration:
    return Registration(
        f"{cluster}-{n}",
        cluster,
        address or f"127.0.0.{10 + n}",
        2181,
        ("zk",),
        {"cluster-bootstrap-id": str(n)},
        check,
    )


async def test_registered_instances_are_listed_in_any_health_state(
    discovery: DiscoveryPort, cluster: str
) -> None:
    """Proves members with a failing check are still listed (peers are unhealthy before quorum)."""
    failing = HealthCheck(tcp="127.0.0.1:1", interval="1s", timeout="1s")
    for n in (1, 2):
        await discovery.register(reg(cluster, n, check=failing))
    index, found = await discovery.instances(cluster)
    assert index >= 1
    assert sorted(i.address for i in found) == ["127.0.0.11", "127.0.0.12"]
    assert all(i.port == 2181 and "zk" in i.tags for i in found)
    assert {i.meta["cluster-bootstrap-id"] for i in found} == {"1", "2"}
    for n in (1, 2):
        await discovery.deregister(f"{cluster}-{n}")
    assert (await discovery.instances(cluster))[1] == []


async def test_create_only_cas_has_one_winner(discovery: DiscoveryPort, cluster: str) -> None:
    """Proves of two racing writers with cas=0 exactly one wins and the loser gets False."""
    key = f"cb-test/{cluster}/ids/1"
    results = await asyncio.gather(discovery.kv_create(key, "a"), discovery.kv_create(key, "b"))
    assert sorted(results) == [False, True]
    entry = await discovery.kv_get(key)
    assert entry is not None and entry.value == ("a" if results[0] else "b")


async def test_replace_needs_the_current_modify_index(
    discovery: DiscoveryPort, cluster: str
) -> None:
    """Proves a CAS update with a stale ModifyIndex loses and one with the current index wins."""
    key = f"cb-test/{cluster}/shared/x"
    assert await discovery.kv_create(key, "v1")
    entry = await discovery.kv_get(key)
    assert entry is not None
    assert await discovery.kv_replace(key, "v2", entry.modify_index)
    assert not await discovery.kv_replace(key, "v3", entry.modify_index)
    assert (await discovery.kv_get(key)) == (await discovery.kv_list(key))[1][key]


async def test_delete_needs_the_current_modify_index(
    discovery: DiscoveryPort, cluster: str
) -> None:
    """Proves a CAS delete (a released id claim) with a stale ModifyIndex keeps the key and one
    with the current index removes it."""
    key = f"cb-test/{cluster}/ids/7"
    assert await discovery.kv_create(key, "v1")
    first = await discovery.kv_get(key)
    assert first is not None
    assert await discovery.kv_replace(key, "v2", first.modify_index)
    assert not await discovery.kv_delete(key, first.modify_index)
    current = await discovery.kv_get(key)
    assert current is not None and current.value == "v2"
    assert await discovery.kv_delete(key, current.modify_index)
    assert await discovery.kv_get(key) is None


async def test_missing_key_is_none_and_empty_prefix_is_empty(
    discovery: DiscoveryPort, cluster: str
) -> None:
    """Proves absence is a value (None / {}), not an error."""
    assert await discovery.kv_get(f"cb-test/{cluster}/nope") is None
    index, entries = await discovery.kv_list(f"cb-test/{cluster}/nothing/")
    assert entries == {} and index >= 1


async def parked(discovery: DiscoveryPort, waiter: asyncio.Task[Any], index: int) -> None:
    """Until ``waiter`` is held in a blocking query on ``index``: the fake reports it; for the
    real agent, a query still unanswered after a while is one Consul holds."""
    if isinstance(discovery, FakeDiscovery):
        await discovery.until_parked(1, index)
    else:
        await asyncio.sleep(0.3)
    assert not waiter.done(), "the blocking query returned before anything changed"


async def test_blocking_query_wakes_on_change(discovery: DiscoveryPort, cluster: str) -> None:
    """Proves a blocking query returns when a member registers, well before its wait ends."""
    index, _ = await discovery.instances(cluster)
    waiter = asyncio.create_task(discovery.instances(cluster, index=index, wait_s=20))
    await parked(discovery, waiter, index)
    await discovery.register(reg(cluster, 3))
    new_index, found = await asyncio.wait_for(waiter, 10)
    assert new_index > index and [i.address for i in found] == ["127.0.0.13"]
    await discovery.deregister(f"{cluster}-3")


async def test_blocking_query_on_kv_prefix(discovery: DiscoveryPort, cluster: str) -> None:
    """Proves a blocking KV list returns when a key under the prefix is created."""
    prefix = f"cb-test/{cluster}/ids/"
    index, _ = await discovery.kv_list(prefix)
    waiter = asyncio.create_task(discovery.kv_list(prefix, index=index, wait_s=20))
    await parked(discovery, waiter, index)
    assert await discovery.kv_create(prefix + "4", "x")
    _, entries = await asyncio.wait_for(waiter, 10)
    assert list(entries) == [prefix + "4"]


async def test_hostile_address_is_returned_raw_for_the_core_to_refuse(
    consul: ConsulAgent, cluster: str
) -> None:
    """Proves Consul stores an address with a newline, and discovery hands it over unaltered."""
    consul.register(cluster, f"{cluster}-evil", "10.0.0.1\nserver.9=x", 2181)
    async with real(consul) as discovery:
        _, found = await discovery.instances(cluster)
    raw = Instance(f"{cluster}-evil", found[0].node, "10.0.0.1\nserver.9=x", 2181, health="passing")
    assert found == [raw]  # health: the node's serfHealth, the worst (only) check it has
    consul.deregister(f"{cluster}-evil")


async def test_unreachable_agent_raises_unavailable_at_the_deadline(tmp_path: Path) -> None:
    """Proves connection refused is retried until the deadline, then ConsulUnavailable."""
    settings = ConsulSettings(host="127.0.0.1", port=free_port())
    started = time.monotonic()
    async with ConsulDiscovery(settings, Deadline(1.5)) as discovery:
        with pytest.raises(ConsulUnavailable, match="gave up after"):
            await discovery.kv_get("x")
    assert time.monotonic() - started >= 1.4


async def test_token_without_rights_is_denied_at_once(consul_acl: ConsulAgent) -> None:
    """Proves a 403 is ConsulDenied naming the permission, raised without retrying."""
    read_only = consul_acl.create_token('key_prefix "" { policy = "read" }')
    started = time.monotonic()
    async with real(consul_acl, token=read_only) as discovery:
        with pytest.raises(ConsulDenied, match="lacks permission 'key:write'"):
            await discovery.kv_create("cb-test/acl/x", "v")
    assert time.monotonic() - started < 5, "a 403 must not be retried until the deadline"
    async with real(consul_acl, token=ACL_TOKEN) as discovery:
        assert await discovery.kv_create("cb-test/acl/y", "v") in (True, False)


async def test_a_session_lock_has_one_holder_and_a_release_frees_it(
    discovery: DiscoveryPort, cluster: str
) -> None:
    """Proves a lock taken by one session is refused to another until released; a release by
    a session that does not hold it is False; the holder shows in the entry."""
    key = f"cb-test/{cluster}/lock"
    first = await discovery.session_create("first", 10, 0)
    second = await discovery.session_create("second", 10, 0)
    assert await discovery.lock_acquire(key, first, "first: test")
    assert not await discovery.lock_acquire(key, second, "second: test")
    entry = await discovery.kv_get(key)
    assert entry is not None and entry.session == first and entry.value == "first: test"
    assert not await discovery.lock_release(key, second)
    assert await discovery.lock_release(key, first)
    entry = await discovery.kv_get(key)
    assert entry is not None and entry.session is None
    assert await discovery.lock_acquire(key, second, "second: test")
    for session in (first, second):
        await discovery.session_destroy(session)


async def test_a_dead_holders_lock_is_refused_for_its_lock_delay(
    discovery: DiscoveryPort, cluster: str
) -> None:
    """Proves a session that ends while holding a lock frees it, but only after its
    lock-delay; renewing an ended session is False, destroying it again is no error."""
    key = f"cb-test/{cluster}/lock"
    holder = await discovery.session_create("holder", 10, 1)
    other = await discovery.session_create("other", 10, 0)
    assert await discovery.session_renew(holder)
    assert await discovery.lock_acquire(key, holder, "holder")
    await discovery.session_destroy(holder)
    assert not await discovery.session_renew(holder)
    await discovery.session_destroy(holder)
    entry = await discovery.kv_get(key)
    assert entry is not None and entry.session is None
    assert not await discovery.lock_acquire(key, other, "other")  # inside the lock-delay
    await asyncio.sleep(1.5)
    assert await discovery.lock_acquire(key, other, "other")
    await discovery.session_destroy(other)


async def test_report_health_sets_a_ttl_check_and_refuses_an_unknown_one(
    discovery: DiscoveryPort, cluster: str, consul: ConsulAgent
) -> None:
    """Proves a TTL check starts in the status it is registered with (Consul's default is
    critical), report_health moves it, and an unknown check id is ConsulBadAnswer, not a silent
    success."""
    await discovery.register(reg(cluster, 1, check=HealthCheck(ttl="30s", status="warning")))
    if isinstance(discovery, ConsulDiscovery):
        _, checks = consul.request("GET", f"/v1/health/checks/{cluster}")
        assert isinstance(checks, list) and checks[0]["Status"] == "warning"
    await discovery.report_health(f"service:{cluster}-1", "passing", "up")
    if isinstance(discovery, ConsulDiscovery):
        _, checks = consul.request("GET", f"/v1/health/checks/{cluster}")
        assert isinstance(checks, list) and checks[0]["Status"] == "passing"
    with pytest.raises(ConsulBadAnswer):
        await discovery.report_health(f"service:{cluster}-none", "passing", "up")
    await discovery.deregister(f"{cluster}-1")
