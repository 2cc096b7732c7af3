"""Settings: defaults < YAML file (``--config``) < environment < command-line flags.

Every layer is read into the same flat keys, each value remembering where it came from, so a
problem names its origin (``--expect``, ``CLUSTER_BOOTSTRAP_EXPECT``, ``conf.yaml: expect``).
All problems are collected and raised together as one ``UsageError``.

Environment read:

- ``CLUSTER_BOOTSTRAP_<KEY>`` for our own keys (``CLUSTER_BOOTSTRAP_EXPECT=3``);
- ``CONSUL_*`` exactly as Consul's own CLI reads them (``CONSUL_HTTP_TOKEN_FILE`` wins over
  ``CONSUL_HTTP_TOKEN``);
- Nomad's task environment: ``NOMAD_IP_<label>`` (address), ``NOMAD_HOST_PORT_<label>``
  (advertised port), ``NOMAD_PORT_<label>`` (bound port), ``NOMAD_ALLOC_NAME`` (member name),
  ``NOMAD_ALLOC_INDEX`` (a hint for the id, never the id).
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap.errors import UntrustedValue, UsageError
from bootstrap.model import endpoint, is_name, valid_address, valid_port

ENV_PREFIX = "CLUSTER_BOOTSTRAP_"
MAX_CONFIG_BYTES = 1024 * 1024
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}

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
)

# Consul client keys as our YAML names them -> the variable Consul's CLI reads.
CONSUL_ENV = {
    "address": "CONSUL_HTTP_ADDR",
    "token": "CONSUL_HTTP_TOKEN",
    "token_file": "CONSUL_HTTP_TOKEN_FILE",
    "ssl": "CONSUL_HTTP_SSL",
    "ssl_verify": "CONSUL_HTTP_SSL_VERIFY",
    "ca_file": "CONSUL_CACERT",
    "ca_path": "CONSUL_CAPATH",
    "client_cert": "CONSUL_CLIENT_CERT",
    "client_key": "CONSUL_CLIENT_KEY",
    "tls_server_name": "CONSUL_TLS_SERVER_NAME",
    "namespace": "CONSUL_NAMESPACE",
    "partition": "CONSUL_PARTITION",
    "http_auth": "CONSUL_HTTP_AUTH",
    "datacenter": "",  # Consul's CLI has only the -datacenter flag
}


@dataclass(frozen=True)
class ConsulSettings:
    """How to reach the Consul agent. ``token`` and ``http_auth`` never appear in a repr."""

    scheme: str = "http"  # http | https | unix
    host: str = "127.0.0.1"
    port: int = 8500
    socket_path: str | None = None
    token: str | None = field(default=None, repr=False)
    token_source: str = "none"  # noqa: S105 - where the token came from, not a token
    verify: bool = True
    ca_file: str | None = None
    ca_path: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    tls_server_name: str | None = None
    namespace: str | None = None
    partition: str | None = None
    datacenter: str | None = None
    http_auth: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.scheme not in ("http", "https", "unix"):
            raise ValueError(f"scheme {self.scheme!r}")

    @property
    def url(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.socket_path}"
        return f"{self.scheme}://{endpoint(self.host, self.port)}"


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

    def __post_init__(self) -> None:
        if self.expect < 1 or self.timeout_s <= 0:
            raise ValueError("expect and timeout must be positive")

    @property
    def cluster_prefix(self) -> str:
        return f"{self.kv_prefix}/{self.cluster}"


@dataclass(frozen=True)
class Flags:
    """The command-line layer: ``None`` (or empty) means "not given"."""

    config: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)  # own keys, e.g. {"expect": "3"}
    ports: Sequence[str] = ()  # "label=port"
    options: Sequence[str] = ()  # "key=value" (value read as YAML)
    consul: Mapping[str, Any] = field(default_factory=dict)  # consul keys as in CONSUL_ENV
    debug: bool = False


@dataclass(frozen=True)
class _Raw:
    value: Any
    origin: str


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, raw: _Raw, message: str) -> None:
        self.items.append(f"{raw.origin}: {message}")

    def convert(self, raw: _Raw | None, convert: Callable[[Any], Any], default: Any = None) -> Any:
        if raw is None:
            return default
        try:
            return convert(raw.value)
        except (ValueError, TypeError, UntrustedValue) as exc:
            self.add(raw, str(exc))
            return default


def load_consul_settings(
    env: Mapping[str, str], flags: Flags | None = None, config_path: str | None = None
) -> ConsulSettings:
    """Only the Consul part of the settings (for ``discover``); raises ``UsageError``."""
    flags = flags or Flags(config=config_path)
    problems = _Problems()
    file_layer = _read_yaml(flags.config, problems)
    consul_raw = _consul_layers(file_layer, env, flags)
    consul = _consul_settings(consul_raw, problems)
    if problems.items:
        raise UsageError(problems.items)
    return consul


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
    problems = _Problems()
    file_layer = _read_yaml(flags.config, problems)
    own: dict[str, _Raw] = {}
    for key in OWN_KEYS:
        if key in file_layer:
            own[key] = file_layer[key]
        env_name = ENV_PREFIX + key.upper()
        if env.get(env_name, "") != "":
            own[key] = _Raw(env[env_name], env_name)
        if flags.values.get(key) is not None:
            own[key] = _Raw(flags.values[key], "--" + key.replace("_", "-"))
    _check_unknown_keys(file_layer, problems)

    labels = service.port_labels
    primary = next(iter(labels))
    if "address" not in own and env.get(f"NOMAD_IP_{primary}"):
        own["address"] = _Raw(env[f"NOMAD_IP_{primary}"], f"NOMAD_IP_{primary}")
    ports, bind_ports = _ports(labels, file_layer, env, flags, problems)

    cluster = problems.convert(own.get("cluster"), _name, service.key)
    address = problems.convert(own.get("address"), lambda v: valid_address(v, "address"), "")
    if "address" not in own and require_address:
        problems.items.append(
            f"address: missing (give --address, or run under Nomad with NOMAD_IP_{primary} set)"
        )
    data_dir = Path(problems.convert(own.get("data_dir"), _path, service.data_dir))
    alloc_name = env.get("NOMAD_ALLOC_NAME", "")
    default_member = alloc_name or f"{address}:{data_dir.absolute()}"
    if "expect" not in own and require_expect:
        problems.items.append(
            "expect: missing (how many members form the cluster, e.g. --expect 3)"
        )
    alloc_index_raw = env.get("NOMAD_ALLOC_INDEX")
    alloc_index = None
    if alloc_index_raw:
        alloc_index = problems.convert(_Raw(alloc_index_raw, "NOMAD_ALLOC_INDEX"), _count0)

    options = dict(file_layer["options"].value) if "options" in file_layer else {}
    for item in flags.options:
        raw = _Raw(item, "--set")
        key, sep, value = item.partition("=")
        if not sep or not key:
            problems.add(raw, f"{item!r} is not key=value")
            continue
        options[key] = problems.convert(_Raw(value, f"--set {key}"), _yaml_scalar)

    consul = _consul_settings(_consul_layers(file_layer, env, flags), problems)
    settings_args = {
        "service": service.key,
        "command": tuple(command),
        "cluster": cluster,
        "consul_service": problems.convert(own.get("consul_service"), _name, cluster),
        "expect": problems.convert(own.get("expect"), _positive_int, 1),
        "timeout_s": problems.convert(own.get("timeout"), _positive_float, 300.0),
        "address": address,
        "bind_address": problems.convert(
            own.get("bind_address"), lambda v: valid_address(v, "bind address"), "0.0.0.0"
        ),
        "ports": ports,
        "bind_ports": bind_ports,
        "data_dir": data_dir,
        "conf_dir": Path(problems.convert(own.get("conf_dir"), _path, service.conf_dir)),
        "member_name": problems.convert(own.get("member_name"), _member_name, default_member),
        "alloc_index": alloc_index,
        "register": problems.convert(own.get("register"), _bool, False),
        "tags": problems.convert(own.get("tags"), _tags, ()),
        "meta": problems.convert(own.get("meta"), _meta, {}),
        "kv_prefix": problems.convert(own.get("kv_prefix"), _kv_prefix, "cluster-bootstrap"),
        "options": options,
        "consul": consul,
        "debug": flags.debug,
    }
    if problems.items:
        raise UsageError(problems.items)
    return Settings(**settings_args)


def _read_yaml(path: str | None, problems: _Problems) -> dict[str, _Raw]:
    if not path:
        return {}
    try:
        size = Path(path).stat().st_size
        if size > MAX_CONFIG_BYTES:
            problems.items.append(
                f"--config {path}: {size} bytes; a settings file is at most 1 MiB"
            )
            return {}
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.items.append(f"--config {path}: cannot read: {getattr(exc, 'strerror', exc)}")
        return {}
    import yaml  # only with --config: a start without a file does not pay for it

    try:
        data = yaml.load(text, Loader=_settings_loader())  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problems.items.append(f"--config {path}: not valid YAML{line}")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.items.append(f"--config {path}: must be a mapping of settings at the top")
        return {}
    layer: dict[str, _Raw] = {}
    for key, value in data.items():
        origin = f"{path}: {key}"
        if key in ("consul", "ports", "options") and not isinstance(value, dict):
            problems.items.append(f"{origin}: must be a mapping")
            continue
        layer[str(key)] = _Raw(value, origin)
    return layer


@functools.cache
def _settings_loader() -> Any:
    """yaml's SafeLoader without aliases: settings never need them, a billion laughs does."""
    import yaml

    class SettingsLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(None, None, "aliases are not allowed", mark)
            return super().compose_node(parent, index)

    return SettingsLoader


