"""Secrets never reach a log: the Consul ACL token, the EMQX cookie, a template's shared secret.

Each test runs the installed console script the ways an operator would (a start that execs,
``render``, ``render --dry-run``, ``doctor``, ``discover``, a failing start), all with
``--debug`` (the most talkative mode, tracebacks included), and searches every byte of
stdout and stderr for the secret. The server's own environment is checked too: it gets the
cookie it needs, never the agent's token.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from testbed.consul import ConsulAgent
from tests.integration.conftest import Result, run_agent
from tests.reliability.hostile_agent import HostileAgent
from tests.reliability.outcome import assert_failed, run_limited

ADDRESS = "127.0.0.11"


def member(
    service: str, tmp_path: Path, cluster: str, *extra: str, debug: bool = True
) -> list[str]:
    """The options of one member of ``cluster``, before any ``--``."""
    return [
        service,
        "--cluster",
        cluster,
        "--expect",
        "1",
        "--timeout",
        "30",
        "--address",
        ADDRESS,
        "--member-name",
        f"{cluster}-1",
        "--data-dir",
        str(tmp_path / "data"),
        "--conf-dir",
        str(tmp_path / "conf"),
        *(["--debug"] if debug else []),
        *extra,
    ]


def every_way(args: list[str], env: dict[str, str], server_env: Path) -> dict[str, Result]:
    """A start that execs a server dumping its environment, then render, dry run and doctor."""
    runs = {
        "start": run_agent(["run", *args, "--", "sh", "-c", f"env > '{server_env}'"], env),
        "render": run_agent(["render", *args], env),
        "dry-run": run_agent(["render", *args, "--dry-run"], env),
        "doctor": run_agent(["doctor", *args], env),
    }
    for name, result in runs.items():
        assert result.code == 0, f"{name}: exit {result.code}: {result.stderr[-1500:]}"
    return runs


def assert_never_printed(secret: str, runs: dict[str, Result]) -> None:
    assert len(secret) >= 8, "too short to be a meaningful search"
    for name, result in runs.items():
        assert secret not in result.stdout, f"{name} printed the secret on stdout"
        assert secret not in result.stderr, f"{name} printed the secret on stderr"


def token_env(agent: ConsulAgent, how: str, tmp_path: Path) -> dict[str, str]:
    """Point at ``agent`` with its management token, in CONSUL_HTTP_TOKEN or a token file."""
    assert agent.acl_token is not None
    if how == "variable":
        return {"CONSUL_HTTP_ADDR": agent.http_addr, "CONSUL_HTTP_TOKEN": agent.acl_token}
    token_file = tmp_path / "consul-token"
    token_file.write_text(agent.acl_token + "\n")
    token_file.chmod(0o600)
    return {"CONSUL_HTTP_ADDR": agent.http_addr, "CONSUL_HTTP_TOKEN_FILE": str(token_file)}


@pytest.mark.parametrize("how", ["variable", "file"])
def test_acl_token_is_never_printed_nor_passed_on(
    consul_acl: ConsulAgent, cluster: str, tmp_path: Path, how: str
) -> None:
    """Proves the token (env or file) is in no output of start/render/doctor/discover/failure."""
    env = token_env(consul_acl, how, tmp_path)
    config = tmp_path / "template.yaml"
    config.write_text(
        yaml.safe_dump(
            {"options": {"files": [{"path": str(tmp_path / "conf" / "peers"), "content": "x\n"}]}}
        )
    )
    args = member("template", tmp_path, cluster, "--config", str(config), "--register")
    server_env = tmp_path / "server-env"
    runs = every_way(args, env, server_env)
    runs["discover"] = run_agent(["discover", cluster, "--debug"], env)
    assert runs["discover"].code == 0, runs["discover"].stderr
    late = ["--expect", "2", "--timeout", "1", "--", "true"]
    runs["failed start"] = run_agent(
        ["run", *member("template", tmp_path, f"{cluster}x", "--config", str(config)), *late], env
    )
    assert runs["failed start"].code == 5, runs["failed start"].stderr
    assert "Traceback" in runs["failed start"].stderr  # --debug did print one
    assert consul_acl.acl_token is not None
    assert_never_printed(consul_acl.acl_token, runs)
    seen = server_env.read_text()
    assert consul_acl.acl_token not in seen
    assert "CONSUL_HTTP_TOKEN" not in seen


def test_refused_token_is_not_printed_even_with_debug(
    consul_acl: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a token the agent refuses (403) is not echoed in the error or the traceback."""
    wrong = "d0e1f2a3-wrong-but-still-secret-4b5c6d7e8f90"
    env = {"CONSUL_HTTP_ADDR": consul_acl.http_addr, "CONSUL_HTTP_TOKEN": wrong}
    result = run_agent(["run", *member("zookeeper", tmp_path, cluster), "--", "true"], env)
    assert result.code == 4, result.stderr
    assert_never_printed(wrong, {"403 start": result})


