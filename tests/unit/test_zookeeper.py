"""The ZooKeeper adapter's rendering: one server list for all, myid, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.zookeeper import SUPERUSER_SHARED, ZooKeeperService
from bootstrap.errors import MemberIdError, UsageError
from bootstrap.files import write_all
from bootstrap.model import ClusterView, Me, Member

PORTS = {"client": 2181, "quorum": 2888, "election": 3888}
MEMBERS = tuple(Member(i, f"10.0.0.{i}", PORTS, f"m{i}") for i in (1, 2, 3))


PASSWORD = "pw-" + "x" * 40


def view_for(
    tmp_path: Path,
    member_id: int,
    bind: str = "0.0.0.0",
    members: tuple[Member, ...] = MEMBERS,
    shared: dict[str, str] | None = None,
) -> ClusterView:
    me = Me(
        f"m{member_id}",
        f"10.0.0.{member_id}",
        PORTS,
        bind,
        PORTS,
        tmp_path / f"d{member_id}",
        tmp_path / f"c{member_id}",
    )
    return ClusterView(
        me, member_id, members, {SUPERUSER_SHARED: PASSWORD} if shared is None else shared, {}
    )


def server_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("server.")]


def test_every_member_renders_the_same_server_list(tmp_path: Path) -> None:
    """Proves the server lines are byte-identical on all members and sorted by id."""
    zk = ZooKeeperService({})
    lists = {
        tuple(server_lines(zk.render(view_for(tmp_path, i)).files[0].content)) for i in (1, 2, 3)
    }
    assert lists == {
        (
            "server.1=10.0.0.1:2888:3888;2181",
            "server.2=10.0.0.2:2888:3888;2181",
            "server.3=10.0.0.3:2888:3888;2181",
        )
    }


def test_cluster_lines_and_myid(tmp_path: Path) -> None:
    """Proves standaloneEnabled=false, listen-on-all for 0.0.0.0, 4lw whitelist, myid last."""
    rendering = ZooKeeperService({}).render(view_for(tmp_path, 2))
    conf, myid = rendering.files
    assert "standaloneEnabled=false" in conf.content
    assert "quorumListenOnAllIPs=true" in conf.content
    assert "4lw.commands.whitelist=srvr,mntr,ruok,conf" in conf.content
    assert myid.path == tmp_path / "d2" / "myid" and myid.content == "2\n"
    assert rendering.env["ZOOCFGDIR"] == str(tmp_path / "c2")


def test_specific_bind_address_puts_client_address_in_lines(tmp_path: Path) -> None:
    """Proves members sharing a machine bind their own client address, not 0.0.0.0."""
    conf = ZooKeeperService({}).render(view_for(tmp_path, 1, bind="10.0.0.1")).files[0].content
    assert "server.1=10.0.0.1:2888:3888;10.0.0.1:2181" in conf
    assert "quorumListenOnAllIPs=false" in conf


def test_extras_cannot_override_cluster_lines() -> None:
    """Proves user extras that would change the ensemble are refused, all at once."""
    with pytest.raises(UsageError) as err:
        ZooKeeperService(
            {
                "extra": {
                    "server.9": "x:1:2",
                    "standaloneEnabled": "true",
                    "autopurge.purgeInterval": "1\nserver.8=evil",
                }
            }
        )
    assert len(err.value.problems) == 3
    zk = ZooKeeperService({"extra": {"autopurge.purgeInterval": 24}})
    assert "autopurge.purgeInterval=24" in zk.render(view_for(Path("/tmp"), 1)).files[0].content


def test_unknown_option_is_a_usage_error() -> None:
    """Proves a misspelt option is named with the list of known ones."""
    with pytest.raises(UsageError, match="unknown ZooKeeper option 'tick'"):
        ZooKeeperService({"tick": 1})


def test_reconfig_seeds_dynamic_file_once(tmp_path: Path) -> None:
    """Proves the dynamic file and zoo.cfg are written on first boot and never again."""
    zk = ZooKeeperService({"reconfig": True})
    first = zk.render(view_for(tmp_path, 1))
    dynamic, static, _, _ = first.files
    assert dynamic.write_once and static.write_once
    assert f"dynamicConfigFile={dynamic.path}" in static.content
    assert "server." not in static.content and len(server_lines(dynamic.content)) == 3
    write_all(first.files)
    dynamic.path.write_text("server.1=owned-by-zookeeper\n")
    write_all(zk.render(view_for(tmp_path, 1, members=MEMBERS[:2])).files)
    assert dynamic.path.read_text() == "server.1=owned-by-zookeeper\n"


def test_myid_on_disk(tmp_path: Path) -> None:
    """Proves an existing myid wins and a broken one is a MemberIdError, not a crash."""
    zk = ZooKeeperService({})
    me = view_for(tmp_path, 1).me
    assert zk.member_id_on_disk(me) is None
    me.data_dir.mkdir(parents=True)
    (me.data_dir / "myid").write_text("7\n")
    assert zk.member_id_on_disk(me) == 7
    (me.data_dir / "myid").write_text("seven")
    with pytest.raises(MemberIdError, match="not a member id"):
        zk.member_id_on_disk(me)
