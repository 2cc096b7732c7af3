"""KafkaVoterChanges: the tool's argv, its outcomes, and parsers fed hostile output."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from adapters.kafka import KafkaService, directory_id
from adapters.kafka_voters import (
    KafkaVoterChanges,
    RunResult,
    parse_replication,
    parse_status,
    run_tool,
    unregister_broker,
)
from bootstrap.errors import UsageError, VoterChangeError
from bootstrap.model import ClusterView, Me, Member
from bootstrap.voters import Voter

IDS = (1, 999)
D1, D2, D3, D4 = (
    "Q1dVcGl6a3FTbWlJcUFnQQ",
    "b3RoZXJkaXJlY3RvcnlpZA",
    "dGhpcmRkaXJlY3RvcnkxMQ",
    "Zm91cnRoZGlyZWN0b3J5MQ",
)
STATUS = f"""ClusterId:              MkU3OEVBNTcwNTJENDM2Qg
LeaderId:               2
LeaderEpoch:            3
HighWatermark:          812
MaxFollowerLag:         0
MaxFollowerLagTimeMs:   0
CurrentVoters:          [\
{{"id": 2, "directoryId": "{D2}", "endpoints": ["CONTROLLER://10.0.0.2:9093"]}}, \
{{"id": 1, "directoryId": "{D1}", "endpoints": ["CONTROLLER://10.0.0.1:9093"]}}, \
{{"id": 3, "directoryId": "{D3}", "endpoints": ["CONTROLLER://[fd00::3]:9093"]}}]
CurrentObservers:       [{{"id": 100, "directoryId": "{D4}"}}, {{"id": 4, "directoryId": "{D4}"}}]
"""
# Kafka 4.4.0's own layout: tab-separated, padded, a trailing tab on every row.
REPLICATION = (
    "NodeId\tDirectoryId           \tLogEndOffset\tLag\tLastFetchTimestamp\t"
    "LastCaughtUpTimestamp\tStatus  \t\n"
    f"2     \t{D2}\t812         \t0  \t1796283167054     \t1796283167054        \tLeader  \t\n"
    f"1     \t{D1}\t812         \t0  \t1796283166599     \t1796283166599        \tFollower\t\n"
    f"3     \t{D3}\t700         \t112\t1796283166603     \t1796283166000        \tFollower\t\n"
    f"4     \t{D4}\t810         \t2  \t1796283166603     \t1796283166603        \tObserver\t\n"
)
# What add-controller printed on Kafka 4.4.0 for an id that already votes (stack trace cut).
DUPLICATE = (
    "org.apache.kafka.common.errors.DuplicateVoterException: The voter id for ReplicaKey(id=1, "
    f"directoryId={D1}) is already part of the set of voters "
    f"[ReplicaKey(id=1, directoryId={D1})].\n"
    "java.util.concurrent.ExecutionException: org.apache.kafka.common.errors."
    "DuplicateVoterException: The voter id ...\n"
    "\tat java.base/java.util.concurrent.CompletableFuture.reportGet(CompletableFuture.java:396)\n"
    "\tat org.apache.kafka.tools.MetadataQuorumCommand.main(MetadataQuorumCommand.java:78)\n"
    "Caused by: org.apache.kafka.common.errors.DuplicateVoterException: The voter id ...\n"
)
BOOTSTRAP = "10.0.0.1:9093,10.0.0.2:9093,10.0.0.3:9093"
CONTROLLERS = [Member(n, f"10.0.0.{n}", {"controller": 9093}) for n in (1, 2, 3)]
JOINER = Voter(Member(4, "10.0.0.4", {"controller": 9093}), D4)


class Tool:
    """A fake quorum tool: canned (exit, output) per subcommand; records every argv."""

    def __init__(self, **answers: RunResult) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    async def __call__(self, argv: Sequence[str], timeout_s: float) -> RunResult:
        self.calls.append(list(argv))
        key = next(
            a
            for a in ("--status", "--replication", "add-controller", "remove-controller")
            if a in argv
        )
        return self.answers[key.strip("-").replace("-", "_")]


def changes(tool: Tool) -> KafkaVoterChanges:
    return KafkaVoterChanges(["kmq"], CONTROLLERS, Path("/conf/server.properties"), run=tool)


# -- committed ------------------------------------------------------------------------------


async def test_committed_lists_voters_sorted_with_directory_ids_and_endpoints() -> None:
    """Proves describe --status becomes voters sorted by id (IPv6 too) and observers."""
    tool = Tool(status=(0, STATUS))
    committed = await changes(tool).committed()
    assert committed.voter_ids() == [1, 2, 3]
    assert [v.directory_id for v in committed.voters] == [D1, D2, D3]
    assert committed.voters[2].member.address == "fd00::3"
    assert committed.voters[0].member.port("controller") == 9093
    assert committed.observers == (4, 100)
    assert committed.version == ""
    assert tool.calls == [
        [
            "kmq",
            "--bootstrap-controller",
            "10.0.0.1:9093,10.0.0.2:9093,10.0.0.3:9093",
            "describe",
            "--status",
        ]
    ]


HOSTILE_STATUS = {
    "no voters line": "ClusterId: x\nLeaderId: 1\n",
    "not json": "CurrentVoters: [{id: 1}]\nCurrentObservers: []\n",
    "empty": "CurrentVoters: []\nCurrentObservers: []\n",
    "twice": f'CurrentVoters: [{{"id": 1, "directoryId": "{D1}", "endpoints": ["CONTROLLER://10.0.0.1:9093"]}}]\n'
    * 2,
    "duplicate id": (
        f'CurrentVoters: [{{"id": 1, "directoryId": "{D1}", "endpoints": ["CONTROLLER://10.0.0.1:9093"]}},'
        f' {{"id": 1, "directoryId": "{D2}", "endpoints": ["CONTROLLER://10.0.0.2:9093"]}}]\n'
    ),
    "id out of range": f'CurrentVoters: [{{"id": 0, "directoryId": "{D1}", "endpoints": ["CONTROLLER://10.0.0.1:9093"]}}]\n',
    "id a string": f'CurrentVoters: [{{"id": "1; rm", "directoryId": "{D1}", "endpoints": ["CONTROLLER://10.0.0.1:9093"]}}]\n',
    "id a bool": f'CurrentVoters: [{{"id": true, "directoryId": "{D1}", "endpoints": ["CONTROLLER://10.0.0.1:9093"]}}]\n',
    "directory id bad": '[{"id": 1, "directoryId": "../../etc", "endpoints": ["CONTROLLER://10.0.0.1:9093"]}]',
    "directory id missing": '[{"id": 1, "endpoints": ["CONTROLLER://10.0.0.1:9093"]}]',
    "host with newline": f'[{{"id": 1, "directoryId": "{D1}", "endpoints": ["CONTROLLER://evil\\nhost:9093"]}}]',
    "host bad": f'[{{"id": 1, "directoryId": "{D1}", "endpoints": ["CONTROLLER://-bad-:9093"]}}]',
    "port out of range": f'[{{"id": 1, "directoryId": "{D1}", "endpoints": ["CONTROLLER://10.0.0.1:99999"]}}]',
    "no controller endpoint": f'[{{"id": 1, "directoryId": "{D1}", "endpoints": ["PLAINTEXT://10.0.0.1:9092"]}}]',
    "two controller endpoints": (
        f'[{{"id": 1, "directoryId": "{D1}", "endpoints": '
        '["CONTROLLER://10.0.0.1:9093", "CONTROLLER://10.0.0.9:9093"]}]'
    ),
    "endpoints not a list": f'[{{"id": 1, "directoryId": "{D1}", "endpoints": "CONTROLLER://10.0.0.1:9093"}}]',
    "entry not an object": "[1, 2, 3]",
    "not a list": '{"id": 1}',
}


@pytest.mark.parametrize("case", sorted(HOSTILE_STATUS))
def test_hostile_status_output_is_a_voter_change_error(case: str) -> None:
    """Proves every malformed or untrusted value in describe --status is refused, not used."""
    text = HOSTILE_STATUS[case]
    if not text.startswith(("CurrentVoters", "ClusterId")):
        text = f"CurrentVoters: {text}\nCurrentObservers: []\n"
    with pytest.raises(VoterChangeError, match="describe --status"):
        parse_status(text, IDS)


def test_hostile_observer_is_refused() -> None:
    """Proves an observer id outside the range is refused like a voter's."""
    text = STATUS.replace('"id": 100', '"id": 1000000')
    with pytest.raises(VoterChangeError, match="CurrentObservers"):
        parse_status(text, IDS)


