"""Supervise mode with real processes and a real Consul agent: signals, reaping, exit codes,
deregistration, reload on change, one member at a time, the lock after a SIGKILL, Consul down.

Members use 127.0.0.81-.89. The server is ``testbed.recorder``: it logs every signal it gets.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from testbed.consul import ConsulAgent
from testbed.procs import AGENT, wait_until
from tests.integration.conftest import finish, spawn_agent

PORT = 7000


def write_settings(conf: Path) -> Path:
    conf.mkdir(parents=True, exist_ok=True)
    settings = {
        "options": {
            "files": [{"path": str(conf / "out.conf"), "content": "v={{ shared.v }}\n"}],
            "env": {"LISTEN": "{{ me.address }}:{{ me.ports.service }}"},
            "shared": {"v": {"secret": False}},
        }
    }
    path = conf / "settings.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def member(
    tmp: Path,
    cluster: str,
    n: int,
    *extra: str,
    expect: int = 1,
    recorder: tuple[str, ...] = (),
) -> list[str]:
    """Arguments of supervised member ``n`` (127.0.0.8n) running the recorder."""
    conf = tmp / f"m{n}"
    settings = write_settings(conf)
    record = " ".join(recorder)
    return [
        "template",
        "--config",
        str(settings),
        "--cluster",
        cluster,
        "--expect",
        str(expect),
        "--timeout",
        "30",
        "--address",
        f"127.0.0.8{n}",
        "--bind-address",
        f"127.0.0.8{n}",
        "--port",
        f"service={PORT}",
        "--member-name",
        f"member-{n}",
        "--data-dir",
        str(conf / "data"),
        "--register",
        "--supervise",
        *extra,
        "--",
        "sh",
        "-c",
        f'exec {sys.executable} -m testbed.recorder {conf}/rec.log --listen "$LISTEN" {record}',
    ]


def lines(tmp: Path, n: int) -> list[list[str]]:
    path = tmp / f"m{n}" / "rec.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def seen(tmp: Path, n: int, word: str) -> list[float]:
    return [float(parts[-1]) for parts in lines(tmp, n) if parts[0] == word]


def server_pid(tmp: Path, n: int) -> int:
    wait_until(lambda: bool(seen(tmp, n, "started")), 30, f"member {n}'s server")
    return int(next(p[1] for p in lines(tmp, n) if p[0] == "started").removeprefix("pid="))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Agents a test starts; any still running at the end are killed with their servers."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()


def put(consul: ConsulAgent, cluster: str, value: str) -> None:
    consul.kv_put(f"cluster-bootstrap/{cluster}/shared/v", value)


# -- the supervisor ------------------------------------------------------------------------


@pytest.mark.parametrize("last", ["SIGTERM", "SIGINT"])
def test_each_forwarded_signal_reaches_the_child(
    consul: ConsulAgent, cluster: str, tmp_path: Path, procs: list[subprocess.Popen[str]], last: str
) -> None:
    """Proves HUP, QUIT, USR1, USR2 and then TERM or INT sent to the agent reach the server."""
    agent = spawn_agent(member(tmp_path, cluster, 1), consul.env())
    procs.append(agent)
    server_pid(tmp_path, 1)
    sent = ["SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", last]
    for name in sent:
        agent.send_signal(getattr(signal, name))
        wait_until(lambda n=name: bool(seen(tmp_path, 1, n)), 10, f"{name} at the server")
    result = finish(agent, 30)
    assert result.code == 0, result.stderr
    got = [p[0] for p in lines(tmp_path, 1) if p[0].startswith("SIG")]
    assert got == sent


def test_a_child_ignoring_sigterm_gets_sigkill_after_the_kill_timeout(
    consul: ConsulAgent, cluster: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    """Proves SIGTERM is followed by SIGKILL after --kill-timeout; the agent exits 137."""
    args = member(tmp_path, cluster, 1, "--kill-timeout", "1.5", recorder=("--ignore-term",))
    agent = spawn_agent(args, consul.env())
    procs.append(agent)
    pid = server_pid(tmp_path, 1)
    agent.send_signal(signal.SIGTERM)
    wait_until(lambda: bool(seen(tmp_path, 1, "SIGTERM")), 10, "SIGTERM at the server")
    time.sleep(0.5)
    assert alive(pid)  # it ignored SIGTERM and the timeout has not run out yet
    result = finish(agent, 30)
    assert result.code == 128 + signal.SIGKILL, result.stderr
    assert "SIGKILL" in result.stderr
    assert not alive(pid)


@pytest.mark.parametrize("how", ["exit 3", "SIGKILL"])
def test_the_agent_exits_with_the_childs_code(
    consul: ConsulAgent, cluster: str, tmp_path: Path, procs: list[subprocess.Popen[str]], how: str
) -> None:
    """Proves a server exiting 3 makes the agent exit 3, a SIGKILLed one 137 (128+9)."""
    recorder = ("--exit", "3") if how == "exit 3" else ()
    agent = spawn_agent(member(tmp_path, cluster, 1, recorder=recorder), consul.env())
    procs.append(agent)
    pid = server_pid(tmp_path, 1)
    if how == "SIGKILL":
        os.kill(pid, signal.SIGKILL)
    result = finish(agent, 30)
    assert result.code == (3 if how == "exit 3" else 137), result.stderr
    assert "restart" not in result.stderr  # the agent never restarts it: Nomad does


def test_registration_health_and_deregistration_are_visible_in_consul(
    consul: ConsulAgent, cluster: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    """Proves --register adds a TTL check that turns passing with the server, and the
    registration is gone from the agent's catalog once the agent has exited."""
    agent = spawn_agent(member(tmp_path, cluster, 1), consul.env())
    procs.append(agent)
    server_pid(tmp_path, 1)

    def check_status() -> str:
        _, checks = consul.request("GET", f"/v1/health/checks/{cluster}")
        return str(checks[0]["Status"]) if isinstance(checks, list) and checks else ""

    wait_until(lambda: check_status() == "passing", 20, "the TTL check passing")
    _, checks = consul.request("GET", f"/v1/health/checks/{cluster}")
    assert isinstance(checks, list) and checks[0]["Type"] == "ttl"
    agent.send_signal(signal.SIGTERM)
    result = finish(agent, 30)
    assert result.code == 0, result.stderr
    _, services = consul.request("GET", f"/v1/catalog/service/{cluster}")
    assert services == []
    assert f"deregistered {cluster}-1" in result.stderr


