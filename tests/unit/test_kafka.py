"""The Kafka adapter: server.properties for every role and mode, extras, refusals, prepare."""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from adapters import service_class
from adapters.kafka import (
    NON_PROPERTY_VARS,
    KafkaService,
    directory_id,
    env_to_property,
    new_cluster_id,
)
from adapters.zookeeper import ZooKeeperService
from bootstrap.errors import MemberIdError, PrepareError, RenderError, UsageError
from bootstrap.files import write_all
from bootstrap.model import ClusterView, Me, Member
from bootstrap.ports import Observation

PORTS = {"broker": 9092, "controller": 9093}
ZK_PORTS = {"client": 2181, "quorum": 2888, "election": 3888}
CLUSTER_ID = "MkU3OEVBNTcwNTJENDM2Qg"
COMBINED = tuple(Member(i, f"10.0.0.{i}", PORTS, f"k{i}") for i in (1, 2, 3))
BROKERS = tuple(Member(i, f"10.0.1.{i - 99}", PORTS, f"b{i}") for i in (100, 101))
ENSEMBLE = tuple(Member(i, f"10.0.2.{i}", ZK_PORTS, f"zk{i}") for i in (1, 2, 3))


def view_for(
    tmp_path: Path,
    member_id: int,
    members: tuple[Member, ...] = COMBINED,
    *,
    bind: str = "0.0.0.0",
    groups: Mapping[str, tuple[Member, ...]] | None = None,
    shared: Mapping[str, str] | None = None,
) -> ClusterView:
    me_member = next(m for m in members if m.member_id == member_id)
    me = Me(
        me_member.owner,
        me_member.address,
        PORTS,
        bind,
        PORTS,
        tmp_path / f"d{member_id}",
        tmp_path / f"c{member_id}",
    )
    shared = {"cluster_id": CLUSTER_ID} if shared is None else shared
    return ClusterView(me, member_id, members, shared, {}, groups or {})


def properties(text: str) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )


def render(service: KafkaService, view: ClusterView) -> dict[str, str]:
    rendering = service.render(view)
    assert len(rendering.files) == 1
    return properties(rendering.files[0].content)


def broker_options(**more: Any) -> dict[str, Any]:
    return {"roles": "broker", "controller_service": "kc-controller", **more}


def zk_options(**more: Any) -> dict[str, Any]:
    return {"mode": "zookeeper", "zookeeper_cluster": "zk", **more}


def recording_tool(tmp_path: Path, *, fail: bool = False) -> tuple[list[str], Path]:
    """A fake storage tool: a shell script that writes its arguments, one a line."""
    record = tmp_path / "argv.txt"
    script = tmp_path / "kafka-storage.sh"
    body = f"printf '%s\\n' \"$@\" > {record}\n"
    if fail:
        body += "echo 'Formatting...'\necho 'Error: bad config: no such listener' >&2\nexit 1\n"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return [str(script)], record


def test_combined_static_renders_every_cluster_line(tmp_path: Path) -> None:
    """Proves a combined member's exact cluster lines, listeners bound and advertised."""
    props = render(KafkaService({}), view_for(tmp_path, 2, bind="10.0.0.2"))
    assert props == {
        "process.roles": "broker,controller",
        "node.id": "2",
        "controller.listener.names": "CONTROLLER",
        "listeners": "PLAINTEXT://10.0.0.2:9092,CONTROLLER://10.0.0.2:9093",
        "advertised.listeners": "PLAINTEXT://10.0.0.2:9092,CONTROLLER://10.0.0.2:9093",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(tmp_path / "d2"),
        "controller.quorum.voters": "1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093",
    }


@pytest.mark.parametrize(
    ("quorum", "key", "value"),
    [
        ("static", "controller.quorum.voters", "1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093"),
        (
            "dynamic",
            "controller.quorum.bootstrap.servers",
            "10.0.0.1:9093,10.0.0.2:9093,10.0.0.3:9093",
        ),
    ],
)
def test_every_member_renders_the_same_quorum_line(
    tmp_path: Path, quorum: str, key: str, value: str
) -> None:
    """Proves the quorum line is identical on all members, sorted by id, in both quorum styles."""
    kafka = KafkaService({"quorum": quorum})
    rendered = [render(kafka, view_for(tmp_path, i, bind=f"10.0.0.{i}")) for i in (1, 2, 3)]
    assert {props[key] for props in rendered} == {value}
    other = (
        "controller.quorum.bootstrap.servers" if quorum == "static" else "controller.quorum.voters"
    )
    assert all(other not in props for props in rendered)


