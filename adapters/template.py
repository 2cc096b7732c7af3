"""The generic adapter: user templates rendered with a validated view of the cluster.

For any clustered service without a dedicated adapter. Templates run in Jinja2's immutable
sandbox with ``StrictUndefined``: a misspelt name is an error, not an empty string, and a
template cannot reach Python internals or change the view.

Options (``options:`` in the config file, or ``--set``)::

    files:                      # each: template (a path) or content (inline), path, mode, secret
      - {template: peers.conf.j2, path: /etc/svc/peers.conf, mode: 0o644}
    env: {PEERS: "{{ members | join(',', attribute='address') }}"}
    shared: {cookie: {secret: true}}   # values created once for the cluster, then shared
    id_min: 1, id_max: 255      # the member ids this cluster uses (default 1..255)

In a template: ``me`` (member_id, address, ports, bind_address, bind_ports, data_dir,
conf_dir), ``members`` (each: member_id, address, ports), ``shared``, ``options`` and
``joining`` (true for a member outside the formed cluster's roster: ``members`` are the roster's
voters plus this member; the templates decide what a joiner renders).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import jinja2
import jinja2.sandbox

from bootstrap.errors import RenderError, UsageError
from bootstrap.model import ClusterView, RenderedFile, Rendering, SharedValue
from bootstrap.ports import ServicePort, id_range_option


def _environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    return jinja2.sandbox.ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


class TemplateService(ServicePort):
    key = "template"
    port_labels: ClassVar[Mapping[str, int]] = {"service": 8000}

    def __init__(
        self, options: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(options, environ)
        problems: list[str] = []
        self.files = _file_specs(options.get("files", []), problems)
        env = options.get("env", {})
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            problems.append("options.env: must map names to template strings")
            env = {}
        self.env = {str(k): str(v) for k, v in env.items()}
        shared = options.get("shared", {})
        if not isinstance(shared, dict):
            problems.append("options.shared: must map names to {secret: true|false}")
            shared = {}
        self.shared = {str(k): bool((v or {}).get("secret", True)) for k, v in shared.items()}
        if not self.files and not self.env:
            problems.append("options: the template service needs options.files or options.env")
        self.id_range = id_range_option(options, type(self).id_range, problems)
        if problems:
            raise UsageError(problems)

    def shared_values(self) -> Sequence[SharedValue]:
        return [
            SharedValue(name, secret, lambda: secrets.token_urlsafe(24))
            for name, secret in sorted(self.shared.items())
        ]

    def joiner_form(self, view: ClusterView) -> str:
        return "a member rendered with joining=true (the templates decide its form)"

    def render(self, view: ClusterView) -> Rendering:
        environment = _environment()
        context = _context(view)
        secret_values = [view.shared[name] for name, secret in self.shared.items() if secret]

        def holds_secret(text: str) -> bool:
            return any(value in text for value in secret_values)

        files = []
        for spec in self.files:
            text = _render(environment, spec["source"], spec["origin"], context)
            secret = spec["secret"] or holds_secret(text)
            files.append(RenderedFile(Path(spec["path"]), text, spec["mode"], secret=secret))
        env = {
            name: _render(environment, source, f"options.env.{name}", context)
            for name, source in self.env.items()
        }
        secret_env = frozenset(name for name, text in env.items() if holds_secret(text))
        return Rendering(tuple(files), env, secret_env)


def _context(view: ClusterView) -> dict[str, Any]:
    me = view.me
    return {
        "me": {
            "member_id": view.member_id,
            "address": me.address,
            "ports": dict(me.ports),
            "bind_address": me.bind_address,
            "bind_ports": dict(me.bind_ports),
            "data_dir": str(me.data_dir),
            "conf_dir": str(me.conf_dir),
        },
        "members": [
            {"member_id": m.member_id, "address": m.address, "ports": dict(m.ports)}
            for m in view.members
        ],
        "shared": dict(view.shared),
        "options": dict(view.options),
        "joining": view.joining,
    }


def _render(
    environment: jinja2.sandbox.ImmutableSandboxedEnvironment,
    source: str,
    origin: str,
    context: Mapping[str, Any],
) -> str:
    try:
        return environment.from_string(source).render(context)
    except jinja2.TemplateError as exc:
        raise RenderError(f"{origin}: {type(exc).__name__}: {exc}") from exc


def _file_specs(raw: object, problems: list[str]) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        problems.append("options.files: must be a list")
        return []
    specs = []
    for number, item in enumerate(raw):
        where = f"options.files[{number}]"
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            problems.append(f"{where}: needs a path")
            continue
        if isinstance(item.get("content"), str):
            source, origin = item["content"], f"{where}.content"
        elif isinstance(item.get("template"), str):
            origin = item["template"]
            try:
                source = Path(item["template"]).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"{where}: cannot read template {origin}: {exc}")
                continue
        else:
            problems.append(f"{where}: needs template (a path) or content")
            continue
        mode = item.get("mode", 0o644)
        if isinstance(mode, str):
            mode = int(mode, 8) if mode.isdigit() else -1
        if not isinstance(mode, int) or not 0 <= mode <= 0o777:
            problems.append(f"{where}: mode must be octal like 0644")
            continue
        specs.append(
            {
                "source": source,
                "origin": origin,
                "path": item["path"],
                "mode": mode,
                "secret": bool(item.get("secret", False)),
            }
        )
    return specs
