"""Peak RSS of the agent before its exec: the child's ``ru_maxrss`` from ``wait4``.

The agent runs the start of ``start_to_exec`` (member 3 of 3, real Consul agent) and execs
``/bin/true``. Linux folds the old memory's high-water mark into the process's ``maxrss``
when it execs, so the figure is the agent's peak even though ``/bin/true`` is what exits.
Every run checks that claim: a python that fills 100 MiB and then execs ``/bin/true`` must
report at least 100 MiB, while ``/bin/true`` alone reports about 1 MiB.

Baselines: the import floor ``python -c 'import consul.aio'`` and ``python -c pass``; and
what each import cut of ``bench.imports`` would save.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from bench import imports
from bench.common import PYTHON, Figure, Run, clean_env, fmt, median, per_round, rotated, run_timed
from bench.start_to_exec import AGENT_RUN, FLOOR, StartScene
from testbed.consul import ConsulAgent

TARGET_MIB = 45.0
FILL_MIB = 100
FILL_THEN_EXEC = (
    f"import os; block = b'x' * ({FILL_MIB} << 20); os.execv('/bin/true', ['/bin/true'])"
)
FILL_THEN_EXIT = f"block = b'x' * ({FILL_MIB} << 20)"


def exec_keeps_peak() -> tuple[bool, str]:
    """Whether ru_maxrss survives exec here, and the three readings that say so."""
    env = clean_env()
    filled_exec = run_timed([PYTHON, "-c", FILL_THEN_EXEC], env).check("fill then exec")
    filled_exit = run_timed([PYTHON, "-c", FILL_THEN_EXIT], env).check("fill then exit")
    true_alone = run_timed(["/bin/true"], env).check("/bin/true")
    kept = filled_exec.maxrss_mib >= FILL_MIB > true_alone.maxrss_mib
    readings = (
        f"python fills {FILL_MIB} MiB then execs /bin/true: {fmt(filled_exec.maxrss_mib, 'MiB')}; "
        f"fills and exits: {fmt(filled_exit.maxrss_mib, 'MiB')}; "
        f"/bin/true alone: {fmt(true_alone.maxrss_mib, 'MiB')}"
    )
    return kept, readings


def run(rounds: int, consul: ConsulAgent, workdir: Path) -> list[Figure]:
    kept, readings = exec_keeps_peak()
    print(f"  ru_maxrss keeps the pre-exec peak across exec: {'yes' if kept else 'NO'}")
    print(f"    {readings}")
    scene = StartScene(consul, workdir)
    env = clean_env()
    jobs: dict[str, Callable[[], Run]] = {
        AGENT_RUN: lambda: scene.run_agent()[0],
        FLOOR: lambda: run_timed([PYTHON, "-c", "import consul.aio"], env).check("import floor"),
        "python -c pass": lambda: run_timed([PYTHON, "-c", "pass"], env).check("python"),
    }
    rss: dict[str, list[float]] = defaultdict(list)
    for round_no in range(rounds):
        for name in rotated(list(jobs), round_no):
            rss[name].append(jobs[name]().maxrss_mib)
    for name, values in rss.items():
        print(per_round(name, values, "MiB"))
    print("  imports: peak RSS of each cut (fresh interpreter, medians):")
    for line in imports.report_cuts(imports.measure_cuts(min(rounds, 5))):
        print(line)
    note = "ru_maxrss of the process that exec'd /bin/true"
    if not kept:
        note += "; NOT verified that exec keeps the peak on this kernel: " + readings
    return [
        Figure(
            "peak RSS before exec",
            median(rss[AGENT_RUN]),
            "MiB",
            median(rss[FLOOR]),
            "import consul.aio",
            target_value=TARGET_MIB,
            note=note,
        ),
    ]


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["--only", "memory", *sys.argv[1:]]))
