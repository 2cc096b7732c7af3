"""ZooKeeper day 2 in supervise mode, on real ZooKeeper 3.9.5 and a real Consul agent: the
members' agents promote joiners and remove lost voters online (``bootstrap.keeper``), one
change at a time, while a client writes a sequential znode every 100 ms.

Nomad's semantics are played by hand: a lost member's process group is killed and its
registration removed. Members live on 127.0.0.121..., the rescheduled member's ensemble on
127.0.0.171...
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from testbed.consul import ConsulAgent
from testbed.jvm import four_letter
from testbed.procs import wait_until
from testbed.zookeeper import PORTS, Writer, ZkEnsemble, server_address, server_view
from tests.integration.conftest import run_agent
from tests.integration.test_roster import lose, member_id, roster, roster_ids

FIRST_HOST = 121
MOVED_FIRST_HOST = 171  # 127.0.0.171-.173, the rescheduled member at .174
REMOVE_AFTER_S = 3
SUPERVISED = [
    "--set",
    "reconfig=true",
    "--supervise",
    "--register",
    "--remove-after",
    f"{REMOVE_AFTER_S}s",
]
TIMEOUT_S = 120


def ensemble(consul: ConsulAgent, tmp_path: Path, cluster: str, size: int) -> ZkEnsemble:
    return ZkEnsemble(
        consul,
        tmp_path,
        size,
        cluster,
        SUPERVISED,
        first_host=FIRST_HOST,
        expect=3,
        server_jvmflags=True,
    )


def agreed(zk: ZkEnsemble, consul: ConsulAgent, members: list[int]) -> list[int] | None:
    """The roster's voters when every listed member's server runs exactly those, else None."""
    ids = roster_ids(consul, zk.cluster)
    try:
        views = [server_view(zk.host(n))[0] for n in members]
    except OSError:
        return None
    return ids if all(view == ids for view in views) else None


def writing(zk: ZkEnsemble, members: list[int]) -> Writer:
    writer = Writer(",".join(f"{zk.host(n)}:2181" for n in members), f"/{zk.cluster}")
    writer.start()
    return writer


def test_zookeeper_grows_3_to_5_and_shrinks_back_online(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves two newcomers started together become voters one after the other (roster
    versions 2 and 3) and every server runs the roster's 5 voters; then, both stopped for good,
    they are removed one after the other after --remove-after (versions 4 and 5), never below
    the floor of 3; no acknowledged write is lost on any member."""
    with ensemble(consul, tmp_path, cluster, 5) as zk:
        for n in (1, 2, 3):
            zk.start(n)
        zk.wait_quorum()
        writer = writing(zk, [1, 2, 3])
        try:
            zk.start(4)
            zk.start(5)
            wait_until(
                lambda: (
                    _ids_on_disk(zk, 5)
                    and agreed(zk, consul, [1, 2, 3, 4, 5])
                    == sorted(member_id(zk, n) for n in range(1, 6))
                ),
                TIMEOUT_S,
                "5 voters in the roster and on every server",
            )
            five = roster_ids(consul, cluster)
            assert len(five) == 5 and roster(consul, cluster)["version"] == 3
            promoted = _log_lines(zk, [4, 5], ": done (the service committed it")
            assert len(promoted) == 2, promoted

            gone = [member_id(zk, n) for n in (4, 5)]
            lose(zk, 4)
            lose(zk, 5)
            three = [i for i in five if i not in gone]
            wait_until(
                lambda: agreed(zk, consul, [1, 2, 3]) == three,
                TIMEOUT_S,
                "the two lost voters removed",
            )
            assert roster(consul, cluster)["version"] == 5
            removed = _log_lines(zk, [1, 2, 3], "removed voter")
            assert sorted(
                int(line.split("removed voter ")[1].split()[0]) for line in removed
            ) == sorted(gone)
            for lost in gone:
                status, _ = consul.request("GET", f"/v1/kv/cluster-bootstrap/{cluster}/ids/{lost}")
                assert status == 404, f"claim {lost} not released"
            time.sleep(1.0)  # writes go on after the last change
        finally:
            writer.stop()
        writer.count_lost([zk.host(n) for n in (1, 2, 3)])
        assert writer.lost == 0 and len(writer.acked) > 50, (writer.lost, len(writer.acked))


