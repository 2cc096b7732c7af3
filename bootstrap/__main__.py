"""The composition root: the one place that builds adapters and hands them to the core.

``cluster-bootstrap`` and ``python -m bootstrap`` both land in ``main``. The async part
plans and writes; the exec happens after the event loop and every session are closed.

``main`` takes its environment and its discovery factory as arguments (defaults: the process
environment and the Consul adapter), so tests run the whole root in-process against a fake.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from adapters import service_class
from adapters.consul import ConsulDiscovery
from bootstrap import cli, status
from bootstrap.deadline import Deadline, Unbounded
from bootstrap.errors import BootstrapError
from bootstrap.flow import Plan, Start, exec_command, resolve_command, who_am_i
from bootstrap.log import log, scrub, setup
from bootstrap.ports import DiscoveryPort
from bootstrap.settings import (
    ConsulSettings,
    ServiceDefaults,
    Settings,
    load_consul_settings,
    load_filters,
    load_settings,
)

DiscoveryFactory = Callable[[ConsulSettings, Deadline], DiscoveryPort]


def consul_discovery(settings: ConsulSettings, deadline: Deadline) -> DiscoveryPort:
    return ConsulDiscovery(settings, deadline)


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    discovery: DiscoveryFactory = consul_discovery,
) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    debug = "--debug" in cli.split_command(args)[0]  # after '--', it is the server's flag
    setup(debug)
    try:
        request = cli.parse(args)
        if request.action == "discover":
            return asyncio.run(_discover(request, env, discovery))
        settings = _settings(request, env)
        if request.action == "health":
            return asyncio.run(_health(settings, env))
        if request.action == "status":
            return asyncio.run(_status(request, settings, env, discovery))
        if request.action == "remove":
            return asyncio.run(_remove(request, settings, env, discovery))
        program = resolve_command(settings.command, env) if request.action == "run" else ""
        if settings.supervise and request.action in ("run", "watch"):
            return asyncio.run(_day2(request, settings, program, env, discovery))
        plan = asyncio.run(_start(request, settings, env, discovery))
        if request.action == "run":
            exec_command(program, settings.command, plan.rendering)
        return 0
    except BootstrapError as exc:
        if debug:
            log.exception("%s", exc)
        print(f"cluster-bootstrap: error: {scrub(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cluster-bootstrap: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, the traceback only with --debug
        if debug:
            log.exception("internal error")
        print(
            f"cluster-bootstrap: error: internal error: {type(exc).__name__}: {scrub(str(exc))} "
            "(a bug: please report it; --debug shows the traceback)",
            file=sys.stderr,
        )
        return 1


def _settings(request: cli.Request, env: Mapping[str, str]) -> Settings:
    cls = service_class(request.target)
    defaults = ServiceDefaults(
        key=cls.key,
        port_labels=cls.port_labels,
        data_dir=getattr(cls, "default_data_dir", "./data"),
        conf_dir=getattr(cls, "default_conf_dir", "./conf"),
    )
    return load_settings(
        defaults,
        request.command,
        env,
        request.flags,
        require_expect=request.action not in ("health", "status"),
        require_address=request.action not in ("status", "remove"),
    )


async def _start(
    request: cli.Request,
    settings: Settings,
    env: Mapping[str, str],
    discovery_factory: DiscoveryFactory,
) -> Plan:
    deadline = Deadline(settings.timeout_s)
    service = service_class(settings.service)(settings.options, env)
    async with discovery_factory(settings.consul, deadline) as discovery, service:
        start = Start(settings, discovery, service, deadline)
        if request.action == "doctor":
            await _doctor(start, discovery)
            return await start.preview()
        if request.dry_run:
            plan = await start.preview()
            _print_plan(plan)
            return plan
        plan = await start.plan()
        await start.write(plan)
        return plan


async def _day2(
    request: cli.Request,
    settings: Settings,
    program: str,
    env: Mapping[str, str],
    discovery_factory: DiscoveryFactory,
) -> int:
    """Supervise mode (``run --supervise``) or the sidecar watch loop (``watch``)."""
    from bootstrap import day2  # an exec'd start never imports the day-2 rooms

    deadline = Deadline(settings.timeout_s)
    service = service_class(settings.service)(settings.options, env)
    async with (
        discovery_factory(settings.consul, deadline) as discovery,
        discovery_factory(settings.consul, Unbounded()) as day2_discovery,
        service,
    ):
        start = Start(settings, discovery, service, deadline)
        plan = await start.plan()
        await start.write(plan)
        if request.action == "watch":
            return await day2.watch_only(settings, day2_discovery, service, plan)
        return await day2.supervise(settings, day2_discovery, service, plan, program)


async def _status(
    request: cli.Request,
    settings: Settings,
    env: Mapping[str, str],
    discovery_factory: DiscoveryFactory,
) -> int:
    deadline = Deadline(min(settings.timeout_s, 30.0))
    service = service_class(settings.service)(settings.options, env)
    async with discovery_factory(settings.consul, deadline) as discovery, service:
        start = Start(settings, discovery, service, deadline)
        report = await status.gather(
            discovery, service, start.membership, start.rosters, settings.cluster
        )
    if request.json:
        print(json.dumps(report.as_json(), indent=2, sort_keys=True))
    else:
        print(report.text(), end="")
    return 1 if report.disagreements else 0


async def _remove(
    request: cli.Request,
    settings: Settings,
    env: Mapping[str, str],
    discovery_factory: DiscoveryFactory,
) -> int:
    """``remove SERVICE --id N``: one voter out, online, with supervise mode's checks."""
    from bootstrap.keeper import VoterKeeper
    from bootstrap.lock import ClusterLock

    assert request.member_id is not None  # cli.parse checked it
    deadline = Deadline(settings.timeout_s)
    service = service_class(settings.service)(settings.options, env)
    async with discovery_factory(settings.consul, deadline) as discovery, service:
        start = Start(settings, discovery, service, deadline)
        holder = f"{settings.member_name} (remove by hand)"
        lock = ClusterLock(discovery, f"{settings.cluster_prefix}/lock", holder)
        keeper = VoterKeeper(start, lock, request.member_id)
        await keeper.remove_by_hand(
            request.member_id, force=request.force, deadline_s=settings.timeout_s
        )
    print(f"removed voter {request.member_id} from cluster {settings.cluster!r}")
    return 0