def test_dynamic_quorum_advertises_the_controller_listener(tmp_path: Path) -> None:
    """Proves KIP-853 members advertise CONTROLLER on the peers' address, never 0.0.0.0."""
    props = render(KafkaService({"quorum": "dynamic"}), view_for(tmp_path, 3))
    assert props["listeners"] == "PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://10.0.0.3:9092,CONTROLLER://10.0.0.3:9093"


def test_any_address_is_never_advertised(tmp_path: Path) -> None:
    """Proves rendering refuses to advertise 0.0.0.0 or :: to clients and peers."""
    for address in ("0.0.0.0", "::"):
        member = Member(1, address, PORTS, "k1")
        with pytest.raises(RenderError, match="cannot be advertised"):
            KafkaService({}).render(view_for(tmp_path, 1, (member,)))


def test_ipv6_addresses_are_bracketed(tmp_path: Path) -> None:
    """Proves IPv6 members appear as [addr]:port in listeners and the voter list."""
    members = (Member(1, "fd00::1", PORTS, "k1"), Member(2, "fd00::2", PORTS, "k2"))
    props = render(KafkaService({}), view_for(tmp_path, 1, members, bind="::"))
    assert props["listeners"] == "PLAINTEXT://[::]:9092,CONTROLLER://[::]:9093"
    assert props["controller.quorum.voters"] == "1@[fd00::1]:9093,2@[fd00::2]:9093"


def test_split_controller_has_only_the_controller_listener(tmp_path: Path) -> None:
    """Proves a controller-only member: its role, its one listener, its id range, its check."""
    kafka = KafkaService({"roles": "controller"})
    props = render(kafka, view_for(tmp_path, 1, bind="10.0.0.1"))
    assert props["process.roles"] == "controller"
    assert props["listeners"] == "CONTROLLER://10.0.0.1:9093"
    assert props["advertised.listeners"] == "CONTROLLER://10.0.0.1:9093"
    assert "inter.broker.listener.name" not in props
    assert props["controller.quorum.voters"] == "1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093"
    assert kafka.id_range == (1, 99)
    assert kafka.related_groups() == ()
    check = kafka.health_check(view_for(tmp_path, 1).me)
    assert check.tcp == "10.0.0.1:9093"


def test_split_broker_takes_the_quorum_from_the_controllers_group(tmp_path: Path) -> None:
    """Proves a broker-only member names the controllers' group, never itself, as the quorum."""
    kafka = KafkaService(broker_options(controllers=5))
    (group,) = kafka.related_groups()
    assert (group.name, group.consul_service, group.expect, group.cluster) == (
        "controllers",
        "kc-controller",
        5,
        None,
    )
    assert dict(group.port_labels) == PORTS
    assert kafka.id_range == (100, 999)
    for quorum, key, value in (
        ("static", "controller.quorum.voters", "1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093"),
        (
            "dynamic",
            "controller.quorum.bootstrap.servers",
            "10.0.0.1:9093,10.0.0.2:9093,10.0.0.3:9093",
        ),
    ):
        service = KafkaService(broker_options(quorum=quorum))
        props = render(service, view_for(tmp_path, 101, BROKERS, groups={"controllers": COMBINED}))
        assert props["process.roles"] == "broker"
        assert props["node.id"] == "101"
        assert props["listeners"] == "PLAINTEXT://0.0.0.0:9092"
        assert props["advertised.listeners"] == "PLAINTEXT://10.0.1.2:9092"
        assert props["controller.listener.names"] == "CONTROLLER"
        assert props[key] == value


def test_broker_without_controllers_or_sharing_their_ids_is_refused(tmp_path: Path) -> None:
    """Proves a broker never renders an empty quorum or one that names its own id."""
    kafka = KafkaService(broker_options())
    with pytest.raises(RenderError, match="no controller found in Consul service 'kc-controller'"):
        kafka.render(view_for(tmp_path, 100, BROKERS))
    clash = (Member(100, "10.0.0.9", PORTS, "c"),)
    with pytest.raises(RenderError, match="also a controller's id"):
        kafka.render(view_for(tmp_path, 100, BROKERS, groups={"controllers": clash}))