def _descendants(root: int) -> dict[int, tuple[str, str]]:
    """pid -> (state, command) of every process under ``root``, read from /proc."""
    parents: dict[int, int] = {}
    info: dict[int, tuple[str, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        parents[int(entry.name)] = int(ppid)
        info[int(entry.name)] = (state, name)
    found: dict[int, tuple[str, str]] = {}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found[child] = info[child]
                frontier.append(child)
    return found


def test_as_pid_1_the_agent_reaps_the_servers_orphans(
    consul: ConsulAgent, cluster: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    """Proves that in a new PID namespace the agent (PID 1) adopts the server's orphans and
    leaves no <defunct> process behind when they exit."""
    unshare = shutil.which("unshare")
    assert unshare is not None, "unshare (util-linux) is needed"
    args = member(tmp_path, cluster, 1, recorder=("--orphans", "3"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "NOMAD_"))}
    env.update(consul.env())
    wrapper = subprocess.Popen(
        [unshare, "--pid", "--fork", "--mount-proc", AGENT, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs.append(wrapper)
    server_pid(tmp_path, 1)
    wait_until(lambda: bool(_descendants(wrapper.pid)), 10, "the agent under unshare")
    agent_pid = next(iter(_descendants(wrapper.pid)))
    adopted = [pid for pid, (_, name) in _descendants(agent_pid).items() if name == "sleep"]
    parents = {
        int(Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[1]) for pid in adopted
    }
    assert len(adopted) == 3 and parents == {agent_pid}  # the orphans came to PID 1
    wait_until(
        lambda: not any(name == "sleep" for _, name in _descendants(agent_pid).values()),
        10,
        "the orphans to exit",
    )
    time.sleep(0.5)
    zombies = [
        (pid, name) for pid, (state, name) in _descendants(agent_pid).items() if state == "Z"
    ]
    assert zombies == []
    os.kill(agent_pid, signal.SIGTERM)
    result = finish(wrapper, 30)
    assert result.code == 0, result.stderr


# -- reload on change ----------------------------------------------------------------------


def test_a_kv_change_rewrites_the_file_and_sends_one_sighup(
    consul: ConsulAgent, cluster: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    """Proves a changed shared value re-renders the file and reloads the server once."""
    args = member(tmp_path, cluster, 1, "--on-change", "signal:HUP", "--change-wait", "0.3")
    agent = spawn_agent(args, consul.env())
    procs.append(agent)
    server_pid(tmp_path, 1)
    put(consul, cluster, "second")
    wait_until(lambda: bool(seen(tmp_path, 1, "reload-end")), 20, "the reload")
    time.sleep(1.5)
    assert (tmp_path / "m1" / "out.conf").read_text() == "v=second\n"
    assert len(seen(tmp_path, 1, "SIGHUP")) == 1
    put(consul, cluster, "second")  # the same bytes again: no reload
    time.sleep(1.5)
    assert len(seen(tmp_path, 1, "SIGHUP")) == 1


def test_a_burst_inside_the_quiet_period_gives_one_reload(
    consul: ConsulAgent, cluster: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    """Proves five changes 0.2 s apart with --change-wait 2s give one reload, of the last."""
    args = member(tmp_path, cluster, 1, "--on-change", "signal:HUP", "--change-wait", "2s")
    agent = spawn_agent(args, consul.env())
    procs.append(agent)
    server_pid(tmp_path, 1)
    for n in range(5):
        put(consul, cluster, f"burst-{n}")
        time.sleep(0.2)
    wait_until(lambda: bool(seen(tmp_path, 1, "reload-end")), 20, "the reload")
    time.sleep(3)
    assert len(seen(tmp_path, 1, "SIGHUP")) == 1
    assert (tmp_path / "m1" / "out.conf").read_text() == "v=burst-4\n"


def test_max_bounds_the_wait_under_a_steady_stream(
    consul: ConsulAgent, cluster: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    """Proves a change every 0.3 s (never quiet for MIN=1s) still reloads, MAX=2s after the
    first change, long before the stream ends."""
    args = member(tmp_path, cluster, 1, "--on-change", "signal:HUP", "--change-wait", "1:2")
    agent = spawn_agent(args, consul.env())
    procs.append(agent)
    server_pid(tmp_path, 1)
    stream_end = time.time() + 8
    n = 0
    while time.time() < stream_end:
        put(consul, cluster, f"stream-{n}")
        n += 1
        time.sleep(0.3)
    reloads = seen(tmp_path, 1, "SIGHUP")
    assert reloads and reloads[0] < stream_end - 4


def test_three_members_reload_one_at_a_time(
    consul: ConsulAgent, cluster: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    """Proves one change reloads three members under the cluster lock: no two reloads overlap
    (each server is down for 1 s while it reloads, and the lock is held until it is back)."""
    for n in (1, 2, 3):
        args = member(
            tmp_path,
            cluster,
            n,
            "--on-change",
            "signal:HUP",
            "--change-wait",
            "0.2",
            expect=3,
            recorder=("--reload-s", "1"),
        )
        procs.append(spawn_agent(args, consul.env()))
    for n in (1, 2, 3):
        server_pid(tmp_path, n)
    put(consul, cluster, "for-everyone")
    for n in (1, 2, 3):
        wait_until(lambda n=n: bool(seen(tmp_path, n, "reload-end")), 60, f"member {n} reload")
    spans = sorted(
        (seen(tmp_path, n, "reload-start")[0], seen(tmp_path, n, "reload-end")[0])
        for n in (1, 2, 3)
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, spans


def test_a_sigkilled_lock_holder_frees_the_lock_after_its_session_ttl(
    consul: ConsulAgent, cluster: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    """Proves an agent SIGKILLed while holding the lock does not block the cluster: the other
    member reloads once the dead holder's session (TTL, then lock-delay) has run out."""
    for n in (1, 2):
        args = member(
            tmp_path,
            cluster,
            n,
            "--on-change",
            "signal:HUP",
            "--change-wait",
            "0.2",
            "--kill-timeout",
            "120",
            expect=2,
            recorder=("--reload-s", "120"),  # the holder waits for its server to come back
        )
        procs.append(spawn_agent(args, consul.env()))
    pids = {n: server_pid(tmp_path, n) for n in (1, 2)}
    put(consul, cluster, "changed")
    wait_until(
        lambda: any(seen(tmp_path, n, "reload-start") for n in (1, 2)), 30, "the first reload"
    )
    holder = 1 if seen(tmp_path, 1, "reload-start") else 2
    other = 3 - holder
    procs[holder - 1].kill()
    killed_at = time.time()
    os.kill(pids[holder], signal.SIGKILL)  # the server the dead agent left behind
    assert not seen(tmp_path, other, "reload-start")
    wait_until(lambda: bool(seen(tmp_path, other, "reload-start")), 60, "the other member's reload")
    assert seen(tmp_path, other, "reload-start")[0] > killed_at


def test_consul_down_for_20s_keeps_the_server_and_catches_up(
    tmp_path: Path, cluster: str, procs: list[subprocess.Popen[str]]
) -> None:
    """Proves Consul stopped for 20 s neither stops nor reloads the server, the agent catches
    up when it is back (a change made then reloads), and an exit while Consul is down costs a
    warning, not a hang."""
    with ConsulAgent(tmp_path / "consul", persistent=True) as consul:
        args = member(tmp_path, cluster, 1, "--on-change", "signal:HUP", "--change-wait", "0.3")
        agent = spawn_agent(args, consul.env())
        procs.append(agent)
        pid = server_pid(tmp_path, 1)
        time.sleep(1)
        consul.stop()
        time.sleep(20)
        assert agent.poll() is None and alive(pid)
        assert not seen(tmp_path, 1, "SIGHUP")
        consul.start()
        put(consul, cluster, "after-the-outage")
        wait_until(lambda: bool(seen(tmp_path, 1, "reload-end")), 60, "the reload after")
        assert (tmp_path / "m1" / "out.conf").read_text() == "v=after-the-outage\n"
        consul.stop()
        stopped = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        result = finish(agent, 30)
        assert time.monotonic() - stopped < 15
    assert result.code == 0, result.stderr
    assert "backing off, the server keeps running" in result.stderr
    assert "catching up" in result.stderr
    assert "could not deregister" in result.stderr
    assert [p[0] for p in lines(tmp_path, 1) if p[0].startswith("SIG")] == ["SIGHUP", "SIGTERM"]


def test_on_change_restart_stops_and_starts_the_server_and_the_agent_stays(
    consul: ConsulAgent, cluster: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    """Proves --on-change restart ends the server with SIGTERM and starts a new one, the agent
    does not exit for it, and its exit code is then the new server's."""
    args = member(tmp_path, cluster, 1, "--on-change", "restart", "--change-wait", "0.3")
    agent = spawn_agent(args, consul.env())
    procs.append(agent)
    first = server_pid(tmp_path, 1)
    put(consul, cluster, "restart-me")
    wait_until(lambda: len(seen(tmp_path, 1, "started")) == 2, 30, "the second server")
    second = int([p for p in lines(tmp_path, 1) if p[0] == "started"][-1][1].removeprefix("pid="))
    assert second != first and not alive(first) and alive(second)
    assert agent.poll() is None
    assert (tmp_path / "m1" / "out.conf").read_text() == "v=restart-me\n"
    os.kill(second, signal.SIGKILL)
    result = finish(agent, 30)
    assert result.code == 137, result.stderr


def test_watch_alone_rerenders_into_the_directory_and_exits_on_sigterm(
    consul: ConsulAgent, cluster: str, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    """Proves `watch` (the sidecar) renders, rewrites the file on a change with no server to
    signal, and on SIGTERM exits 0 and deregisters."""
    args = member(tmp_path, cluster, 1, "--change-wait", "0.3")
    args = ["watch", *args[: args.index("--supervise")]]
    agent = spawn_agent(args, consul.env())
    procs.append(agent)
    out = tmp_path / "m1" / "out.conf"
    wait_until(out.exists, 30, "the first rendering")
    put(consul, cluster, "sidecar")
    wait_until(lambda: out.read_text() == "v=sidecar\n", 30, "the re-rendering")
    agent.send_signal(signal.SIGTERM)
    result = finish(agent, 30)
    assert result.code == 0, result.stderr
    assert "rewrote" in result.stderr
    _, services = consul.request("GET", f"/v1/catalog/service/{cluster}")
    assert services == []
