"""The generic adapter: user templates rendered with a validated view of the cluster.

For any clustered service without a dedicated adapter. Templates run in Jinja2's immutable
sandbox with ``StrictUndefined``: a misspelt name is an error, not an empty string, and a
template cannot reach Python internals or change the view.

Options (``options:`` in the config file, or ``--set``)::

    files:                      # each: template (a path) or content (inline), path, mode, secret
      - {template: peers.conf.j2, path: /etc/svc/peers.conf, mode: 0o644}  # or "0644"
    env: {PEERS: "{{ members | join(',', attribute='address') }}"}
    shared: {cookie: {secret: true}}   # values created once for the cluster, then shared
    id_min: 1, id_max: 255      # the member ids this cluster uses (default 1..255)

In a template: ``me`` (member_id, address, ports, bind_address, bind_ports, data_dir,
conf_dir), ``members`` (each: member_id, address, ports), ``shared``, ``options`` and
``joining`` (true for a member outside the formed cluster's roster: ``members`` are the roster's
voters plus this member; the templates decide what a joiner renders).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import jinja2
import jinja2.sandbox

from bootstrap.errors import RenderError
from bootstrap.model import ClusterView, RenderedFile, Rendering, SharedValue, is_name
from bootstrap.options import Bool, Custom, FileMode, Option, OptionSet, id_range, id_range_options
from bootstrap.ports import ServicePort


def _environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    return jinja2.sandbox.ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


def _file_specs(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise ValueError(f"{str(raw)[:80]!r} is not a list of files")
    specs = []
    for number, item in enumerate(raw):
        where = f"[{number}]"
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise ValueError(f"{where} needs a path")
        unknown = set(item) - {"path", "content", "template", "mode", "secret"}
        if unknown:
            raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        if isinstance(item.get("content"), str):
            source, origin = item["content"], f"options.files{where}.content"
        elif isinstance(item.get("template"), str):
            origin = item["template"]
            try:
                source = Path(item["template"]).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"{where}: cannot read template {origin}: {exc}") from None
        else:
            raise ValueError(f"{where} needs template (a path) or content")
        try:
            mode = _MODE.check(item.get("mode", 0o644))
            secret = _SECRET.check(item.get("secret", False))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        specs.append(
            {
                "source": source,
                "origin": origin,
                "path": item["path"],
                "mode": mode,
                "secret": secret,
            }
        )
    return specs


def _env(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise ValueError(f"{str(raw)[:80]!r} is not a mapping of names to template strings")
    for name, source in raw.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not an environment variable name")
        if not isinstance(source, str):
            raise ValueError(f"{name}: {source!r} is not a template string")
    return dict(raw)


def _shared(raw: Any) -> dict[str, bool]:
    if not isinstance(raw, dict):
        raise ValueError(f"{str(raw)[:80]!r} is not a mapping of names to {{secret: true|false}}")
    shared = {}
    for name, spec in raw.items():
        if not isinstance(name, str) or not is_name(name):
            raise ValueError(f"{name!r} is not a name (letters, digits, '_', '.', '-')")
        spec = {} if spec is None else spec
        if not isinstance(spec, dict) or set(spec) - {"secret"}:
            raise ValueError(f"{name}: {spec!r} is not {{secret: true|false}}")
        shared[name] = _SECRET.check(spec.get("secret", True))
    return shared


_MODE = FileMode()
_SECRET = Bool()
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
OPTIONS = OptionSet(
    "template",
    Option(
        "files",
        [],
        Custom(
            _file_specs,
            (
                ("wrong-type", "peers.conf"),
                ("out-of-range", [{"path": "conf/x", "content": "x", "mode": "0899"}]),
                ("out-of-range", [{"path": "conf/x", "content": "x", "mode": 0o1777}]),
            ),
            "a list of {path, template or content, mode, secret}",
        ),
    ),
    Option(
        "env",
        {},
        Custom(
            _env,
            (
                ("wrong-type", "PEERS=x"),
                ("out-of-range", {"PEERS": 3}),
                ("out-of-range", {"A-B": "x"}),
            ),
            "a mapping of environment names to template strings",
        ),
    ),
    Option(
        "shared",
        {},
        Custom(
            _shared,
            (("wrong-type", ["cookie"]), ("out-of-range", {"cookie": True})),
            "a mapping of names to {secret: true|false}",
        ),
    ),
    *id_range_options(),
)


class TemplateService(ServicePort):
    key = "template"
    port_labels: ClassVar[Mapping[str, int]] = {"service": 8000}
    reloads_on_change = True

    option_set = OPTIONS

    def configure(self, problems: list[str]) -> None:
        self.files: list[dict[str, Any]] = self.opts["files"]
        self.env: dict[str, str] = self.opts["env"]
        self.shared: dict[str, bool] = self.opts["shared"]
        if not self.files and not self.env:
            problems.append("options: the template service needs options.files or options.env")
        self.id_range = id_range(self.opts, type(self).id_range, problems)

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