def test_malformed_token_is_refused_without_being_printed(tmp_path: Path) -> None:
    """Proves a token with a line break is a usage error (exit 2) that does not show the token."""
    token = "s3cr3t-token-value\r\nX-Injected: 1"
    runs = {}
    with HostileAgent() as agent:
        env = {**agent.env(), "CONSUL_HTTP_TOKEN": token}
        for debug in (False, True):
            args = ["run", *member("zookeeper", tmp_path, "zk", debug=debug), "--", "true"]
            runs[f"debug={debug}"] = run_limited(args, env)
    assert agent.requests == []
    assert_failed(runs["debug=False"], 2)
    assert runs["debug=True"].code == 2, runs["debug=True"].stderr[-1500:]
    assert_never_printed("s3cr3t-token-value", runs)


@pytest.mark.parametrize("output", ["file", "env"])
def test_emqx_cookie_is_never_printed(
    consul_acl: ConsulAgent, cluster: str, tmp_path: Path, output: str
) -> None:
    """Proves the EMQX cookie reaches its 0600 file or the server's env, and no output at all."""
    env = token_env(consul_acl, "variable", tmp_path)
    args = member("emqx", tmp_path, cluster, "--register", "--set", f"output={output}")
    server_env = tmp_path / "server-env"
    runs = every_way(args, env, server_env)
    status, cookie = consul_acl.request(
        "GET", f"/v1/kv/cluster-bootstrap/{cluster}/shared/cookie?raw"
    )
    assert status == 200 and isinstance(cookie, str), (status, cookie)
    assert_never_printed(cookie, runs)
    assert consul_acl.acl_token is not None
    assert_never_printed(consul_acl.acl_token, runs)
    if output == "file":
        cookie_file = tmp_path / "conf" / "cluster.hocon"
        assert f'node.cookie = "{cookie}"' in cookie_file.read_text()
        assert stat.S_IMODE(cookie_file.stat().st_mode) == 0o600
        assert cookie not in server_env.read_text()
    else:
        assert f"EMQX_NODE__COOKIE={cookie}\n" in server_env.read_text()
        assert not (tmp_path / "conf" / "cluster.hocon").exists()
    assert list(tmp_path.rglob(".*.tmp")) == []


def test_template_shared_secret_is_never_printed(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a template's secret shared value lands 0600 and in the env, never in output."""
    peers = tmp_path / "conf" / "peers.conf"
    config = tmp_path / "template.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "options": {
                    "files": [{"path": str(peers), "content": "secret={{ shared.cookie }}\n"}],
                    "env": {"SERVICE_COOKIE": "{{ shared.cookie }}"},
                    "shared": {"cookie": {"secret": True}},
                }
            }
        )
    )
    args = member("template", tmp_path, cluster, "--config", str(config), "--register")
    server_env = tmp_path / "server-env"
    runs = every_way(args, consul.env(), server_env)
    status, secret = consul.request("GET", f"/v1/kv/cluster-bootstrap/{cluster}/shared/cookie?raw")
    assert status == 200 and isinstance(secret, str), (status, secret)
    assert_never_printed(secret, runs)
    assert peers.read_text() == f"secret={secret}\n"
    assert stat.S_IMODE(peers.stat().st_mode) == 0o600
    assert f"SERVICE_COOKIE={secret}\n" in server_env.read_text()
    assert "(secret: not shown)" in runs["dry-run"].stdout
    assert "SERVICE_COOKIE=***" in runs["dry-run"].stdout
