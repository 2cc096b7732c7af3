"""Day 2 over fakes: settings, the quiet period, the cluster lock, the watch loop, reload."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
from pathlib import Path

import pytest

from bootstrap import cli
from bootstrap.day2 import Day2, changed_files
from bootstrap.deadline import Deadline
from bootstrap.errors import LockBusy, UsageError
from bootstrap.flow import Start
from bootstrap.health import HealthReporter, supervised_check
from bootstrap.lock import ClusterLock
from bootstrap.model import Me
from bootstrap.ports import HealthReport, KVEntry
from bootstrap.reload import ChangeWait, OnChange, QuietPeriod, parse_change_wait, parse_on_change
from bootstrap.settings import Flags, ServiceDefaults, load_settings
from bootstrap.supervisor import Child, exit_code
from bootstrap.watch import Watch, kv_changes
from tests.fakes import FakeDiscovery, ListService
from tests.unit.test_flow import settings_for

TEMPLATE = ServiceDefaults("template", {"service": 8000})
BASE = {"expect": "1", "address": "127.0.0.81"}


# -- settings --------------------------------------------------------------------------------


def test_supervise_settings_from_flags_env_and_file(tmp_path: Path) -> None:
    """Proves --supervise and its companions are read from every layer with flags winning."""
    conf = tmp_path / "c.yaml"
    conf.write_text("supervise: true\nkill_timeout: 5\nchange_wait: 1s\n")
    s = load_settings(TEMPLATE, ["x"], {}, Flags(config=str(conf), values=BASE))
    assert s.supervise and s.kill_timeout_s == 5 and s.change_wait == ChangeWait(1, 4)
    env = {"CLUSTER_BOOTSTRAP_SUPERVISE": "false", "CLUSTER_BOOTSTRAP_ON_CHANGE": "signal:usr1"}
    s = load_settings(TEMPLATE, ["x"], env, Flags(config=str(conf), values=BASE))
    assert not s.supervise and s.on_change == OnChange("signal", signal.SIGUSR1)
    request = cli.parse(["template", "--supervise", "--on-change", "restart", "--", "x"])
    given = {k: v for k, v in request.flags.values.items() if v is not None}
    s = load_settings(TEMPLATE, ["x"], env, Flags(values={**BASE, **given}))
    assert s.supervise and s.on_change == OnChange("restart")
    defaults = load_settings(TEMPLATE, ["x"], {}, Flags(values=BASE))
    assert not defaults.supervise and defaults.kill_timeout_s == 30
    assert defaults.on_change == OnChange("none") and defaults.change_wait == ChangeWait(2, 8)


def test_bad_supervise_values_are_all_reported() -> None:
    """Proves a bad on-change, change-wait and kill-timeout are three problems in one error."""
    values = {**BASE, "on_change": "signal:KILL", "change_wait": "5:1", "kill_timeout": "-1"}
    with pytest.raises(UsageError) as caught:
        load_settings(TEMPLATE, ["x"], {}, Flags(values=values))
    assert len(caught.value.problems) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("signal:HUP", OnChange("signal", signal.SIGHUP)),
        ("signal:SIGUSR2", OnChange("signal", signal.SIGUSR2)),
        ("restart", OnChange("restart")),
        ("none", OnChange("none")),
    ],
)
def test_on_change_forms(text: str, expected: OnChange) -> None:
    """Proves the accepted --on-change forms."""
    assert parse_on_change(text) == expected


@pytest.mark.parametrize("text", ["signal:TERM", "signal:", "signal:NOPE", "reload", "signal:9"])
def test_on_change_refuses_what_would_stop_the_server_or_is_no_signal(text: str) -> None:
    """Proves a stopping signal (use restart), an unknown one or another word is refused."""
    with pytest.raises(ValueError, match="signal:<NAME>"):
        parse_on_change(text)


def test_change_wait_forms() -> None:
    """Proves MIN[:MAX] with units, MAX defaulting to 4 x MIN."""
    assert parse_change_wait("500ms") == ChangeWait(0.5, 2.0)
    assert parse_change_wait("2s:10s") == ChangeWait(2, 10)
    assert parse_change_wait("1m") == ChangeWait(60, 240)
    for bad in ("x", "2:1", "-1", "1:"):
        with pytest.raises(ValueError):
            parse_change_wait(bad)


def test_exit_codes_as_a_shell_shows_them() -> None:
    """Proves a wait status becomes the code, or 128+N for signal N."""
    assert exit_code(3 << 8) == 3
    assert exit_code(signal.SIGKILL) == 137


# -- the quiet period ------------------------------------------------------------------------


async def test_a_burst_settles_once_after_it_is_quiet() -> None:
    """Proves five notices inside MIN give one settle, after the last notice."""
    quiet = QuietPeriod(ChangeWait(0.2, 5.0))
    settled = asyncio.create_task(quiet.settled())
    for _ in range(5):
        quiet.notice()
        await asyncio.sleep(0.05)
        assert not settled.done()
    rounds = await asyncio.wait_for(settled, 2)
    assert rounds >= 2  # it waited again after the later notices


async def test_max_ends_the_wait_under_a_steady_stream() -> None:
    """Proves notices every 0.05 s (never quiet for MIN=1 s) settle once MAX=0.3 s is reached."""
    quiet = QuietPeriod(ChangeWait(1.0, 0.3))
    settled = asyncio.create_task(quiet.settled())
    for _ in range(40):
        quiet.notice()
        await asyncio.sleep(0.05)
        if settled.done():
            break
    assert settled.done()


# -- the cluster lock ------------------------------------------------------------------------


async def test_two_holders_take_the_lock_one_after_the_other() -> None:
    """Proves hold() serializes two members and releases on the way out, even on error."""
    fake = FakeDiscovery()
    inside: list[str] = []
    spans: list[tuple[str, str]] = []

    async def act(name: str) -> None:
        async with ClusterLock(fake, "cb/c/lock", name, wait_s=5).hold("test"):
            inside.append(name)
            assert len(inside) == 1
            await asyncio.sleep(0.1)
            spans.append((name, "end"))
            inside.remove(name)

    await asyncio.gather(act("a"), act("b"))
    assert len(spans) == 2
    with pytest.raises(RuntimeError):
        async with ClusterLock(fake, "cb/c/lock", "c").hold("fails"):
            raise RuntimeError("boom")
    assert fake.kv["cb/c/lock"].session is None and fake.sessions == {}


async def test_a_dead_holder_frees_the_lock_after_its_lock_delay() -> None:
    """Proves a holder whose session expires blocks others only until its lock-delay ends."""
    fake = FakeDiscovery()
    dead = await fake.session_create("dead", 10, 1)
    assert await fake.lock_acquire("cb/c/lock", dead, "dead")
    waiter = asyncio.create_task(_take(fake))
    await asyncio.sleep(0.3)
    assert not waiter.done()
    fake.expire(dead)
    await asyncio.sleep(0.3)
    assert not waiter.done()  # lock-delay
    await asyncio.wait_for(waiter, 5)


async def test_a_waiter_with_patience_gives_up_holding_nothing() -> None:
    """Proves hold(patience_s=...) raises LockBusy naming the holder once its patience is out,
    with its own session gone and the holder's lock untouched; and that a lock refused by a
    dead holder's lock-delay counts against the patience too."""
    fake = FakeDiscovery()
    holder = await fake.session_create("holder", 10, 1)
    assert await fake.lock_acquire("cb/c/lock", holder, "m1: remove lost voter 3")
    with pytest.raises(LockBusy, match="m1: remove lost voter 3"):
        async with ClusterLock(fake, "cb/c/lock", "m2").hold("remove", patience_s=0.2):
            raise AssertionError("never inside without the lock")
    assert fake.kv["cb/c/lock"].session == holder and set(fake.sessions) == {holder}
    dead = await fake.session_create("dead", 10, 60)
    assert await fake.lock_release("cb/c/lock", holder)
    assert await fake.lock_acquire("cb/c/lock", dead, "dead")
    fake.expire(dead)  # free, but refused for its lock-delay (60 s)
    with pytest.raises(LockBusy, match="lock-delay"):
        await asyncio.wait_for(_take(fake, patience_s=0.2), 5)


