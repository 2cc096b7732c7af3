"""Kafka 3.9 / 4.x: server.properties for KRaft (combined or split roles) or ZooKeeper mode.

Rendered ``<conf_dir>/server.properties`` (KRaft, combined roles, static quorum)::

    process.roles=broker,controller
    node.id=1
    controller.listener.names=CONTROLLER
    listeners=PLAINTEXT://<bind address>:9092,CONTROLLER://<bind address>:9093
    advertised.listeners=PLAINTEXT://10.0.0.1:9092,CONTROLLER://10.0.0.1:9093
    listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
    inter.broker.listener.name=PLAINTEXT
    log.dirs=<data_dir>
    controller.quorum.voters=1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093

The quorum line is the same on every member (sorted by id). With ``quorum: dynamic`` (KIP-853,
Kafka 3.9+) it is ``controller.quorum.bootstrap.servers=10.0.0.1:9093,...`` instead. Members with
the controller role always advertise their CONTROLLER listener: KIP-853 needs it, and without it
Kafka would fall back to the bind address (a reverse-looked-up host name for 0.0.0.0).

Before the exec, ``prepare`` formats the storage once (``kafka-storage format -t <cluster id>
-c server.properties``) with the cluster id every member reads from Consul KV (created once,
like ``kafka-storage random-uuid``: 22 characters of base64url). Dynamic quorum: controllers
format with ``--initial-controllers 1@h1:9093:<dir id>,...`` (the same list on every controller;
each directory id is derived from the cluster id and the node id, so no member has to ask
another), broker-only members with ``--no-initial-controllers``. The derived ids belong to the
formation only: a controller that joins later (``format_command(..., joining=True)``), a dead
one's replacement on a new disk included, formats with ``--no-initial-controllers`` and gets a
random directory id from Kafka, so the replacement never passes for the lost disk (a voter is
the pair of node id and directory id; KIP-853 adds the new pair, then removes the old).
When ``meta.properties`` exists, nothing is formatted: its ``cluster.id`` and ``node.id`` must
match the cluster's and the claimed id, else the start stops with a clear error instead of
Kafka's crash loop. A restarted member keeps the id its ``meta.properties`` holds.

Split roles: controllers and brokers register under their own Consul services but start with
the same ``--cluster``, so they claim ids in one KV namespace. Brokers name the controllers'
service (``controller_service``) and wait for ``controllers`` of them. Id ranges keep the groups
apart even across clusters: controller-only 1..99, broker-only 100..999, combined 1..999
(``id_min``/``id_max`` override). Peers match a registration to its claim by the *broker* port
(the primary port label), so a controller-only member is registered with its broker port label
too (it does not listen there; its Consul health check uses the controller port).

ZooKeeper mode (Kafka 3.x, ``mode: zookeeper``): ``broker.id`` (the claimed id, 1..999),
``zookeeper.connect=h1:2181,h2:2181,h3:2181/<chroot>`` from the ZooKeeper ensemble that itself
formed through the agent (``zookeeper_cluster``, ``zookeeper_service``, ``zookeeper_expect``),
a PLAINTEXT listener only, no storage format and no shared cluster id (Kafka keeps it in ZooKeeper).

Options (``options:`` in the config file, or ``--set``):

- ``mode``: ``kraft`` (default) or ``zookeeper``;
- ``roles``: ``broker,controller`` (default), ``controller`` or ``broker`` (KRaft);
- ``quorum``: ``static`` (default) or ``dynamic`` (KRaft);
- ``controller_service`` (required with ``roles: broker``), ``controllers`` (default 3);
- ``zookeeper_cluster`` (required in ZooKeeper mode), ``zookeeper_service`` (default: the
  cluster name), ``zookeeper_expect`` (default 3), ``zookeeper_chroot`` (e.g. ``/kafka``);
- ``storage_tool``: the argv of Kafka's storage tool (default
  ``["/opt/kafka/bin/kafka-storage.sh"]``; unused in ZooKeeper mode);
- ``quorum_tool``: the argv of ``kafka-metadata-quorum`` (default
  ``["/opt/kafka/bin/kafka-metadata-quorum.sh"]``), which ``status`` runs against each
  controller (``--bootstrap-controller <it> describe --status``) for the quorum's own view, and
  online voter changes use with ``quorum: dynamic`` (``adapters/kafka_voters.py``);
- ``cluster_tool``: the argv of ``kafka-cluster`` (default ``["/opt/kafka/bin/kafka-cluster.sh"]``,
  or ``java -cp <jars> org.apache.kafka.tools.ClusterTool``): supervise mode runs ``unregister
  --id N`` for a broker gone longer than ``--remove-after`` (``bootstrap.keeper``);
- ``conf_file`` (default ``<conf_dir>/server.properties``), ``id_min``, ``id_max``;
- ``extra``: a mapping of further properties. More come from the environment as in the
  apache/kafka image: ``KAFKA_FOO_BAR=1`` is ``foo.bar=1`` (``_`` -> ``.``, ``__`` -> ``_``,
  ``___`` -> ``-``; the image's own variables such as ``KAFKA_HEAP_OPTS`` are skipped). ``extra``
  wins over the environment. Keys that shape the cluster (``node.id``, listeners, quorum, log
  dirs, ``zookeeper.connect``, ...) are refused, as are keys or values that are not one line.

The command after ``--`` must start Kafka on the rendered file (``kafka-server-start.sh
<conf_file>``), not an image entrypoint that writes its own server.properties.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from adapters.images import (
    CLUSTER_ID_VAR,
    IMAGE_DEFAULT_CLUSTER_ID,
    KAFKA_NON_PROPERTY_VARS,
    KAFKA_SHARED_CONFIG_DIR,
    kafka_not_honoured,
)
from adapters.kafka_voters import (
    DIRECTORY_ID_PATTERN,
    KafkaVoterChanges,
    run_program,
    run_tool,
    unregister_broker,
)
from bootstrap.errors import (
    BootstrapError,
    CannotJoin,
    MemberIdError,
    PrepareError,
    RenderError,
    VoterChangeError,
)
from bootstrap.log import log
from bootstrap.model import (
    MAX_MEMBER_ID,
    ClusterView,
    Me,
    Member,
    RenderedFile,
    Rendering,
    SharedValue,
    endpoint,
    is_any_address,
)
from bootstrap.options import (
    NAME,
    PATH,
    Choice,
    Custom,
    Int,
    Option,
    OptionSet,
    Refusals,
    id_range,
    id_range_options,
)
from bootstrap.ports import Group, Observation, ServicePort
from bootstrap.voters import Voter, VoterChanges

ID_RANGES = {
    frozenset({"controller"}): (1, 99),
    frozenset({"broker"}): (100, 999),
    frozenset({"broker", "controller"}): (1, 999),
}
CONTROLLERS_GROUP = "controllers"
ZOOKEEPER_GROUP = "zookeeper"
CLUSTER_ID = "cluster_id"
FORMAT_TIMEOUT_S = 180.0
QUORUM_TIMEOUT_S = 60.0

# Variables of the apache/kafka image and of kafka-run-class.sh that are not properties.
NON_PROPERTY_VARS = KAFKA_NON_PROPERTY_VARS
# Keys only the adapter may write: they decide who is in the cluster and how members meet.
RESERVED = re.compile(
    r"^(node\.id|broker\.id|broker\.id\.generation\.enable|process\.roles|cluster\.id|"
    r"controller\.quorum\.voters|controller\.quorum\.bootstrap\.servers|"
    r"controller\.listener\.names|listeners|advertised\.listeners|"
    r"listener\.security\.protocol\.map|inter\.broker\.listener\.name|"
    r"security\.inter\.broker\.protocol|control\.plane\.listener\.name|"
    r"log\.dirs?|metadata\.log\.dir|zookeeper\.connect)$"
)
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*$")
_CHROOT = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")
_CLUSTER_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
_ENV_UNDERSCORES = re.compile(r"_+")
_ENV_RUNS = {1: ".", 2: "_", 3: "-"}
# ZooKeeper's port labels, as the zookeeper adapter declares them (a unit test holds them equal):
# a ZooKeeper-mode broker reads the ensemble's claims without importing that adapter.
ZOOKEEPER_PORT_LABELS: Mapping[str, int] = {"client": 2181, "quorum": 2888, "election": 3888}
# Namespace of the derived directory ids (uuid5), fixed so every controller derives the same.
_DIRECTORY_NAMESPACE = uuid.UUID("8d1a7f3e-4b2c-5e6f-9a0b-1c2d3e4f5a6b")


def _extras(extra: Any) -> dict[str, str]:
    if not isinstance(extra, dict):
        raise ValueError(f"{extra!r} is not a mapping of properties to values")
    extras: dict[str, str] = {}
    refused = []
    for key, raw in extra.items():
        if isinstance(raw, (dict, list)) or raw is None:
            refused.append(f"{key!r} needs a single value, not {raw!r}")
            continue
        value = str(raw).lower() if isinstance(raw, bool) else str(raw)
        if problem := _line_problem(str(key), value):
            refused.append(problem)
        extras[str(key)] = value
    if refused:
        raise Refusals(refused)
    return extras


def _roles(value: Any) -> frozenset[str]:
    parts = value.split(",") if isinstance(value, str) else value
    roles = frozenset(str(p).strip() for p in parts) if isinstance(parts, list) else frozenset()
    if roles not in ID_RANGES:
        raise ValueError(f"{value!r} is not 'broker,controller', 'controller' or 'broker'")
    return roles


def _chroot(value: Any) -> str:
    if not isinstance(value, str) or not _CHROOT.fullmatch(value):
        raise ValueError(f"{value!r} is not a ZooKeeper path like '/kafka'")
    parts = value.split("/")[1:]
    if any(part in (".", "..") for part in parts) or parts[0] == "zookeeper":
        raise ValueError(f"{value!r} is not a ZooKeeper path like '/kafka'")
    return value


def _command(value: Any) -> list[str]:
    argv = [value] if isinstance(value, str) else value
    if (
        not isinstance(argv, list)
        or not argv
        or not all(isinstance(a, str) and a and "\0" not in a for a in argv)
    ):
        raise ValueError(f"{value!r} is not a command (a list of non-empty strings)")
    return list(argv)


_KRAFT = {"mode": "kraft"}
_KRAFT_BROKER = {"mode": "kraft", "roles": "broker"}
_ZOOKEEPER = {"mode": "zookeeper"}
OPTIONS = OptionSet(
    "Kafka",
    Option("mode", "kraft", Choice(("kraft", "zookeeper"))),
    Option(
        "roles",
        frozenset({"broker", "controller"}),
        Custom(
            _roles,
            (("wrong-type", {"broker": 1}), ("out-of-range", "broker,zookeeper")),
            "'broker,controller', 'controller' or 'broker'",
        ),
        when=_KRAFT,
    ),
    Option("quorum", "static", Choice(("static", "dynamic")), when=_KRAFT),
    Option("controller_service", None, NAME, when=_KRAFT_BROKER, required=True),
    Option("controllers", 3, Int(1, 99), when=_KRAFT_BROKER),
    Option("zookeeper_cluster", None, NAME, when=_ZOOKEEPER, required=True),
    Option("zookeeper_service", None, NAME, when=_ZOOKEEPER),
    Option("zookeeper_expect", 3, Int(1, 255), when=_ZOOKEEPER),
    Option(
        "zookeeper_chroot",
        None,
        Custom(
            _chroot,
            (("wrong-type", ["/kafka"]), ("out-of-range", "/kafka/../zookeeper")),
            "a ZooKeeper path like '/kafka'",
        ),
        when=_ZOOKEEPER,
    ),
    Option(
        "storage_tool",
        ["/opt/kafka/bin/kafka-storage.sh"],
        Custom(
            _command,
            (("wrong-type", {"bin": "kafka-storage.sh"}), ("out-of-range", [])),
            "a command (a list of non-empty strings)",
        ),
    ),
    Option(
        "quorum_tool",
        ["/opt/kafka/bin/kafka-metadata-quorum.sh"],
        Custom(
            _command,
            (("wrong-type", {"bin": "kafka-metadata-quorum.sh"}), ("out-of-range", [])),
            "a command (a list of non-empty strings)",
        ),
        when=_KRAFT,
    ),
    Option(
        "cluster_tool",
        ["/opt/kafka/bin/kafka-cluster.sh"],
        Custom(
            _command,
            (("wrong-type", {"bin": "kafka-cluster.sh"}), ("out-of-range", [])),
            "a command (a list of non-empty strings)",
        ),
        when=_KRAFT,
    ),
    Option("conf_file", None, PATH),
    Option(
        "extra",
        {},
        Custom(
            _extras,
            (("wrong-type", ["a=b"]), ("out-of-range", {"node.id": 7})),
            "a mapping of properties to one-line values",
        ),
    ),
    *id_range_options(),
)


class KafkaService(ServicePort):
    """Kafka, in one of two modes (``KRaftMode``, ``ZooKeeperMode``) that shape its config."""

    key = "kafka"
    port_labels: ClassVar[Mapping[str, int]] = {"broker": 9092, "controller": 9093}
    default_data_dir = "/var/lib/kafka/data"
    default_conf_dir = "/opt/kafka/config/cluster-bootstrap"
    shared_config_dir = Path(KAFKA_SHARED_CONFIG_DIR)  # the image merges it; the agent does not

    option_set = OPTIONS

    def configure(self, problems: list[str]) -> None:
        o = self.opts
        self.mode: KRaftMode | ZooKeeperMode = (
            ZooKeeperMode(self) if o["mode"] == "zookeeper" else KRaftMode(self)
        )
        self.zookeeper_mode = isinstance(self.mode, ZooKeeperMode)
        self.dynamic = isinstance(self.mode, KRaftMode) and self.mode.dynamic
        self.roles: set[str] = set(self.mode.roles)
        self.storage_tool: list[str] = o["storage_tool"]
        self.quorum_tool: list[str] = o["quorum_tool"]
        self.id_range = id_range(o, self.mode.id_default, problems)
        self.extra = {**self._extras_from_env(problems), **o["extra"]}
        # The apache/kafka image formats its storage with CLUSTER_ID: it seeds the shared id.
        self.image_cluster_id = self.environ.get(CLUSTER_ID_VAR) or None
        if self.image_cluster_id is not None and not _valid_cluster_id(self.image_cluster_id):
            problems.append(
                f"{CLUSTER_ID_VAR}: {self.image_cluster_id[:40]!r} is not a Kafka cluster id "
                "(22 characters of base64url, as kafka-storage random-uuid prints)"
            )

    def _extras_from_env(self, problems: list[str]) -> dict[str, str]:
        extras: dict[str, str] = {}
        for name, value in sorted(self.environ.items()):
            if not name.startswith("KAFKA_") or name in NON_PROPERTY_VARS:
                continue
            key = env_to_property(name)
            if key is None:
                problems.append(f"{name}: not a property name by the KAFKA_* rule")
            elif problem := _line_problem(key, value):
                problems.append(f"{name}: {problem}")
            else:
                extras[key] = value
        return extras

    def conf_file(self, me: Me) -> Path:
        return Path(self.opts["conf_file"] or me.conf_dir / "server.properties")

    def not_honoured(self) -> list[str]:
        """Warnings for the image's features that do nothing when the agent starts Kafka."""
        try:
            shared = [p.name for p in self.shared_config_dir.iterdir() if p.is_file()]
        except OSError:
            shared = []
        warnings = kafka_not_honoured(self.environ, shared)
        if self.zookeeper_mode and self.image_cluster_id is not None:
            warnings.append(f"{CLUSTER_ID_VAR} is set but unused in ZooKeeper mode")
        return warnings

    async def observe(self, member: Member) -> Observation | None:
        """The quorum as controller ``member`` answers ``describe --status``."""
        if not self.votes():
            return None
        controller = endpoint(member.address, member.port("controller"))
        argv = [*self.quorum_tool, "--bootstrap-controller", controller, "describe", "--status"]
        try:
            code, lines = await _run_tool(argv, QUORUM_TIMEOUT_S, "the quorum tool", RenderError)
        except RenderError as exc:
            return Observation(f"unknown ({exc})")
        fields = dict(line.partition(":")[::2] for line in lines if ":" in line)
        if code != 0 or "CurrentVoters" not in fields:
            return Observation("down")
        voters = _node_ids(fields.get("CurrentVoters", ""))
        observers = _node_ids(fields.get("CurrentObservers", ""))
        if voters is None or observers is None:
            return Observation("answer not understood")
        leader = fields.get("LeaderId", "").strip()
        state = (
            "leader"
            if leader == str(member.member_id)
            else ("voter" if member.member_id in voters else "observer")
        )
        return Observation(state, tuple(sorted(voters)), tuple(sorted(observers)))

    # -- the port -------------------------------------------------------------------------------

    def related_groups(self) -> Sequence[Group]:
        return self.mode.related_groups()

    def shared_values(self) -> Sequence[SharedValue]:
        return self.mode.shared_values()

    def member_id_on_disk(self, me: Me) -> int | None:
        path = me.data_dir / "meta.properties"
        try:
            meta = read_properties(path)
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise MemberIdError(f"{path}: cannot read: {exc}") from exc
        text = meta.get("node.id", meta.get("broker.id"))
        if text is None or not text.isascii() or not text.isdigit() or len(text) > 6:
            raise MemberIdError(f"{path}: holds no usable node.id or broker.id ({text!r})")
        return int(text)

    def votes(self) -> bool:
        return not self.zookeeper_mode and "controller" in self.roles

    def voter_directory_id(self, member_id: int, shared: Mapping[str, str]) -> str:
        if not self.dynamic or CLUSTER_ID not in shared:
            return ""
        return directory_id(shared[CLUSTER_ID], member_id)

    def own_voter(self, view: ClusterView) -> Voter:
        """With its directory id as ``kafka-storage format`` wrote it in ``meta.properties``:
        a voter is the pair (node id, directory id), and the joiner's is random."""
        me = view.me
        member = Member(view.member_id, me.address, me.ports, me.owner)
        path = me.data_dir / "meta.properties"
        try:
            found = read_properties(path).get("directory.id", "")
        except (OSError, UnicodeDecodeError) as exc:
            raise VoterChangeError(f"{path}: cannot read the directory id: {exc}") from exc
        if not DIRECTORY_ID_PATTERN.fullmatch(found):
            raise VoterChangeError(f"{path}: directory.id {found[:40]!r} is not a Kafka uuid")
        return Voter(member, found)

    def joiner_form(self, view: ClusterView) -> str:
        if not self.dynamic:
            voters = ",".join(str(m.member_id) for m in view.voters())
            raise CannotJoin(
                f"id {view.member_id} is not among the formed cluster's controllers (roster "
                f"voters {voters}) and its quorum is static (controller.quorum.voters cannot "
                "change while it runs): form the cluster with --set quorum=dynamic, or start "
                "this member as a broker (--set roles=broker --set controller_service=...)"
            )
        return (
            "a controller observer formatted with --no-initial-controllers (promote it with "
            "kafka-metadata-quorum add-controller)"
        )

    def render(self, view: ClusterView) -> Rendering:
        me = view.me
        if is_any_address(me.address):
            raise RenderError(
                f"address {me.address} cannot be advertised to clients and peers: give --address"
            )
        for warning in self.not_honoured():
            log.warning("%s", warning)
        lines = self.mode.lines(view)
        lines += [f"{key}={value}" for key, value in sorted(self.extra.items())]
        conf = self.conf_file(me)
        return Rendering((RenderedFile(conf, "\n".join(lines) + "\n"),))

    async def prepare(
        self, view: ClusterView, rendering: Rendering, command: Sequence[str]
    ) -> None:
        """Format the storage once (KRaft), or check that what is on disk is this member's."""
        await self.mode.prepare(view)

    def voter_changes(self, view: ClusterView) -> VoterChanges | None:
        """The dynamic quorum's voter changes (KIP-853); ``None`` for a static quorum, which
        Kafka cannot change online, and in ZooKeeper mode."""
        if not isinstance(self.mode, KRaftMode) or not self.mode.dynamic:
            return None
        return KafkaVoterChanges(
            self.opts["quorum_tool"],
            self.mode.controllers(view),
            self.conf_file(view.me),
            id_range=ID_RANGES[frozenset({"broker", "controller"})],
            run=self.tool_runner or run_tool,
        )

    def unregisters(self) -> bool:
        """KRaft keeps a registration of every broker, static quorum or dynamic."""
        return isinstance(self.mode, KRaftMode)

    async def unregister(self, view: ClusterView, member: Member) -> bool | None:
        """A broker gone for good leaves the metadata: ``kafka-cluster unregister --id N``
        (``cluster_tool``) against the controllers. Its partitions are not moved: replicas it
        held stay assigned to it (offline) until reassigned by hand. ``None`` in ZooKeeper
        mode: a broker's registration there is an ephemeral znode, gone with its session."""
        if not isinstance(self.mode, KRaftMode):
            return None
        return await unregister_broker(
            self.opts["cluster_tool"],
            self.mode.controllers(view),
            member.member_id,
            run=self.tool_runner or run_tool,
        )

    def health_label(self) -> str:
        """The port that says the member is up: the broker's, or a controller's only one."""
        return "broker" if "broker" in self.roles else "controller"

    # KRaft's pieces, as before the split (tests and the bed call them on the service).

    def cluster_id(self, view: ClusterView) -> str:
        return checked_cluster_id(view, self.image_cluster_id)

    def controllers(self, view: ClusterView) -> tuple[Member, ...]:
        return _kraft(self).controllers(view)

    def format_command(
        self, view: ClusterView, cluster_id: str, *, joining: bool = False
    ) -> list[str]:
        return _kraft(self).format_command(view, cluster_id, joining=joining)


