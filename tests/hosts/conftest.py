"""The production-shaped bed: hosts in network namespaces on two subnets, real Consul servers
and a client agent per member host. Needs root; without it the bed fails with one clear line
(``testbed.netns.NetnsUnavailable``), it never skips."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.hosts import HostsBed, HostsZk


@pytest.fixture
def cluster() -> str:
    return f"h-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[HostsBed]:
    """A fresh network and agents for every test; everything is gone afterwards."""
    with HostsBed(tmp_path / "bed") as bed:
        yield bed


@pytest.fixture
def zk(bed: HostsBed, tmp_path: Path, cluster: str) -> Iterator[HostsZk]:
    with HostsZk(bed, tmp_path / "zk", cluster) as ensemble:
        yield ensemble
