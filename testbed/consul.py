"""A real Consul agent for tests, the demo and the benchmarks.

Dev mode (in memory) by default; ``persistent=True`` runs a single-server agent with a data
directory instead, so that a restart keeps the KV (dev mode forgets everything). Every port is
chosen free, so several agents can run side by side.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import urllib.error
import urllib.request
from pathlib import Path

from testbed.procs import Process, cache_dir, free_port, wait_until


def consul_binary() -> str:
    """``$CB_CONSUL``, else ``consul`` on PATH, else the one ``.ci/install-consul`` built."""
    for candidate in (
        os.environ.get("CB_CONSUL"),
        shutil.which("consul"),
        str(cache_dir() / "bin" / "consul"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("no consul binary: run .ci/install-consul (or put consul on PATH)")


class ConsulAgent:
    """One agent on 127.0.0.1 with free ports; ``acl_token`` turns on ACLs (deny by default)."""

    def __init__(
        self, workdir: Path, *, acl_token: str | None = None, persistent: bool = False
    ) -> None:
        self.workdir = workdir
        self.acl_token = acl_token
        self.persistent = persistent
        self.http_port = free_port()
        self.ports = {
            "serf_lan": free_port(),
            "serf_wan": free_port(),
            "server": free_port(),
        }
        self.process: Process | None = None
        self.starts = 0

    @property
    def http_addr(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def url(self) -> str:
        return f"http://{self.http_addr}"

    def argv(self) -> list[str]:
        argv = [
            consul_binary(),
            "agent",
            "-bind",
            "127.0.0.1",
            "-client",
            "127.0.0.1",
            "-advertise",
            "127.0.0.1",
            "-http-port",
            str(self.http_port),
            "-dns-port",
            "-1",
            "-grpc-port",
            "-1",
            "-grpc-tls-port",
            "-1",
            "-serf-lan-port",
            str(self.ports["serf_lan"]),
            "-serf-wan-port",
            str(self.ports["serf_wan"]),
            "-server-port",
            str(self.ports["server"]),
            "-node",
            f"bed-{self.http_port}",
            "-log-level",
            "warn",
            "-hcl",
            "disable_update_check = true",  # no phoning home to HashiCorp from a test bed
        ]
        if self.persistent:
            argv += [
                "-server",
                "-bootstrap-expect",
                "1",
                "-data-dir",
                str(self.workdir / "data"),
                "-disable-host-node-id",
            ]
        else:
            argv += ["-dev"]
        if self.acl_token:
            argv += [
                "-hcl",
                'acl { enabled = true default_policy = "deny" '
                f'tokens {{ initial_management = "{self.acl_token}" }} }}',
            ]
        return argv

    def start(self, timeout_s: float = 60.0) -> ConsulAgent:
        self.spawn()
        return self.wait_ready(timeout_s)

    def spawn(self) -> None:
        """Start the process without waiting: several agents of one bed start side by side."""
        self.starts += 1
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = Process(self.argv(), self.workdir / f"consul-{self.starts}.log")

    def wait_ready(self, timeout_s: float = 60.0) -> ConsulAgent:
        """Block until the agent has a leader and takes a KV write; stop it and raise if not."""
        assert self.process is not None, "spawn() first"
        try:
            wait_until(self.ready, timeout_s, f"consul agent {self.http_addr}", every_s=0.05)
        except (TimeoutError, RuntimeError) as exc:
            tail = self.process.log_tail()
            self.stop()
            raise RuntimeError(f"{exc}\n{tail}") from exc
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.thaw()  # a frozen agent would sit on the SIGTERM until the SIGKILL
            self.process.stop()
            self.process = None

    def freeze(self) -> None:
        """SIGSTOP the agent: connections still open, nothing answers (a hung or cut-off agent)."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after ``freeze``; ``stop`` thaws first on its own."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGCONT)

    def __enter__(self) -> ConsulAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- a tiny HTTP client of its own, so the bed never depends on the code under test --

    def request(
        self,
        method: str,
        path: str,
        body: object | None = None,
        token: str | None = None,
        timeout_s: float = 5.0,
    ) -> tuple[int, object]:
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        token = token if token is not None else self.acl_token
        if token:
            req.add_header("X-Consul-Token", token)
        try:
            status, raw = self.send(req, timeout_s)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    def send(self, req: urllib.request.Request, timeout_s: float) -> tuple[int, bytes]:
        """One HTTP exchange; an agent inside a network namespace sends from there."""
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, resp.read()

    def ready(self) -> bool:
        if self.process is None or not self.process.alive():
            raise RuntimeError(f"consul exited:\n{self.process.log_tail() if self.process else ''}")
        try:
            status, leader = self.request("GET", "/v1/status/leader", timeout_s=1)
            if status != 200 or not leader:
                return False
            status, _ = self.request("PUT", "/v1/kv/_bed_ready", "1", timeout_s=2)
            return status == 200
        except OSError:
            return False

    def register(
        self, name: str, service_id: str, address: str, port: int, **extra: object
    ) -> None:
        body = {"Name": name, "ID": service_id, "Address": address, "Port": port, **extra}
        status, answer = self.request("PUT", "/v1/agent/service/register", body)
        if status != 200:
            raise RuntimeError(f"register {service_id}: {status} {answer}")

    def deregister(self, service_id: str) -> None:
        self.request("PUT", f"/v1/agent/service/deregister/{service_id}")

    def kv_put(self, key: str, value: str) -> None:
        status, answer = self.request("PUT", f"/v1/kv/{key}", value)
        if status != 200:
            raise RuntimeError(f"kv put {key}: {status} {answer}")

    def roster(self, cluster: str, prefix: str = "cluster-bootstrap") -> dict[str, object] | None:
        """The roster the agents keep of ``cluster`` (``<prefix>/<cluster>/roster``), or None."""
        status, answer = self.request("GET", f"/v1/kv/{prefix}/{cluster}/roster?raw")
        return answer if status == 200 and isinstance(answer, dict) else None

    def kv_keys(self, prefix: str) -> list[str]:
        status, answer = self.request("GET", f"/v1/kv/{prefix}?keys")
        return list(answer) if status == 200 and isinstance(answer, list) else []

    def create_token(self, rules: str) -> str:
        """A new ACL token holding only ``rules`` (HCL); returns its secret."""
        name = f"policy-{len(rules)}-{abs(hash(rules))}"
        status, policy = self.request("PUT", "/v1/acl/policy", {"Name": name, "Rules": rules})
        if status != 200 or not isinstance(policy, dict):
            raise RuntimeError(f"acl policy: {status} {policy}")
        status, token = self.request("PUT", "/v1/acl/token", {"Policies": [{"ID": policy["ID"]}]})
        if status != 200 or not isinstance(token, dict):
            raise RuntimeError(f"acl token: {status} {token}")
        return str(token["SecretID"])

    def env(self) -> dict[str, str]:
        """Environment that points Consul's clients (and ours) at this agent."""
        env = {"CONSUL_HTTP_ADDR": self.http_addr}
        if self.acl_token:
            env["CONSUL_HTTP_TOKEN"] = self.acl_token
        return env
