"""Start to exec: member 3 of a ZooKeeper cluster whose members 1 and 2 are already there.

Set-up of each round (not timed): a new cluster name; members 1 and 2 registered in the real
Consul agent with their ids claimed in KV, as their own starts would have left them; fresh
data and conf dirs for member 3 (so it claims id 3 with a create-only CAS, as a first start).

Timed, as wall time of the whole process (spawn to reaped):

- the agent: ``cluster-bootstrap zookeeper --expect 3 --register ... -- /bin/true``;
- the old way: ``zk_shell_baseline.sh`` (curl + jq + sed; registers, reads the instances,
  writes the same zoo.cfg and myid, execs ``/bin/true``);
- the floors: ``python -c 'import consul.aio'`` (the import floor), ``python -c pass`` and
  ``/bin/true`` alone (what the exec at the end costs).

Every variant runs once untimed first (warm caches), then ``rounds`` times, interleaved.
Where the time goes: the same start run phase by phase (``start_phases.py``), each Consul
call timed; ``-X importtime`` by package; and the import cuts of ``bench.imports``.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import imports
from bench.common import (
    PYTHON,
    Figure,
    Missing,
    Run,
    clean_env,
    fmt,
    median,
    per_round,
    require,
    rotated,
    run_timed,
)
from bootstrap.model import Claim
from testbed.consul import ConsulAgent
from testbed.procs import AGENT, agent_args
from testbed.zookeeper import PORTS, host

FIRST_HOST = 41  # this benchmark's loopback range: 127.0.0.41-43
ME = 3
HERE = Path(__file__).resolve().parent
SHELL_BASELINE = HERE / "zk_shell_baseline.sh"
ZOO_TEMPLATE = HERE / "zoo.cfg.template"
PHASES = HERE / "start_phases.py"
EXEC = "/bin/true"
AGENT_RUN = "cluster-bootstrap ... -- /bin/true"
FLOOR = "python -c 'import consul.aio'"
SHELL = "shell: curl + jq + sed"


class StartScene:
    """A fresh cluster per round, members 1 and 2 already registered and claimed."""

    def __init__(self, consul: ConsulAgent, workdir: Path) -> None:
        self.consul = consul
        self.workdir = workdir
        self.count = 0

    def new_cluster(self, label: str) -> tuple[str, Path]:
        """A cluster with members 1 and 2 in place; member 3's directory."""
        self.count += 1
        cluster = f"s2e-{label}-{self.count}-{uuid.uuid4().hex[:6]}"
        for n in (1, 2):
            address = host(n, FIRST_HOST)
            owner = f"{cluster}-zk{n}"
            claim = Claim(n, owner, address, dict(PORTS), group=cluster)
            self.consul.kv_put(f"cluster-bootstrap/{cluster}/ids/{n}", claim.to_json())
            self.consul.register(
                cluster,
                f"{cluster}-{n}",
                address,
                PORTS["client"],
                Meta={"cluster-bootstrap-id": str(n), "cluster-bootstrap-cluster": cluster},
            )
        return cluster, self.workdir / cluster / f"zk{ME}"

    def cleanup(self, cluster: str) -> None:
        for n in (1, 2, ME):
            self.consul.deregister(f"{cluster}-{n}")
        self.consul.request("DELETE", f"/v1/kv/cluster-bootstrap/{cluster}?recurse")

    def agent_args(self, cluster: str, member_dir: Path) -> list[str]:
        """The arguments of member 3's start (after the program name)."""
        return agent_args(
            "zookeeper",
            cluster=cluster,
            expect=3,
            address=host(ME, FIRST_HOST),
            member_name=f"{cluster}-zk{ME}",
            member_dir=member_dir,
            command=[EXEC],
            timeout_s=30,
        )

    def env(self) -> dict[str, str]:
        return clean_env(self.consul.env())

    def run_agent(self, program: Sequence[str] = (AGENT,)) -> tuple[Run, Path]:
        cluster, member_dir = self.new_cluster("agent")
        run = run_timed([*program, *self.agent_args(cluster, member_dir)], self.env())
        self.cleanup(cluster)
        return run.check("cluster-bootstrap"), member_dir

    def run_shell(self) -> tuple[Run, Path]:
        cluster, member_dir = self.new_cluster("shell")
        env = self.env() | {
            "SERVICE": cluster,
            "MY_ID": str(ME),
            "MY_ADDRESS": host(ME, FIRST_HOST),
            "EXPECT": "3",
            "DATA_DIR": str(member_dir / "data"),
            "CONF_DIR": str(member_dir / "conf"),
            "TEMPLATE": str(ZOO_TEMPLATE),
        }
        run = run_timed(["/bin/sh", str(SHELL_BASELINE), EXEC], env)
        self.cleanup(cluster)
        return run.check("shell baseline"), member_dir


def _written(member_dir: Path) -> tuple[str, str]:
    """zoo.cfg (its data dir written as @DATA_DIR@) and myid."""
    conf = (member_dir / "conf" / "zoo.cfg").read_text()
    myid = (member_dir / "data" / "myid").read_text()
    return conf.replace(str(member_dir / "data"), "@DATA_DIR@"), myid


