"""The start flow over fakes: ids, waiting, shared values, rendering."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bootstrap.deadline import Deadline
from bootstrap.errors import MemberIdError, PeersMissing
from bootstrap.flow import Start
from bootstrap.model import Instance, SharedValue
from bootstrap.settings import ConsulSettings, Settings
from tests.fakes import FakeDiscovery, ListService


def settings_for(tmp_path: Path, n: int, *, expect: int = 3, **over: object) -> Settings:
    base: dict[str, object] = {
        "service": "list",
        "command": ("true",),
        "cluster": "c1",
        "consul_service": "c1",
        "expect": expect,
        "timeout_s": 5.0,
        "address": f"127.0.0.{10 + n}",
        "bind_address": f"127.0.0.{10 + n}",
        "ports": {"client": 2181, "peer": 2888},
        "bind_ports": {"client": 2181, "peer": 2888},
        "data_dir": tmp_path / f"m{n}" / "data",
        "conf_dir": tmp_path / f"m{n}" / "conf",
        "member_name": f"member-{n}",
        "alloc_index": None,
        "register": True,
        "tags": (),
        "meta": {},
        "kv_prefix": "cluster-bootstrap",
        "options": {},
        "consul": ConsulSettings(),
    }
    base.update(over)
    return Settings(**base)  # type: ignore[arg-type]


async def start_member(fake: FakeDiscovery, settings: Settings) -> tuple[int, str]:
    start = Start(settings, fake, ListService(), Deadline(settings.timeout_s))
    plan = await start.plan()
    await start.write(plan)
    return plan.view.member_id, (settings.conf_dir / "members.cfg").read_text()


async def test_three_members_started_together_get_distinct_ids_and_one_list(tmp_path: Path) -> None:
    """Proves concurrent starts claim distinct ids and render byte-identical member lists."""
    fake = FakeDiscovery()
    results = await asyncio.gather(
        *(start_member(fake, settings_for(tmp_path, n)) for n in (1, 2, 3))
    )
    assert sorted(r[0] for r in results) == [1, 2, 3]
    assert len({r[1] for r in results}) == 1
    assert results[0][1].count("member.") == 3


async def test_restarted_member_reclaims_its_id(tmp_path: Path) -> None:
    """Proves a member with the same name gets the same id back after a restart."""
    fake = FakeDiscovery()
    first = await asyncio.gather(
        *(start_member(fake, settings_for(tmp_path, n)) for n in (1, 2, 3))
    )
    again = await start_member(fake, settings_for(tmp_path, 2))
    assert again[0] == dict(zip((1, 2, 3), (r[0] for r in first), strict=True))[2]


async def test_moved_member_keeps_id_and_claim_follows_address(tmp_path: Path) -> None:
    """Proves a rescheduled member (same name, new address) keeps its id and moves its claim."""
    fake = FakeDiscovery()
    await asyncio.gather(*(start_member(fake, settings_for(tmp_path, n, expect=2)) for n in (1, 2)))
    await fake.deregister("c1-2")
    moved = settings_for(tmp_path, 2, expect=2, address="127.0.0.42")
    member_id, text = await start_member(fake, moved)
    assert member_id == 2
    assert "127.0.0.42" in text and "127.0.0.12" not in text


async def test_alloc_index_is_a_hint_not_the_id(tmp_path: Path) -> None:
    """Proves NOMAD_ALLOC_INDEX picks the id when free and yields when it is taken."""
    fake = FakeDiscovery()
    a = await start_member(fake, settings_for(tmp_path, 1, expect=1, alloc_index=4))
    b = await start_member(fake, settings_for(tmp_path, 2, expect=1, alloc_index=4))
    assert a[0] == 5
    assert b[0] == 1


async def test_wait_ends_with_peers_missing_at_the_deadline(tmp_path: Path) -> None:
    """Proves a start with too few peers fails with PeersMissing naming the count."""
    fake = FakeDiscovery()
    with pytest.raises(PeersMissing, match="1 of 3 members here"):
        await start_member(fake, settings_for(tmp_path, 1, timeout_s=0.5))


async def test_late_member_joins_those_already_waiting(tmp_path: Path) -> None:
    """Proves members waiting in blocking queries wake up when the last one arrives."""
    fake = FakeDiscovery()
    early = asyncio.gather(*(start_member(fake, settings_for(tmp_path, n)) for n in (1, 2)))
    await fake.until_parked(2, index=fake.index + 4)  # both claimed and registered, and waiting
    late = await start_member(fake, settings_for(tmp_path, 3))
    results = [*(await early), late]
    assert len({text for _, text in results}) == 1


async def test_hostile_registration_is_skipped_and_named_at_the_deadline(tmp_path: Path) -> None:
    """Proves an address with a newline and '=' is not a member: the deadline names it (exit 5)
    and it never reaches a rendered file."""
    fake = FakeDiscovery()
    fake.add_instance("c1", Instance("evil", "n", "10.0.0.1\nserver.9=x", 2181))
    settings = settings_for(tmp_path, 1, expect=2, timeout_s=0.5)
    with pytest.raises(PeersMissing, match=r"1 of 2 members.*refused, not counted.*evil"):
        await start_member(fake, settings)
    assert not (settings.conf_dir / "members.cfg").exists()


async def test_one_hostile_registration_cannot_stop_the_cluster(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Proves members form around a bad registration, which is warned about and left out."""
    fake = FakeDiscovery()
    fake.add_instance("c1", Instance("evil", "n", "10.0.0.1\nserver.9=x", 2181))
    results = await asyncio.gather(
        *(start_member(fake, settings_for(tmp_path, n, expect=2)) for n in (1, 2))
    )
    assert len({text for _, text in results}) == 1
    assert "server.9" not in results[0][1] and results[0][1].count("member.") == 2
    assert any("not a member, skipped" in r.message and "evil" in r.message for r in caplog.records)


