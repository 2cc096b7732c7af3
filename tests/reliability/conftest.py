"""Reliability: many rounds and Consul faults, against real Consul agents (and ZooKeeper).

Members here run the zookeeper adapter with a shell command in place of the server, so a
member costs one Python start and nothing more; the zoo.cfg and myid it renders, and the id
the command saw after the exec, are the evidence. Members of one cluster sit on 127.0.0.51,
.52, ... (the range this suite owns); nothing binds them unless a ZooKeeper round runs.
The ``consul``, ``consul_acl`` and ``cluster`` fixtures are the integration suite's.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from testbed.consul import ConsulAgent
from testbed.procs import agent_args, wait_until
from testbed.zookeeper import host
from tests.integration.conftest import Result, cluster, consul, consul_acl, spawn_agent

__all__ = ["cluster", "consul", "consul_acl"]  # fixtures shared with tests/integration

FIRST_HOST = 51  # 127.0.0.51..55: this suite's loopback addresses


def member_dir(workdir: Path, n: int) -> Path:
    """Member n's directory, laid out as ``ZkEnsemble`` lays it out."""
    return workdir / f"zk{n}"


def member_args(
    workdir: Path,
    cluster: str,
    n: int,
    *,
    expect: int,
    timeout_s: float = 120,
    address: str | None = None,
) -> list[str]:
    """A zookeeper-adapter member that execs a shell recording the id it was given."""
    d = member_dir(workdir, n)
    return agent_args(
        "zookeeper",
        cluster=cluster,
        expect=expect,
        address=address or host(n, FIRST_HOST),
        member_name=f"{cluster}-zk{n}",
        member_dir=d,
        command=["sh", "-c", f'echo "$ZOO_MY_ID" > {shlex.quote(str(d / "exec-saw-id"))}'],
        timeout_s=timeout_s,
    )


def assert_exited_zero(results: Sequence[Result]) -> None:
    failed = {n: r for n, r in enumerate(results, 1) if r.code != 0}
    assert not failed, {n: (r.code, r.stderr.strip().splitlines()[-3:]) for n, r in failed.items()}


def assert_one_cluster(
    workdir: Path, addresses: Mapping[int, str], *, executed: bool = True
) -> dict[int, int]:
    """Ids 1..size, one per member; the same server lines everywhere, each naming its member.

    Returns each member's id. ``executed``: the command after ``--`` saw the same id.
    """
    ids: dict[int, int] = {}
    server_lists = set()
    for n in addresses:
        d = member_dir(workdir, n)
        ids[n] = int((d / "data" / "myid").read_text())
        zoo_cfg = (d / "conf" / "zoo.cfg").read_text().splitlines()
        server_lists.add(tuple(line for line in zoo_cfg if line.startswith("server.")))
        if executed:
            assert (d / "exec-saw-id").read_text().strip() == str(ids[n])
    assert sorted(ids.values()) == list(range(1, len(addresses) + 1)), ids
    assert len(server_lists) == 1, server_lists
    servers = server_lists.pop()
    assert len(servers) == len(addresses), servers
    for n, address in addresses.items():
        assert any(line.startswith(f"server.{ids[n]}={address}:") for line in servers), servers
    return ids


def round_addresses(size: int) -> dict[int, str]:
    return {n: host(n, FIRST_HOST) for n in range(1, size + 1)}


def claim_keys(agent: ConsulAgent, cluster: str) -> list[str]:
    return agent.kv_keys(f"cluster-bootstrap/{cluster}/ids/")


def deregister_members(agent: ConsulAgent, cluster: str, size: int) -> None:
    """Drop a finished round's registrations, so the shared agent does not run their checks."""
    for member_id in range(1, size + 1):
        agent.deregister(f"{cluster}-{member_id}")


class LiveMember:
    """A member process whose stderr lines are read, and timestamped, as they come."""

    def __init__(self, args: Sequence[str], env: dict[str, str]) -> None:
        self.proc = spawn_agent(args, env)
        self.lines: list[tuple[float, str]] = []
        self.exited_at = float("nan")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line))

    def stderr(self) -> str:
        return "".join(line for _, line in self.lines)

    def wait_line(self, text: str, timeout_s: float = 60) -> float:
        """When the first line containing ``text`` arrived; raises if the member exits first."""

        def seen() -> bool:
            if any(text in line for _, line in self.lines):
                return True
            if self.proc.poll() is not None:
                self._reader.join()
                if any(text in line for _, line in self.lines):
                    return True
                raise RuntimeError(f"member exited {self.proc.returncode}:\n{self.stderr()}")
            return False

        wait_until(seen, timeout_s, f"line {text!r}", every_s=0.02)
        return next(at for at, line in self.lines if text in line)

    def first_line_at(self) -> float:
        """When the first stderr line arrived: just after the member's deadline started."""
        wait_until(lambda: bool(self.lines), 60, "a first line", every_s=0.02)
        return self.lines[0][0]

    def kill(self) -> Result:
        """SIGKILL: no cleanup of any kind, as when a host or container dies."""
        self.proc.kill()
        return self.finish()

    def finish(self, timeout_s: float = 180) -> Result:
        """Wait for the exit (``exited_at`` is when it was seen) and collect the output."""
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.exited_at = time.monotonic()
        self._reader.join()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        stdout = self.proc.stdout.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return Result(self.proc.returncode, stdout, self.stderr())