# -- caught_up ------------------------------------------------------------------------------


async def test_caught_up_reads_the_lag_of_the_joiner() -> None:
    """Proves an observer with a small lag is caught up, a far-behind follower or an absent
    node is not, and the leader is (the removal check asks it of every voter that stays; the
    keeper's first Kafka run waited forever on a leader that counted as behind)."""
    tool = Tool(replication=(0, REPLICATION))
    voter_changes = changes(tool)
    assert await voter_changes.caught_up(4)
    assert await voter_changes.caught_up(1)
    assert not await voter_changes.caught_up(3)
    assert not await voter_changes.caught_up(7)
    assert await voter_changes.caught_up(2)


async def test_caught_up_reads_the_replication_table_once_per_use() -> None:
    """Proves the removal's check of every voter that stays starts the tool once (one
    snapshot): each JVM start cost seconds per voter on a loaded host, between a lost
    voter's --remove-after and its removal."""
    tool = Tool(replication=(0, REPLICATION))
    voter_changes = changes(tool)
    assert [await voter_changes.caught_up(i) for i in (1, 2, 3)] == [True, True, False]
    assert len(tool.calls) == 1
    assert await changes(tool).caught_up(4) and len(tool.calls) == 2  # a new use: read again


def test_replication_rows_are_parsed_by_the_header() -> None:
    """Proves columns are found by name, so a reordered table still parses."""
    rows = parse_replication(REPLICATION, IDS)
    assert [(r.node_id, r.directory_id, r.lag, r.status) for r in rows][-1] == (
        4,
        D4,
        2,
        "Observer",
    )


