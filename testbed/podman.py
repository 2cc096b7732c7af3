"""podman the way this kind of machine can run it, with a store of its own in the cache.

Three things make podman work in the sandbox CI and the developer machines run in (found by
trial, see docs/images.md):

- a containers.conf with ``default_ulimits = []``: the sandbox may not raise rlimits, and
  podman's default raises nofile/nproc for every container;
- ``--runtime runc --cgroup-manager cgroupfs``: crun refuses the machine's hybrid cgroups;
- containers on ``--network host``: members on their own 127.0.0.x addresses, as in the
  rest of the bed, and no bridge network to set up.

The store (images, layers, the build cache) lives under ``$CB_CACHE/podman`` so a second run
reuses every layer. Its run root (locks, container state) is under /run and named after the
store's path: podman's database records it, and two stores never share one.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from testbed.procs import cache_dir

CONTAINERS_CONF = """\
# Written by testbed/podman.py for the container tests.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class PodmanError(RuntimeError):
    """A podman command failed; the message carries its command line and stderr."""


def store() -> Path:
    return cache_dir() / "podman"


def run_root() -> Path:
    tag = hashlib.sha256(str(store()).encode()).hexdigest()[:10]
    return Path(f"/run/cluster-bootstrap-podman-{tag}")


@functools.cache
def _conf_file() -> Path:
    path = store() / "containers.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != CONTAINERS_CONF:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(CONTAINERS_CONF)
        tmp.replace(path)
    return path


def binary() -> str:
    found = shutil.which("podman")
    if found is None:
        raise PodmanError("podman is not installed: run .ci/install-system (apt: podman runc)")
    return found


def argv(*args: str) -> list[str]:
    """The full podman command line for ``args``, with this bed's store and runtime."""
    return [
        binary(),
        "--root", str(store() / "storage"),
        "--runroot", str(run_root()),
        "--runtime", "runc",
        "--cgroup-manager", "cgroupfs",
        *args,
    ]  # fmt: skip


def env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(_conf_file())}


def run(
    *args: str,
    timeout_s: float = 120,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run podman with ``args`` and capture its output; PodmanError on failure if ``check``."""
    proc = subprocess.run(
        argv(*args),
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if check and proc.returncode != 0:
        raise PodmanError(
            f"podman {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
        )
    return proc


def stream(args: Sequence[str], log_path: Path, timeout_s: float, stdin: int | None = None) -> None:
    """Run a long podman command (a build, an import) with its output in ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.run(
            argv(*args),
            env=env(),
            stdin=stdin,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
            check=False,
        )
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise PodmanError(f"podman {' '.join(args[:2])} exited {proc.returncode}:\n{tail}")


def image_exists(name: str) -> bool:
    return run("image", "exists", name, check=False).returncode == 0


def image_size(name: str) -> int:
    """The image's size in bytes, as ``podman images`` reports it."""
    return int(run("image", "inspect", "--format", "{{.Size}}", name).stdout.strip())
