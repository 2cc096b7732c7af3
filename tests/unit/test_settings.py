"""Settings: layer precedence, Consul's own environment rules, one error listing every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.errors import UsageError
from bootstrap.settings import Flags, ServiceDefaults, load_consul_settings, load_settings

ZK = ServiceDefaults("zookeeper", {"client": 2181, "quorum": 2888, "election": 3888})


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    """Proves flags beat environment, which beats the file, which beats defaults."""
    conf = tmp_path / "c.yaml"
    conf.write_text("expect: 5\ntimeout: 20\ncluster: fromfile\nkv_prefix: fromfile\n")
    env = {"CLUSTER_BOOTSTRAP_TIMEOUT": "30", "CLUSTER_BOOTSTRAP_CLUSTER": "fromenv"}
    s = load_settings(
        ZK, ["x"], env, Flags(config=str(conf), values={"cluster": "fromflag", "address": "h1"})
    )
    assert (s.expect, s.timeout_s, s.cluster, s.kv_prefix) == (5, 30.0, "fromflag", "fromfile")
    assert s.ports == {"client": 2181, "quorum": 2888, "election": 3888}


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Proves several bad values give one UsageError naming each with its origin."""
    conf = tmp_path / "c.yaml"
    conf.write_text("expect: many\nbogus: 1\n")
    env = {"CLUSTER_BOOTSTRAP_TIMEOUT": "-3", "NOMAD_HOST_PORT_client": "70000"}
    with pytest.raises(UsageError) as err:
        load_settings(ZK, ["x"], env, Flags(config=str(conf), ports=["nope=1"]))
    text = str(err.value)
    for expected in (
        "expect: 'many'",
        "bogus: unknown setting",
        "CLUSTER_BOOTSTRAP_TIMEOUT",
        "NOMAD_HOST_PORT_client: port 'client'",
        "unknown port label 'nope'",
        "address: missing",
    ):
        assert expected in text
    assert len(err.value.problems) == 6


def test_broken_yaml_is_one_clear_problem(tmp_path: Path) -> None:
    """Proves a YAML syntax error is reported with its line, not a traceback."""
    conf = tmp_path / "c.yaml"
    conf.write_text("expect: 3\nports: [unclosed\n")
    with pytest.raises(UsageError, match=r"not valid YAML \(line \d+\)"):
        load_settings(ZK, ["x"], {}, Flags(config=str(conf), values={"address": "h"}))


def test_hostile_yaml_tags_are_refused(tmp_path: Path) -> None:
    """Proves safe_load refuses Python object tags instead of running them."""
    conf = tmp_path / "c.yaml"
    conf.write_text("expect: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_settings(ZK, ["x"], {}, Flags(config=str(conf), values={"address": "h"}))


def test_nomad_environment_gives_address_ports_and_name() -> None:
    """Proves NOMAD_IP/HOST_PORT/PORT/ALLOC_NAME/ALLOC_INDEX are read as documented."""
    env = {
        "NOMAD_IP_client": "10.1.2.3",
        "NOMAD_HOST_PORT_client": "21810",
        "NOMAD_PORT_client": "2181",
        "NOMAD_ALLOC_NAME": "zk.zk[2]",
        "NOMAD_ALLOC_INDEX": "2",
    }
    s = load_settings(ZK, ["x"], env, Flags(values={"expect": "3"}))
    assert s.address == "10.1.2.3"
    assert s.ports["client"] == 21810 and s.bind_ports["client"] == 2181
    assert s.member_name == "zk.zk[2]" and s.alloc_index == 2


def test_consul_token_file_wins_over_token(tmp_path: Path) -> None:
    """Proves CONSUL_HTTP_TOKEN_FILE beats CONSUL_HTTP_TOKEN, as in Consul's CLI."""
    token_file = tmp_path / "token"
    token_file.write_text("from-file-token\n")
    env = {"CONSUL_HTTP_TOKEN": "from-env-token", "CONSUL_HTTP_TOKEN_FILE": str(token_file)}
    consul = load_consul_settings(env)
    assert consul.token == "from-file-token"
    assert "from-file-token" not in repr(consul)


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("10.0.0.1:8501", ("http", "10.0.0.1", 8501, None)),
        ("https://consul.local:8501", ("https", "consul.local", 8501, None)),
        ("unix:///run/consul.sock", ("unix", "localhost", 0, "/run/consul.sock")),
        ("[::1]:8500", ("http", "::1", 8500, None)),
    ],
)
def test_consul_http_addr_forms(addr: str, expected: tuple[object, ...]) -> None:
    """Proves every CONSUL_HTTP_ADDR form Consul's CLI takes is understood."""
    c = load_consul_settings({"CONSUL_HTTP_ADDR": addr})
    assert (c.scheme, c.host, c.port, c.socket_path) == expected