async def _health(settings: Settings, env: Mapping[str, str]) -> int:
    async with service_class(settings.service)(settings.options, env) as service:
        report = await service.health(who_am_i(settings))
    print(report.detail)
    return report.code


async def _discover(
    request: cli.Request, env: Mapping[str, str], discovery_factory: DiscoveryFactory
) -> int:
    consul = load_consul_settings(env, request.flags)
    tags, meta = load_filters(request.flags)
    async with discovery_factory(consul, Deadline(30.0)) as discovery:
        _, instances = await discovery.instances(request.target)
    members = [
        {
            "id": i.service_id,
            "node": i.node,
            "address": i.address,
            "port": i.port,
            "tags": list(i.tags),
            "meta": dict(i.meta),
        }
        for i in instances
        if i.matches(tags, meta)
    ]
    print(json.dumps(members, indent=2, sort_keys=True))
    return 0


async def _doctor(start: Start, discovery: DiscoveryPort) -> None:
    for key, value in (await discovery.describe()).items():
        print(f"consul.{key}: {value}")
    s = start.settings
    print(f"service: {s.service} (Consul service {s.consul_service!r}, cluster {s.cluster!r})")
    print(f"member: {s.member_name!r} at {s.address} ports {dict(s.ports)}")
    print(f"expect: {s.expect} members within {s.timeout_s:g}s")


def _print_plan(plan: Plan) -> None:
    view = plan.view
    for line in plan.status:
        print(f"# status: {line}")
    print(
        f"# member id {view.member_id}; members: "
        + ", ".join(f"{m.member_id}={m.address}" for m in view.members)
    )
    for file in plan.rendering.files:
        print(f"# --- {file.path} (mode {file.mode:o}{', secret' if file.secret else ''})")
        print("(secret: not shown)" if file.secret else file.content, end="")
        if not file.secret and not file.content.endswith("\n"):
            print()
    for name, value in sorted(plan.rendering.env.items()):
        shown = "***" if name in plan.rendering.secret_env else value
        print(f"{name}={shown}")


if __name__ == "__main__":
    sys.exit(main())
