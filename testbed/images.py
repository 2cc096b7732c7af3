"""The container images the tests run, built from what this machine has (``make images``).

No registry but the package ones can be reached, so nothing is pulled:

1. ``debian:bookworm``: a Debian 12 root filesystem made with ``debootstrap --variant=minbase``
   and imported into podman's store. Made once; the store under ``$CB_CACHE/podman`` keeps it.
2. ``zookeeper:<version>``: a stand-in for the official zookeeper image on that base
   (``testbed/containerfiles/zookeeper``): Debian's JRE, the cached ZooKeeper jars, the official
   layout and user. ``kafka:<version>`` likewise, laid out like apache/kafka.
3. ``zookeeper-agent:<version>``, ``kafka-agent:<version>``: ``Dockerfile.glibc`` with the
   service image as ``BASE``: the layer users add to an image, with the agent as ENTRYPOINT.

Steps 2 and 3 are ``podman build`` runs every time; podman's layer cache makes a run with
nothing changed take seconds. Build output goes to ``$CB_CACHE/podman/logs``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testbed import podman
from testbed.jvm import peer_libs, peer_versions

ROOT = Path(__file__).resolve().parent.parent
CONTAINERFILES = Path(__file__).resolve().parent / "containerfiles"
PREFIX = "localhost/cluster-bootstrap"
# Releases past their support move from deb.debian.org to archive.debian.org.
MIRRORS = ("http://deb.debian.org/debian", "http://archive.debian.org/debian")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")  # given to pip in the build as a secret
BUILD_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Service:
    """A service image the bed builds: its Containerfile directory, jars and image user."""

    key: str  # testbed/containerfiles/<key>, the image name
    peer: str  # the jars' name in testbed.jvm.peer_libs()
    libs: str  # where the Containerfile expects the jars in its context
    user: str  # the image's non-root user, SERVICE_USER of the layer

    def build_args(self, version: str) -> list[str]:
        if self.key == "zookeeper":
            return ["--build-arg", f"DISTRO_NAME=apache-zookeeper-{version}-bin"]
        return []


ZOOKEEPER = Service("zookeeper", "zookeeper", "lib", "zookeeper")
KAFKA = Service("kafka", "kafka4", "libs", "appuser")


@dataclass(frozen=True)
class Images:
    base: str
    zookeeper: str
    zookeeper_agent: str
    kafka: str
    kafka_agent: str


def _logs() -> Path:
    return podman.store() / "logs"


def debian_base(suite: str = "bookworm") -> str:
    """A Debian base image (12 by default): imported once from a debootstrap root filesystem."""
    name = f"{PREFIX}/debian:{suite}"
    if podman.image_exists(name):
        return name
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise podman.PodmanError("debootstrap is not installed: run .ci/install-system")
    work = podman.store() / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    log = _logs() / f"debootstrap-{suite}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for attempt, mirror in enumerate(MIRRORS):
            rootfs = Path(tmp) / f"rootfs-{attempt}"
            with log.open("ab") as out:
                done = subprocess.run(
                    [debootstrap, "--variant=minbase", suite, str(rootfs), mirror],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                    timeout=BUILD_TIMEOUT_S,
                )
            if done.returncode == 0:
                break
        else:
            raise podman.PodmanError(f"debootstrap {suite} failed on {MIRRORS}: see {log}")
        # apt's own caches and lists are not part of an image (as in the official debian one).
        for cached in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / cached).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
        )
        assert tar.stdout is not None
        podman.stream(
            ["import", "--change", "CMD=/bin/bash", "-", name],
            _logs() / "import.log",
            BUILD_TIMEOUT_S,
            stdin=tar.stdout.fileno(),
        )
        tar.stdout.close()
        if tar.wait() != 0:
            raise podman.PodmanError(f"tar of {rootfs} exited {tar.returncode}")
    return name


def _build(args: list[str], log_name: str) -> None:
    # Docker's image format: OCI images have no SHELL, and the Containerfiles rely on pipefail.
    podman.stream(
        ["build", "--format", "docker", "--network", "host", *args],
        _logs() / log_name,
        BUILD_TIMEOUT_S,
    )


def service_image(base: str, service: Service) -> str:
    """The service image (laid out like the official one) on ``base``."""
    version = peer_versions()[service.peer]
    # The build context: the Containerfile's files and the jars, staged under the store so the
    # context is stable between runs (the layer cache keys on its content).
    context = podman.store() / "context" / service.key
    if context.exists():
        shutil.rmtree(context)
    shutil.copytree(CONTAINERFILES / service.key, context)
    shutil.copytree(peer_libs()[service.peer], context / service.libs)
    name = f"{PREFIX}/{service.key}:{version}"
    _build(
        [
            "--build-arg", f"BASE={base}",
            *service.build_args(version),
            "-f", str(context / "Containerfile"),
            "-t", name,
            str(context),
        ],
        f"{service.key}.log",
    )  # fmt: skip
    return name


def layer_image(base: str, service_image: str, user: str, name: str | None = None) -> str:
    """``Dockerfile.glibc`` on a service image, built with the Debian base as its builder."""
    name = name or f"{service_image.replace(':', '-agent:', 1)}"
    secret = ["--secret", f"id=pip-ca,src={HOST_CA}"] if HOST_CA.is_file() else []
    _build(
        [
            "--build-arg", f"BUILDER={base}",
            "--build-arg", f"BASE={service_image}",
            "--build-arg", f"SERVICE_USER={user}",
            *secret,
            "-f", str(ROOT / "Dockerfile.glibc"),
            "-t", name,
            str(ROOT),
        ],
        f"{name.rsplit('/', 1)[1].split(':')[0]}.log",
    )  # fmt: skip
    return name


def build_all() -> Images:
    return _build_timed([])


def _build_timed(timed: list[tuple[str, float]]) -> Images:
    def step(build: Callable[[], str]) -> str:
        begun = time.monotonic()
        name = build()
        timed.append((name, time.monotonic() - begun))
        return name

    base = step(debian_base)
    zookeeper = step(lambda: service_image(base, ZOOKEEPER))
    zookeeper_agent = step(lambda: layer_image(base, zookeeper, ZOOKEEPER.user))
    kafka = step(lambda: service_image(base, KAFKA))
    kafka_agent = step(lambda: layer_image(base, kafka, KAFKA.user))
    return Images(base, zookeeper, zookeeper_agent, kafka, kafka_agent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    started = time.monotonic()
    timed: list[tuple[str, float]] = []
    _build_timed(timed)
    print(f"built in {time.monotonic() - started:.0f}s (logs: {_logs()})")
    for name, seconds in timed:
        print(f"{name}  {podman.image_size(name) / 1e6:.1f} MB  {seconds:.0f}s")


if __name__ == "__main__":
    main()