HOSTILE_REPLICATION = {
    "no header": "1 x 2 0 1 1 Leader\n",
    "missing column": "NodeId DirectoryId Lag\n1 x 0\n",
    "short row": REPLICATION.splitlines()[0] + f"\n1 {D1} 812 0 Leader\n",
    "negative lag": REPLICATION.replace("112", "-12"),
    "lag not a number": REPLICATION.replace("112", "1e9"),
    "unknown status": REPLICATION.replace("Observer", "Owner"),
    "id out of range": REPLICATION.replace("\n4 ", "\n0 "),
    "id not a number": REPLICATION.replace("\n4 ", "\nx "),
    "bad directory id": REPLICATION.replace(D4, "A" * 22 + "x"),
    "duplicate header column": "NodeId NodeId DirectoryId Lag Status\n",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_REPLICATION))
def test_hostile_replication_output_is_a_voter_change_error(case: str) -> None:
    """Proves describe --replication with a malformed value is refused, never guessed."""
    with pytest.raises(VoterChangeError, match="describe --replication"):
        parse_replication(HOSTILE_REPLICATION[case], IDS)


async def test_a_failing_describe_is_a_voter_change_error_with_its_last_line() -> None:
    """Proves a describe that exits non-zero ends in one line naming the tool's last line."""
    tool = Tool(status=(1, "stack\n\x1b[31mError: Timed out waiting for a node\n"))
    with pytest.raises(VoterChangeError, match=r"exit 1\): \?\[31mError: Timed out") as info:
        await changes(tool).committed()
    assert "\n" not in str(info.value)


# -- add and remove -------------------------------------------------------------------------


async def test_add_runs_add_controller_with_this_members_config() -> None:
    """Proves add runs add-controller with --command-config and returns True on exit 0."""
    added = f"Added controller 4 with directory id {D4} and endpoints: CONTROLLER://10.0.0.4:9093"
    tool = Tool(add_controller=(0, added + "\n"))
    assert await changes(tool).add(JOINER, version="")
    assert tool.calls[0][-3:] == ["--command-config", "/conf/server.properties", "add-controller"]