async def test_id_on_disk_owned_by_another_member_is_an_error(tmp_path: Path) -> None:
    """Proves an id found on disk but claimed by someone else stops the start."""

    class DiskService(ListService):
        def member_id_on_disk(self, me: object) -> int | None:
            return 1

    fake = FakeDiscovery()
    await start_member(fake, settings_for(tmp_path, 1, expect=1))
    start = Start(settings_for(tmp_path, 2, expect=1), fake, DiskService(), Deadline(2))
    with pytest.raises(MemberIdError, match="claimed in Consul by 'member-1'"):
        await start.plan()


async def test_twenty_racing_claimers_end_with_twenty_ids(tmp_path: Path) -> None:
    """Proves create-only CAS gives every racer a different id."""
    fake = FakeDiscovery()
    starts = [
        Start(settings_for(tmp_path, n, expect=1), fake, ListService(), Deadline(5))
        for n in range(1, 21)
    ]
    ids = await asyncio.gather(*(s.membership.obtain_id(s.me, None) for s in starts))
    assert sorted(ids) == list(range(1, 21))


async def test_shared_value_is_created_once_and_read_by_all(tmp_path: Path) -> None:
    """Proves the first creator's shared value wins and every member reads the same."""

    counter = iter(range(100))

    class Shared(ListService):
        def shared_values(self) -> list[SharedValue]:
            return [SharedValue("cluster_id", False, lambda: f"value-{next(counter)}")]

    fake = FakeDiscovery()
    starts = [Start(settings_for(tmp_path, n), fake, Shared(), Deadline(5)) for n in (1, 2, 3)]
    values = await asyncio.gather(*(s.shared_values(create=True) for s in starts))
    assert len({v["cluster_id"] for v in values}) == 1


async def test_tag_and_meta_filters_pick_the_members(tmp_path: Path) -> None:
    """Proves registrations without the asked tags/meta are not members (nor waited for)."""
    fake = FakeDiscovery()
    fake.add_instance("c1", Instance("other", "n", "127.0.0.99", 2181, ("blue",), {"az": "b"}))
    filters = {"tags": ("blue",), "meta": {"az": "a"}}
    results = await asyncio.gather(
        *(start_member(fake, settings_for(tmp_path, n, expect=2, **filters)) for n in (1, 2))
    )
    texts = {text for _, text in results}
    assert len(texts) == 1
    text = texts.pop()
    assert text.count("member.") == 2 and "127.0.0.99" not in text
    assert all(i.meta.get("az") == "a" for sid, i in fake.services.items() if sid != "other")


def test_template_id_range_option_widens_and_checks_the_range() -> None:
    """Proves the template adapter takes id_min/id_max (e.g. 1,000 members) and refuses nonsense."""
    from adapters.template import TemplateService
    from bootstrap.errors import UsageError

    files = [{"path": "/tmp/x", "content": "x"}]
    assert TemplateService({"files": files, "id_max": 1000}).id_range == (1, 1000)
    with pytest.raises(UsageError, match=r"id range 9\.\.3 is empty"):
        TemplateService({"files": files, "id_min": 9, "id_max": 3})
    with pytest.raises(UsageError, match=r"options\.id_max: 'many'"):
        TemplateService({"files": files, "id_max": "many"})


@pytest.mark.parametrize("disk_id", [0, 256, 999])
async def test_preview_applies_the_same_id_rules_as_a_start(tmp_path: Path, disk_id: int) -> None:
    """Proves render --dry-run refuses a disk id outside the range, as a start does (one rule)."""

    class DiskService(ListService):
        def member_id_on_disk(self, me: object) -> int | None:
            return disk_id

    settings = settings_for(tmp_path, 1, expect=1)
    for run in ("plan", "preview"):
        start = Start(settings, FakeDiscovery(), DiskService(), Deadline(1))
        with pytest.raises(MemberIdError, match=f"id {disk_id} is outside 1..255"):
            await getattr(start, run)()
