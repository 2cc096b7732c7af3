"""How to reach the Consul agent: ``CONSUL_*`` as Consul's own CLI reads them, the ``consul:``
mapping of the settings file, and ``--consul-*`` flags (in that order of precedence, lowest
first). Within one layer a token file wins over a token. TLS files are loaded here, so a file
that holds no certificate is a settings error (exit 2), not a failure on the first request.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap.errors import UsageError
from bootstrap.layers import Flags, Problems, Raw, as_bool, as_text, as_token, read_yaml
from bootstrap.model import endpoint, valid_address

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
class TokenFile:
    """A token to be read from ``path`` (``CONSUL_HTTP_TOKEN_FILE``), not a token itself."""

    path: Any


def load_consul_settings(
    env: Mapping[str, str], flags: Flags | None = None, config_path: str | None = None
) -> ConsulSettings:
    """Only the Consul part of the settings (for ``discover``); raises ``UsageError``."""
    flags = flags or Flags(config=config_path)
    problems = Problems()
    file_layer = read_yaml(flags.config, problems)
    consul_raw = consul_layers(file_layer, env, flags)
    consul = consul_settings(consul_raw, problems)
    if problems.items:
        raise UsageError(problems.items)
    return consul


def consul_layers(
    file_layer: Mapping[str, Raw], env: Mapping[str, str], flags: Flags
) -> dict[str, Raw]:
    """Merge Consul keys; within one layer a token file wins over a token."""
    merged: dict[str, Raw] = {}
    layers: list[dict[str, Raw]] = []
    if "consul" in file_layer and isinstance(file_layer["consul"].value, dict):
        origin = file_layer["consul"].origin
        layers.append(
            {str(k): Raw(v, f"{origin}.{k}") for k, v in file_layer["consul"].value.items()}
        )
    layers.append({k: Raw(env[name], name) for k, name in CONSUL_ENV.items() if env.get(name)})
    layers.append(
        {k: Raw(v, f"--consul-{k.replace('_', '-')}") for k, v in flags.consul.items() if v}
    )
    for layer in layers:
        if "token_file" in layer:
            token_file = layer.pop("token_file")
            layer["token"] = Raw(TokenFile(token_file.value), token_file.origin)
        merged.update(layer)
    return merged


def consul_settings(raw: Mapping[str, Raw], problems: Problems) -> ConsulSettings:
    scheme, host, port, socket_path = "http", "127.0.0.1", 8500, None
    if "address" in raw:
        parsed = problems.convert(raw["address"], _consul_address)
        if parsed:
            scheme, host, port, socket_path = parsed
    if problems.convert(raw.get("ssl"), as_bool, False) and scheme == "http":
        scheme = "https"
    token, token_source = None, "none"
    if "token" in raw:
        value = raw["token"].value
        if isinstance(value, TokenFile):
            token = problems.convert(Raw(value.path, raw["token"].origin), _read_token_file)
            token_source = f"token file {value.path}"
        else:
            token = problems.convert(raw["token"], as_token)
            token_source = raw["token"].origin
    text = {
        key: problems.convert(raw.get(key), as_text)
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
    elif not problems.items:
        _check_tls_files(text, raw, problems)
    if text["http_auth"] and ":" not in text["http_auth"]:
        problems.add(raw["http_auth"], "must be user:password")
    return ConsulSettings(
        scheme=scheme,
        host=host,
        port=port,
        socket_path=socket_path,
        token=token or None,
        token_source=token_source if token else "none",
        verify=problems.convert(raw.get("ssl_verify"), as_bool, True),
        **text,
    )


def _check_tls_files(text: Mapping[str, Any], raw: Mapping[str, Raw], problems: Problems) -> None:
    """Load the CA and client certificate now: garbage there is a settings error (exit 2),
    not a failure on the first request."""
    if not (text["ca_file"] or text["ca_path"] or text["client_cert"]):
        return
    import ssl  # only with TLS files

    try:
        context = ssl.create_default_context(cafile=text["ca_file"], capath=text["ca_path"])
    except (OSError, ssl.SSLError) as exc:
        key = "ca_file" if text["ca_file"] else "ca_path"
        problems.add(raw[key], f"{text[key]!r} holds no usable CA certificate ({_ssl_reason(exc)})")
        return
    if text["client_cert"]:
        try:
            context.load_cert_chain(text["client_cert"], text["client_key"])
        except (OSError, ssl.SSLError) as exc:
            problems.add(
                raw["client_cert"],
                f"{text['client_cert']!r} with key {text['client_key']!r} is not a usable client "
                f"certificate ({_ssl_reason(exc)})",
            )


def _ssl_reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc)[:120]


def _consul_address(value: Any) -> tuple[str, str, int, str | None]:
    """Parse CONSUL_HTTP_ADDR: host:port, http(s)://host:port, or unix:///path."""
    text = as_text(value)
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
        token = Path(as_text(path)).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read token file: {exc.strerror}") from exc
    if not token:
        raise ValueError("token file is empty")
    return as_token(token)
