"""The glibc floor of Dockerfile.glibc, both ways: the built layer needs at most 2.35 (read from
the bundled files' symbol versions), and on a base below it the build stops at the import check
instead of producing an image that fails at start.
"""

from __future__ import annotations

import re

import pytest

from testbed import podman
from testbed.images import PREFIX, Images, debian_base, layer_image


def test_layer_needs_no_newer_glibc_than_documented(images: Images) -> None:
    """Proves the built layer's bundled files need glibc 2.35 at most (Ubuntu 22.04, the
    official zookeeper image's base), as measured by the build from their symbol versions."""
    for layer in (images.zookeeper_agent, images.kafka_agent):
        found = podman.run(
            "run", "--rm", "--network", "host", "--entrypoint", "cat",
            layer, "/opt/cluster-bootstrap/GLIBC_REQUIRED",
        )  # fmt: skip
        assert found.stdout.strip() == "2.35", layer


def test_build_stops_at_the_import_check_on_a_base_below_the_floor(images: Images) -> None:
    """Proves that on Debian 11 (glibc 2.31, below the floor like Ubuntu 20.04) the build of
    the layer fails at its import check, naming the missing glibc version."""
    old = debian_base("bullseye")
    libc = podman.run("run", "--rm", "--network", "host", old, "ldd", "--version").stdout
    assert re.search(r"GLIBC 2\.31\b|2\.31$", libc.splitlines()[0]), libc
    with pytest.raises(podman.PodmanError) as failed:
        layer_image(images.base, old, "nobody", name=f"{PREFIX}/floor-check:bullseye")
    message = str(failed.value)
    assert "import ssl, pyexpat, adapters, bootstrap.__main__" in message
    assert re.search(r"version `GLIBC_2\.3[2-5]' not found", message), message[-2000:]
