"""Supervise mode: what an idle supervised member costs, and how fast a change reaches it.

Each round:

1. **Idle** for ``IDLE_S`` (60 s) with nothing changing, side by side:
   - the agent in supervise mode (``template --supervise --register --on-change signal:HUP``,
     the server is ``testbed.recorder``);
   - the floor: ``bench/floor_loop.py``, the smallest ContainerPilot-like loop (a child, its
     signals, one blocking query on the same KV prefix) in 20 lines of Python.
   For each: CPU seconds (``utime + stime`` of the process from ``/proc``, over the window),
   RSS at the end (``VmRSS``), and the Consul requests it made, counted by a small TCP proxy
   between it and the Consul agent (each request line is one request).
   An exec'd start costs nothing here: it is gone (shown as 0 for comparison).
2. **Reaction**: ``CHANGES`` KV changes, each one after the last reload settled; for each, the
   time from just before the PUT to the SIGHUP the server records, minus the configured quiet
   period (``--change-wait`` MIN).

``python -m bench --only supervise --rounds 3`` (or ``python -m bench.supervise``).
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from bench.common import PYTHON, REPO, Figure, clean_env, median, per_round
from testbed.consul import ConsulAgent
from testbed.procs import AGENT, free_port, wait_until

IDLE_S = 60.0
CHANGES = 5
CHANGE_WAIT_S = 0.5
ADDRESS = "127.0.0.89"
TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux
_REQUEST = re.compile(rb"(?:^|\r\n)(GET|PUT|POST|DELETE) /v1/")


class CountingProxy:
    """A TCP proxy to the Consul agent that counts the HTTP requests going through it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            try:
                while chunk := await src.read(65536):
                    if count:
                        self.requests += len(_REQUEST.findall(chunk))
                    dst.write(chunk)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _settings(conf: Path) -> Path:
    conf.mkdir(parents=True, exist_ok=True)
    path = conf / "settings.yaml"
    options = {
        "files": [{"path": str(conf / "out.conf"), "content": "v={{ shared.v }}\n"}],
        "env": {"LISTEN": "{{ me.address }}:{{ me.ports.service }}"},
        "shared": {"v": {"secret": False}},
    }
    path.write_text(yaml.safe_dump({"options": options}))
    return path


def _hups(log: Path) -> list[float]:
    if not log.exists():
        return []
    return [
        float(line.split()[-1]) for line in log.read_text().splitlines() if line[:6] == "SIGHUP"
    ]


def one_round(consul: ConsulAgent, workdir: Path, round_no: int) -> dict[str, float | list[float]]:
    cluster = f"bench-sv-{round_no}-{int(time.time())}"
    conf = workdir / cluster
    log = conf / "rec.log"
    recorder = f'exec {PYTHON} -m testbed.recorder {log} --listen "$LISTEN"'
    with (
        CountingProxy(consul.http_port) as agent_proxy,
        CountingProxy(consul.http_port) as floor_proxy,
    ):
        agent = subprocess.Popen(
            [
                AGENT,
                "template",
                "--config",
                str(_settings(conf)),
                "--cluster",
                cluster,
                "--expect",
                "1",
                "--address",
                ADDRESS,
                "--bind-address",
                ADDRESS,
                "--port",
                "service=7089",
                "--member-name",
                cluster,
                "--data-dir",
                str(conf / "data"),
                "--register",
                "--supervise",
                "--on-change",
                "signal:HUP",
                "--change-wait",
                str(CHANGE_WAIT_S),
                "--",
                "sh",
                "-c",
                recorder,
            ],
            env=clean_env({"CONSUL_HTTP_ADDR": f"127.0.0.1:{agent_proxy.port}"}),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: log.exists(), 30, "the supervised server")
        floor = subprocess.Popen(
            [
                PYTHON,
                str(REPO / "bench" / "floor_loop.py"),
                f"127.0.0.1:{floor_proxy.port}",
                f"cluster-bootstrap/{cluster}/",
                "sleep",
                "3600",
            ],
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(12)  # start-up done, first health report passing, queries blocked
            marks = {
                "agent": (cpu_seconds(agent.pid), agent_proxy.requests),
                "floor": (cpu_seconds(floor.pid), floor_proxy.requests),
            }
            time.sleep(IDLE_S)
            result: dict[str, float | list[float]] = {}
            for name, proc, proxy in (
                ("agent", agent, agent_proxy),
                ("floor", floor, floor_proxy),
            ):
                cpu0, req0 = marks[name]
                minutes = IDLE_S / 60
                result[f"{name} cpu"] = (cpu_seconds(proc.pid) - cpu0) / minutes
                result[f"{name} requests"] = (proxy.requests - req0) / minutes
                result[f"{name} rss"] = rss_mib(proc.pid)
            reactions = []
            for change in range(CHANGES):
                before = len(_hups(log))
                put_at = time.time()
                consul.kv_put(f"cluster-bootstrap/{cluster}/shared/v", f"change-{change}")
                wait_until(lambda b=before: len(_hups(log)) > b, 30, "the reload")
                reactions.append(_hups(log)[-1] - put_at - CHANGE_WAIT_S)
                time.sleep(1.5)  # let the lock go and the health settle
            result["reaction"] = reactions
            return result
        finally:
            for proc in (agent, floor):
                proc.send_signal(signal.SIGTERM)
            for proc in (agent, floor):
                try:
                    proc.wait(40)
                except subprocess.TimeoutExpired:
                    proc.kill()


def run(rounds: int, consul: ConsulAgent, workdir: Path) -> list[Figure]:
    runs = [one_round(consul, workdir, n) for n in range(rounds)]

    def values(key: str) -> list[float]:
        return [float(r[key]) for r in runs]  # type: ignore[arg-type]

    for name in ("agent", "floor"):
        print(per_round(f"{name}: CPU s per idle minute", values(f"{name} cpu")))
        print(per_round(f"{name}: RSS", values(f"{name} rss"), "MiB"))
        print(per_round(f"{name}: Consul requests per minute", values(f"{name} requests"), ""))
    reactions = [x for r in runs for x in r["reaction"]]  # type: ignore[union-attr]
    print(per_round("reaction minus change-wait", reactions))
    print("  exec'd start: 0 CPU, 0 MiB, 0 requests once it has exec'd (it is gone)")
    floor = "20-line loop"
    return [
        Figure(
            "supervised idle CPU per minute",
            median(values("agent cpu")),
            "s",
            median(values("floor cpu")),
            floor,
            target_value=0.05,
            note="exec'd start: 0 (it is gone)",
        ),
        Figure(
            "supervised idle RSS",
            median(values("agent rss")),
            "MiB",
            median(values("floor rss")),
            floor,
            target_value=50.0,
        ),
        Figure(
            "supervised Consul requests per minute",
            median(values("agent requests")),
            "",
            median(values("floor requests")),
            floor,
            note="blocking-query renewals (300 s waits) and TTL check refreshes (every 30 s)",
        ),
        Figure(
            "KV change to reload, minus change-wait (median)",
            median(reactions),
            "s",
            target_value=1.0,
        ),
        Figure(
            "KV change to reload, minus change-wait (worst)",
            max(reactions),
            "s",
            target_value=1.0,
        ),
    ]


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["--only", "supervise", *sys.argv[1:]]))
