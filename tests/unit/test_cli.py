"""The command line: subcommands, the split at '--', one-line usage errors."""

from __future__ import annotations

import pytest

from bootstrap.cli import parse
from bootstrap.errors import UsageError


def test_run_is_the_default_and_command_follows_dashes() -> None:
    """Proves `cluster-bootstrap zookeeper --expect 3 -- cmd args` means run."""
    r = parse(["zookeeper", "--expect", "3", "--port", "client=2181", "--", "zkServer.sh", "-x"])
    assert (r.action, r.target, r.command) == ("run", "zookeeper", ("zkServer.sh", "-x"))
    assert r.flags.values["expect"] == "3" and r.flags.ports == ("client=2181",)


def test_flags_after_dashes_belong_to_the_command() -> None:
    """Proves options after '--' are passed to the server untouched."""
    r = parse(["zookeeper", "--", "java", "--expect", "9"])
    assert r.command == ("java", "--expect", "9") and r.flags.values["expect"] is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["zookeeper"], "missing the command after '--'"),
        (["render", "zookeeper", "--", "x"], "takes no command"),
        (["zookeeper", "--dry-run", "--", "x"], "--dry-run goes with render"),
        (["zookeeper", "--bogus", "--", "x"], "unrecognized arguments: --bogus"),
        (["discover"], "the following arguments are required: target"),
    ],
)
def test_usage_errors_are_one_line(argv: list[str], message: str) -> None:
    """Proves each wrong invocation is a UsageError with one line naming the problem."""
    with pytest.raises(UsageError, match=message) as err:
        parse(argv)
    assert "\n" not in str(err.value)


def test_no_token_flag_exists() -> None:
    """Proves secrets cannot be given as flags (they would show in ps)."""
    with pytest.raises(UsageError):
        parse(["zookeeper", "--consul-token", "s3cret", "--", "x"])


def test_only_arguments_before_the_separator_are_the_agents() -> None:
    """Proves split_command gives `--debug` after '--' to the server's command."""
    from bootstrap.cli import split_command

    assert split_command(["zk", "--", "echo", "--debug"]) == (["zk"], ("echo", "--debug"))
    assert split_command(["zk", "--debug"]) == (["zk", "--debug"], ())


def test_remove_takes_an_id_and_force() -> None:
    """Proves ``remove SERVICE --id N [--force]`` parses, and the flags stay with remove."""
    request = parse(["remove", "zookeeper", "--id", "4", "--force", "--expect", "3"])
    assert (request.action, request.member_id, request.force) == ("remove", 4, True)
    assert parse(["remove", "zookeeper", "--id", "2"]).force is False
    for argv, message in (
        (["remove", "zookeeper"], "remove needs --id N"),
        (["remove", "zookeeper", "--id", "x"], "remove needs --id N"),
        (["status", "zookeeper", "--id", "3"], "--id and --force go with remove"),
        (["render", "zookeeper", "--force"], "--id and --force go with remove"),
    ):
        with pytest.raises(UsageError, match=message):
            parse(argv)