@pytest.mark.parametrize(
    "output",
    [
        f"Added controller 5 with directory id {D4} and endpoints: CONTROLLER://10.0.0.4:9093",
        f"Added controller 4 with directory id {D3} and endpoints: CONTROLLER://10.0.0.4:9093",
        "",
    ],
)
async def test_add_refuses_a_success_that_added_another_node(output: str) -> None:
    """Proves exit 0 is True only when the tool names this voter's id and directory id: the
    tool adds whatever node the config and disk describe."""
    with pytest.raises(VoterChangeError, match="added another node"):
        await changes(Tool(add_controller=(0, output))).add(JOINER, version="")


async def test_remove_runs_remove_controller_with_id_and_directory_id() -> None:
    """Proves remove names the controller id and its directory id."""
    tool = Tool(remove_controller=(0, "Removed KRaft controller 4 with directory id ..."))
    assert await changes(tool).remove(JOINER, version="")
    assert tool.calls[0][-5:] == [
        "remove-controller",
        "--controller-id",
        "4",
        "--controller-directory-id",
        D4,
    ]


CONFLICTS = [
    "java.util.concurrent.ExecutionException: "
    "org.apache.kafka.common.errors.RequestTimedOutException: a voter change is pending",
    "org.apache.kafka.common.errors.NotLeaderOrFollowerException: no leader",
    "org.apache.kafka.common.errors.TimeoutException: Timed out waiting for a node assignment",
]
REFUSALS = [
    "org.apache.kafka.common.errors.VoterNotFoundException: no voter 4 with that directory",
    "org.apache.kafka.common.errors.UnsupportedVersionException: kraft.version is 0",
    "java.lang.IllegalArgumentException: bad",
    "Exception in thread main: nothing Kafka knows",
    "",
]


@pytest.mark.parametrize("output", CONFLICTS)
async def test_conflicts_are_false(output: str) -> None:
    """Proves a refusal a retry can fix (pending change, no leader, timeout) is False."""
    tool = Tool(add_controller=(1, output), remove_controller=(1, output))
    assert await changes(tool).add(JOINER, version="") is False
    assert await changes(tool).remove(JOINER, version="") is False


@pytest.mark.parametrize("output", REFUSALS)
async def test_refusals_are_voter_change_errors(output: str) -> None:
    """Proves anything else the tool refuses is a VoterChangeError of one line."""
    tool = Tool(add_controller=(1, output), remove_controller=(1, output))
    with pytest.raises(VoterChangeError, match="add-controller of controller 4"):
        await changes(tool).add(JOINER, version="")
    with pytest.raises(VoterChangeError, match="remove-controller of controller 4") as info:
        await changes(tool).remove(JOINER, version="")
    assert "\n" not in str(info.value)


async def test_a_duplicate_voter_is_true_only_with_this_very_directory() -> None:
    """Proves DuplicateVoter means done when the id already votes with this disk, and a
    refusal when it votes with another directory (remove the old one first)."""
    duplicate = (1, DUPLICATE)
    tool = Tool(add_controller=duplicate, status=(0, STATUS))
    assert await changes(tool).add(
        Voter(Member(1, "10.0.0.1", {"controller": 9093}), D1), version=""
    )
    with pytest.raises(VoterChangeError, match="DuplicateVoterException"):
        await changes(tool).add(Voter(Member(1, "10.0.0.1", {"controller": 9093}), D4), version="")


async def test_bad_directory_ids_never_reach_the_command_line() -> None:
    """Proves remove refuses a directory id that is not Kafka's, and add one that is empty."""
    tool = Tool()
    with pytest.raises(VoterChangeError, match="not a Kafka directory id"):
        await changes(tool).remove(Voter(JOINER.member, "--controller-id=1"), version="")
    with pytest.raises(VoterChangeError, match="needs the joiner's directory id"):
        await changes(tool).add(Voter(JOINER.member), version="")
    assert tool.calls == []


async def test_the_real_runner_reports_a_missing_tool_and_a_hang(tmp_path: Path) -> None:
    """Proves a tool that cannot start, or runs past the timeout, is a VoterChangeError."""
    with pytest.raises(VoterChangeError, match="cannot run the Kafka tool"):
        await run_tool([str(tmp_path / "nope")], 5)
    with pytest.raises(VoterChangeError, match=r"did not finish within 0\.2s"):
        await run_tool(["sleep", "5"], 0.2)
    assert await run_tool(["sh", "-c", "echo out; echo err >&2; exit 3"], 5) == (3, "out\nerr\n")