def test_zookeeper_mode_renders_broker_id_and_zookeeper_connect(tmp_path: Path) -> None:
    """Proves ZooKeeper mode: broker.id, the ensemble's client ports with chroot, no KRaft lines."""
    kafka = KafkaService(zk_options(zookeeper_service="zk-svc", zookeeper_chroot="/kafka/one"))
    (group,) = kafka.related_groups()
    assert (group.name, group.consul_service, group.expect, group.cluster) == (
        "zookeeper",
        "zk-svc",
        3,
        "zk",
    )
    assert group.port_labels == ZooKeeperService.port_labels
    assert kafka.shared_values() == ()
    assert kafka.id_range == (1, 999)
    props = render(kafka, view_for(tmp_path, 2, groups={"zookeeper": ENSEMBLE}, shared={}))
    assert props == {
        "broker.id": "2",
        "zookeeper.connect": "10.0.2.1:2181,10.0.2.2:2181,10.0.2.3:2181/kafka/one",
        "listeners": "PLAINTEXT://0.0.0.0:9092",
        "advertised.listeners": "PLAINTEXT://10.0.0.2:9092",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(tmp_path / "d2"),
    }
    (default_group,) = KafkaService(zk_options()).related_groups()
    assert default_group.consul_service == "zk"


def test_extras_from_options_and_environment(tmp_path: Path) -> None:
    """Proves KAFKA_* variables follow the image's naming rule and options.extra wins."""
    environ = {
        "KAFKA_NUM_PARTITIONS": "6",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_LISTENER_NAME_INTERNAL_SASL__MECHANISM": "PLAIN",
        "KAFKA_SASL_MECHANISM_SCRAM___SHA___256_X": "y",
        "KAFKA_HEAP_OPTS": "-Xmx1g",
        "KAFKA_OPTS": "-Dx=y",
        "PATH": "/usr/bin",
    }
    kafka = KafkaService(
        {"extra": {"offsets.topic.replication.factor": 3, "auto.create.topics.enable": False}},
        environ,
    )
    props = render(kafka, view_for(tmp_path, 1))
    assert props["num.partitions"] == "6"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["auto.create.topics.enable"] == "false"
    assert props["listener.name.internal.sasl_mechanism"] == "PLAIN"
    assert props["sasl.mechanism.scram-sha-256.x"] == "y"
    assert not any("heap" in key or key == "opts" for key in props)
    lines = kafka.render(view_for(tmp_path, 1)).files[0].content.splitlines()
    extras = lines[
        lines.index("controller.quorum.voters=1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093")
        + 1 :
    ]
    assert extras == sorted(extras), "extras come last, sorted: the file is deterministic"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("KAFKA_FOO_BAR", "foo.bar"),
        ("KAFKA_FOO__BAR", "foo_bar"),
        ("KAFKA_FOO___BAR", "foo-bar"),
        ("KAFKA_A_B_C", "a.b.c"),
        ("KAFKA_FOO____BAR", None),
        ("KAFKA_FOO_", None),
        ("KAFKA_", None),
    ],
)
def test_env_naming_rule(name: str, expected: str | None) -> None:
    """Proves the apache/kafka image's rule: _ is '.', __ is '_', ___ is '-'; others refused."""
    assert env_to_property(name) == expected


def test_image_variables_are_not_properties() -> None:
    """Proves the image's own JVM and log variables never become properties."""
    kafka = KafkaService({}, dict.fromkeys(NON_PROPERTY_VARS, "-Xmx1g\nanything"))
    assert kafka.extra == {}


def test_extras_cannot_override_cluster_lines() -> None:
    """Proves extras that would change the cluster are refused, each named, all at once."""
    with pytest.raises(UsageError) as err:
        KafkaService(
            {"extra": {"node.id": 7, "controller.quorum.voters": "9@evil:9093", "log.dirs": "/x"}},
            {"KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://0.0.0.0:9092", "KAFKA_CLUSTER_ID": "x"},
        )
    text = "\n".join(err.value.problems)
    assert len(err.value.problems) == 5
    for key in ("node.id", "controller.quorum.voters", "log.dirs", "advertised.listeners"):
        assert f"{key!r} shapes the cluster" in text
    assert "KAFKA_CLUSTER_ID: 'cluster.id' shapes the cluster" in text


