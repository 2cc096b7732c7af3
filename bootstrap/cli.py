"""The command line: subcommands, flags, and the split at ``--``.

::

    cluster-bootstrap [run] SERVICE [options] -- COMMAND [ARGS...]
    cluster-bootstrap render SERVICE [--dry-run] [options]
    cluster-bootstrap discover CONSUL_SERVICE [--tag TAG] [consul options]
    cluster-bootstrap doctor SERVICE [options]
    cluster-bootstrap health SERVICE [options]      (exit 0 passing, 1 warning, 2 critical)
    cluster-bootstrap run SERVICE --supervise [options] -- COMMAND   (the agent stays as PID 1)
    cluster-bootstrap watch SERVICE [options]       (render, then keep the files up to date)
    cluster-bootstrap status SERVICE [--json] [options]  (exit 0 all agree, 1 a disagreement)
    cluster-bootstrap remove SERVICE --id N [--force] [options]  (a voter out, online)

A wrong flag is a ``UsageError`` (one line, exit 2), never argparse's usage dump.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from bootstrap.errors import UsageError
from bootstrap.settings import CONSUL_ENV, OWN_KEYS, Flags

SUBCOMMANDS = ("run", "render", "discover", "doctor", "health", "watch", "status", "remove")


@dataclass(frozen=True)
class Request:
    """What the user asked for."""

    action: str  # one of SUBCOMMANDS
    target: str  # the service key, or for discover the Consul service name
    command: tuple[str, ...]
    flags: Flags
    dry_run: bool = False
    json: bool = False
    member_id: int | None = None  # remove: the voter to take out
    force: bool = False  # remove: even when the floor or the majority check refuses


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see cluster-bootstrap --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cluster-bootstrap",
        allow_abbrev=False,
        description="Find a clustered service's peers through Consul, write its cluster "
        "configuration, then exec the server.",
        epilog="Environment: CLUSTER_BOOTSTRAP_<SETTING>, CONSUL_* as Consul's CLI reads them, "
        "NOMAD_* from the task. Precedence: defaults < --config < environment < flags.",
    )
    parser.add_argument("action", choices=SUBCOMMANDS, help="what to do (default: run)")
    parser.add_argument("target", help="service adapter key (discover: Consul service name)")
    parser.add_argument("--config", help="YAML settings file")
    parser.add_argument("--dry-run", action="store_true", help="render: print, change nothing")
    parser.add_argument("--json", action="store_true", help="status: print JSON")
    parser.add_argument("--id", dest="member_id", help="remove: the voter's member id")
    parser.add_argument(
        "--force", action="store_true", help="remove: even below --min-size or a majority"
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks and debug lines")
    own = parser.add_argument_group("member and cluster")
    own.add_argument("--cluster", help="cluster name (KV namespace; default: the service key)")
    own.add_argument("--consul-service", help="Consul service to discover (default: cluster)")
    own.add_argument("--expect", help="how many members form the cluster")
    own.add_argument("--timeout", help="seconds until the start gives up (default 300)")
    own.add_argument("--address", help="address peers use to reach this member")
    own.add_argument("--bind-address", help="address to bind locally (default 0.0.0.0)")
    own.add_argument("--port", action="append", default=[], metavar="LABEL=PORT")
    own.add_argument("--data-dir")
    own.add_argument("--conf-dir")
    own.add_argument("--member-name", help="stable name of this member (default: Nomad alloc)")
    own.add_argument(
        "--register",
        action="store_const",
        const="true",
        help="register this member in Consul (when Nomad does not)",
    )
    own.add_argument("--tag", action="append", default=[], help="only members with this tag")
    own.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only members whose service meta has KEY=VALUE",
    )
    own.add_argument("--kv-prefix", help="KV prefix (default cluster-bootstrap)")
    day2 = parser.add_argument_group("supervise mode (the agent stays as PID 1)")
    day2.add_argument(
        "--supervise",
        action="store_const",
        const="true",
        help="start the server as a child and stay: signals, reaping, watch, reload",
    )
    day2.add_argument("--kill-timeout", help="seconds from SIGTERM to SIGKILL (default 30)")
    day2.add_argument("--on-change", help="signal:<NAME>, restart or none (default none)")
    day2.add_argument("--change-wait", help="quiet period MIN[:MAX] (default 2s, MAX 4 x MIN)")
    day2.add_argument(
        "--remove-after",
        help="remove a voter whose registration is gone this long (default 10m; 0: never)",
    )
    day2.add_argument(
        "--min-size", help="never remove a voter below this many live voters (default --expect)"
    )
    own.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a service option (value read as YAML)",
    )
    consul = parser.add_argument_group("Consul (also CONSUL_* environment)")
    for key in CONSUL_ENV:
        if key in ("token", "http_auth", "ssl"):
            continue  # secrets are not taken on the command line (they would show in ps)
        consul.add_argument(f"--consul-{key.replace('_', '-')}", dest=f"consul_{key}")
    return parser


def split_command(argv: Sequence[str]) -> tuple[list[str], tuple[str, ...]]:
    """The agent's arguments (before the first ``--``) and the server's command (after it).

    Only the first part belongs to the agent: ``-- server --debug`` is the server's flag.
    """
    args = list(argv)
    if "--" not in args:
        return args, ()
    split = args.index("--")
    return args[:split], tuple(args[split + 1 :])


def parse(argv: Sequence[str]) -> Request:
    """Split ``argv`` at the first ``--`` and parse the options before it."""
    args, command = split_command(argv)
    if args and args[0] not in SUBCOMMANDS and not args[0].startswith("-"):
        args.insert(0, "run")
    if not args or args in (["-h"], ["--help"]):
        _parser().print_help()
        raise SystemExit(0)
    ns = _parser().parse_args(args)
    values = {key: getattr(ns, key) for key in OWN_KEYS if key not in ("tags", "meta")}
    if ns.action == "watch":
        values["supervise"] = "true"  # the watch loop is supervise mode without a child
    if ns.tag:
        values["tags"] = ",".join(ns.tag)
    if ns.meta:
        values["meta"] = ",".join(ns.meta)
    flags = Flags(
        config=ns.config,
        values=values,
        ports=tuple(ns.port),
        options=tuple(ns.set),
        consul={key: getattr(ns, f"consul_{key}", None) for key in CONSUL_ENV},
        debug=ns.debug,
    )
    if ns.action == "run" and not command:
        raise UsageError("missing the command after '--' (e.g. -- zkServer.sh start-foreground)")
    if ns.action != "run" and command:
        raise UsageError(f"{ns.action} takes no command after '--'")
    if ns.dry_run and ns.action != "render":
        raise UsageError("--dry-run goes with render")
    if ns.json and ns.action != "status":
        raise UsageError("--json goes with status")
    member_id = None
    if ns.action == "remove":
        if ns.member_id is None or not ns.member_id.isdigit():
            raise UsageError(f"remove needs --id N, a member id (got {ns.member_id!r})")
        member_id = int(ns.member_id)
    elif ns.member_id is not None or ns.force:
        raise UsageError("--id and --force go with remove")
    return Request(ns.action, ns.target, command, flags, ns.dry_run, ns.json, member_id, ns.force)
