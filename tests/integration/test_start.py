"""The start flow through the installed console script against a real Consul agent."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import yaml

from adapters.consul import ConsulDiscovery
from bootstrap.deadline import Deadline
from bootstrap.membership import Membership
from bootstrap.model import Me
from bootstrap.settings import ConsulSettings
from testbed.consul import ConsulAgent
from testbed.procs import free_port
from tests.integration.conftest import finish, run_agent, spawn_agent

TEMPLATE = {
    "options": {
        "files": [
            {
                "path": "{conf}/members.conf",
                "content": "{% for m in members %}member.{{ m.member_id }}="
                "{{ m.address }}:{{ m.ports.service }}\n{% endfor %}",
            }
        ],
        "env": {"MY_ID": "{{ me.member_id }}"},
    }
}


def member_args(
    tmp_path: Path, cluster: str, n: int, expect: int = 3, timeout: float = 30
) -> list[str]:
    conf = tmp_path / f"m{n}"
    conf.mkdir(parents=True, exist_ok=True)
    settings = json.loads(json.dumps(TEMPLATE).replace("{conf}", str(conf)))
    (conf / "settings.yaml").write_text(yaml.safe_dump(settings))
    return [
        "template",
        "--config",
        str(conf / "settings.yaml"),
        "--cluster",
        cluster,
        "--expect",
        str(expect),
        "--timeout",
        str(timeout),
        "--address",
        f"127.0.0.{10 + n}",
        "--port",
        "service=7000",
        "--member-name",
        f"member-{n}",
        "--register",
        "--data-dir",
        str(conf / "data"),
        "--",
        "sh",
        "-c",
        f'echo "$MY_ID" > {conf}/exec-saw-id',
    ]


def outputs(tmp_path: Path, n: int) -> tuple[str, str]:
    conf = tmp_path / f"m{n}"
    return (conf / "members.conf").read_text(), (conf / "exec-saw-id").read_text().strip()


def test_three_members_started_together(consul: ConsulAgent, cluster: str, tmp_path: Path) -> None:
    """Proves 3 simultaneous starts get distinct ids, identical lists, and exec the command."""
    procs = [spawn_agent(member_args(tmp_path, cluster, n), consul.env()) for n in (1, 2, 3)]
    results = [finish(p) for p in procs]
    assert [r.code for r in results] == [0, 0, 0], [r.stderr for r in results]
    lists = {outputs(tmp_path, n)[0] for n in (1, 2, 3)}
    ids = sorted(outputs(tmp_path, n)[1] for n in (1, 2, 3))
    assert len(lists) == 1 and ids == ["1", "2", "3"]
    assert lists.pop().count("member.") == 3


def test_restarted_member_gets_its_old_id(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a member started again with the same name reclaims the same id."""
    procs = [spawn_agent(member_args(tmp_path, cluster, n), consul.env()) for n in (1, 2, 3)]
    assert [finish(p).code for p in procs] == [0, 0, 0]
    before = outputs(tmp_path, 2)[1]
    again = run_agent(member_args(tmp_path, cluster, 2), consul.env())
    assert again.code == 0, again.stderr
    assert outputs(tmp_path, 2)[1] == before
    assert "reclaims its id" in again.stderr


async def test_twenty_racing_claimers_get_twenty_ids(consul: ConsulAgent, cluster: str) -> None:
    """Proves 20 concurrent claims through a real agent end with 20 distinct ids."""
    settings = ConsulSettings(host="127.0.0.1", port=consul.http_port)
    async with ConsulDiscovery(settings, Deadline(30)) as discovery:
        membership = Membership(
            discovery,
            prefix=f"cluster-bootstrap/{cluster}",
            consul_service=cluster,
            port_labels={"service": 7000},
            id_range=(1, 255),
        )

        async def claim(n: int) -> int:
            me = Me(
                f"racer-{n}",
                f"127.0.1.{n}",
                {"service": 7000},
                "0.0.0.0",
                {"service": 7000},
                Path("/tmp"),
                Path("/tmp"),
            )
            return await membership.obtain_id(me, None)

        ids = await asyncio.gather(*(claim(n) for n in range(20)))
    assert sorted(ids) == list(range(1, 21))
    assert len(consul.kv_keys(f"cluster-bootstrap/{cluster}/ids/")) == 20


def test_member_started_before_consul_succeeds_when_it_appears(
    cluster: str, tmp_path: Path
) -> None:
    """Proves a start retries an absent agent and succeeds once it comes up in time."""
    agent = ConsulAgent(tmp_path / "late-consul")
    proc = spawn_agent(member_args(tmp_path, cluster, 1, expect=1, timeout=60), agent.env())
    time.sleep(3)
    assert proc.poll() is None, "the start gave up while the deadline was still far"
    with agent:
        result = finish(proc)
    assert result.code == 0, result.stderr
    assert "retrying" in result.stderr
    assert outputs(tmp_path, 1)[1] == "1"


def test_consul_that_never_comes_gives_exit_3(cluster: str, tmp_path: Path) -> None:
    """Proves an absent agent ends in exit code 3 within the deadline plus a second."""
    env = {"CONSUL_HTTP_ADDR": f"127.0.0.1:{free_port()}"}
    started = time.monotonic()
    result = run_agent(member_args(tmp_path, cluster, 1, timeout=3), env)
    took = time.monotonic() - started
    assert result.code == 3, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("cluster-bootstrap: error: ")
    assert "Traceback" not in result.stderr
    assert took < 3 + 1 + 1.5, f"deadline 3s, took {took:.1f}s (interpreter start included)"