def test_hostile_extras_are_refused() -> None:
    """Proves newline, backslash and '=' cannot smuggle a line into server.properties."""
    with pytest.raises(UsageError) as err:
        KafkaService(
            {
                "extra": {
                    "num.partitions": "1\nnode.id=9",
                    "ssl.x": "a\\\nnode.id=9",
                    "a=b": "c",
                    "x y": "z",
                    "list": [1, 2],
                }
            },
            {"KAFKA_NUM_NETWORK_THREADS": "3\rnode.id=9", "KAFKA_X____Y": "1"},
        )
    assert len(err.value.problems) == 7
    assert any("KAFKA_X____Y" in p for p in err.value.problems)


def test_bad_cluster_id_from_kv_is_refused(tmp_path: Path) -> None:
    """Proves a cluster id from Consul KV that is not Kafka's 22 base64url chars is refused."""
    for bad in ("", "short", CLUSTER_ID + "x", "MkU3OEVBNTcwNTJENDM2Q\n", "-kU3OEVBNTcwNTJENDM2Qg"):
        with pytest.raises(RenderError, match="not a Kafka cluster id"):
            KafkaService({}).render(view_for(tmp_path, 1, shared={"cluster_id": bad}))


def test_bad_options_are_listed_together() -> None:
    """Proves every bad option is reported at once, an unknown one with the known ones."""
    with pytest.raises(UsageError) as err:
        KafkaService(
            {
                "roles": "broker,zookeeper",
                "quorum": "raft",
                "zookeeper_chroot": "/kafka",
                "storage_tool": [],
                "id_min": 5,
                "id_max": 2,
                "replicas": 3,
            }
        )
    problems = err.value.problems
    assert any("unknown Kafka option 'replicas' (known: mode, roles" in p for p in problems)
    assert any("options.roles" in p for p in problems)
    assert any("options.quorum" in p for p in problems)
    assert any("zookeeper_chroot: only used with mode=zookeeper" in p for p in problems)
    assert any("options.storage_tool" in p for p in problems)
    assert any("id range 5..2 is empty" in p for p in problems)
    assert len(problems) == 6


def test_mode_specific_options_are_checked() -> None:
    """Proves each mode's required options, and options of the other mode, are reported."""
    with pytest.raises(UsageError, match="controller_service: missing"):
        KafkaService({"roles": "broker"})
    with pytest.raises(UsageError, match="controllers: only used with mode=kraft, roles=broker"):
        KafkaService({"controllers": 3})
    with pytest.raises(UsageError) as err:
        KafkaService({"mode": "zookeeper", "quorum": "dynamic", "zookeeper_chroot": "/a/../b"})
    text = "; ".join(err.value.problems)
    assert "zookeeper_cluster: missing" in text
    assert "quorum: only used with mode=kraft" in text
    assert "zookeeper_chroot" in text
    for chroot in ("kafka", "/", "/zookeeper", "/a/", "/a b"):
        with pytest.raises(UsageError, match="zookeeper_chroot"):
            KafkaService(zk_options(zookeeper_chroot=chroot))


def test_id_ranges_follow_roles_and_options() -> None:
    """Proves split groups get disjoint id ranges and id_min/id_max override them."""
    assert KafkaService({}).id_range == (1, 999)
    assert KafkaService({"roles": "controller,broker"}).id_range == (1, 999)
    assert KafkaService({"roles": ["controller"]}).id_range == (1, 99)
    assert KafkaService(broker_options(id_min=1000, id_max=1999)).id_range == (1000, 1999)
    assert KafkaService({"id_min": 0}).id_range == (0, 999)


