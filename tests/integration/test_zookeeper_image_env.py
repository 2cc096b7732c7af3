"""The zookeeper image's ZOO_* variables, as a user of the image sets them, reach real servers.

Members run on 127.0.0.71-.73 with the agent's environment holding the image's variables.
"""

from __future__ import annotations

from pathlib import Path

from testbed.consul import ConsulAgent
from testbed.jvm import four_letter
from testbed.zookeeper import PORTS, ZkEnsemble
from tests.integration.conftest import run_agent

FIRST_HOST = 71


def test_zoo_variables_are_honoured_by_a_real_ensemble(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves ZOO_TICK_TIME, ZOO_MAX_CLIENT_CNXNS, ZOO_DATA_LOG_DIR and ZOO_CFG_EXTRA are what the
    running servers use, and the image's ZOO_STANDALONE_ENABLED=true still gives an ensemble."""

    def image_env(n: int) -> dict[str, str]:
        return {
            "ZOO_TICK_TIME": "2500",
            "ZOO_MAX_CLIENT_CNXNS": "77",
            "ZOO_AUTOPURGE_PURGEINTERVAL": "24",
            "ZOO_STANDALONE_ENABLED": "true",
            "ZOO_DATA_LOG_DIR": str(tmp_path / f"zk{n}" / "datalog"),
            "ZOO_CFG_EXTRA": "globalOutstandingLimit=2000",
        }

    with ZkEnsemble(
        consul, tmp_path, 3, cluster, first_host=FIRST_HOST, member_env=image_env
    ) as ensemble:
        ensemble.start_all()
        modes = ensemble.wait_quorum()
        assert sorted(str(m) for m in modes.values()) == ["follower", "follower", "leader"]
        for n in (1, 2, 3):
            conf = dict(
                line.split("=", 1)
                for line in four_letter(ensemble.host(n), PORTS["client"], "conf").splitlines()
                if "=" in line
            )
            assert conf["tickTime"] == "2500"
            assert conf["maxClientCnxns"] == "77"
            assert conf["dataLogDir"].startswith(str(tmp_path / f"zk{n}" / "datalog"))
            zoo_cfg = (ensemble.member_dir(n) / "conf" / "zoo.cfg").read_text().splitlines()
            assert "autopurge.purgeInterval=24" in zoo_cfg
            assert "globalOutstandingLimit=2000" in zoo_cfg
            assert "standaloneEnabled=false" in zoo_cfg
            assert (tmp_path / f"zk{n}" / "datalog" / "version-2").is_dir()  # made by the server


def test_zoo_my_id_is_refused_before_anything_is_claimed(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a user's ZOO_MY_ID stops the start with exit 2 and one line; nothing is written."""
    ensemble = ZkEnsemble(consul, tmp_path, 3, cluster, first_host=FIRST_HOST)
    result = run_agent(ensemble.agent_argv(1)[1:], {**consul.env(), "ZOO_MY_ID": "3"})
    assert result.code == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "ZOO_MY_ID" in errors[0] and "agent decides" in errors[0]
    assert not (ensemble.member_dir(1) / "conf" / "zoo.cfg").exists()
    assert consul.kv_keys(f"cluster-bootstrap/{cluster}/") == []