def _check_unknown_keys(layer: Mapping[str, _Raw], problems: _Problems) -> None:
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
    file_layer: Mapping[str, _Raw],
    env: Mapping[str, str],
    flags: Flags,
    problems: _Problems,
) -> tuple[dict[str, int], dict[str, int]]:
    advertised: dict[str, _Raw] = {}
    bound: dict[str, _Raw] = {}
    if "ports" in file_layer:
        for label, value in file_layer["ports"].value.items():
            advertised[str(label)] = _Raw(value, f"{file_layer['ports'].origin}.{label}")
    for label in labels:
        if env.get(f"NOMAD_HOST_PORT_{label}"):
            advertised[label] = _Raw(env[f"NOMAD_HOST_PORT_{label}"], f"NOMAD_HOST_PORT_{label}")
        if env.get(f"NOMAD_PORT_{label}"):
            bound[label] = _Raw(env[f"NOMAD_PORT_{label}"], f"NOMAD_PORT_{label}")
    for item in flags.ports:
        label, sep, value = item.partition("=")
        advertised[label] = _Raw(value if sep else None, "--port")
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


def _consul_layers(
    file_layer: Mapping[str, _Raw], env: Mapping[str, str], flags: Flags
) -> dict[str, _Raw]:
    """Merge Consul keys; within one layer a token file wins over a token."""
    merged: dict[str, _Raw] = {}
    layers: list[dict[str, _Raw]] = []
    if "consul" in file_layer and isinstance(file_layer["consul"].value, dict):
        origin = file_layer["consul"].origin
        layers.append(
            {str(k): _Raw(v, f"{origin}.{k}") for k, v in file_layer["consul"].value.items()}
        )
    layers.append({k: _Raw(env[name], name) for k, name in CONSUL_ENV.items() if env.get(name)})
    layers.append(
        {k: _Raw(v, f"--consul-{k.replace('_', '-')}") for k, v in flags.consul.items() if v}
    )
    for layer in layers:
        if "token_file" in layer:
            token_file = layer.pop("token_file")
            layer["token"] = _Raw(("file", token_file.value), token_file.origin)
        merged.update(layer)
    return merged


