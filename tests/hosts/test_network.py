"""The bed's network itself: hosts on both subnets reach each other through the router and
nothing else; a cut link hides a host from everyone, a partition from one peer only."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from testbed.netns import Network, in_netns

PORT = 7000


@pytest.fixture
def net() -> Iterator[Network]:
    with Network() as net:
        for short, subnet in (("h1", "a"), ("h2", "b"), ("h3", "a")):
            net.add_host(short, subnet)
        servers = [
            in_netns(h.netns, lambda h=h: socket.create_server((h.address, PORT)))  # type: ignore[misc]
            for h in net.hosts.values()
        ]
        yield net
        for server in servers:
            server.close()


def reaches(net: Network, src: str, dst: str) -> bool:
    """A TCP connection from host ``src`` to host ``dst`` is accepted within a second."""
    address = net.hosts[dst].address

    def connect() -> bool:
        try:
            socket.create_connection((address, PORT), timeout=1).close()
        except OSError:
            return False
        return True

    return in_netns(net.hosts[src].netns, connect)


def reaches_again(net: Network, src: str, dst: str, tries: int = 5) -> bool:
    """``reaches`` within a few tries: after a link comes back, the first SYN can still meet
    a neighbour entry that failed during the cut (ARP retries once a second, as the 1 s
    connect timeout does), so one miss right after restoring is not a lost host."""
    return any(reaches(net, src, dst) for _ in range(tries))


def test_hosts_reach_each_other_across_subnets_and_nothing_outside(net: Network) -> None:
    """Every host reaches every other; the router is the only way out, and it leads nowhere."""
    for src in net.hosts:
        for dst in net.hosts:
            assert reaches(net, src, dst), (src, dst)

    def outside() -> bool:
        try:
            socket.create_connection(("192.0.2.1", 80), timeout=1).close()
        except OSError:
            return False
        return True

    assert not in_netns(net.hosts["h1"].netns, outside)


def test_a_cut_link_hides_the_host_from_everyone_until_it_is_back(net: Network) -> None:
    with net.cut("h2"):
        assert not reaches(net, "h1", "h2")
        assert not reaches(net, "h3", "h2")
        assert reaches(net, "h1", "h3")
    assert reaches_again(net, "h1", "h2")


def test_a_partition_hides_two_hosts_from_each_other_only(net: Network) -> None:
    with net.partition("h1", "h2"):
        assert not reaches(net, "h1", "h2")
        assert not reaches(net, "h2", "h1")
        assert reaches(net, "h3", "h2")
        assert reaches(net, "h1", "h3")
    assert reaches_again(net, "h1", "h2")
