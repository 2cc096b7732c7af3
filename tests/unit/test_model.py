"""Validation of values that come from Consul: only clean addresses, ports and ids pass."""

from __future__ import annotations

import pytest

from bootstrap.errors import UntrustedValue
from bootstrap.model import Claim, valid_address, valid_member_id, valid_port

LABELS = {"client": 2181, "peer": 2888}


@pytest.mark.parametrize("good", ["10.0.0.1", "::1", "zk-1.service.consul", "host", "fe80::1"])
def test_clean_addresses_pass(good: str) -> None:
    """Proves IPs and RFC 1123 hostnames are accepted unchanged (IPv6 normalised)."""
    assert valid_address(good, "t")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "10.0.0.1\nserver.9=evil",
        "a=b",
        "h;2181",
        "has space",
        "bücher.de",
        "-lead",
        "a..b",
        "1.2.3.4.5",
        "x" * 254,
        "10.0.0.1:2181",
        "host\r",
        None,
        42,
        "999.1.1.1",
    ],
)
def test_hostile_addresses_are_refused(bad: object) -> None:
    """Proves newline, '=', ';', spaces, unicode and non-strings never pass as an address."""
    with pytest.raises(UntrustedValue):
        valid_address(bad, "Consul registration 'x'")


@pytest.mark.parametrize("bad", [0, 70000, "abc", "80 ", -1, True, "2181\n", 2.5, None])
def test_bad_ports_are_refused(bad: object) -> None:
    """Proves ports outside 1..65535 and non-numbers are refused."""
    with pytest.raises(UntrustedValue):
        valid_port(bad, "t")


def test_ports_and_ids_accept_digit_strings() -> None:
    """Proves the plain decimal strings Consul meta carries are read as numbers."""
    assert valid_port("2181", "t") == 2181
    assert valid_member_id("7", (1, 255), "t") == 7
    with pytest.raises(UntrustedValue):
        valid_member_id(256, (1, 255), "t")


def test_claim_round_trip_and_hostile_claims() -> None:
    """Proves claim records round-trip and a record with a hostile address is refused."""
    claim = Claim(3, "zk[2]", "10.0.0.3", {"client": 2181, "peer": 2888})
    assert Claim.from_json(3, claim.to_json(), LABELS, "kv") == claim
    with pytest.raises(UntrustedValue):
        Claim.from_json(3, '{"owner": "x", "address": "a\\nb", "ports": {}}', LABELS, "kv")
    with pytest.raises(UntrustedValue):
        Claim.from_json(3, "not json", LABELS, "kv")
    with pytest.raises(UntrustedValue):
        Claim.from_json(3, '{"owner": "x", "address": "h", "ports": {"peer": 0}}', LABELS, "kv")