def _kraft(service: KafkaService) -> KRaftMode:
    if not isinstance(service.mode, KRaftMode):
        raise RenderError("ZooKeeper mode has no controllers and no storage format")
    return service.mode


class KRaftMode:
    """KRaft: roles, a static or dynamic controller quorum, one shared cluster id, and the
    storage formatted once before the first start."""

    def __init__(self, service: KafkaService) -> None:
        self.service = service
        self.roles: frozenset[str] = service.opts["roles"]
        self.dynamic = service.opts["quorum"] == "dynamic"
        self.id_default = ID_RANGES[self.roles]

    def related_groups(self) -> Sequence[Group]:
        if self.roles != {"broker"}:
            return ()
        o = self.service.opts
        return (
            Group(
                CONTROLLERS_GROUP,
                str(o["controller_service"]),
                KafkaService.port_labels,
                int(o["controllers"]),
            ),
        )

    def shared_values(self) -> Sequence[SharedValue]:
        image_id = self.service.image_cluster_id
        create = (lambda: image_id) if image_id else new_cluster_id
        return (SharedValue(CLUSTER_ID, secret=False, create=create),)

    def lines(self, view: ClusterView) -> list[str]:
        me = view.me
        self.cluster_id(view)  # refuse a bad one before anything is written
        controllers = self.controllers(view)
        labels = [("PLAINTEXT", "broker")] if "broker" in self.roles else []
        if "controller" in self.roles:
            labels.append(("CONTROLLER", "controller"))
        lines = [
            "# Written by cluster-bootstrap. The quorum line is the same on every member.",
            f"process.roles={','.join(sorted(self.roles))}",
            f"node.id={view.member_id}",
            "controller.listener.names=CONTROLLER",
            "listeners=" + _listeners(me.bind_address, me.bind_ports, labels),
            "advertised.listeners=" + _listeners(me.address, me.ports, labels),
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        ]
        if "broker" in self.roles:
            lines.append("inter.broker.listener.name=PLAINTEXT")
        lines.append(f"log.dirs={me.data_dir}")
        if self.dynamic:
            servers = ",".join(endpoint(m.address, m.port("controller")) for m in controllers)
            lines.append(f"controller.quorum.bootstrap.servers={servers}")
        else:
            voters = ",".join(
                f"{m.member_id}@{endpoint(m.address, m.port('controller'))}" for m in controllers
            )
            lines.append(f"controller.quorum.voters={voters}")
        return lines

    def cluster_id(self, view: ClusterView) -> str:
        return checked_cluster_id(view, self.service.image_cluster_id)

    def controllers(self, view: ClusterView) -> tuple[Member, ...]:
        """The controller quorum: this group's members, or (broker-only) the controllers' group."""
        if "controller" in self.roles:
            return view.voters()
        controllers = view.groups.get(CONTROLLERS_GROUP, ())
        service = self.service.opts["controller_service"]
        if not controllers:
            raise RenderError(f"no controller found in Consul service {service!r}")
        if view.member_id in {m.member_id for m in controllers}:
            raise RenderError(
                f"broker id {view.member_id} is also a controller's id in {service!r}: "
                "brokers and controllers must claim ids in one --cluster"
            )
        return controllers

    async def prepare(self, view: ClusterView) -> None:
        """Format the storage once, or check that what is on disk is this member's."""
        cluster_id = self.cluster_id(view)
        meta_path = view.me.data_dir / "meta.properties"
        try:
            meta = read_properties(meta_path)
        except FileNotFoundError:
            await self._format(view, cluster_id)
            return
        except (OSError, UnicodeDecodeError) as exc:
            raise PrepareError(f"{meta_path}: cannot read: {exc}") from exc
        found = {"cluster.id": cluster_id, "node.id": str(view.member_id)}
        for key, wanted in found.items():
            if meta.get(key) != wanted:
                hint = "storage formatted for another cluster or member; move it away to re-format"
                if key == "cluster.id" and meta.get(key) == IMAGE_DEFAULT_CLUSTER_ID:
                    hint = (
                        "formatted by the apache/kafka image with its default CLUSTER_ID; a new "
                        f"cluster can adopt it with {CLUSTER_ID_VAR}={IMAGE_DEFAULT_CLUSTER_ID}"
                    )
                raise PrepareError(
                    f"{meta_path}: {key} is {meta.get(key)!r} but this member's is {wanted!r} "
                    f"({hint})"
                )

    def format_command(
        self, view: ClusterView, cluster_id: str, *, joining: bool = False
    ) -> list[str]:
        """The storage tool's ``format`` command for this member (same list on every controller).

        ``joining``: a controller that joins a formed dynamic quorum (a new one, or a dead one's
        replacement on a new disk) formats with ``--no-initial-controllers``, so Kafka gives its
        disk a random directory id. The derived ids are for formation only: a replacement
        under the same node id with the derived id would pass for the lost disk's voter.
        """
        conf = str(self.service.conf_file(view.me))
        argv = [*self.service.storage_tool, "format", "-t", cluster_id, "-c", conf]
        if self.dynamic and "controller" in self.roles and not (joining or view.joining):
            voters = ",".join(
                f"{m.member_id}@{endpoint(m.address, m.port('controller'))}:"
                f"{directory_id(cluster_id, m.member_id)}"
                for m in self.controllers(view)
            )
            argv += ["--initial-controllers", voters]
        elif self.dynamic:
            argv.append("--no-initial-controllers")
        return argv

    async def _format(self, view: ClusterView, cluster_id: str) -> None:
        argv = self.format_command(view, cluster_id)
        code, lines = await _run_tool(argv, FORMAT_TIMEOUT_S, "the storage tool", PrepareError)
        if code != 0:
            last = lines[-1].strip() if lines else "no output"
            raise PrepareError(f"storage format failed (exit {code}): {last}")


