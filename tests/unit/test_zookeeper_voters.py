"""The ZooKeeper adapter's day-2 side without a server: the superuser's rendering and the
parser of ``/zookeeper/config``, fed hostile znode content (the real reconfig runs in
tests/integration/test_zookeeper_voters.py)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from adapters.zookeeper import (
    SUPER_DIGEST_PROPERTY,
    SUPERUSER_SHARED,
    ZooKeeperService,
    ZooKeeperVoters,
    new_super_password,
    parse_config,
    participant_line,
    super_digest,
)
from bootstrap.errors import UntrustedValue, VoterChangeError
from bootstrap.model import Member
from bootstrap.voters import Voter
from tests.unit.test_zookeeper import MEMBERS, PASSWORD, view_for

GOOD = (
    "server.1=10.0.0.1:2888:3888:participant;10.0.0.1:2181\n"
    "server.2=10.0.0.2:2888:3888:participant;0.0.0.0:2181\n"
    "server.3=[2001:db8::3]:2888:3888;[2001:db8::3]:2181\n"
    "server.4=zk-4.example:2889:3889:observer;2182\n"
    "version=10000000a\n"
)


def test_parser_reads_voters_observers_and_version() -> None:
    """Proves every voter and observer, their ports and the hex version are read back."""
    committed, members = parse_config(GOOD, (1, 255))
    assert committed.voter_ids() == [1, 2, 3]
    assert committed.observers == (4,)
    assert committed.version == "10000000a"
    assert members[3].address == "2001:db8::3"  # no role: a participant, as ZooKeeper reads it
    assert members[2].address == "10.0.0.2"  # the quorum address, not the wildcard client one
    assert dict(members[4].ports) == {"client": 2182, "quorum": 2889, "election": 3889}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("server.5=evil$(id):2888:3888;2181", "not an IP address or hostname"),
        ("server.5=10.0.0.5;rm -rf /:2888:3888;2181", "participant|observer"),
        ("server.5=10.0.0.5:0:3888;2181", "not a number in 1..65535"),
        ("server.5=10.0.0.5:2888:99999;2181", "not a number in 1..65535"),
        ("server.5=10.0.0.5:2888:3888:participant;2181x", "not a number in 1..65535"),
        ("server.0=10.0.0.5:2888:3888;2181", "not a number in 1..255"),
        ("server.256=10.0.0.5:2888:3888;2181", "not a number in 1..255"),
        ("server.1=10.0.0.9:2888:3888;2181", "listed twice"),
        ("server.5=10.0.0.5:2888:3888:leader;2181", "participant|observer"),
        ("server.5=10.0.0.5:2888:3888:participant:x;2181", "participant|observer"),
        ("server.5=10.0.0.5:2888;2181", "participant|observer"),
        ("server.5=10.0.0.5:2888:3888", "no client port"),
        ("server.5=10.0.0.5:2888:3888;10.0.0.5:2181:1", "client part"),
        ("server.5=[10.0.0.5:2888:3888;2181", r"is not \[address\]:port"),
        ("server.5=[fe80::1%eth0\nx]:2888:3888;2181", "no client port"),
        ("server.5=[fe80::1%eth0]:2888:3888;2181", "IPv6 scope"),
        ("server.5 =10.0.0.5:2888:3888;2181", "unexpected key"),
        ("group.1=1:2:3", "unexpected key"),
        ("skipACL=yes", "unexpected key"),
        ("version=10000000b", "not one hexadecimal version"),
        ("just text", "not key=value"),
    ],
)
def test_parser_refuses_hostile_lines(line: str, reason: str) -> None:
    """Proves a znode line that is not exactly a server or version line is refused, named."""
    with pytest.raises(UntrustedValue, match=reason):
        parse_config(GOOD + line + "\n", (1, 255))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("server.1=10.0.0.1:2888:3888;2181\n", "no version line"),
        ("server.1=10.0.0.1:2888:3888:observer;2181\nversion=1\n", "no voter"),
        ("version=-1\n", "not one hexadecimal version"),
        ("version=0x10\n", "not one hexadecimal version"),
        ("version=1\n" + "#" * 70_000, "more than a config can hold"),
    ],
)
def test_parser_refuses_incomplete_configs(text: str, reason: str) -> None:
    """Proves a config without a version or voter, or absurdly long, is refused."""
    with pytest.raises(UntrustedValue, match=reason):
        parse_config(text, (1, 255))


def test_participant_line_round_trips_through_the_parser() -> None:
    """Proves the line a reconfig -add names parses back to the same member."""
    member = Member(7, "2001:db8::7", {"client": 2181, "quorum": 2888, "election": 3888})
    line = participant_line(member)
    assert line == "server.7=[2001:db8::7]:2888:3888:participant;[2001:db8::7]:2181"
    committed, members = parse_config(line + "\nversion=1\n", (1, 255))
    assert committed.voter_ids() == [7] and members[7] == member


def test_superuser_only_with_reconfig(tmp_path: Path) -> None:
    """Proves a static ensemble has no shared password, no superDigest, no voter changes."""
    zk = ZooKeeperService({})
    assert zk.shared_values() == ()
    rendering = zk.render(view_for(tmp_path, 1, shared={}))
    assert "SERVER_JVMFLAGS" not in rendering.env
    assert not any(f.secret for f in rendering.files)
    assert zk.voter_changes(view_for(tmp_path, 1)) is None


def test_superuser_digest_reaches_the_server_and_the_password_a_0600_file(tmp_path: Path) -> None:
    """Proves the shared password is a secret, the server gets only its digest through
    SERVER_JVMFLAGS (after the image's own flags, marked secret), and the file is secret."""
    zk = ZooKeeperService({"reconfig": True}, {"SERVER_JVMFLAGS": "-Xmx512m"})
    (spec,) = zk.shared_values()
    assert spec.name == SUPERUSER_SHARED and spec.secret
    assert new_super_password() != new_super_password()
    rendering = zk.render(view_for(tmp_path, 1))
    expected = base64.b64encode(hashlib.sha1(f"super:{PASSWORD}".encode()).digest()).decode()  # noqa: S324
    assert super_digest(PASSWORD) == f"super:{expected}"
    assert rendering.env["SERVER_JVMFLAGS"] == (
        f"-Xmx512m -D{SUPER_DIGEST_PROPERTY}=super:{expected}"
    )
    assert rendering.secret_env == {"SERVER_JVMFLAGS"}
    assert PASSWORD not in rendering.env["SERVER_JVMFLAGS"]
    (secret,) = [f for f in rendering.files if f.secret]
    assert secret.path.name == "super.password" and secret.content == PASSWORD
    assert isinstance(zk.voter_changes(view_for(tmp_path, 1)), ZooKeeperVoters)


@pytest.mark.parametrize("password", ["", "short", "x" * 30 + " -Dzookeeper.skipACL=yes", "é" * 30])
def test_superuser_password_from_consul_is_checked(tmp_path: Path, password: str) -> None:
    """Proves a shared password this agent would not have made is refused before any use."""
    zk = ZooKeeperService({"reconfig": True})
    view = view_for(tmp_path, 1, shared={SUPERUSER_SHARED: password})
    with pytest.raises(UntrustedValue, match=SUPERUSER_SHARED):
        zk.render(view)
    with pytest.raises(UntrustedValue, match=SUPERUSER_SHARED):
        zk.voter_changes(view)


async def test_a_bad_version_is_refused_before_zookeeper_is_asked() -> None:
    """Proves a version that is not the config's hex version is an error, not a retry."""
    voters = ZooKeeperVoters(MEMBERS, PASSWORD)
    with pytest.raises(VoterChangeError, match="not a config version"):
        await voters.add(Voter(MEMBERS[0]), version="1; rm")
