"""Real peers for the integration tests. A missing program is an error, never a skip."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from testbed.consul import ConsulAgent
from testbed.procs import AGENT

ACL_TOKEN = "b1gs3cr3t-management-token"


@pytest.fixture(scope="session")
def consul(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulAgent]:
    """One dev-mode Consul agent for the session; tests isolate themselves by cluster name."""
    with ConsulAgent(tmp_path_factory.mktemp("consul")) as agent:
        yield agent


@pytest.fixture(scope="session")
def consul_acl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulAgent]:
    """A dev-mode agent with ACLs on and default deny."""
    with ConsulAgent(tmp_path_factory.mktemp("consul-acl"), acl_token=ACL_TOKEN) as agent:
        yield agent


@pytest.fixture
def cluster() -> str:
    """A cluster (and Consul service) name no other test uses."""
    return f"t-{uuid.uuid4().hex[:10]}"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run_agent(args: Sequence[str], env: dict[str, str], timeout_s: float = 60) -> Result:
    """Run the installed console script, as a user would."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "NOMAD_"))}
    full_env.update(env)
    proc = subprocess.run(
        [AGENT, *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def spawn_agent(args: Sequence[str], env: dict[str, str]) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "NOMAD_"))}
    full_env.update(env)
    return subprocess.Popen(
        [AGENT, *args], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str], timeout_s: float = 60) -> Result:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return Result(proc.returncode, out, err)
