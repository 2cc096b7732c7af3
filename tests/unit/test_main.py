"""The composition root in-process: parsing, settings, exit codes and printing, over the fake."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bootstrap.__main__ import main
from bootstrap.deadline import Deadline
from bootstrap.model import Instance
from bootstrap.ports import DiscoveryPort
from bootstrap.settings import ConsulSettings
from tests.fakes import FakeDiscovery

ADDRESS = "127.0.0.11"


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    """main() configures logging for a process; put the test's own back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class Root:
    """One fake agent shared by every main() call of a test (the factory hands it out)."""

    def __init__(self, tmp_path: Path) -> None:
        self.fake = FakeDiscovery()
        self.tmp = tmp_path
        self.made: list[ConsulSettings] = []

    def factory(self, settings: ConsulSettings, deadline: Deadline) -> DiscoveryPort:
        self.made.append(settings)
        return self.fake

    def args(self, *extra: str, expect: int = 1) -> list[str]:
        return [
            "zookeeper",
            "--expect",
            str(expect),
            "--timeout",
            "1",
            "--address",
            ADDRESS,
            "--data-dir",
            str(self.tmp / "data"),
            "--conf-dir",
            str(self.tmp / "conf"),
            *extra,
        ]

    def main(self, *argv: str, environ: dict[str, str] | None = None) -> int:
        return main(list(argv), environ=environ or {}, discovery=self.factory)


@pytest.fixture
def root(tmp_path: Path) -> Root:
    return Root(tmp_path)


def test_render_writes_through_the_injected_discovery(root: Root) -> None:
    """Proves main() runs a whole render in-process on the fake: exit 0, zoo.cfg written."""
    assert root.main("render", *root.args("--register")) == 0
    assert "server.1=127.0.0.11:2888:3888" in (root.tmp / "conf" / "zoo.cfg").read_text()
    assert root.made and root.made[0].host == "127.0.0.1"


def test_environment_is_the_one_passed_in(root: Root) -> None:
    """Proves settings come from main's environ, not the process's."""
    code = root.main("render", *root.args("--register"), environ={"CONSUL_HTTP_ADDR": "10.9.9.9"})
    assert code == 0 and root.made[0].host == "10.9.9.9"


def test_usage_error_is_exit_2_and_one_line(root: Root, capsys: pytest.CaptureFixture[str]) -> None:
    """Proves a bad option ends in exit 2 with one error line, no traceback."""
    assert root.main("render", *root.args("--set", "tick_time=abc")) == 2
    err = capsys.readouterr().err
    assert err.count("cluster-bootstrap: error:") == 1 and "options.tick_time" in err
    assert "Traceback" not in err


def test_debug_after_the_separator_is_the_servers(
    root: Root, capsys: pytest.CaptureFixture[str]
) -> None:
    """Proves `-- /bin/echo --debug` does not turn on the agent's tracebacks."""
    assert root.main(*root.args("--set", "tick_time=abc"), "--", "/bin/echo", "--debug") == 2
    assert "Traceback" not in capsys.readouterr().err
    assert root.main(*root.args("--set", "tick_time=abc", "--debug"), "--", "/bin/echo") == 2
    assert "Traceback" in capsys.readouterr().err


def test_peers_missing_is_exit_5(root: Root, capsys: pytest.CaptureFixture[str]) -> None:
    """Proves the deadline passing with too few members is exit 5, naming the count."""
    assert root.main("render", *root.args("--register", expect=2)) == 5
    assert "1 of 2 members" in capsys.readouterr().err


def test_discover_prints_the_registrations(root: Root, capsys: pytest.CaptureFixture[str]) -> None:
    """Proves discover lists what the injected discovery holds, as JSON."""
    root.fake.add_instance("zk", Instance("zk-1", "n1", "10.0.0.1", 2181))
    assert root.main("discover", "zk") == 0
    assert '"id": "zk-1"' in capsys.readouterr().out


def test_dry_run_says_members_are_missing(root: Root, capsys: pytest.CaptureFixture[str]) -> None:
    """Proves render --dry-run with 1 of 3 members says so, and that a start would wait."""
    root.fake.add_instance("zookeeper", Instance("zk-evil", "n", "10.0.0.9\nx", 2181))
    assert root.main("render", *root.args("--dry-run", expect=3)) == 0
    out = capsys.readouterr().out
    status = out.splitlines()[0]
    assert status.startswith("# status: zookeeper: 0 of 3 members here"), status
    assert "this member (id 1) is not registered yet" in status and "missing 3" in status
    assert "refused, not counted" in status and "zk-evil" in status
    assert "a start would wait" in status
    assert not (root.tmp / "conf" / "zoo.cfg").exists()


def test_dry_run_says_a_start_would_not_wait(
    root: Root, capsys: pytest.CaptureFixture[str]
) -> None:
    """Proves the status line says when every expected member is there."""
    assert root.main("render", *root.args("--register")) == 0
    capsys.readouterr()
    assert root.main("render", *root.args("--dry-run")) == 0
    status = capsys.readouterr().out.splitlines()[0]
    assert status.startswith("# status: zookeeper: 1 of 1 members here (1=127.0.0.11)"), status
    assert status.endswith("a start would not wait")
