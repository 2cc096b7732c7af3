"""Settings: defaults < YAML file (``--config``) < environment < command-line flags.

Every layer is read into the same flat keys, each value remembering where it came from, so a
problem names its origin (``--expect``, ``CLUSTER_BOOTSTRAP_EXPECT``, ``conf.yaml: expect``).
All problems are collected and raised together as one ``UsageError``. The layers and the
converters are in ``bootstrap.layers``, the Consul client's settings in
``bootstrap.consul_settings``; this module builds the typed ``Settings`` of one start.

Environment read:

- ``CLUSTER_BOOTSTRAP_<KEY>`` for our own keys (``CLUSTER_BOOTSTRAP_EXPECT=3``);
- ``CONSUL_*`` exactly as Consul's own CLI reads them (``CONSUL_HTTP_TOKEN_FILE`` wins over
  ``CONSUL_HTTP_TOKEN``);
- Nomad's task environment: ``NOMAD_IP_<label>`` (address), ``NOMAD_HOST_PORT_<label>``
  (advertised port), ``NOMAD_PORT_<label>`` (bound port), ``NOMAD_ALLOC_NAME`` (member name),
  ``NOMAD_ALLOC_INDEX`` (a hint for the id, never the id).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap.consul_settings import (
    CONSUL_ENV,
    ConsulSettings,
    consul_layers,
    consul_settings,
    load_consul_settings,
)
from bootstrap.errors import UsageError
from bootstrap.layers import (
    Flags,
    Problems,
    Raw,
    as_bool,
    as_count0,
    as_kv_prefix,
    as_member_name,
    as_meta,
    as_name,
    as_path,
    as_positive_float,
    as_positive_int,
    as_tags,
    as_yaml_scalar,
    read_yaml,
)
from bootstrap.model import valid_address, valid_port
from bootstrap.reload import (
    DEFAULT_CHANGE_WAIT,
    DEFAULT_REMOVE_AFTER_S,
    NO_ACTION,
    ChangeWait,
    OnChange,
    parse_change_wait,
    parse_on_change,
    parse_remove_after,
)

# Moved to bootstrap.consul_settings and bootstrap.layers; importable from here as before.
__all__ = [
    "CONSUL_ENV",
    "ENV_PREFIX",
    "OWN_KEYS",
    "ConsulSettings",
    "Flags",
    "ServiceDefaults",
    "Settings",
    "load_consul_settings",
    "load_filters",
    "load_settings",
]

ENV_PREFIX = "CLUSTER_BOOTSTRAP_"

# Our own scalar keys: name -> environment variable.
OWN_KEYS = (
    "cluster",
    "consul_service",
    "expect",
    "timeout",
    "address",
    "bind_address",
    "data_dir",
    "conf_dir",
    "member_name",
    "register",
    "tags",
    "meta",
    "kv_prefix",
    "supervise",
    "kill_timeout",
    "on_change",
    "change_wait",
    "remove_after",
    "min_size",
)


@dataclass(frozen=True)
class ServiceDefaults:
    """What the chosen service adapter contributes to settings (the core never imports it)."""

    key: str
    port_labels: Mapping[str, int]
    data_dir: str = "./data"
    conf_dir: str = "./conf"


@dataclass(frozen=True)
class Settings:
    """Everything one start needs, checked. Frozen: nothing changes it after loading."""

    service: str
    command: tuple[str, ...]
    cluster: str
    consul_service: str
    expect: int
    timeout_s: float
    address: str
    bind_address: str
    ports: Mapping[str, int]
    bind_ports: Mapping[str, int]
    data_dir: Path
    conf_dir: Path
    member_name: str
    alloc_index: int | None
    register: bool
    tags: tuple[str, ...]
    meta: Mapping[str, str]
    kv_prefix: str
    options: Mapping[str, Any]
    consul: ConsulSettings
    debug: bool = False
    supervise: bool = False  # day 2: bootstrap.supervisor, bootstrap.day2
    kill_timeout_s: float = 30.0
    on_change: OnChange = NO_ACTION
    change_wait: ChangeWait = DEFAULT_CHANGE_WAIT
    remove_after_s: float = DEFAULT_REMOVE_AFTER_S  # 0: a lost voter is never removed
    min_size: int | None = None  # the floor of voters a removal keeps; None: ``expect``

    def __post_init__(self) -> None:
        if self.expect < 1 or self.timeout_s <= 0:
            raise ValueError("expect and timeout must be positive")

    @property
    def cluster_prefix(self) -> str:
        return f"{self.kv_prefix}/{self.cluster}"


def load_settings(
    service: ServiceDefaults,
    command: Sequence[str],
    env: Mapping[str, str],
    flags: Flags,
    *,
    require_expect: bool = True,
    require_address: bool = True,
) -> Settings:
    """Merge every layer into ``Settings``; raise one ``UsageError`` listing every problem.

    ``require_expect=False`` is for actions that form nothing (``health``);
    ``require_address=False`` for those that are no member (``status``).
    """
    problems = Problems()
    file_layer = read_yaml(flags.config, problems)
    own: dict[str, Raw] = {}
    for key in OWN_KEYS:
        if key in file_layer:
            own[key] = file_layer[key]
        env_name = ENV_PREFIX + key.upper()
        if env.get(env_name, "") != "":
            own[key] = Raw(env[env_name], env_name)
        if flags.values.get(key) is not None:
            own[key] = Raw(flags.values[key], "--" + key.replace("_", "-"))
    _check_unknown_keys(file_layer, problems)

    labels = service.port_labels
    primary = next(iter(labels))
    if "address" not in own and env.get(f"NOMAD_IP_{primary}"):
        own["address"] = Raw(env[f"NOMAD_IP_{primary}"], f"NOMAD_IP_{primary}")
    ports, bind_ports = _ports(labels, file_layer, env, flags, problems)

    cluster = problems.convert(own.get("cluster"), as_name, service.key)
    address = problems.convert(own.get("address"), lambda v: valid_address(v, "address"), "")
    if "address" not in own and require_address:
        problems.items.append(
            f"address: missing (give --address, or run under Nomad with NOMAD_IP_{primary} set)"
        )
    data_dir = Path(problems.convert(own.get("data_dir"), as_path, service.data_dir))
    alloc_name = env.get("NOMAD_ALLOC_NAME", "")
    default_member = alloc_name or f"{address}:{data_dir.absolute()}"
    if "expect" not in own and require_expect:
        problems.items.append(
            "expect: missing (how many members form the cluster, e.g. --expect 3)"
        )
    alloc_index_raw = env.get("NOMAD_ALLOC_INDEX")
    alloc_index = None
    if alloc_index_raw:
        alloc_index = problems.convert(Raw(alloc_index_raw, "NOMAD_ALLOC_INDEX"), as_count0)

    options = dict(file_layer["options"].value) if "options" in file_layer else {}
    for item in flags.options:
        raw = Raw(item, "--set")
        key, sep, value = item.partition("=")
        if not sep or not key:
            problems.add(raw, f"{item!r} is not key=value")
            continue
        options[key] = problems.convert(Raw(value, f"--set {key}"), as_yaml_scalar)

    consul = consul_settings(consul_layers(file_layer, env, flags), problems)
    consul_service = problems.convert(own.get("consul_service"), as_name, cluster)
    expect = problems.convert(own.get("expect"), as_positive_int, 1)
    timeout_s = problems.convert(own.get("timeout"), as_positive_float, 300.0)
    bind_address = problems.convert(
        own.get("bind_address"), lambda v: valid_address(v, "bind address"), "0.0.0.0"
    )
    conf_dir = Path(problems.convert(own.get("conf_dir"), as_path, service.conf_dir))
    member_name = problems.convert(own.get("member_name"), as_member_name, default_member)
    register = problems.convert(own.get("register"), as_bool, False)
    tags: tuple[str, ...] = problems.convert(own.get("tags"), as_tags, ())
    meta: dict[str, str] = problems.convert(own.get("meta"), as_meta, {})
    kv_prefix = problems.convert(own.get("kv_prefix"), as_kv_prefix, "cluster-bootstrap")
    supervise = problems.convert(own.get("supervise"), as_bool, False)
    kill_timeout_s = problems.convert(own.get("kill_timeout"), as_positive_float, 30.0)
    on_change = problems.convert(own.get("on_change"), parse_on_change, NO_ACTION)
    change_wait = problems.convert(own.get("change_wait"), parse_change_wait, DEFAULT_CHANGE_WAIT)
    remove_after_s = problems.convert(
        own.get("remove_after"), parse_remove_after, DEFAULT_REMOVE_AFTER_S
    )
    min_size = problems.convert(own.get("min_size"), as_positive_int, None)
    if problems.items:
        raise UsageError(problems.items)
    return Settings(
        service=service.key,
        command=tuple(command),
        cluster=cluster,
        consul_service=consul_service,
        expect=expect,
        timeout_s=timeout_s,
        address=address,
        bind_address=bind_address,
        ports=ports,
        bind_ports=bind_ports,
        data_dir=data_dir,
        conf_dir=conf_dir,
        member_name=member_name,
        alloc_index=alloc_index,
        register=register,
        tags=tags,
        meta=meta,
        kv_prefix=kv_prefix,
        options=options,
        consul=consul,
        debug=flags.debug,
        supervise=supervise,
        kill_timeout_s=kill_timeout_s,
        on_change=on_change,
        change_wait=change_wait,
        remove_after_s=remove_after_s,
        min_size=min_size,
    )


def _check_unknown_keys(layer: Mapping[str, Raw], problems: Problems) -> None:
    known = {*OWN_KEYS, "consul", "ports", "options"}
    for key, raw in layer.items():
        if key not in known:
            problems.add(raw, f"unknown setting (known: {', '.join(sorted(known))})")
    if "consul" in layer:
        for key in layer["consul"].value:
            if key not in CONSUL_ENV:
                problems.add(
                    layer["consul"], f"unknown key {key!r} (known: {', '.join(sorted(CONSUL_ENV))})"
                )


def _ports(
    labels: Mapping[str, int],
    file_layer: Mapping[str, Raw],
    env: Mapping[str, str],
    flags: Flags,
    problems: Problems,
) -> tuple[dict[str, int], dict[str, int]]:
    advertised: dict[str, Raw] = {}
    bound: dict[str, Raw] = {}
    if "ports" in file_layer:
        for label, value in file_layer["ports"].value.items():
            advertised[str(label)] = Raw(value, f"{file_layer['ports'].origin}.{label}")
    for label in labels:
        if env.get(f"NOMAD_HOST_PORT_{label}"):
            advertised[label] = Raw(env[f"NOMAD_HOST_PORT_{label}"], f"NOMAD_HOST_PORT_{label}")
        if env.get(f"NOMAD_PORT_{label}"):
            bound[label] = Raw(env[f"NOMAD_PORT_{label}"], f"NOMAD_PORT_{label}")
    for item in flags.ports:
        label, sep, value = item.partition("=")
        advertised[label] = Raw(value if sep else None, "--port")
    ports: dict[str, int] = {}
    for label, raw in advertised.items():
        if label not in labels:
            problems.add(raw, f"unknown port label {label!r} (known: {', '.join(labels)})")
            continue
        ports[label] = problems.convert(raw, _port_of(label), labels[label])
    for label, default in labels.items():
        ports.setdefault(label, default)
    bind_ports = dict(ports)
    for label, raw in bound.items():
        bind_ports[label] = problems.convert(raw, _port_of(label), ports[label])
    return {label: ports[label] for label in labels}, {label: bind_ports[label] for label in labels}


def _port_of(label: str) -> Callable[[Any], int]:
    return lambda value: valid_port(value, f"port {label!r}")


def load_filters(flags: Flags) -> tuple[tuple[str, ...], dict[str, str]]:
    """Only the tag and meta filters (for ``discover``); raises ``UsageError``."""
    problems = Problems()
    tags: tuple[str, ...] = problems.convert(_raw_flag(flags, "tags"), as_tags, ())
    meta: dict[str, str] = problems.convert(_raw_flag(flags, "meta"), as_meta, {})
    if problems.items:
        raise UsageError(problems.items)
    return tags, meta


def _raw_flag(flags: Flags, key: str) -> Raw | None:
    value = flags.values.get(key)
    return None if value is None else Raw(value, f"--{key.rstrip('s')}")
