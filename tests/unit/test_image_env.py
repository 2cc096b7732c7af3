"""The official images' own variables: read with the image's meaning, refused, or warned about.

Facts from the images' scripts (``/work/shared/SERVICES.md``, "The official images' own
conventions") are written down here; ``adapters/images.py`` is checked against them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters import images
from adapters.zookeeper import ZooKeeperService
from bootstrap.errors import RenderError, UsageError
from bootstrap.model import ClusterView, Me, Member

# -- zookeeper ---------------------------------------------------------------------------------

# Every variable the zookeeper image's docker-entrypoint.sh reads.
ZOO_IMAGE_READS = (
    "ZOO_MY_ID",
    "ZOO_SERVERS",
    "ZOO_TICK_TIME",
    "ZOO_INIT_LIMIT",
    "ZOO_SYNC_LIMIT",
    "ZOO_AUTOPURGE_PURGEINTERVAL",
    "ZOO_AUTOPURGE_SNAPRETAINCOUNT",
    "ZOO_MAX_CLIENT_CNXNS",
    "ZOO_STANDALONE_ENABLED",
    "ZOO_ADMINSERVER_ENABLED",
    "ZOO_4LW_COMMANDS_WHITELIST",
    "ZOO_CFG_EXTRA",
    "ZOO_DATA_DIR",
    "ZOO_DATA_LOG_DIR",
)
# What the image's Dockerfile sets (ENV): present in every container of the image.
ZOO_IMAGE_ENV = {
    "ZOO_CONF_DIR": "/conf",
    "ZOO_DATA_DIR": "/data",
    "ZOO_DATA_LOG_DIR": "/datalog",
    "ZOO_LOG_DIR": "/logs",
    "ZOO_TICK_TIME": "2000",
    "ZOO_INIT_LIMIT": "5",
    "ZOO_SYNC_LIMIT": "2",
    "ZOO_AUTOPURGE_PURGEINTERVAL": "0",
    "ZOO_AUTOPURGE_SNAPRETAINCOUNT": "3",
    "ZOO_MAX_CLIENT_CNXNS": "60",
    "ZOO_STANDALONE_ENABLED": "true",
    "ZOO_ADMINSERVER_ENABLED": "true",
}
PORTS = {"client": 2181, "quorum": 2888, "election": 3888}
MEMBERS = tuple(Member(i, f"10.0.0.{i}", PORTS, f"m{i}") for i in (1, 2, 3))


def image_view(data_dir: str = "/data", conf_dir: str = "/conf") -> ClusterView:
    """Member 1 with the image's directories (render only computes paths; nothing is written)."""
    me = Me("m1", "10.0.0.1", PORTS, "0.0.0.0", PORTS, Path(data_dir), Path(conf_dir))
    return ClusterView(me, 1, MEMBERS, {}, {})


def zoo_cfg(environ: dict[str, str], view: ClusterView | None = None, **options: object) -> dict:
    rendering = ZooKeeperService(options, environ).render(view or image_view())
    lines = rendering.files[0].content.splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_every_variable_the_image_reads_is_handled() -> None:
    """Proves no ZOO_* variable of the image's entrypoint falls through unread and unrefused."""
    handled = (
        set(images.ZOO_OPTIONS)
        | set(images.ZOO_AGENT_OWNED)
        | set(images.ZOO_DIRS)
        | {images.ZOO_STANDALONE, "ZOO_CFG_EXTRA"}
    )
    assert set(ZOO_IMAGE_READS) <= handled


def test_the_images_own_environment_gives_the_images_zoo_cfg() -> None:
    """Proves a container of the image renders its limits, /datalog and admin server, as an
    ensemble (the image's ZOO_STANDALONE_ENABLED=true is overridden, not refused)."""
    cfg = zoo_cfg(ZOO_IMAGE_ENV)
    assert {k: cfg[k] for k in ("tickTime", "initLimit", "syncLimit", "dataDir")} == {
        "tickTime": "2000",
        "initLimit": "5",
        "syncLimit": "2",
        "dataDir": "/data",
    }
    assert cfg["dataLogDir"] == "/datalog"
    assert cfg["admin.enableServer"] == "true"
    assert cfg["maxClientCnxns"] == "60"
    assert cfg["autopurge.purgeInterval"] == "0"
    assert cfg["autopurge.snapRetainCount"] == "3"
    assert cfg["standaloneEnabled"] == "false"