# -- the adapter hands it out ---------------------------------------------------------------


def view(tmp_path: Path) -> ClusterView:
    ports = {"broker": 9092, "controller": 9093}
    members = tuple(Member(n, f"10.0.0.{n}", ports, f"k{n}") for n in (1, 2, 3))
    me = Me("k1", "10.0.0.1", ports, "10.0.0.1", ports, tmp_path / "d", tmp_path / "c")
    return ClusterView(me, 1, members, {"cluster_id": "MkU3OEVBNTcwNTJENDM2Qg"}, {}, {})


def test_only_a_dynamic_quorum_has_voter_changes(tmp_path: Path) -> None:
    """Proves quorum: dynamic gives KafkaVoterChanges with the quorum_tool; static gives None."""
    assert KafkaService({}).voter_changes(view(tmp_path)) is None
    dynamic = KafkaService({"quorum": "dynamic", "quorum_tool": ["kmq", "--x"]})
    voter_changes = dynamic.voter_changes(view(tmp_path))
    assert isinstance(voter_changes, KafkaVoterChanges)
    assert voter_changes.tool == ["kmq", "--x"]
    assert voter_changes.bootstrap == "10.0.0.1:9093,10.0.0.2:9093,10.0.0.3:9093"
    assert voter_changes.conf_file == tmp_path / "c" / "server.properties"


async def test_supervise_modes_runner_runs_the_tool(tmp_path: Path) -> None:
    """Proves the voter changes run the tool through the service's tool_runner (supervise
    mode's Child.run_tool) when one is set, and its OSError or TimeoutError becomes a
    VoterChangeError (before: asyncio's subprocess, whose exit the supervisor reaped: 255)."""
    dynamic = KafkaService({"quorum": "dynamic", "quorum_tool": ["kmq"]})
    tool = Tool(status=(0, STATUS))
    dynamic.tool_runner = tool
    voter_changes = dynamic.voter_changes(view(tmp_path))
    assert voter_changes is not None
    assert (await voter_changes.committed()).voter_ids() == [1, 2, 3]
    assert tool.calls == [["kmq", "--bootstrap-controller", BOOTSTRAP, "describe", "--status"]]

    async def failing(argv: Sequence[str], timeout_s: float) -> RunResult:
        raise {"cannot": FileNotFoundError(2, "No such file"), "hangs": TimeoutError()}[argv[0]]

    for tool_argv, message in (("cannot", "cannot run the quorum tool"), ("hangs", "within")):
        stuck = KafkaVoterChanges([tool_argv], CONTROLLERS, Path("/c"), run=failing)
        with pytest.raises(VoterChangeError, match=message):
            await stuck.committed()


def test_a_bad_quorum_tool_is_refused() -> None:
    """Proves quorum_tool is checked like storage_tool."""
    with pytest.raises(UsageError) as err:
        KafkaService({"quorum_tool": []})
    assert any("options.quorum_tool" in p for p in err.value.problems)


def test_a_joining_controller_formats_without_initial_controllers(tmp_path: Path) -> None:
    """Proves a joiner (or a dead controller's replacement on a new disk) formats with
    --no-initial-controllers, so Kafka picks a random directory id: the derived one would make
    the new disk pass for the lost voter (same node id, same directory id)."""
    kafka = KafkaService({"quorum": "dynamic", "storage_tool": ["ks"]})
    formation = kafka.format_command(view(tmp_path), "MkU3OEVBNTcwNTJENDM2Qg")
    joining = kafka.format_command(view(tmp_path), "MkU3OEVBNTcwNTJENDM2Qg", joining=True)
    derived = directory_id("MkU3OEVBNTcwNTJENDM2Qg", 1)
    assert "--initial-controllers" in formation
    assert derived in formation[-1]
    assert joining[-1] == "--no-initial-controllers"
    assert not any(derived in arg for arg in joining)
    assert formation[:-2] == joining[:-1]


