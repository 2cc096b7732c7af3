"""What every benchmark shares: timed child processes, figures, the results table, the machine.

Timings are wall-clock (``time.monotonic``) from ``fork`` to ``wait4``, so a figure is the
whole life of the process as a user would see it; ``wait4`` also gives the child's peak RSS.
Figures are medians over rounds; baselines are measured in the same run, interleaved.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.consul import ConsulAgent, consul_binary

PYTHON = sys.executable
REPO = Path(__file__).resolve().parent.parent


class Missing(RuntimeError):
    """A program or install a benchmark needs is absent; the message says which and how."""


@dataclass(frozen=True)
class Run:
    """One finished child process."""

    seconds: float
    maxrss_mib: float  # the child's peak RSS (ru_maxrss), across exec
    cpu_seconds: float  # user + system CPU: less disturbed by a busy machine than wall time
    code: int
    stderr: str

    def check(self, what: str) -> Run:
        if self.code != 0:
            raise RuntimeError(f"{what} exited {self.code}:\n{self.stderr[-2000:]}")
        return self


# The launcher forks and execs the command, then reports what wait4 said. A child of the big
# benchmark process would inherit its RSS: fork copies the parent's high-water mark (vfork
# and posix_spawn share the parent's memory outright) and exec keeps it in ru_maxrss. A child
# of this small interpreter starts from a few MiB instead (see memory.py: /bin/true alone).
_LAUNCHER = """
import os, sys, time
result, argv = sys.argv[1], sys.argv[2:]
started = time.monotonic()
if "BENCH_SPAWNED" in os.environ:  # start_phases.py lines its marks up with this
    os.environ["BENCH_SPAWNED"] = str(started)
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.monotonic() - started
with open(result, "w") as out:
    cpu = usage.ru_utime + usage.ru_stime
    out.write(f"{seconds} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)} {cpu}")
"""


def run_timed(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    stdout: Path | None = None,
) -> Run:
    """Run ``argv`` to its end: wall time from fork to reaped, and its peak RSS."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        open(stdout or os.devnull, "wb") as out,  # noqa: PTH123 - a plain fd for the child
        tempfile.TemporaryFile() as err,
    ):
        result = Path(tmp) / "result"
        subprocess.run(
            [PYTHON, "-I", "-S", "-c", _LAUNCHER, str(result), *argv],
            env=dict(os.environ if env is None else env),
            cwd=tmp,  # `python -c` searches its cwd first: an empty one costs nothing
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            check=True,
        )
        seconds, maxrss_kib, code, cpu = result.read_text().split()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return Run(float(seconds), int(maxrss_kib) / 1024, float(cpu), int(code), stderr)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without Consul, Nomad or our own settings, plus ``extra``."""
    prefixes = ("CONSUL_", "NOMAD_", "CLUSTER_BOOTSTRAP_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return env | dict(extra or {})


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def rotated(names: Sequence[str], round_no: int) -> list[str]:
    """The order of the variants in round ``round_no``: rotated, so none is always first."""
    shift = round_no % len(names)
    return [*names[shift:], *names[:shift]]


def require(*programs: str) -> None:
    """Raise ``Missing`` naming every absent program (with the Debian package to install)."""
    absent = [p for p in programs if shutil.which(p) is None]
    if absent:
        names = " ".join(absent)
        raise Missing(f"missing program(s): {names} (Debian: apt-get install -y {names})")


def jvm_peers() -> dict[str, Path]:
    """``java`` and the ZooKeeper/Kafka jars the test bed installs (``peer_libs``), or
    ``Missing`` naming what is absent."""
    from testbed.jvm import peer_libs

    require("java")
    try:
        return peer_libs()
    except RuntimeError as exc:
        raise Missing(str(exc)) from exc


@contextlib.contextmanager
def bench_consul(workdir: Path) -> Iterator[ConsulAgent]:
    """A dev Consul agent for one benchmark run; ``Missing`` if no consul binary is built."""
    try:
        consul_binary()
    except RuntimeError as exc:
        raise Missing(str(exc)) from exc
    with ConsulAgent(workdir / "consul") as agent:
        yield agent


@dataclass(frozen=True)
class Figure:
    """One line of the results table."""

    name: str
    value: float
    unit: str  # "s", "MiB" or "" (a count)
    baseline: float | None = None
    baseline_name: str = ""
    target_ratio: float | None = None  # met when value / baseline <= this
    target_value: float | None = None  # met when value <= this
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline <= 0:
            return None
        return self.value / self.baseline

    @property
    def target(self) -> str:
        if self.target_ratio is not None:
            return f"<= {self.target_ratio:g}x"
        if self.target_value is not None:
            return f"<= {fmt(self.target_value, self.unit)}"
        return ""

    @property
    def met(self) -> bool | None:
        if self.target_ratio is not None:
            return self.ratio is not None and self.ratio <= self.target_ratio
        if self.target_value is not None:
            return self.value <= self.target_value
        return None


def fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "not run"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if abs(value) < 1 else f"{value:.2f} s"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:g}{unit}"


def table(figures: Sequence[Figure]) -> str:
    """The results table, in Markdown (it pastes into bench/README.md as is)."""
    rows = [("figure", "value", "baseline", "ratio", "target", "met?")]
    for f in figures:
        shown = f.baseline is not None and (f.baseline or f.baseline_name)  # a count of 0 too
        baseline = f"{fmt(f.baseline, f.unit)} ({f.baseline_name})" if shown else ""
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else ""
        met = {True: "yes", False: "NO", None: ""}[f.met]
        rows.append((f.name, fmt(f.value, f.unit), baseline, ratio, f.target, met))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    lines = [line(rows[0]), line(["-" * w for w in widths]), *(line(row) for row in rows[1:])]
    notes = [f"- {f.name}: {f.note}" for f in figures if f.note]
    return "\n".join([*lines, *(["", *notes] if notes else [])])


def per_round(label: str, values: Sequence[float], unit: str = "s") -> str:
    shown = " ".join(fmt(v, unit) for v in values)
    return f"  {label:<40} median {fmt(median(values), unit):>9}  rounds: {shown}"


def machine(argv: Sequence[str]) -> dict[str, str]:
    """What the figures were measured on (and how busy it was)."""
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        total_kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{total_kib / 1024 / 1024:.1f} GiB"
    try:
        consul = subprocess.run(
            [consul_binary(), "version"], capture_output=True, text=True, check=False, timeout=10
        ).stdout.splitlines()[0]
    except (RuntimeError, OSError, IndexError, subprocess.TimeoutExpired):
        consul = "missing"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), {cpu}, "
        f"{memory} RAM, {platform.system()} {platform.release()}",
        "load average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": f"{platform.python_version()} ({sys.executable})",
        "consul": consul,
        "command": " ".join(["python", "-m", "bench", *argv]),
    }