def test_a_users_variables_reach_zoo_cfg() -> None:
    """Proves the variables the issue names are read with the image's meaning."""
    cfg = zoo_cfg(
        {
            "ZOO_AUTOPURGE_PURGEINTERVAL": "24",
            "ZOO_INIT_LIMIT": "11",
            "ZOO_SYNC_LIMIT": "6",
            "ZOO_TICK_TIME": "2500",
            "ZOO_MAX_CLIENT_CNXNS": "100",
            "ZOO_4LW_COMMANDS_WHITELIST": "srvr,ruok",
            "ZOO_ADMINSERVER_ENABLED": "false",
            "ZOO_CFG_EXTRA": "globalOutstandingLimit=2000 snapCount=50000",
            "ZOO_DATA_LOG_DIR": "/txlog",
        }
    )
    assert cfg["autopurge.purgeInterval"] == "24"
    assert (cfg["initLimit"], cfg["syncLimit"], cfg["tickTime"]) == ("11", "6", "2500")
    assert cfg["maxClientCnxns"] == "100"
    assert cfg["4lw.commands.whitelist"] == "srvr,ruok"
    assert cfg["admin.enableServer"] == "false"
    assert (cfg["globalOutstandingLimit"], cfg["snapCount"]) == ("2000", "50000")
    assert cfg["dataLogDir"] == "/txlog"


def test_options_win_over_the_environment() -> None:
    """Proves the adapter's options beat ZOO_* (extra keys too), the rest of ZOO_* still counts."""
    env = {"ZOO_TICK_TIME": "2500", "ZOO_MAX_CLIENT_CNXNS": "100", "ZOO_SYNC_LIMIT": "7"}
    cfg = zoo_cfg(env, tick_time=3000, extra={"maxClientCnxns": "5"})
    assert (cfg["tickTime"], cfg["maxClientCnxns"], cfg["syncLimit"]) == ("3000", "5", "7")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ZOO_MY_ID", "1"),
        ("ZOO_SERVERS", "server.1=a:2888:3888;2181"),
        ("ZOO_STANDALONE_ENABLED", "false"),
    ],
)
def test_variables_that_decide_the_ensemble_are_refused(name: str, value: str) -> None:
    """Proves ZOO_MY_ID, ZOO_SERVERS and a non-image ZOO_STANDALONE_ENABLED are one usage error
    saying the agent decides them."""
    with pytest.raises(UsageError, match=f"{name}.*the agent decides") as caught:
        ZooKeeperService({}, {name: value})
    assert len(caught.value.problems) == 1


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("ZOO_TICK_TIME", "2s", "not a whole number"),
        ("ZOO_ADMINSERVER_ENABLED", "yes", "not true or false"),
        ("ZOO_CFG_EXTRA", "justaword", "not key=value"),
        ("ZOO_CFG_EXTRA", "server.9=10.0.0.9:2888:3888", "shapes the ensemble"),
        ("ZOO_4LW_COMMANDS_WHITELIST", "srvr;ruok", "four_letter_words"),
    ],
)
def test_unusable_values_are_refused(name: str, value: str, problem: str) -> None:
    """Proves a ZOO_* value the image would write but ZooKeeper (or the agent) cannot use fails."""
    with pytest.raises(UsageError, match=problem):
        ZooKeeperService({}, {name: value})


def test_data_dir_variables_must_name_the_agents_directories() -> None:
    """Proves ZOO_DATA_DIR pointing elsewhere than the agent's data dir is a clear render error."""
    with pytest.raises(RenderError, match="ZOO_DATA_DIR=/zk/data but the agent's data dir"):
        zoo_cfg({"ZOO_DATA_DIR": "/zk/data"})
    assert zoo_cfg({"ZOO_DATA_DIR": "/zk/data/"}, image_view("/zk/data"))["dataDir"] == "/zk/data"


def test_transaction_logs_follow_the_image_layout_only_with_its_data_dir() -> None:
    """Proves dataLogDir=/datalog by default with the image's /data, and none elsewhere."""
    assert zoo_cfg({})["dataLogDir"] == "/datalog"
    assert "dataLogDir" not in zoo_cfg({}, image_view("/srv/zk/data", "/srv/zk/conf"))
    assert zoo_cfg({}, datalog_dir="/fast")["dataLogDir"] == "/fast"