def run(rounds: int, consul: ConsulAgent, workdir: Path) -> list[Figure]:
    scene = StartScene(consul, workdir)
    shell_missing = ""
    try:
        require("sh", "curl", "jq", "sed", "grep")
    except Missing as exc:
        shell_missing = str(exc)
        print(f"  shell baseline NOT measured: {shell_missing}")
    env = clean_env()
    variants: dict[str, Callable[[], Run]] = {
        AGENT_RUN: lambda: scene.run_agent()[0],
        FLOOR: lambda: run_timed([PYTHON, "-c", "import consul.aio"], env).check("import floor"),
        "python -c pass": lambda: run_timed([PYTHON, "-c", "pass"], env).check("python"),
        EXEC: lambda: run_timed([EXEC], env).check(EXEC),
    }
    if not shell_missing:
        variants[SHELL] = lambda: scene.run_shell()[0]
        _, agent_dir = scene.run_agent()
        _, shell_dir = scene.run_shell()
        same = _written(agent_dir) == _written(shell_dir)
        print(f"  the shell baseline writes the same zoo.cfg and myid as the agent: {same}")
        if not same:
            shell_missing = "its zoo.cfg differs from the agent's (see the two files)"
            print(f"    agent: {agent_dir}\n    shell: {shell_dir}")
    for run_variant in variants.values():  # warm-up, not timed
        run_variant()
    seconds: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    for round_no in range(rounds):
        for name in rotated(list(variants), round_no):
            ran = variants[name]()
            seconds[name].append(ran.seconds)
            cpu[name].append(ran.cpu_seconds)
    print("  wall time:")
    for name, values in seconds.items():
        print(per_round(name, values))
    print("  CPU time (user + system; less disturbed by other load):")
    for name, values in cpu.items():
        print(f"  {name:<40} median {fmt(median(values), 's'):>9}")
    agent, floor = median(seconds[AGENT_RUN]), median(seconds[FLOOR])
    exec_s = median(seconds[EXEC])
    print(f"  agent without the exec of {EXEC}: {fmt(agent - exec_s, 's')}")
    print("  where the time goes (one start, phase by phase, medians):")
    for line in phases(scene, rounds):
        print(line)
    print("  imports: what a cut would save (fresh interpreter, medians):")
    for line in imports.report_cuts(imports.measure_cuts(rounds)):
        print(line)
    for line in imports.importtime(min(rounds, 5)):
        print(line)
    agent_cpu, floor_cpu = median(cpu[AGENT_RUN]), median(cpu[FLOOR])
    shell = None if shell_missing else median(seconds[SHELL])
    return [
        Figure(
            "start to exec, 3rd of 3 members",
            agent,
            "s",
            floor,
            "import consul.aio",
            target_ratio=1.5,
            note=f"zookeeper, real Consul agent, exec of {EXEC} ({fmt(exec_s, 's')}) included; "
            f"CPU {fmt(agent_cpu, 's')} vs {fmt(floor_cpu, 's')} ({agent_cpu / floor_cpu:.2f}x)",
        ),
        Figure("start to exec vs shell", agent, "s", shell, "curl+jq+sed", note=shell_missing),
    ]


def phases(scene: StartScene, rounds: int) -> list[str]:
    """The start run by ``start_phases.py``: medians of each phase and each Consul call."""
    spans: dict[str, list[float]] = defaultdict(list)
    calls: dict[str, list[float]] = defaultdict(list)
    call_counts: list[int] = []
    for round_no in range(rounds + 1):
        cluster, member_dir = scene.new_cluster("phases")
        result_path = member_dir.parent / "phases.json"
        member_dir.mkdir(parents=True, exist_ok=True)
        env = scene.env() | {"BENCH_RESULT": str(result_path), "BENCH_SPAWNED": "(the fork)"}
        ran = run_timed(
            [PYTHON, "-P", str(PHASES), *scene.agent_args(cluster, member_dir)], env
        ).check("start_phases.py")
        scene.cleanup(cluster)
        if round_no == 0:
            continue  # warm-up
        result = json.loads(result_path.read_text())
        m: dict[str, float] = result["marks"]
        consul_s = sum(seconds for _, seconds in result["calls"])
        call_counts.append(len(result["calls"]))
        for name, seconds in result["calls"]:
            calls[name].append(seconds)
        for label, value in (
            ("interpreter start", m["python ready"] - m["spawned"]),
            ("imports (bootstrap.__main__ and all)", m["imported"] - m["python ready"]),
            ("cli + settings + command lookup", m["settings"] - m["imported"]),
            ("asyncio.run until the coroutine runs", m["loop running"] - m["settings"]),
            ("adapters built, session opened", m["session open"] - m["loop running"]),
            ("Consul round trips", consul_s),
            ("render (ZooKeeperService.render)", m["render_s"]),
            (
                "other plan work (claims, match, view)",
                m["planned"] - m["session open"] - consul_s - m["render_s"],
            ),
            ("write zoo.cfg + myid (atomic, fsync)", m["written"] - m["planned"]),
            ("close session + event loop", m["exec"] - m["written"]),
            (f"exec {EXEC}, its run, reaped", ran.seconds - (m["exec"] - m["spawned"])),
            ("total (wall)", ran.seconds),
        ):
            spans[label].append(value)
    lines = [f"    {label:<42} {fmt(median(v), 's'):>7}" for label, v in spans.items()]
    per_call = ", ".join(
        f"{name} x{len(v) // rounds} {fmt(median(v), 's')}" for name, v in calls.items()
    )
    lines.append(f"  Consul calls per start: {median(call_counts):g} ({per_call}; medians)")
    return lines


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["--only", "start_to_exec", *sys.argv[1:]]))