def test_consul_ssl_switches_scheme_and_verify(tmp_path: Path) -> None:
    """Proves CONSUL_HTTP_SSL, CONSUL_HTTP_SSL_VERIFY, namespace and partition are read."""
    c = load_consul_settings(
        {
            "CONSUL_HTTP_ADDR": "127.0.0.1:8501",
            "CONSUL_HTTP_SSL": "true",
            "CONSUL_HTTP_SSL_VERIFY": "false",
            "CONSUL_NAMESPACE": "team",
            "CONSUL_PARTITION": "p1",
            "CONSUL_TLS_SERVER_NAME": "server.dc1.consul",
        }
    )
    assert (c.scheme, c.verify, c.namespace, c.partition) == ("https", False, "team", "p1")
    assert c.tls_server_name == "server.dc1.consul"


def test_consul_bad_values_are_collected(tmp_path: Path) -> None:
    """Proves a bad address, missing CA file and half a client cert are all reported."""
    env = {
        "CONSUL_HTTP_ADDR": "ftp://x",
        "CONSUL_CACERT": str(tmp_path / "missing.pem"),
        "CONSUL_CLIENT_CERT": str(tmp_path / "c.pem"),
        "CONSUL_HTTP_SSL_VERIFY": "maybe",
    }
    with pytest.raises(UsageError) as err:
        load_consul_settings(env)
    assert len(err.value.problems) == 5


def test_missing_token_file_is_an_error(tmp_path: Path) -> None:
    """Proves an unreadable token file stops the start instead of running without a token."""
    with pytest.raises(UsageError, match="CONSUL_HTTP_TOKEN_FILE: cannot read token file"):
        load_consul_settings({"CONSUL_HTTP_TOKEN_FILE": str(tmp_path / "nope")})


def test_set_options_are_yaml_values() -> None:
    """Proves --set key=value reads the value as YAML and a missing '=' is a problem."""
    s = load_settings(
        ZK,
        ["x"],
        {},
        Flags(values={"expect": "1", "address": "h"}, options=["a=3", "b=[1, 2]", "c=text"]),
    )
    assert s.options == {"a": 3, "b": [1, 2], "c": "text"}
    with pytest.raises(UsageError, match="is not key=value"):
        load_settings(ZK, ["x"], {}, Flags(values={"expect": "1", "address": "h"}, options=["x"]))


def test_meta_filter_from_flags_file_and_env(tmp_path: Path) -> None:
    """Proves meta filters come as key=value pairs from flags/env or a mapping in the file."""
    conf = tmp_path / "c.yaml"
    conf.write_text("meta: {az: a, rack: '7'}\n")
    base = {"expect": "1", "address": "h"}
    assert load_settings(ZK, ["x"], {}, Flags(config=str(conf), values=base)).meta == {
        "az": "a",
        "rack": "7",
    }
    env = {"CLUSTER_BOOTSTRAP_META": "az=b,role=zk"}
    assert load_settings(ZK, ["x"], env, Flags(values=base)).meta == {"az": "b", "role": "zk"}
    with pytest.raises(UsageError, match="--meta"):
        load_settings(ZK, ["x"], {}, Flags(values={**base, "meta": "=x"}))


def test_garbage_ca_file_is_a_settings_error(tmp_path: Path) -> None:
    """Proves a CONSUL_CACERT that holds no certificate fails at settings time, naming the file."""
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(UsageError, match=r"CONSUL_CACERT: '.*ca\.pem' holds no usable CA") as err:
        load_consul_settings({"CONSUL_CACERT": str(garbage)})
    assert err.value.exit_code == 2 and len(err.value.problems) == 1
