"""Start and always stop the bed's processes; free ports; readiness with a deadline."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

AGENT = str(Path(sys.executable).parent / "cluster-bootstrap")  # the installed console script


def cache_dir() -> Path:
    return Path(os.environ.get("CB_CACHE", Path.home() / ".cache" / "cluster-bootstrap"))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.1
) -> None:
    """Poll ``check`` until true; raise TimeoutError naming ``what`` at the deadline."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if check():
            return
        time.sleep(every_s)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s")


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class Process:
    """A child process in its own process group, with its output in a log file."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout_s: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Signal the whole group, wait, then SIGKILL what is left. Returns the exit code."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # stragglers in the group
        self._log.close()
        return self.popen.returncode

    def kill(self) -> None:
        self.stop(timeout_s=5, sig=signal.SIGKILL)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def agent_args(
    service: str,
    *,
    cluster: str,
    expect: int,
    address: str,
    member_name: str,
    member_dir: Path,
    command: Sequence[str],
    extra: Sequence[str] = (),
    timeout_s: float = 120,
) -> list[str]:
    """``<service> ... -- <command>``: the arguments a bed member gives cluster-bootstrap.

    The member binds the address it advertises, registers itself, and keeps its data and
    config under ``member_dir``.
    """
    return [
        service,
        "--cluster", cluster,
        "--expect", str(expect),
        "--address", address,
        "--bind-address", address,
        "--register",
        "--member-name", member_name,
        "--timeout", f"{timeout_s:g}",
        "--data-dir", str(member_dir / "data"),
        "--conf-dir", str(member_dir / "conf"),
        *extra,
        "--",
        *command,
    ]  # fmt: skip
