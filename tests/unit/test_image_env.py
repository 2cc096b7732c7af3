"""The official images' own variables: read with the image's meaning, refused, or warned about.

Facts from the images' scripts (``/work/shared/SERVICES.md``, "The official images' own
conventions") are written down here; ``adapters/images.py`` is checked against them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters import images
from adapters.kafka import KafkaService
from adapters.zookeeper import ZooKeeperService
from bootstrap.errors import PrepareError, RenderError, UsageError
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


# -- apache/kafka --------------------------------------------------------------------------------

# What the image's launch script reads that is not a property (the agent bypasses that script).
KAFKA_LAUNCH_READS = (
    "KAFKA_JMX_PORT",
    "KAFKA_JMX_HOSTNAME",
    "KAFKA_LOG4J_ROOT_LOGLEVEL",
    "KAFKA_LOG4J_LOGGERS",
    "KAFKA_TOOLS_LOG4J_LOGLEVEL",
)
# What kafka-run-class.sh reads by itself: it keeps working under the agent.
KAFKA_RUN_CLASS_READS = ("KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_JMX_OPTS", "KAFKA_LOG4J_OPTS")
IMAGE_ID = "5L6g3nShT-eMCtK--X86sw"  # the image formats with this id when CLUSTER_ID is unset
OTHER_ID = "MkU3OEVBNTcwNTJENDM2Qg"


def kafka_view(tmp_path: Path, cluster_id: str) -> ClusterView:
    ports = {"broker": 9092, "controller": 9093}
    members = tuple(Member(i, f"10.0.0.{i}", ports, f"k{i}") for i in (1, 2, 3))
    me = Me("k1", "10.0.0.1", ports, "0.0.0.0", ports, tmp_path / "data", tmp_path / "conf")
    return ClusterView(me, 1, members, {"cluster_id": cluster_id}, {})


def test_launch_script_variables_are_never_properties_and_are_warned_about(
    tmp_path: Path,
) -> None:
    """Proves KAFKA_JMX_HOSTNAME etc. do not become jmx.hostname etc., and each gets a warning."""
    env = dict.fromkeys(KAFKA_LAUNCH_READS + KAFKA_RUN_CLASS_READS, "x")
    kafka = KafkaService({}, env)
    kafka.shared_config_dir = tmp_path / "none"
    assert kafka.extra == {}
    props = kafka.render(kafka_view(tmp_path, OTHER_ID)).files[0].content
    assert "jmx" not in props and "log4j" not in props
    warnings = kafka.not_honoured()
    assert [w.split()[0] for w in warnings] == sorted(KAFKA_LAUNCH_READS)
    assert {w.split()[0] for w in warnings}.isdisjoint(KAFKA_RUN_CLASS_READS)
    assert "JMX_PORT" in next(w for w in warnings if w.startswith("KAFKA_JMX_PORT"))


def test_files_in_the_images_shared_config_dir_are_warned_about(tmp_path: Path) -> None:
    """Proves files the image would merge from /mnt/shared/config are named in a warning."""
    kafka = KafkaService({}, {})
    kafka.shared_config_dir = tmp_path
    assert kafka.not_honoured() == []
    (tmp_path / "server.properties").write_text("num.partitions=6\n")
    (warning,) = kafka.not_honoured()
    assert "server.properties" in warning and "does not merge" in warning


def test_cluster_id_variable_seeds_the_shared_id() -> None:
    """Proves CLUSTER_ID is what the shared cluster id is created with (the CAS value)."""
    (shared,) = KafkaService({}, {"CLUSTER_ID": IMAGE_ID}).shared_values()
    assert shared.create() == IMAGE_ID
    (fresh,) = KafkaService({}, {}).shared_values()
    assert fresh.create() != fresh.create()


def test_cluster_id_variable_disagreeing_with_the_shared_one_is_one_render_error(
    tmp_path: Path,
) -> None:
    """Proves CLUSTER_ID against another shared id in Consul is one clear line, exit 6."""
    kafka = KafkaService({}, {"CLUSTER_ID": IMAGE_ID})
    with pytest.raises(RenderError, match=f"CLUSTER_ID={IMAGE_ID} but the cluster's shared id"):
        kafka.render(kafka_view(tmp_path, OTHER_ID))
    assert RenderError.exit_code == 6
    assert kafka.render(kafka_view(tmp_path, IMAGE_ID)).files


def test_a_malformed_cluster_id_variable_is_a_usage_error() -> None:
    """Proves a CLUSTER_ID the storage tool would refuse (or read as a flag) fails at once."""
    for value in ("short", "-" + IMAGE_ID[1:], IMAGE_ID + "\n"):
        with pytest.raises(UsageError, match="CLUSTER_ID"):
            KafkaService({}, {"CLUSTER_ID": value})


async def test_storage_formatted_with_the_images_default_id_says_how_to_adopt_it(
    tmp_path: Path,
) -> None:
    """Proves the prepare error for the image's default-id storage names CLUSTER_ID as the way."""
    view = kafka_view(tmp_path, OTHER_ID)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.properties").write_text(
        f"version=1\ncluster.id={IMAGE_ID}\nnode.id=1\n"
    )
    kafka = KafkaService({}, {})
    with pytest.raises(PrepareError, match=f"adopt it with CLUSTER_ID={IMAGE_ID}"):
        await kafka.prepare(view, kafka.render(view), ["kafka-server-start.sh"])