class ZooKeeperMode:
    """Kafka 3.x on ZooKeeper: a broker with ``broker.id`` and ``zookeeper.connect`` from the
    ensemble that formed through the agent; no shared cluster id, no storage format."""

    roles = frozenset({"broker"})
    id_default = (1, 999)

    def __init__(self, service: KafkaService) -> None:
        self.service = service

    def related_groups(self) -> Sequence[Group]:
        o = self.service.opts
        cluster = str(o["zookeeper_cluster"])
        return (
            Group(
                ZOOKEEPER_GROUP,
                str(o["zookeeper_service"] or cluster),
                ZOOKEEPER_PORT_LABELS,
                int(o["zookeeper_expect"]),
                cluster=cluster,
            ),
        )

    def shared_values(self) -> Sequence[SharedValue]:
        return ()

    def lines(self, view: ClusterView) -> list[str]:
        me = view.me
        ensemble = view.groups.get(ZOOKEEPER_GROUP, ())
        if not ensemble:
            service = self.related_groups()[0].consul_service
            raise RenderError(f"no ZooKeeper member found in Consul service {service!r}")
        connect = ",".join(endpoint(m.address, m.port("client")) for m in ensemble)
        labels = [("PLAINTEXT", "broker")]
        return [
            "# Written by cluster-bootstrap. zookeeper.connect is the same on every broker.",
            f"broker.id={view.member_id}",
            f"zookeeper.connect={connect}{self.service.opts['zookeeper_chroot'] or ''}",
            "listeners=" + _listeners(me.bind_address, me.bind_ports, labels),
            "advertised.listeners=" + _listeners(me.address, me.ports, labels),
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={me.data_dir}",
        ]

    async def prepare(self, view: ClusterView) -> None:
        return None