def test_cluster_and_directory_ids_have_kafkas_format() -> None:
    """Proves new ids are 22 base64url chars, never with a leading '-', directory ids stable."""
    for _ in range(200):
        cluster_id = new_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
    (shared,) = KafkaService({}).shared_values()
    assert (shared.name, shared.secret) == ("cluster_id", False)
    assert directory_id(CLUSTER_ID, 1) == directory_id(CLUSTER_ID, 1)
    assert len({directory_id(CLUSTER_ID, i) for i in range(1, 100)}) == 99
    assert directory_id(CLUSTER_ID, 1) != directory_id(new_cluster_id(), 1)


def test_meta_properties_gives_the_id_on_disk(tmp_path: Path) -> None:
    """Proves node.id (else broker.id) in meta.properties wins; a garbled one is an error."""
    kafka = KafkaService({})
    me = view_for(tmp_path, 1).me
    assert kafka.member_id_on_disk(me) is None
    me.data_dir.mkdir(parents=True)
    meta = me.data_dir / "meta.properties"
    meta.write_text("#\nversion=1\nnode.id=7\ncluster.id=x\n")
    assert kafka.member_id_on_disk(me) == 7
    meta.write_text("version=0\nbroker.id=105\n")
    assert kafka.member_id_on_disk(me) == 105
    for garbled in ("version=1\n", "node.id=seven\n", "node.id=-1\n"):
        meta.write_text(garbled)
        with pytest.raises(MemberIdError, match=r"no usable node\.id"):
            kafka.member_id_on_disk(me)
    meta.write_bytes(b"node.id=\xff\xfe\n")
    with pytest.raises(MemberIdError, match="cannot read"):
        kafka.member_id_on_disk(me)


@pytest.mark.parametrize(
    ("options", "member_id", "members", "groups", "tail"),
    [
        ({}, 2, COMBINED, {}, []),
        ({"quorum": "dynamic"}, 2, COMBINED, {}, ["--initial-controllers", "VOTERS"]),
        (
            {"quorum": "dynamic", "roles": "controller"},
            2,
            COMBINED,
            {},
            ["--initial-controllers", "VOTERS"],
        ),
        (
            broker_options(quorum="dynamic"),
            100,
            BROKERS,
            {"controllers": COMBINED},
            ["--no-initial-controllers"],
        ),
        (broker_options(), 100, BROKERS, {"controllers": COMBINED}, []),
    ],
)
async def test_prepare_formats_storage_once_with_the_right_command(
    tmp_path: Path,
    options: dict[str, Any],
    member_id: int,
    members: tuple[Member, ...],
    groups: dict[str, tuple[Member, ...]],
    tail: list[str],
) -> None:
    """Proves the exact format command per quorum style and role, and no second format."""
    tool, record = recording_tool(tmp_path)
    kafka = KafkaService({**options, "storage_tool": tool})
    view = view_for(tmp_path, member_id, members, groups=groups)
    rendering = kafka.render(view)
    write_all(rendering.files)
    await kafka.prepare(view, rendering, ["kafka-server-start.sh"])
    voters = ",".join(f"{i}@10.0.0.{i}:9093:{directory_id(CLUSTER_ID, i)}" for i in (1, 2, 3))
    expected = ["format", "-t", CLUSTER_ID, "-c", str(rendering.files[0].path)]
    expected += [voters if arg == "VOTERS" else arg for arg in tail]
    assert record.read_text().splitlines() == expected
    # The tool wrote no meta.properties (it is a fake): write what Kafka would, then prepare again.
    record.unlink()
    view.me.data_dir.mkdir(parents=True)
    (view.me.data_dir / "meta.properties").write_text(
        f"version=1\nnode.id={member_id}\ncluster.id={CLUSTER_ID}\n"
    )
    await kafka.prepare(view, rendering, ["kafka-server-start.sh"])
    assert not record.exists(), "formatted storage is never formatted again"


async def test_meta_properties_mismatch_is_a_prepare_error(tmp_path: Path) -> None:
    """Proves storage of another cluster or member stops the start, naming what differs."""
    tool, record = recording_tool(tmp_path)
    kafka = KafkaService({"storage_tool": tool})
    view = view_for(tmp_path, 2)
    rendering = kafka.render(view)
    meta = view.me.data_dir / "meta.properties"
    meta.parent.mkdir(parents=True)
    meta.write_text(f"version=1\nnode.id=2\ncluster.id={'A' * 22}\n")
    with pytest.raises(PrepareError, match=r"cluster.id is 'AAAA.*' but this member's is 'MkU3"):
        await kafka.prepare(view, rendering, [])
    meta.write_text(f"version=1\nnode.id=3\ncluster.id={CLUSTER_ID}\n")
    with pytest.raises(PrepareError, match=r"node\.id is '3' but this member's is '2'"):
        await kafka.prepare(view, rendering, [])
    assert not record.exists()


