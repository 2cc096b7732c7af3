"""The container images the tests run, built from what this machine has (``make images``).

No registry but the package ones can be reached, so nothing is pulled:

1. ``debian:bookworm``: a Debian 12 root filesystem made with ``debootstrap --variant=minbase``
   and imported into podman's store. Made once; the store under ``$CB_CACHE/podman`` keeps it.
2. ``zookeeper:<version>``: a stand-in for the official zookeeper image on that base
   (``testbed/containerfiles/zookeeper``): Debian's JRE, the cached ZooKeeper jars, the official
   layout and user.
3. ``zookeeper-agent:<version>``: ``Dockerfile.glibc`` with that image as ``BASE``: the layer
   users add to the official image, with the agent as ENTRYPOINT.

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
BASE = f"{PREFIX}/debian:bookworm"
MIRROR = "http://deb.debian.org/debian"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")  # given to pip in the build as a secret
BUILD_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Images:
    base: str
    service: str
    layer: str


def _logs() -> Path:
    return podman.store() / "logs"


def debian_base() -> str:
    """The Debian 12 base image: imported once from a debootstrap root filesystem."""
    if podman.image_exists(BASE):
        return BASE
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise podman.PodmanError("debootstrap is not installed: run .ci/install-system")
    work = podman.store() / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        rootfs = Path(tmp) / "rootfs"
        log = _logs() / "debootstrap.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            subprocess.run(
                [debootstrap, "--variant=minbase", "bookworm", str(rootfs), MIRROR],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=BUILD_TIMEOUT_S,
            )
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
            ["import", "--change", "CMD=/bin/bash", "-", BASE],
            _logs() / "import.log",
            BUILD_TIMEOUT_S,
            stdin=tar.stdout.fileno(),
        )
        tar.stdout.close()
        if tar.wait() != 0:
            raise podman.PodmanError(f"tar of {rootfs} exited {tar.returncode}")
    return BASE


def _build(args: list[str], log_name: str) -> None:
    # Docker's image format: OCI images have no SHELL, and the Containerfiles rely on pipefail.
    podman.stream(
        ["build", "--format", "docker", "--network", "host", *args],
        _logs() / log_name,
        BUILD_TIMEOUT_S,
    )


def service_image(base: str) -> str:
    """The ZooKeeper service image (the official image's layout) on ``base``."""
    version = peer_versions()["zookeeper"]
    lib = peer_libs()["zookeeper"]
    source = CONTAINERFILES / "zookeeper"
    # The build context: the Containerfile's files and the jars, staged under the store so the
    # context is stable between runs (the layer cache keys on its content).
    context = podman.store() / "context" / "zookeeper"
    if context.exists():
        shutil.rmtree(context)
    shutil.copytree(source, context)
    shutil.copytree(lib, context / "lib", copy_function=shutil.copy2)
    name = f"{PREFIX}/zookeeper:{version}"
    _build(
        [
            "--build-arg", f"BASE={base}",
            "--build-arg", f"DISTRO_NAME=apache-zookeeper-{version}-bin",
            "-f", str(context / "Containerfile"),
            "-t", name,
            str(context),
        ],
        "service.log",
    )  # fmt: skip
    return name


def layer_image(base: str, service: str) -> str:
    """``Dockerfile.glibc`` on the service image, built with the Debian base as its builder."""
    name = f"{PREFIX}/zookeeper-agent:{service.rsplit(':', 1)[1]}"
    secret = ["--secret", f"id=pip-ca,src={HOST_CA}"] if HOST_CA.is_file() else []
    _build(
        [
            "--build-arg", f"BUILDER={base}",
            "--build-arg", f"BASE={service}",
            *secret,
            "-f", str(ROOT / "Dockerfile.glibc"),
            "-t", name,
            str(ROOT),
        ],
        "layer.log",
    )  # fmt: skip
    return name


def build_all() -> Images:
    base = debian_base()
    service = service_image(base)
    return Images(base=base, service=service, layer=layer_image(base, service))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    started = time.monotonic()
    timed: list[tuple[str, float]] = []

    def step(build: Callable[[], str]) -> str:
        begun = time.monotonic()
        name = build()
        timed.append((name, time.monotonic() - begun))
        return name

    base = step(debian_base)
    service = step(lambda: service_image(base))
    step(lambda: layer_image(base, service))
    print(f"built in {time.monotonic() - started:.0f}s (logs: {_logs()})")
    for name, seconds in timed:
        print(f"{name}  {podman.image_size(name) / 1e6:.1f} MB  {seconds:.0f}s")


if __name__ == "__main__":
    main()
