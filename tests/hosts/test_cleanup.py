"""The bed leaves nothing behind: not after a test, not after Ctrl-C, not after a crash (the
next start removes a dead run's namespaces and what still runs in them); and where
namespaces cannot be made it fails with one line saying why, it does not skip."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from testbed.hosts import HostsBed
from testbed.netns import Network, namespaces
from testbed.procs import wait_until

REPO = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def ours(prefix: str) -> list[str]:
    return [name for name in namespaces() if name.startswith(prefix)]


def python(script: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_a_closed_bed_leaves_no_namespace_and_no_process(tmp_path: Path) -> None:
    """Agents, a member and a process that left the member's process group are all gone."""
    bed = HostsBed(tmp_path).start()
    pid_file = tmp_path / "escaped.pid"
    bed.spawn(
        "m1", ["sh", "-c", f"setsid sleep 300 & echo $! > {pid_file}; wait"], tmp_path / "log"
    )
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", 10, "pid file")
    pids = [int(pid_file.read_text()), *(a.process.pid for a in bed.agents.values() if a.process)]
    prefix = bed.network.prefix
    assert len(ours(prefix)) == 7  # router, 3 servers, 3 member hosts

    bed.close()

    assert ours(prefix) == []
    assert [pid for pid in pids if alive(pid)] == []


def test_ctrl_c_removes_everything(tmp_path: Path) -> None:
    """SIGINT to a process holding a running bed: its namespaces and agents are gone."""
    proc = python(
        f"""
        import time
        from pathlib import Path
        from testbed.hosts import HostsBed
        with HostsBed(Path({str(tmp_path)!r})) as bed:
            pids = [a.process.pid for a in bed.agents.values()]
            print(bed.network.prefix, *pids, flush=True)
            time.sleep(300)
        """
    )
    assert proc.stdout is not None
    prefix, *pids = proc.stdout.readline().split()
    assert len(ours(prefix)) == 7

    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)

    assert ours(prefix) == []
    assert [pid for pid in map(int, pids) if alive(pid)] == []


def test_a_crashed_runs_leftovers_are_removed_at_the_next_start() -> None:
    """A run SIGKILLed with a namespace and a process in it: the next Network removes both."""
    proc = python(
        """
        import os, signal, subprocess
        from testbed.netns import Network, netns_exec
        net = Network()
        net.add_host("h1", "a")
        sleeper = subprocess.Popen(
            netns_exec(net.hosts["h1"].netns, ["sleep", "300"]),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
        )
        print(net.prefix, sleeper.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert proc.stdout is not None
    prefix, sleeper = proc.stdout.readline().split()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert sorted(ours(prefix)) == [prefix + "h1", prefix + "router"]
    assert alive(int(sleeper))

    with Network() as net:
        assert sorted(net.leftovers) == [prefix + "h1", prefix + "router"]
        assert ours(prefix) == []
        wait_until(lambda: not alive(int(sleeper)), 10, "the leftover process gone")


def test_without_the_capabilities_the_bed_fails_with_one_clear_line(tmp_path: Path) -> None:
    """Root without CAP_SYS_ADMIN cannot make namespaces: the error says what is needed."""
    proc = subprocess.run(
        [
            "setpriv", "--inh-caps=-all", "--bounding-set=-all",
            sys.executable, "-c", "from testbed.netns import Network; Network()",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("testbed.netns.NetnsUnavailable: cannot create network namespace")
    assert "CAP_SYS_ADMIN" in last
