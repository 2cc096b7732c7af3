"""Real containers: the images built by testbed.images, podman, a real Consul agent on the host.

A missing podman, runc or debootstrap is an error, never a skip (.ci/install-system installs
them). Members bind 127.0.0.61-69 (this suite's range in the bed).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from testbed.consul import ConsulAgent
from testbed.images import Images, build_all


@pytest.fixture(scope="session")
def images() -> Images:
    """The Debian base, the ZooKeeper service image and the agent layer on it (cached)."""
    return build_all()


@pytest.fixture(scope="session")
def consul(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulAgent]:
    """One dev-mode Consul agent on the host; the containers reach it over the host network."""
    with ConsulAgent(tmp_path_factory.mktemp("consul")) as agent:
        yield agent


@pytest.fixture
def cluster() -> str:
    """A cluster (and Consul service) name no other test uses."""
    return f"c-{uuid.uuid4().hex[:10]}"