# -- helpers (module level: the tests and the test bed use them too) -----------------------------


async def _run_tool(
    argv: Sequence[str], timeout_s: float, what: str, error: type[BootstrapError]
) -> tuple[int, list[str]]:
    """Run one of Kafka's tools: its exit code and its non-empty output lines."""
    code, output = await run_program(argv, timeout_s, what=what, error=error)
    return code, [line for line in output.splitlines() if line.strip()]


def _node_ids(text: str) -> list[int] | None:
    """The ``id`` of each entry of a ``describe --status`` list (``[{"id": 1, ...}, ...]``)."""
    try:
        entries = json.loads(text)
    except ValueError:
        return None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return None
    ids = [e.get("id") for e in entries]
    if not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= MAX_MEMBER_ID for i in ids
    ):
        return None
    return [int(i) for i in ids if isinstance(i, int)]


def kafka_uuid_text(raw: bytes) -> str | None:
    """Kafka's text form of a UUID (base64url, no padding), or None for one Kafka refuses.

    Kafka never hands out ids that start with '-' (a command line would read a flag) or that
    fall among its reserved ones (most significant half zero, least below 100).
    """
    text = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
    high, low = int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")
    if text.startswith("-") or (high == 0 and low < 100):
        return None
    return text


def checked_cluster_id(view: ClusterView, image_id: str | None) -> str:
    """The shared cluster id, checked: it goes on the storage tool's command line; with the
    image's ``CLUSTER_ID`` set, it must be that id."""
    value = view.shared.get(CLUSTER_ID, "")
    if not _valid_cluster_id(value):
        raise RenderError(
            f"shared cluster id {value[:40]!r} from Consul KV is not a Kafka cluster id "
            "(22 characters of base64url, as kafka-storage random-uuid prints)"
        )
    if image_id is not None and value != image_id:
        raise RenderError(
            f"{CLUSTER_ID_VAR}={image_id} but the cluster's shared id in Consul "
            f"KV is {value}: one cluster has one id (unset {CLUSTER_ID_VAR} to join it)"
        )
    return value


