"""``python -m bench``: every benchmark, then one results table and the machine it ran on.

::

    python -m bench                       # all, each with its own default round count
    python -m bench --rounds 3            # quick (noisy) run
    python -m bench --only scale --only memory
    python -m bench --json results.json   # the figures, for bench/README.md

A benchmark whose programs are missing says what is missing and the others still run.
``bench/kafka_formation.py``, when present, runs in-process if it has ``run(rounds, consul,
workdir) -> list[Figure]`` like the others; else as ``python -m bench.kafka_formation
--rounds N``, its output shown as it comes and its summary line put in the table.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bench import kafka_day2, memory, scale, start_to_exec, supervise, zk_day2, zk_formation
from bench.common import PYTHON, Figure, Missing, bench_consul, machine, table
from testbed.consul import ConsulAgent

Bench = Callable[[int, ConsulAgent, Path], list[Figure]]
BENCHES: dict[str, tuple[Bench, int]] = {  # name: (run, default rounds)
    "start_to_exec": (start_to_exec.run, 20),
    "zk_formation": (zk_formation.run, 5),
    "scale": (scale.run, 10),
    "memory": (memory.run, 10),
    "supervise": (supervise.run, 3),
    "zk_day2": (zk_day2.run, 3),
    "kafka_day2": (kafka_day2.run, 3),
}
KAFKA = "kafka_formation"
_KAFKA_SUMMARY = re.compile(
    r"through the agent: (?P<agent>[\d.]+) s; by hand: (?P<baseline>[\d.]+) s"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Run the benchmarks, then print one results table."
    )
    parser.add_argument("--rounds", type=int, help="rounds of every benchmark (default: its own)")
    parser.add_argument(
        "--only", action="append", choices=[*BENCHES, KAFKA], help="run only this (repeatable)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, configs)")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    return parser


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cb-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"work dir kept: {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def _not_run(name: str, why: str) -> Figure:
    return Figure(name, math.nan, "", note=f"NOT RUN: {why}")


def _kafka(rounds: int | None, consul: ConsulAgent | None, workdir: Path) -> list[Figure]:
    """Its figures: from its ``run`` if it has ours, else from its summary line."""
    if importlib.util.find_spec(f"bench.{KAFKA}") is None:
        print(f"  bench/{KAFKA}.py is not there")
        return []
    module = importlib.import_module(f"bench.{KAFKA}")
    run = getattr(module, "run", None)
    if callable(run) and consul is not None:
        figures: list[Figure] = run(rounds or 5, consul, workdir / KAFKA)
        return figures
    argv = [PYTHON, "-m", f"bench.{KAFKA}", *(["--rounds", str(rounds)] if rounds else [])]
    print("  $ python " + " ".join(argv[1:]), flush=True)
    summary = None
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            summary = _KAFKA_SUMMARY.search(line) or summary
    if proc.returncode == 2:
        raise Missing(f"python -m bench.{KAFKA} exited 2 (a program is missing)")
    if proc.returncode != 0:
        raise RuntimeError(f"python -m bench.{KAFKA} exited {proc.returncode}")
    if summary is None:
        return [_not_run(KAFKA, "ran, but printed no summary line: see its output")]
    return [
        Figure(
            "Kafka 3 members formed",
            float(summary["agent"]),
            "s",
            float(summary["baseline"]),
            "by hand + format",
            note="from python -m bench.kafka_formation (its own summary line)",
        )
    ]


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    selected = args.only or [*BENCHES, KAFKA]
    info = machine(argv)
    for key, value in info.items():
        print(f"{key}: {value}")
    figures: list[Figure] = []
    failed = False
    with _workdir(args.keep) as workdir, contextlib.ExitStack() as stack:
        consul: ConsulAgent | None = None
        for name in selected:
            rounds = args.rounds or (BENCHES[name][1] if name in BENCHES else 5)
            print(f"\n== {name} ({rounds} rounds) ==", flush=True)
            started = time.monotonic()
            try:
                if consul is None:
                    consul = stack.enter_context(bench_consul(workdir))
                if name == KAFKA:
                    figures += _kafka(args.rounds, consul, workdir)
                else:
                    figures += BENCHES[name][0](rounds, consul, workdir / name)
            except Missing as exc:
                print(f"  NOT RUN: {exc}")
                figures.append(_not_run(name, str(exc)))
            except (RuntimeError, TimeoutError, OSError) as exc:
                failed = True
                print(f"  FAILED: {type(exc).__name__}: {exc}")
                figures.append(_not_run(name, f"failed: {str(exc).splitlines()[0]}"))
            print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
    print("\n## Results\n")
    for key, value in info.items():
        print(f"- {key}: {value}")
    print()
    print(table(figures))
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "figures": [_as_dict(f) for f in figures]}, indent=2)
            + "\n"
        )
    return 1 if failed else 0


def _as_dict(figure: Figure) -> dict[str, object]:
    return {
        "name": figure.name,
        "value": None if math.isnan(figure.value) else figure.value,
        "unit": figure.unit,
        "baseline": figure.baseline,
        "baseline_name": figure.baseline_name,
        "ratio": figure.ratio,
        "target": figure.target,
        "met": figure.met,
        "note": figure.note,
    }


if __name__ == "__main__":
    sys.exit(main())