def test_a_static_quorums_status_says_so() -> None:
    """Proves Kafka 4.4's describe --status of a static quorum (voters without directory ids,
    as captured) is refused with a line that names the static quorum."""
    static = (
        'CurrentVoters:          [{"id": 1, "endpoints": ["CONTROLLER://127.0.0.108:9093"]}, '
        '{"id": 2, "endpoints": ["CONTROLLER://127.0.0.106:9093"]}]\n'
        "CurrentObservers:       []\n"
    )
    with pytest.raises(VoterChangeError, match=r"static quorum \(kraft\.version 0\)"):
        parse_status(static, IDS)


# -- kafka-cluster unregister (ServicePort.unregister) ------------------------------------------

UNREGISTERED = [
    "kcl",
    "unregister",
    "--bootstrap-controller",
    BOOTSTRAP,
    "--id",
    "104",
]


class ClusterTool:
    """A fake kafka-cluster: one canned (exit, output); records every argv."""

    def __init__(self, code: int, output: str) -> None:
        self.answer = (code, output)
        self.calls: list[list[str]] = []

    async def __call__(self, argv: Sequence[str], timeout_s: float) -> RunResult:
        self.calls.append(list(argv))
        return self.answer


@pytest.mark.parametrize(
    ("code", "output", "outcome"),
    [
        (0, "Broker 104 is no longer registered.\n", True),
        (
            1,
            "org.apache.kafka.common.errors.BrokerIdNotRegisteredException: Broker ID 104 is "
            "not currently registered\njava.util.concurrent.ExecutionException: ...\n",
            True,
        ),
        (1, "org.apache.kafka.common.errors.TimeoutException: Timed out waiting\n", False),
        (1, "org.apache.kafka.common.errors.NotControllerException: not\n", False),
        (1, "org.apache.kafka.common.errors.UnsupportedVersionException: too old\n", None),
        (1, "", None),
    ],
)
async def test_unregister_broker_argv_and_outcomes(
    code: int, output: str, outcome: bool | None
) -> None:
    """Proves the argv (subcommand, the controllers, the id) and the outcomes: done or not
    registered at all is True, Kafka's retryable refusals False, anything else one line."""
    tool = ClusterTool(code, output)
    if outcome is None:
        with pytest.raises(VoterChangeError, match="unregister --id 104 refused"):
            await unregister_broker(["kcl"], CONTROLLERS, 104, run=tool)
    else:
        assert await unregister_broker(["kcl"], CONTROLLERS, 104, run=tool) is outcome
    assert tool.calls == [UNREGISTERED]


async def test_unregister_runs_the_cluster_tool_option_through_the_tool_runner(
    tmp_path: Path,
) -> None:
    """Proves KafkaService.unregister runs cluster_tool (default the image's kafka-cluster.sh)
    through the supervisor's tool_runner, against the view's controllers; a tool that cannot
    start or hangs is a VoterChangeError; ZooKeeper mode has nothing to unregister (None)."""
    assert KafkaService({}).opts["cluster_tool"] == ["/opt/kafka/bin/kafka-cluster.sh"]
    kafka = KafkaService({"cluster_tool": ["kcl"]})
    tool = ClusterTool(0, "")
    kafka.tool_runner = tool
    gone = Member(104, "10.0.0.9", {"broker": 9092, "controller": 9093})
    assert await kafka.unregister(view(tmp_path), gone) is True
    assert tool.calls == [UNREGISTERED]

    async def failing(argv: Sequence[str], timeout_s: float) -> RunResult:
        raise {"cannot": FileNotFoundError(2, "No such file"), "hangs": TimeoutError()}[argv[0]]

    for tool_argv, message in (("cannot", "cannot run the cluster tool"), ("hangs", "within")):
        with pytest.raises(VoterChangeError, match=message):
            await unregister_broker([tool_argv], CONTROLLERS, 104, run=failing)
    zookeeper = KafkaService({"mode": "zookeeper", "zookeeper_cluster": "zk"})
    assert await zookeeper.unregister(view(tmp_path), gone) is None


def test_a_bad_cluster_tool_is_refused() -> None:
    """Proves cluster_tool is checked like quorum_tool."""
    with pytest.raises(UsageError) as err:
        KafkaService({"cluster_tool": "", "quorum": "dynamic"})
    assert any("options.cluster_tool" in p for p in err.value.problems)