def test_a_lost_voter_stays_at_the_floor_until_a_newcomer_votes(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a lost voter of three is kept past --remove-after (the floor is 3), a newcomer on
    another address with an empty disk joins and becomes a voter first, and only then is the
    lost one removed: back to 3 live voters, every server agreeing with the roster."""
    with ensemble(consul, tmp_path, cluster, 4) as zk:
        for n in (1, 2, 3):
            zk.start(n)
        zk.wait_quorum()
        writer = writing(zk, [1, 2])
        try:
            lost = member_id(zk, 3)
            lose(zk, 3)
            time.sleep(REMOVE_AFTER_S * 3)
            assert lost in roster_ids(consul, cluster)
            refusals = _log_lines(zk, [1, 2], f"remove lost voter {lost}: not now")
            assert refusals and "below the floor of 3" in refusals[0], refusals
            zk.start(4)
            wait_until(
                lambda: (
                    _ids_on_disk(zk, 4)
                    and agreed(zk, consul, [1, 2, 4]) == sorted(member_id(zk, n) for n in (1, 2, 4))
                ),
                TIMEOUT_S,
                "the newcomer in, the lost voter out",
            )
            assert roster(consul, cluster)["version"] == 3  # added, then removed
        finally:
            writer.stop()
        writer.count_lost([zk.host(n) for n in (1, 2, 4)])
        assert writer.lost == 0


def test_a_restart_while_a_peer_is_lost_serves_and_the_lost_one_goes(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves the roster issue's case, supervised with --min-size 2: one member lost for good,
    a second one crashes and restarts with its disk; it serves again at once with the third,
    and the lost member is removed after --remove-after (2 live voters of 2 left)."""
    zk = ZkEnsemble(
        consul,
        tmp_path,
        3,
        cluster,
        [*SUPERVISED, "--min-size", "2"],
        first_host=FIRST_HOST,
        server_jvmflags=True,
    )
    with zk:
        zk.start_all()
        zk.wait_quorum()
        lost = member_id(zk, 3)
        lose(zk, 3)
        lose(zk, 2)
        zk.start(2)
        wait_until(
            lambda: agreed(zk, consul, [1, 2]) == sorted(member_id(zk, n) for n in (1, 2)),
            TIMEOUT_S,
            "the lost member removed, the two serving",
        )
        assert lost not in roster_ids(consul, cluster)
        assert len(_log_lines(zk, [1, 2], f"removed voter {lost} ")) == 1


def test_remove_by_hand_keeps_the_floor(consul: ConsulAgent, cluster: str, tmp_path: Path) -> None:
    """Proves ``remove zookeeper --id N`` takes a live voter out online when the floor allows
    (4 -> 3; its own agent does not ask to vote again), and refuses the next one (exit 11, one
    line naming the floor and --force) without changing anything."""
    with ensemble(consul, tmp_path, cluster, 4) as zk:
        for n in (1, 2, 3):
            zk.start(n)
        zk.wait_quorum()
        zk.start(4)
        wait_until(
            lambda: _ids_on_disk(zk, 4) and len(agreed(zk, consul, [1, 2, 3, 4]) or []) == 4,
            TIMEOUT_S,
            "the 4th member a voter",
        )
        remove = ["remove", "zookeeper", "--cluster", cluster, "--expect", "3", *SUPERVISED[:2]]
        fourth = member_id(zk, 4)
        done = run_agent([*remove, "--id", str(fourth)], consul.env())
        assert done.code == 0, done.stderr
        three = sorted(member_id(zk, n) for n in (1, 2, 3))
        assert agreed(zk, consul, [1, 2, 3]) == three
        wait_until(
            lambda: bool(_log_lines(zk, [4], "does not ask to vote again")),
            TIMEOUT_S,
            "the removed member's agent seeing its claim released",
        )
        time.sleep(REMOVE_AFTER_S)  # the removed member's agent keeps running, and looks again
        assert roster_ids(consul, cluster) == three
        refused = run_agent([*remove, "--id", str(member_id(zk, 1))], consul.env())
        assert refused.code == 11, refused.stderr
        errors = [line for line in refused.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and "below the floor of 3" in errors[0], refused.stderr
        assert agreed(zk, consul, [1, 2, 3]) == three


def test_a_rescheduled_member_keeps_its_id_at_its_new_address(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a voter rescheduled elsewhere (the same member name, as Nomad's alloc name, on a
    new address, its data disk moved with it; a fresh conf dir) keeps its id and is re-added by
    its own agent at the new address: every live server's committed config lists that id at
    the new address among the same 3 voters, the roster names the new address, nothing serves
    at the old one, and no acknowledged write is lost. The member moved is the lowest id: its
    peers dial it back at the address they know, so it cannot even vote until the re-add."""
    zk = ZkEnsemble(
        consul,
        tmp_path,
        4,
        cluster,
        SUPERVISED,
        first_host=MOVED_FIRST_HOST,
        expect=3,
        server_jvmflags=True,
    )
    with zk:
        for n in (1, 2, 3):
            zk.start(n)
        zk.wait_quorum()
        three = sorted(member_id(zk, n) for n in (1, 2, 3))
        moved = min((1, 2, 3), key=lambda n: member_id(zk, n))
        stay = [n for n in (1, 2, 3) if n != moved]
        moved_id = member_id(zk, moved)
        writer = writing(zk, stay)
        try:
            lose(zk, moved)
            zk.names[4] = zk.member_name(moved)
            zk.member_dir(4).mkdir()
            shutil.move(zk.member_dir(moved) / "data", zk.member_dir(4) / "data")
            zk.start(4)
            new, old = zk.host(4), zk.host(moved)
            wait_until(
                lambda: all(server_address(zk.host(n), moved_id) == new for n in [*stay, 4]),
                TIMEOUT_S,
                f"id {moved_id} at {new} in every live server's committed config",
            )
            assert member_id(zk, 4) == moved_id
            assert agreed(zk, consul, [*stay, 4]) == three
            entry = next(v for v in roster(consul, cluster)["voters"] if v["id"] == moved_id)
            assert entry["address"] == new, entry
            assert four_letter(old, PORTS["client"], "ruok") == "", "it still serves at " + old
            assert _log_lines(zk, [4], f"re-add id {moved_id} at {new}: done")
            time.sleep(1.0)  # writes go on after the change
        finally:
            writer.stop()
        writer.count_lost([zk.host(n) for n in [*stay, 4]])
        assert writer.lost == 0 and len(writer.acked) > 20, (writer.lost, len(writer.acked))


def _ids_on_disk(zk: ZkEnsemble, size: int) -> bool:
    return all((zk.member_dir(n) / "data" / "myid").exists() for n in range(1, size + 1))


def _log_lines(zk: ZkEnsemble, members: list[int], needle: str) -> list[str]:
    return [
        line
        for n in members
        for line in (zk.member_dir(n) / "member.log").read_text(errors="replace").splitlines()
        if needle in line
    ]