def _consul_settings(raw: Mapping[str, _Raw], problems: _Problems) -> ConsulSettings:
    scheme, host, port, socket_path = "http", "127.0.0.1", 8500, None
    if "address" in raw:
        parsed = problems.convert(raw["address"], _consul_address)
        if parsed:
            scheme, host, port, socket_path = parsed
    if problems.convert(raw.get("ssl"), _bool, False) and scheme == "http":
        scheme = "https"
    token, token_source = None, "none"
    if "token" in raw:
        value = raw["token"].value
        if isinstance(value, tuple):
            token = problems.convert(_Raw(value[1], raw["token"].origin), _read_token_file)
            token_source = f"token file {value[1]}"
        else:
            token = problems.convert(raw["token"], _token)
            token_source = raw["token"].origin
    text = {
        key: problems.convert(raw.get(key), _text)
        for key in (
            "ca_file",
            "ca_path",
            "client_cert",
            "client_key",
            "tls_server_name",
            "namespace",
            "partition",
            "datacenter",
            "http_auth",
        )
    }
    for key in ("ca_file", "client_cert", "client_key"):
        if text[key] and not Path(text[key]).is_file():
            problems.add(raw[key], f"file {text[key]!r} does not exist")
    if text["ca_path"] and not Path(text["ca_path"]).is_dir():
        problems.add(raw["ca_path"], f"directory {text['ca_path']!r} does not exist")
    if bool(text["client_cert"]) != bool(text["client_key"]):
        problems.items.append("consul: a client certificate needs its key (and the key its cert)")
    if text["http_auth"] and ":" not in text["http_auth"]:
        problems.add(raw["http_auth"], "must be user:password")
    return ConsulSettings(
        scheme=scheme,
        host=host,
        port=port,
        socket_path=socket_path,
        token=token or None,
        token_source=token_source if token else "none",
        verify=problems.convert(raw.get("ssl_verify"), _bool, True),
        **text,
    )


