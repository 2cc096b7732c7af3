"""ZooKeeper ensembles formed through cluster-bootstrap and a real Consul agent."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from testbed.consul import ConsulAgent
from testbed.jvm import zookeeper_cli_command
from testbed.zookeeper import PORTS, ZkEnsemble, host
from tests.integration.conftest import run_agent


def zk_cli(n: int, *args: str) -> str:
    proc = subprocess.run(
        zookeeper_cli_command(f"{host(n)}:{PORTS['client']}", args),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def assert_one_ensemble(ensemble: ZkEnsemble) -> None:
    modes = ensemble.wait_quorum()
    assert sorted(m or "" for m in modes.values()).count("leader") == 1
    lists = {
        tuple(
            line
            for line in (ensemble.member_dir(n) / "conf" / "zoo.cfg").read_text().splitlines()
            if line.startswith("server.")
        )
        for n in ensemble.procs
    }
    assert len(lists) == 1 and len(lists.pop()) == ensemble.size


@pytest.mark.parametrize("size", [3, 5])
def test_members_started_together_form_one_ensemble(
    consul: ConsulAgent, cluster: str, tmp_path: Path, size: int
) -> None:
    """Proves 3 and 5 simultaneous members elect one leader and share every write."""
    with ZkEnsemble(consul, tmp_path, size, cluster) as ensemble:
        ensemble.start_all()
        assert_one_ensemble(ensemble)
        zk_cli(1, "create", f"/{cluster}", "hello-from-1")
        for n in range(2, size + 1):
            assert "hello-from-1" in zk_cli(n, "get", f"/{cluster}")


def test_restarted_member_keeps_myid_and_rejoins(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a killed member restarts with the same myid and data dir and rejoins."""
    with ZkEnsemble(consul, tmp_path, 3, cluster) as ensemble:
        ensemble.start_all()
        ensemble.wait_quorum()
        zk_cli(1, "create", f"/{cluster}", "kept")
        myid = (ensemble.member_dir(2) / "data" / "myid").read_text()
        ensemble.procs[2].kill()
        ensemble.procs.pop(2)
        ensemble.start(2)
        assert_one_ensemble(ensemble)
        assert (ensemble.member_dir(2) / "data" / "myid").read_text() == myid
        assert "kept" in zk_cli(2, "get", f"/{cluster}")
        assert "keeps id" in (ensemble.member_dir(2) / "member.log").read_text()


def test_late_member_joins_the_waiting_ones(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves members that wait for a late third one all form the same ensemble."""
    with ZkEnsemble(consul, tmp_path, 3, cluster) as ensemble:
        ensemble.start(1)
        ensemble.start(2)
        time.sleep(4)
        assert ensemble.modes() == {1: None, 2: None}, "nobody may start before the third"
        assert not (ensemble.member_dir(1) / "conf" / "zoo.cfg").exists()
        ensemble.start(3)
        assert_one_ensemble(ensemble)


def test_hostile_registration_never_reaches_zoo_cfg(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a registration whose address carries a server line is not a member: the start
    waits for a real second member and, at the deadline, names it (exit 5); zoo.cfg unwritten."""
    consul.register(cluster, f"{cluster}-evil", "127.0.0.99\nserver.7=evil:1:2", 2181)
    ensemble = ZkEnsemble(consul, tmp_path, 2, cluster)
    argv = ensemble.agent_argv(1)[1:]
    argv[argv.index("--") : argv.index("--")] = ["--timeout", "3"]  # later flags win
    result = run_agent(argv, consul.env())
    assert result.code == 5, result.stderr
    assert f"{cluster}-evil" in result.stderr.strip().splitlines()[-1]
    assert "server.7" not in result.stdout
    assert not (ensemble.member_dir(1) / "conf" / "zoo.cfg").exists()
