"""Containers of the bed: started detached on the host network, always removed afterwards.

Each member is a podman container on ``--network host`` binding its own 127.0.0.x address,
like the bed's processes; its volumes are host directories, so a test reads what the agent
rendered. ``Container.pid1`` is the host's view of the container's PID 1 (through
``podman inspect``), which tells an exec'd server from a supervising agent.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from testbed import podman
from testbed.procs import wait_until

SERVICE_UID = 1000  # the zookeeper user of the official image and of the bed's stand-in


def owned_dir(path: Path, uid: int = SERVICE_UID) -> Path:
    """A host directory the container's service user can write (for a bind-mounted volume)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid)
    return path


class Container:
    """One detached container; ``remove`` (or the context manager) always cleans it up."""

    def __init__(
        self,
        name: str,
        image: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        volumes: Mapping[Path, str] | None = None,
        entrypoint: str | None = None,
        read_only: bool = False,
        user: str | None = None,
    ) -> None:
        self.name = name
        options = ["--name", name, "--network", "host", "--stop-timeout", "20"]
        for key, value in (env or {}).items():
            options += ["--env", f"{key}={value}"]
        for host_dir, target in (volumes or {}).items():
            options += ["--volume", f"{host_dir}:{target}"]
        if entrypoint is not None:
            options += ["--entrypoint", entrypoint]
        if read_only:
            options.append("--read-only")
        if user is not None:
            options += ["--user", user]
        self.create_argv = ["create", *options, image, *args]

    def start(self) -> Container:
        if podman.run("container", "exists", self.name, check=False).returncode != 0:
            podman.run(*self.create_argv)
        podman.run("start", self.name)
        return self

    def inspect(self) -> dict[str, object]:
        found = json.loads(podman.run("container", "inspect", self.name).stdout)
        return dict(found[0])

    def state(self) -> dict[str, object]:
        state = self.inspect()["State"]
        assert isinstance(state, dict)
        return state

    def running(self) -> bool:
        return bool(self.state()["Running"])

    def pid1(self) -> int:
        """The host PID of the container's PID 1 (0 when it is not running)."""
        return int(str(self.state()["Pid"]))

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the running container as its user; the result, whatever the code."""
        return podman.run("exec", self.name, *argv, check=False)

    def stop(self, timeout_s: int = 20) -> int:
        """``podman stop`` (SIGTERM, SIGKILL after ``timeout_s``); returns the exit code."""
        podman.run("stop", "--time", str(timeout_s), self.name, timeout_s=timeout_s + 60)
        return self.exit_code()

    def wait(self, timeout_s: float = 120) -> int:
        """Wait for the container to exit on its own; returns its exit code."""
        wait_until(lambda: not self.running(), timeout_s, f"container {self.name} exit", 0.2)
        return self.exit_code()

    def exit_code(self) -> int:
        return int(str(self.state()["ExitCode"]))

    def logs(self, tail: int = 40) -> str:
        out = podman.run("logs", "--tail", str(tail), self.name, check=False)
        return out.stdout + out.stderr

    def remove(self) -> None:
        podman.run("rm", "--force", "--time", "5", self.name, check=False, timeout_s=120)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def stop_together(containers: Sequence[Container], timeout_s: int = 30) -> list[int]:
    """One ``podman stop`` for all (SIGTERM to each at once); their exit codes, in order."""
    names = [container.name for container in containers]
    podman.run("stop", "--time", str(timeout_s), *names, timeout_s=timeout_s + 60)
    return [container.exit_code() for container in containers]


def proc_cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]


def proc_uid(pid: int) -> int:
    """The real uid of a host process (the container's user as the host sees it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Uid line for pid {pid}")


@contextlib.contextmanager
def removed_afterwards(containers: Sequence[Container]) -> Iterator[Sequence[Container]]:
    """Yield the containers; remove every one of them on the way out, whatever happened."""
    try:
        yield containers
    finally:
        for container in containers:
            container.remove()