async def test_failed_format_reports_the_tools_last_line(tmp_path: Path) -> None:
    """Proves a failing storage tool is a PrepareError carrying its last output line."""
    tool, _ = recording_tool(tmp_path, fail=True)
    kafka = KafkaService({"storage_tool": tool})
    view = view_for(tmp_path, 1)
    with pytest.raises(PrepareError, match=r"exit 1\): Error: bad config: no such listener"):
        await kafka.prepare(view, kafka.render(view), [])
    missing = KafkaService({"storage_tool": [str(tmp_path / "nope")]})
    with pytest.raises(PrepareError, match="cannot run the storage tool"):
        await missing.prepare(view, missing.render(view), [])


async def test_zookeeper_mode_prepares_nothing(tmp_path: Path) -> None:
    """Proves ZooKeeper-mode brokers never run the storage tool (Kafka 3.x formats nothing)."""
    tool, record = recording_tool(tmp_path)
    kafka = KafkaService(zk_options(storage_tool=tool))
    view = view_for(tmp_path, 1, groups={"zookeeper": ENSEMBLE}, shared={})
    await kafka.prepare(view, kafka.render(view), [])
    assert not record.exists()


def test_kafka_is_a_known_service() -> None:
    """Proves the adapter is listed under its key, with its ports and image defaults."""
    cls = service_class("kafka")
    assert cls is KafkaService
    assert cls.primary_port() == "broker"
    assert KafkaService.default_data_dir == "/var/lib/kafka/data"
    assert KafkaService.default_conf_dir == "/opt/kafka/config/cluster-bootstrap"


async def test_observe_reads_the_quorum_from_describe_status(tmp_path: Path) -> None:
    """Proves status's Kafka view comes from the quorum tool's answer, hostile ids refused."""
    script = tmp_path / "quorum.sh"
    script.write_text(
        "#!/bin/sh\n"
        'echo "$@" > "$0.args"\n'
        "echo 'ClusterId: x'\n"
        "echo 'LeaderId: 2'\n"
        'echo \'CurrentVoters: [{"id": 1}, {"id": 2}, {"id": 3}]\'\n'
        'echo \'CurrentObservers: [{"id": 4}, {"id": 100}]\'\n'
    )
    script.chmod(0o755)
    kafka = KafkaService({"quorum_tool": [str(script)]})
    member = Member(2, "10.0.0.2", {"broker": 9092, "controller": 9093})
    seen = await kafka.observe(member)
    assert seen == Observation("leader", (1, 2, 3), (4, 100))
    assert (tmp_path / "quorum.sh.args").read_text().split() == [
        "--bootstrap-controller", "10.0.0.2:9093", "describe", "--status"
    ]  # fmt: skip
    script.write_text('#!/bin/sh\necho \'CurrentVoters: [{"id": "1\\nserver.9"}]\'\n')
    assert await kafka.observe(member) == Observation("answer not understood")
    script.write_text("#!/bin/sh\necho 'Error: timed out'; exit 1\n")
    assert await kafka.observe(member) == Observation("down")
    assert (
        await KafkaService({"roles": "broker", "controller_service": "c"}).observe(member) is None
    )


def test_every_kraft_quorum_unregisters_brokers_and_zookeeper_mode_does_not(
    tmp_path: Path,
) -> None:
    """Proves a static KRaft quorum, which cannot change its voters online, still says it keeps
    a record of brokers (so supervise mode runs a keeper that unregisters gone ones), and
    ZooKeeper mode, whose broker registrations are ephemeral znodes, does not."""
    view = view_for(tmp_path, 1)
    static, dynamic = KafkaService({"quorum": "static"}), KafkaService({"quorum": "dynamic"})
    assert static.voter_changes(view) is None and static.unregisters()
    assert dynamic.voter_changes(view) is not None and dynamic.unregisters()
    assert not KafkaService(zk_options()).unregisters()