def _consul_address(value: Any) -> tuple[str, str, int, str | None]:
    """Parse CONSUL_HTTP_ADDR: host:port, http(s)://host:port, or unix:///path."""
    text = _text(value)
    if text.startswith("unix://"):
        path = text.removeprefix("unix://")
        if not path:
            raise ValueError("unix:// address needs a socket path")
        return "unix", "localhost", 0, path
    url = urllib.parse.urlsplit(text if "://" in text else f"http://{text}")
    if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
        raise ValueError(f"{text!r} is not host:port, http(s)://host:port or unix:///path")
    try:
        port = url.port or (443 if url.scheme == "https" else 8500)
    except ValueError as exc:
        raise ValueError(f"{text!r} has an invalid port") from exc
    return url.scheme, valid_address(url.hostname, "Consul address"), port, None


def _read_token_file(path: Any) -> str:
    try:
        token = Path(_text(path)).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read token file: {exc.strerror}") from exc
    if not token:
        raise ValueError("token file is empty")
    return _token(token)


def _text(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)) or value is None:
        raise ValueError(f"{value!r} is not a single value")
    return str(value)


def _path(value: Any) -> str:
    text = _text(value)
    if not text or not text.isprintable():
        raise ValueError(f"{text!r} is not a printable path")
    return text


def _token(value: Any) -> str:
    text = _text(value)
    if not text.isprintable():
        raise ValueError("the token is not one printable line (value not shown)")
    return text


def _name(value: Any) -> str:
    text = _text(value)
    if not is_name(text):
        raise ValueError(f"{text!r} is not a name (letters, digits, '_', '.', '-')")
    return text


def _member_name(value: Any) -> str:
    text = _text(value)
    if not text or len(text) > 512 or not text.isprintable():
        raise ValueError(f"{text!r} is not a printable name")
    return text


def _kv_prefix(value: Any) -> str:
    text = _text(value).strip("/")
    if not all(is_name(part) for part in text.split("/")):
        raise ValueError(f"{text!r} is not a KV path of names")
    return text


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit() or int(value) < 1:
        raise ValueError(f"{value!r} is not a whole number >= 1")
    return int(value)


def _count0(value: Any) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise ValueError(f"{value!r} is not a whole number >= 0")
    return int(value)


def _positive_float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number of seconds") from None
    if not 0 < number < 10**7:
        raise ValueError(f"{value!r} is not a positive number of seconds")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value)
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{text!r} is not true or false")


def _tags(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else _text(value).split(",")
    tags = tuple(str(item).strip() for item in items if str(item).strip())
    for tag in tags:
        if not tag.isprintable():
            raise ValueError(f"tag {tag!r} is not printable")
    return tags


def _meta(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        pairs = [(str(k), str(v)) for k, v in value.items()]
    else:
        pairs = [item.partition("=")[::2] for item in _text(value).split(",") if item.strip()]
    for key, val in pairs:
        if not key.strip() or not (key + val).isprintable():
            raise ValueError(f"{key}={val!r} is not a printable key=value")
    return {key.strip(): val.strip() for key, val in pairs}


def load_filters(flags: Flags) -> tuple[tuple[str, ...], dict[str, str]]:
    """Only the tag and meta filters (for ``discover``); raises ``UsageError``."""
    problems = _Problems()
    tags = problems.convert(_raw_flag(flags, "tags"), _tags, ())
    meta = problems.convert(_raw_flag(flags, "meta"), _meta, {})
    if problems.items:
        raise UsageError(problems.items)
    return tags, meta


def _raw_flag(flags: Flags, key: str) -> _Raw | None:
    value = flags.values.get(key)
    return None if value is None else _Raw(value, f"--{key.rstrip('s')}")


def _yaml_scalar(value: str) -> Any:
    import yaml  # only with --set

    try:
        return yaml.safe_load(value) if value else ""
    except yaml.YAMLError:
        raise ValueError(f"{value!r} is not a YAML value") from None
