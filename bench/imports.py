"""Where the import time goes, and what cutting an import would save (measured, not guessed).

Two tools:

- ``importtime``: ``python -X importtime -c 'import bootstrap.__main__'``, self time summed by
  top-level package (``-X importtime`` inflates every figure a little; compare them with each
  other, not with wall times).
- ``cuts``: the agent's imports in a fresh interpreter as they are now, and again with modules
  the ZooKeeper start does not need replaced by empty stand-ins in ``sys.modules`` (what a lazy
  import would achieve), each cut added to the ones before. Wall time and peak RSS of each,
  against the floors ``python -c pass`` and ``python -c 'import consul.aio'``. The last cut
  is inside py-consul (its ``__init__`` imports ``consul.std``, hence requests): it lowers the
  floor itself.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from bench.common import PYTHON, REPO, Run, clean_env, fmt, median, rotated, run_timed

ENTRY = "import bootstrap.__main__"
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def _names_imported(path: str, module: str) -> dict[str, list[str]]:
    """``from <module>... import a, b`` in ``path``: {imported module: [names]}."""
    tree = ast.parse((REPO / path).read_text())
    found: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(module):
            found.setdefault(node.module or "", []).extend(a.name for a in node.names)
    return found


def _stub(module: str, names: Sequence[str]) -> str:
    """Code that puts an empty stand-in for ``module`` (with ``names``) into sys.modules."""
    key = module.rpartition(".")[2]
    attrs = ", ".join(f"{n!r}: type({n!r}, (), {{'key': {key!r}}})" for n in names)
    return (
        f"sys.modules[{module!r}] = _m = types.ModuleType({module!r})\n"
        f"_m.__dict__.update({{{attrs}}})\n"
    )


@dataclass(frozen=True)
class Variant:
    label: str
    code: str


def variants() -> list[Variant]:
    """The floors, the agent's imports now, and each cut added to the previous one."""
    head = "import sys, types\n"
    # Already cut (applied in the code, 2026-11-26): service adapters load only when chosen,
    # yaml only with --config/--set. What is left to weigh:
    cuts = [
        (
            "- tenacity (imported at the first retry)",
            _stub(
                "tenacity", _names_imported("adapters/consul.py", "tenacity").get("tenacity", [])
            ),
        ),
        # py-consul's package __init__ imports its requests-based client, which we never use.
        ("- and requests (py-consul's consul.std)", _stub("consul.std", ["Consul"])),
    ]
    steps = [
        Variant("python -c pass", "pass"),
        Variant("import consul.aio (floor)", "import consul.aio"),
        Variant("agent imports now", ENTRY),
    ]
    stubs = ""
    for label, stub in cuts:
        stubs += stub
        steps.append(Variant(label, head + stubs + ENTRY))
    return steps


@dataclass(frozen=True)
class CutResult:
    label: str
    runs: list[Run]

    def median(self, field: str) -> float:
        return median([getattr(run, field) for run in self.runs])


def measure_cuts(rounds: int) -> list[CutResult]:
    """Each variant ``rounds`` times in a fresh interpreter, interleaved."""
    steps = {v.label: v for v in variants()}
    env = clean_env()
    runs: dict[str, list[Run]] = defaultdict(list)
    for round_no in range(rounds):
        for label in rotated(list(steps), round_no):
            runs[label].append(run_timed([PYTHON, "-c", steps[label].code], env).check(label))
    return [CutResult(label, runs[label]) for label in steps]


COLUMNS = (("wall", "seconds", "s"), ("CPU", "cpu_seconds", "s"), ("peak RSS", "maxrss_mib", "MiB"))


def report_cuts(results: Sequence[CutResult]) -> list[str]:
    """A table of medians; a cut's "step" is its change from the line above."""
    header = "".join(f" {name:>9} {'step':>9}" for name, _, _ in COLUMNS)
    lines = [f"    {'imports':<46}{header}"]
    previous: CutResult | None = None
    for r in results:
        cells = ""
        for _, field, unit in COLUMNS:
            step = ""
            if previous is not None and r.label.startswith("-"):
                delta = r.median(field) - previous.median(field)
                step = ("+" if delta > 0 else "") + fmt(delta, unit)
            cells += f" {fmt(r.median(field), unit):>9} {step:>9}"
        lines.append(f"    {r.label:<46}{cells}")
        previous = r
    return lines


def importtime(rounds: int, top: int = 12) -> list[str]:
    """Self import time by top-level package (median over rounds), biggest first."""
    by_package: dict[str, list[float]] = defaultdict(list)
    ours: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        proc = subprocess.run(
            [PYTHON, "-X", "importtime", "-c", ENTRY],
            capture_output=True,
            text=True,
            env=clean_env(),
            check=True,
        )
        totals: dict[str, float] = defaultdict(float)
        for line in proc.stderr.splitlines():
            match = _LINE.match(line)
            if not match:
                continue
            self_us, cumulative_us, name = int(match[1]), int(match[2]), match[4]
            totals[name.partition(".")[0]] += self_us / 1e6
            if name.startswith(("bootstrap", "adapters")) and name != "bootstrap.__main__":
                ours[name].append(cumulative_us / 1e6)
        for package, seconds in totals.items():
            by_package[package].append(seconds)
    ranked = sorted(by_package.items(), key=lambda item: -median(item[1]))
    total = sum(median(v) for v in by_package.values())
    lines = [f"  self import time by package (-X importtime, total {fmt(total, 's')}):"]
    lines += [f"    {name:<28} {fmt(median(v), 's'):>7}" for name, v in ranked[:top]]
    heavy = sorted(ours.items(), key=lambda item: -median(item[1]))[:8]
    lines.append("  our modules, cumulative (with what they import first):")
    lines += [f"    {name:<28} {fmt(median(v), 's'):>7}" for name, v in heavy]
    return lines