def new_cluster_id() -> str:
    """A fresh cluster id, as ``kafka-storage random-uuid`` prints one."""
    while True:
        text = kafka_uuid_text(uuid.uuid4().bytes)
        if text is not None:
            return text


def directory_id(cluster_id: str, node_id: int) -> str:
    """The directory id of a controller's metadata log dir, derived, so all agree on it."""
    for attempt in itertools.count():
        raw = uuid.uuid5(_DIRECTORY_NAMESPACE, f"{cluster_id}/{node_id}/{attempt}").bytes
        text = kafka_uuid_text(raw)
        if text is not None:
            return text
    raise AssertionError("unreachable")  # pragma: no cover


def env_to_property(name: str) -> str | None:
    """``KAFKA_FOO_BAR`` -> ``foo.bar``, as the apache/kafka image converts its environment.

    One underscore is a dot, two are an underscore, three a dash; the name is lower-cased.
    Four or more (undefined in the image), or an empty name, give ``None``.
    """
    rest = name.removeprefix("KAFKA_")
    if not rest or rest.startswith("_") or rest.endswith("_"):
        return None
    if any(len(run) not in _ENV_RUNS for run in _ENV_UNDERSCORES.findall(rest)):
        return None
    return _ENV_UNDERSCORES.sub(lambda run: _ENV_RUNS[len(run.group())], rest).lower()


def read_properties(path: Path) -> dict[str, str]:
    """The ``key=value`` lines of a small Java properties file such as meta.properties."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def _valid_cluster_id(value: str) -> bool:
    return bool(_CLUSTER_ID.fullmatch(value)) and not value.startswith("-")


def _line_problem(key: str, value: str) -> str | None:
    if not _KEY.fullmatch(key):
        return f"{key!r} is not a property name"
    if RESERVED.fullmatch(key):
        return f"{key!r} shapes the cluster; the agent writes it"
    if "\\" in value or not value.isprintable():
        return f"the value of {key!r} is not one plain line (no newline, control or backslash)"
    return None


def _listeners(address: str, ports: Mapping[str, int], labels: Sequence[tuple[str, str]]) -> str:
    return ",".join(f"{name}://{endpoint(address, ports[label])}" for name, label in labels)