async def _take(fake: FakeDiscovery, patience_s: float | None = None) -> None:
    async with ClusterLock(fake, "cb/c/lock", "live", wait_s=5).hold(
        "after", patience_s=patience_s
    ):
        pass


# -- the watch loop --------------------------------------------------------------------------


def test_kv_changes_name_the_kind_and_hide_shared_values() -> None:
    """Proves one line per changed key, with from and to; shared values only by fingerprint."""
    old = {"p/roster": KVEntry("v1", 1), "p/shared/cookie": KVEntry("s3cret-one", 2)}
    new = {
        "p/roster": KVEntry("v2", 3),
        "p/shared/cookie": KVEntry("s3cret-two", 4),
        "p/ids/1": KVEntry('{"o": "x\\n"}', 5),
    }
    changes = dict(kv_changes("p/", old, new))
    assert changes["roster"] == "roster p/roster: v1 -> v2"
    assert "s3cret" not in changes["shared"] and "sha256:" in changes["shared"]
    assert changes["claims"].startswith("claims p/ids/1: (none) -> ")
    assert kv_changes("p/", old, dict(old)) == []


async def test_the_watch_logs_changes_notifies_and_survives_consul_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Proves KV and registration changes are logged and notified, lock changes only logged,
    and a down agent is waited out, then caught up with."""
    caplog.set_level(logging.INFO, "cluster-bootstrap")
    fake = FakeDiscovery()
    await fake.kv_create("cb/c/roster", "v1")
    kinds: list[str] = []
    watch = Watch(fake, "cb/c", "c", kinds.append, wait_s=5)
    task = asyncio.create_task(watch.run())
    await asyncio.sleep(0.05)
    entry = fake.kv["cb/c/roster"]
    await fake.kv_replace("cb/c/roster", "v2", entry.modify_index)
    session = await fake.session_create("s", 10, 0)
    await fake.lock_acquire("cb/c/lock", session, "holder")
    await asyncio.sleep(0.05)
    assert kinds == ["roster"]
    fake.down = True
    fake._bump()  # wake the blocking queries: their next request fails
    await asyncio.sleep(0.1)
    fake.kv["cb/c/shared/x"] = KVEntry("y", fake._bump())  # a change made during the outage
    fake.down = False
    await asyncio.sleep(1.5)  # the first back-off is one second
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert kinds == ["roster", "shared"]
    text = caplog.text
    assert "roster cb/c/roster: v1 -> v2" in text and "held by holder" in text
    assert "backing off" in text and "catching up" in text


# -- reload ----------------------------------------------------------------------------------


class ReloadingList(ListService):
    reloads_on_change = True


async def test_reload_rewrites_only_changed_files_under_the_lock(tmp_path: Path) -> None:
    """Proves a new member re-renders the file under the lock, and the same view does nothing."""
    fake = FakeDiscovery()
    settings = settings_for(tmp_path, 1, expect=1)
    service = ReloadingList()
    start = Start(settings, fake, service, Deadline(5))
    plan = await start.plan()
    await start.write(plan)
    day2 = Day2(settings, fake, service, plan, None)
    await day2.reload()
    assert day2.reloads == 0
    other = Start(settings_for(tmp_path, 2, expect=1), fake, ListService(), Deadline(5))
    await other.write(await other.plan())
    assert changed_files((await day2.start.preview()).rendering)
    await day2.reload()
    assert day2.reloads == 1
    assert (settings.conf_dir / "members.cfg").read_text().count("member.") == 2
    assert fake.kv["cluster-bootstrap/c1/lock"].session is None


async def test_tools_run_beside_the_supervised_server_keep_their_exit_codes() -> None:
    """Proves Child.run_tool gets a program's exit code and output from the supervisor's own
    reaper (asyncio's subprocess lost it to waitpid(-1) and reported 255), kills one that runs
    past its timeout, and counts neither as an orphan."""
    sleep = shutil.which("sleep")
    assert sleep is not None
    async with Child(sleep, ["sleep", "30"], {}, kill_timeout_s=5) as child:
        child.start()
        for _ in range(5):
            assert await child.run_tool(["sh", "-c", "echo out; echo err >&2; exit 3"], 5) == (
                3,
                "out\nerr\n",
            )
        with pytest.raises(TimeoutError):
            await child.run_tool(["sleep", "5"], 0.2)
        with pytest.raises(OSError):
            await child.run_tool(["/nonexistent/tool"], 5)
        assert child.reaped_orphans == 0 and child.running
        child.forward(signal.SIGTERM)
        assert await child.wait() == 128 + signal.SIGTERM


# -- health into Consul ----------------------------------------------------------------------


class ScriptedHealth(ListService):
    """A service whose health probe answers the given codes, one per probe."""

    def __init__(self, *codes: int) -> None:
        super().__init__()
        self.codes = list(codes)

    async def health(self, me: Me) -> HealthReport:
        return HealthReport(self.codes.pop(0), "probe")


async def test_a_starting_server_is_a_warning_and_critical_only_once_it_has_served(
    tmp_path: Path,
) -> None:
    """Proves the check is registered warning and a server that has not passed yet is reported
    warning ("starting"), not critical: a voter with a critical check counts as lost and Consul
    deregisters a long-critical one, so a slow start must be neither. After the first pass, a
    critical answer goes to Consul as critical."""
    assert supervised_check().status == "warning"
    me = Me("m1", "127.0.0.11", {}, "127.0.0.11", {}, tmp_path / "d", tmp_path / "c")
    reporter = HealthReporter(FakeDiscovery(), ScriptedHealth(2, 1, 2, 0, 2, 1), me, "c1-1")
    said = [(await reporter.report())[0] for _ in range(6)]
    assert said == ["warning", "warning", "warning", "passing", "critical", "warning"]