def test_peers_missing_gives_exit_5_naming_who_is_there(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves too few members end in exit 5 with a line saying who is there and how many miss."""
    result = run_agent(member_args(tmp_path, cluster, 1, expect=3, timeout=2), consul.env())
    assert result.code == 5, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "1 of 3 members here (1=127.0.0.11)" in last and "missing 2" in last
    assert not (tmp_path / "m1" / "members.conf").exists()


def test_token_lacking_rights_gives_exit_4(
    consul_acl: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves an ACL token without key:write ends in exit 4 with the missing permission named."""
    token = consul_acl.create_token(
        'key_prefix "" { policy = "read" }\nservice_prefix "" { policy = "write" }'
    )
    env = {"CONSUL_HTTP_ADDR": consul_acl.http_addr, "CONSUL_HTTP_TOKEN": token}
    result = run_agent(member_args(tmp_path, cluster, 1, expect=1), env)
    assert result.code == 4, result.stderr
    assert "lacks permission 'key:write'" in result.stderr
    assert token not in result.stderr


def test_hostile_registration_never_reaches_a_file(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves an address with a newline and '=' is not a member: skipped with a warning naming
    it, named again when the deadline passes (exit 5), and nothing is written."""
    consul.register(cluster, f"{cluster}-evil", "10.0.0.9\nmember.99=evil", 7000)
    result = run_agent(member_args(tmp_path, cluster, 1, expect=2, timeout=3), consul.env())
    assert result.code == 5, result.stderr
    assert "not a member, skipped" in result.stderr
    assert f"{cluster}-evil" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "m1" / "members.conf").exists()


def test_one_hostile_registration_cannot_stop_the_cluster(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a member forms its cluster around a hostile registration, which never reaches
    the file."""
    consul.register(cluster, f"{cluster}-evil", "10.0.0.9\nmember.99=evil", 7000)
    result = run_agent(member_args(tmp_path, cluster, 1, expect=1), consul.env())
    assert result.code == 0, result.stderr
    assert f"{cluster}-evil" in result.stderr and "not a member, skipped" in result.stderr
    assert "evil" not in (tmp_path / "m1" / "members.conf").read_text()


def test_command_not_found_changes_nothing(
    consul: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves a missing command fails with 127 before any claim or file is made."""
    args = member_args(tmp_path, cluster, 1, expect=1)
    args[args.index("--") + 1 :] = ["no-such-server-binary"]
    result = run_agent(args, consul.env())
    assert result.code == 127
    assert consul.kv_keys(f"cluster-bootstrap/{cluster}/") == []
    assert not (tmp_path / "m1" / "members.conf").exists()


def test_render_dry_run_changes_nothing(consul: ConsulAgent, cluster: str, tmp_path: Path) -> None:
    """Proves render --dry-run prints the would-be config and writes neither KV nor files."""
    args = member_args(tmp_path, cluster, 1, expect=3)
    args = ["render", *args[: args.index("--")], "--dry-run"]
    result = run_agent(args, consul.env())
    assert result.code == 0, result.stderr
    assert "# member id 1" in result.stdout and "member.1=127.0.0.11:7000" in result.stdout
    assert "MY_ID=1" in result.stdout
    status = result.stdout.splitlines()[0]  # 0 of 3 here: the header must not hide it
    assert status.startswith(f"# status: {cluster}: 0 of 3 members here"), status
    assert "missing 3" in status and "a start would wait" in status
    assert consul.kv_keys(f"cluster-bootstrap/{cluster}/") == []
    assert not (tmp_path / "m1" / "members.conf").exists()


def test_discover_prints_members_as_json(consul: ConsulAgent, cluster: str) -> None:
    """Proves discover lists a service's registrations as JSON (what JSON.sh was used for)."""
    consul.register(cluster, f"{cluster}-a", "127.0.0.21", 9092, Tags=["kafka"], Meta={"az": "a"})
    consul.register(cluster, f"{cluster}-b", "127.0.0.22", 9092, Tags=["kafka"])
    consul.register(cluster, f"{cluster}-c", "127.0.0.23", 9092)
    result = run_agent(["discover", cluster, "--tag", "kafka"], consul.env())
    assert result.code == 0, result.stderr
    members = json.loads(result.stdout)
    assert [(m["address"], m["port"]) for m in members] == [
        ("127.0.0.21", 9092),
        ("127.0.0.22", 9092),
    ]
    assert members[0]["meta"] == {"az": "a"}
    result = run_agent(["discover", cluster, "--meta", "az=a"], consul.env())
    assert [m["address"] for m in json.loads(result.stdout)] == ["127.0.0.21"]


def test_doctor_masks_the_token(consul_acl: ConsulAgent, cluster: str, tmp_path: Path) -> None:
    """Proves doctor reports reachability and token source without printing the token."""
    args = member_args(tmp_path, cluster, 1, expect=1)
    args = ["doctor", *args[: args.index("--")]]
    result = run_agent(args, consul_acl.env())
    assert result.code == 0, result.stderr
    assert "consul.reachable: yes" in result.stdout
    assert "consul.token: *** (" in result.stdout and "CONSUL_HTTP_TOKEN" in result.stdout
    assert consul_acl.acl_token not in result.stdout + result.stderr


def test_consul_token_does_not_reach_the_server(
    consul_acl: ConsulAgent, cluster: str, tmp_path: Path
) -> None:
    """Proves the exec'd server gets the rendered env but not the agent's Consul token."""
    args = member_args(tmp_path, cluster, 1, expect=1)
    seen = tmp_path / "server-env"
    args[args.index("--") + 1 :] = ["sh", "-c", f"env > {seen}"]
    result = run_agent(args, consul_acl.env())
    assert result.code == 0, result.stderr
    env = seen.read_text()
    assert "MY_ID=1" in env
    assert "CONSUL_HTTP_TOKEN" not in env and consul_acl.acl_token not in env
