"""A corpus of bad inputs, each through the installed console script.

Every case must end the same way: exactly one ``cluster-bootstrap: error:`` line (the last
line; any line before it is one of ours, never a traceback), the exit code the README's table
documents, and every file on disk as it was before the run, with no temp file left behind.
Each case also names a piece of its error line, so it cannot pass by failing for another reason.

Consul's side comes from a real agent (``consul``, ``consul_acl``) wherever the agent accepts
the bad value, and from ``HostileAgent`` (a real HTTP server answering what a broken or hostile
agent would) where a real agent would never say such a thing.
"""

from __future__ import annotations

import contextlib
import http.client
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from adapters import SERVICES, service_class
from bootstrap.model import Claim
from bootstrap.options import OUT_OF_RANGE, WRONG_TYPE
from testbed.consul import ConsulAgent
from testbed.procs import free_port
from tests.reliability.hostile_agent import Answer, HostileAgent, health_entry, kv_entry
from tests.reliability.outcome import (
    assert_disk_unchanged,
    assert_failed,
    run_limited,
    snapshot,
)
from tests.unit.test_options import every_refused, options_for

ADDRESS = "127.0.0.11"
ZK_PORTS = {"client": 2181, "quorum": 2888, "election": 3888}
KNOWN_ZOO_CFG = "# a zoo.cfg from an earlier start: a failed start leaves it byte for byte\n"
KNOWN_MEMBERS = "member.1=127.0.0.11:8000\n"
TEN_MB = 10 * 1024 * 1024
LONGEST_ERROR_LINE = 4096  # a huge input must not come back as a huge log line

# One flow sequence whose last item expands to 10**9 strings if anything walks it.
BILLION_LAUGHS = (
    '[&l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"], '
    + ", ".join(f"&l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 9))
    + "]"
)


@dataclass
class Bed:
    """One case's world: its directories, its cluster, its agent, its environment."""

    root: Path
    cluster: str
    env: dict[str, str] = field(default_factory=dict)
    consul: ConsulAgent | None = None
    fake: HostileAgent | None = None

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def lay_out(self) -> None:
        """What an earlier start left: zoo.cfg, myid and a template's output."""
        self.conf.mkdir()
        self.data.mkdir()
        (self.conf / "zoo.cfg").write_text(KNOWN_ZOO_CFG)
        (self.conf / "members.conf").write_text(KNOWN_MEMBERS)
        (self.data / "myid").write_text("1\n")

    def config(self, text: str | bytes) -> str:
        path = self.root / "settings.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return str(path)

    def zk(self, *extra: str, expect: int | None = 1) -> list[str]:
        """A ZooKeeper start that would succeed but for ``extra`` (later flags win).

        ``expect=None`` leaves ``--expect`` out, for cases that set it elsewhere.
        """
        return [
            "zookeeper",
            "--cluster",
            self.cluster,
            *(["--expect", str(expect)] if expect is not None else []),
            "--timeout",
            "5",
            "--address",
            ADDRESS,
            "--data-dir",
            str(self.data),
            "--conf-dir",
            str(self.conf),
            *extra,
            "--",
            "true",
        ]

    def template(self, options: dict[str, object], *extra: str) -> list[str]:
        """A template start rendering ``options`` (members.conf in conf/ unless told)."""
        config = self.config(yaml.safe_dump({"options": options}))
        args = self.zk("--config", config, *extra)
        args[0] = "template"
        return args

    def register_me(self, port: int = 2181) -> None:
        """Register this member in the real agent, as Nomad would."""
        assert self.consul is not None
        self.consul.register(self.cluster, f"{self.cluster}-me", ADDRESS, port)

    def put_claim(self, member_id: int, value: str | dict[str, object]) -> None:
        assert self.consul is not None
        text = value if isinstance(value, str) else json.dumps(value)
        self.consul.kv_put(f"cluster-bootstrap/{self.cluster}/ids/{member_id}", text)


@dataclass(frozen=True)
class Case:
    name: str
    code: int
    says: tuple[str, ...]  # one of these is in the error line: it failed for its own reason
    agent: str  # none | consul | acl | hostile
    prepare: Callable[[Bed], list[str]]
    huge: bool = False


CASES: list[Case] = []


def case(
    code: int, *says: str, agent: str = "none", huge: bool = False
) -> Callable[[Callable[[Bed], list[str]]], Callable[[Bed], list[str]]]:
    def register(prepare: Callable[[Bed], list[str]]) -> Callable[[Bed], list[str]]:
        name = prepare.__name__.replace("_", "-")
        CASES.append(Case(name, code, says, agent, prepare, huge))
        return prepare

    return register


# -- the config file ----------------------------------------------------------------------


@case(2, "not valid YAML (line")
def yaml_broken(bed: Bed) -> list[str]:
    return bed.zk("--config", bed.config("cluster: x\nexpect: [3\n"))


@case(2, "cannot read")
def yaml_not_utf8(bed: Bed) -> list[str]:
    return bed.zk("--config", bed.config(b"expect: 3\ncluster: \xff\xfe\n"))


@case(2, "cannot read")
def yaml_missing_file(bed: Bed) -> list[str]:
    return bed.zk("--config", str(bed.root / "no-such.yaml"))


@case(2, "not valid YAML")
def yaml_python_object_tag(bed: Bed) -> list[str]:
    evil = f'expect: !!python/object/apply:os.system ["touch {bed.root}/pwned"]\n'
    return bed.zk("--config", bed.config(evil))


@case(2, "not valid YAML")
def yaml_python_name_tag(bed: Bed) -> list[str]:
    return bed.zk("--config", bed.config("expect: !!python/name:os.system\n"))


@case(2, "settings.yaml")
def yaml_billion_laughs_in_expect(bed: Bed) -> list[str]:
    return bed.zk("--config", bed.config(f"expect: {BILLION_LAUGHS}\n"), expect=None)


@case(2, "settings.yaml")
def yaml_billion_laughs_in_tags(bed: Bed) -> list[str]:
    return bed.zk("--config", bed.config(f"tags: {BILLION_LAUGHS}\n"))


@case(2, "settings.yaml", "options.tick_time")
def yaml_billion_laughs_in_an_option(bed: Bed) -> list[str]:
    return bed.zk("--config", bed.config(f"options: {{tick_time: {BILLION_LAUGHS}}}\n"))


@case(2, "must be a mapping of settings")
def yaml_list_at_the_top(bed: Bed) -> list[str]:
    return bed.zk("--config", bed.config("- expect: 3\n- cluster: x\n"))


@case(2, "must be a mapping of settings")
def yaml_scalar_at_the_top(bed: Bed) -> list[str]:
    return bed.zk("--config", bed.config("just a sentence\n"))


@case(2, "consul: must be a mapping")
def yaml_consul_not_a_mapping(bed: Bed) -> list[str]:
    return bed.zk("--config", bed.config("consul: 127.0.0.1:8500\n"))


@case(2, "settings.yaml", huge=True)
def yaml_ten_megabytes(bed: Bed) -> list[str]:
    return bed.zk("--config", bed.config("consul_service: " + "a" * TEN_MB + "\n"))


@case(2, "unknown setting")
def unknown_setting(bed: Bed) -> list[str]:
    return bed.zk("--config", bed.config("expcet: 3\n"))


@case(2, "unknown key 'adress'")
def unknown_consul_setting(bed: Bed) -> list[str]:
    return bed.zk("--config", bed.config("consul: {adress: 127.0.0.1}\n"))


# -- the command line -----------------------------------------------------------------------


@case(2, "unknown service 'zookeper'")
def unknown_service(bed: Bed) -> list[str]:
    return ["zookeper", *bed.zk()[1:]]


@case(2, "missing the command after '--'")
def missing_command(bed: Bed) -> list[str]:
    return bed.zk()[:-2]


@case(2, "missing the command after '--'")
def empty_command_after_separator(bed: Bed) -> list[str]:
    return bed.zk()[:-1]


@case(2, "render takes no command")
def command_given_to_render(bed: Bed) -> list[str]:
    return ["render", *bed.zk()]


@case(2, "--dry-run goes with render")
def dry_run_without_render(bed: Bed) -> list[str]:
    return bed.zk("--dry-run")


@case(2, "--expct")
def wrong_flag(bed: Bed) -> list[str]:
    return bed.zk("--expct", "3")


@case(2, "--exp")
def abbreviated_flag(bed: Bed) -> list[str]:
    return bed.zk("--exp", "3")


def _flag_case(name: str, flag: str, value: str, says: str) -> None:
    def prepare(bed: Bed) -> list[str]:
        return bed.zk(flag, value)

    prepare.__name__ = name
    case(2, says)(prepare)


for _name, _flag, _value, _says in [
    ("expect_zero", "--expect", "0", "--expect"),
    ("expect_negative", "--expect", "-1", "--expect"),
    ("expect_not_a_number", "--expect", "abc", "--expect"),
    ("expect_fraction", "--expect", "1.5", "--expect"),
    ("timeout_zero", "--timeout", "0", "--timeout"),
    ("timeout_negative", "--timeout", "-5", "--timeout"),
    ("timeout_not_a_number", "--timeout", "abc", "--timeout"),
    ("timeout_nan", "--timeout", "nan", "--timeout"),
    ("timeout_infinite", "--timeout", "inf", "--timeout"),
    ("port_zero", "--port", "client=0", "port 'client'"),
    ("port_70000", "--port", "client=70000", "port 'client'"),
    ("port_not_a_number", "--port", "client=abc", "port 'client'"),
    ("port_without_value", "--port", "client", "port 'client'"),
    ("port_unknown_label", "--port", "klient=2181", "unknown port label 'klient'"),
    ("address_with_newline", "--address", "10.0.0.1\nserver.9=6.6.6.6", "--address"),
    ("address_with_equals", "--address", "10.0.0.1=x", "--address"),
    ("address_with_space", "--address", "10.0.0.1 x", "--address"),
    ("member_name_with_newline", "--member-name", "m1\nm2", "--member-name"),
    ("cluster_with_slash", "--cluster", "a/../b", "--cluster"),
    ("cluster_with_trailing_newline", "--cluster", "zk\n", "--cluster"),
    ("kv_prefix_climbing", "--kv-prefix", "../other", "--kv-prefix"),
    ("tag_with_newline", "--tag", "a\nb", "--tag"),
    ("consul_address_bad_port", "--consul-address", "http://127.0.0.1:99999", "invalid port"),
    ("set_without_value", "--set", "tick_time", "not key=value"),
    ("set_unknown_option", "--set", "tickTime=3", "unknown ZooKeeper option"),
    ("set_reserved_zoo_cfg_key", "--set", "extra={dataDir: /evil}", "shapes the ensemble"),
    ("set_line_injection", "--set", 'extra={a: "b\\nserver.9=x"}', "not a zoo.cfg line"),
]:
    _flag_case(_name, _flag, _value, _says)


@case(2, "CLUSTER_BOOTSTRAP_EXPECT")
def environment_expect_not_a_number(bed: Bed) -> list[str]:
    bed.env["CLUSTER_BOOTSTRAP_EXPECT"] = "three"
    args = bed.zk()
    del args[3:5]  # no --expect flag: the environment's value is the one in force
    return args


@case(2, "NOMAD_ALLOC_INDEX")
def nomad_alloc_index_negative(bed: Bed) -> list[str]:
    bed.env["NOMAD_ALLOC_INDEX"] = "-1"
    return bed.zk()


@case(2, "token file")
def consul_token_file_missing(bed: Bed) -> list[str]:
    bed.env["CONSUL_HTTP_TOKEN_FILE"] = str(bed.root / "no-such-token")
    return bed.zk()


# -- every adapter option, generated from the adapters' declarations ------------------------


def _option_case(key: str, name: str, label: str, number: int, value: object) -> None:
    def prepare(bed: Bed) -> list[str]:
        options = options_for(key, name, value)
        for spec in options.get("files", []) if isinstance(options.get("files"), list) else []:
            if isinstance(spec, dict) and isinstance(spec.get("path"), str):
                spec["path"] = str(bed.root / spec["path"])  # never outside the case's own dir
        args = bed.zk("--config", bed.config(yaml.safe_dump({"options": options})))
        args[0] = key
        return args

    prepare.__name__ = f"option_{key}_{name}_{label.replace('-', '_')}_{number}"
    case(2, f"options.{name}")(prepare)
    OPTION_CASES.add((key, name, label))


OPTION_CASES: set[tuple[str, str, str]] = set()  # (adapter, option, wrong-type|out-of-range)
for _number, (_key, _option, _label, _value) in enumerate(every_refused()):
    _option_case(_key, _option, _label, _number, _value)


@case(2, "CONSUL_CACERT", "no usable CA certificate")
def consul_ca_file_garbage(bed: Bed) -> list[str]:
    garbage = bed.root / "ca.pem"
    garbage.write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    )
    bed.env["CONSUL_CACERT"] = str(garbage)
    return bed.zk()


@case(2, "CONSUL_CLIENT_CERT", "not a usable client certificate")
def consul_client_cert_garbage(bed: Bed) -> list[str]:
    garbage = bed.root / "client.pem"
    garbage.write_text("not a certificate\n")
    bed.env["CONSUL_CLIENT_CERT"] = str(garbage)
    bed.env["CONSUL_CLIENT_KEY"] = str(garbage)
    return bed.zk()


# -- what is on disk ------------------------------------------------------------------------


def _myid_case(name: str, content: bytes, says: str, agent: str = "none") -> None:
    def prepare(bed: Bed) -> list[str]:
        (bed.data / "myid").write_bytes(content)
        return bed.zk()

    prepare.__name__ = name
    case(7, says, agent=agent)(prepare)


for _name, _content, _says, _agent in [
    ("myid_garbage", b"abc\n", "not a member id", "none"),
    ("myid_empty", b"", "not a member id", "none"),
    ("myid_negative", b"-1\n", "not a member id", "none"),
    ("myid_two_lines", b"1\n2\n", "not a member id", "none"),
    ("myid_binary", b"\xff\xfe\x00\x01", "cannot read", "none"),
    ("myid_unicode_digit", "٣\n".encode(), "cannot read", "none"),
    ("myid_zero", b"0\n", "outside 1..255", "consul"),
    ("myid_too_big", b"256\n", "outside 1..255", "consul"),
    ("myid_enormous", b"9" * 40 + b"\n", "outside 1..255", "consul"),
]:
    _myid_case(_name, _content, _says, _agent)


@case(7, "cannot read")
def myid_is_a_directory(bed: Bed) -> list[str]:
    (bed.data / "myid").unlink()
    (bed.data / "myid").mkdir()
    return bed.zk()


@case(7, "cannot read")
def data_dir_is_a_file(bed: Bed) -> list[str]:
    (bed.root / "not-a-dir").write_text("a file where the data directory should be\n")
    return bed.zk("--data-dir", str(bed.root / "not-a-dir"))


@case(6, "is not writable", agent="consul")
def conf_dir_under_a_file(bed: Bed) -> list[str]:
    bed.register_me()
    (bed.root / "blocker").write_text("a file where a directory should be\n")
    return bed.zk("--conf-dir", str(bed.root / "blocker" / "conf"))


@case(6, "cannot write", agent="consul")
def second_file_cannot_be_written(bed: Bed) -> list[str]:
    """The first file's directory is fine, the second's is not: neither may change."""
    bed.register_me(8000)
    blocker = bed.root / "blocker"
    blocker.write_text("a file where a directory should be\n")
    blocker.chmod(0o755)  # passes an access() check, yet nothing can be created under it
    files = [
        {"path": str(bed.conf / "members.conf"), "content": "member.{{ me.member_id }}\n"},
        {"path": str(blocker / "peers.conf"), "content": "{{ members | length }}\n"},
    ]
    return bed.template({"files": files})


@case(2, "--data-dir", agent="consul")
def data_dir_with_newline(bed: Bed) -> list[str]:
    bed.register_me()
    evil = bed.root / "d\nserver.99=6.6.6.6:2888:3888;2181"
    return bed.zk("--data-dir", str(evil))


@case(2, "--data-dir", agent="consul")
def data_dir_with_newline_and_a_member_name(bed: Bed) -> list[str]:
    """As under Nomad, where the member name comes from the allocation."""
    bed.register_me()
    evil = bed.root / "d\nserver.99=6.6.6.6:2888:3888;2181"
    return bed.zk("--data-dir", str(evil), "--member-name", "zk-1")


# -- Consul refuses (a real agent with ACLs on, default deny) --------------------------------


@case(4, "403", agent="acl")
def acl_token_without_rights(bed: Bed) -> list[str]:
    assert bed.consul is not None
    rules = f'# {bed.cluster}\nnode_prefix "" {{ policy = "read" }}'  # unique: one policy each
    bed.env["CONSUL_HTTP_TOKEN"] = bed.consul.create_token(rules)
    return bed.zk()


@case(4, "403", agent="acl")
def acl_token_unknown(bed: Bed) -> list[str]:
    bed.env["CONSUL_HTTP_TOKEN"] = "00000000-0000-4000-8000-000000000000"
    return bed.zk()


@case(4, "403", agent="acl")
def acl_anonymous(bed: Bed) -> list[str]:
    return bed.zk()


# -- what other members registered (a real agent accepts all of these) ----------------------


def _registration_case(name: str, address: str, port: int) -> None:
    def prepare(bed: Bed) -> list[str]:
        assert bed.consul is not None
        bed.consul.register(bed.cluster, f"{bed.cluster}-evil", address, port)
        return bed.zk("--timeout", "2", expect=2)

    prepare.__name__ = name
    # Not a member (one bad entry must not stop a cluster): the deadline names it, exit 5.
    case(5, "-evil", agent="consul")(prepare)


for _name, _address, _port in [
    ("registered_address_with_newline", "10.0.0.9\nserver.99=6.6.6.6:2888:3888;2181", 2181),
    ("registered_address_with_equals", "10.0.0.9=evil", 2181),
    ("registered_address_with_semicolon", "10.0.0.9;2181", 2181),
    ("registered_address_with_space", "10.0.0.9 evil", 2181),
    ("registered_address_with_colon", "10.0.0.9:2181", 2181),
    ("registered_address_unicode", "bücher.example", 2181),
    ("registered_address_trailing_newline", "10.0.0.9\n", 2181),
    ("registered_address_ipv6_scope_with_junk", "fe80::1%eth0;x=1 y", 2181),
    ("registered_address_too_long", "a." * 200 + "example", 2181),
    ("registered_port_zero", "10.0.0.9", 0),
    ("registered_port_70000", "10.0.0.9", 70000),
    ("registered_port_negative", "10.0.0.9", -1),
]:
    _registration_case(_name, _address, _port)


@case(5, "-evil", agent="consul")
def claimed_and_registered_address_injecting_a_server_line(bed: Bed) -> list[str]:
    """A second member whose claim and registration agree on an address carrying a line."""
    assert bed.consul is not None
    evil = "fe80::1%x\nserver.99=6.6.6.6:2888:3888;2181"
    bed.register_me()
    bed.put_claim(2, Claim(2, "evil", evil, ZK_PORTS, bed.cluster).to_json())
    bed.consul.register(bed.cluster, f"{bed.cluster}-evil", evil, 2181)
    return bed.zk("--timeout", "2", expect=2)


# -- claims in Consul KV (the id on this member's disk is 1) ---------------------------------


def _claim_case(name: str, claim: str | dict[str, object], says: str) -> None:
    def prepare(bed: Bed) -> list[str]:
        bed.put_claim(1, claim)
        return bed.zk()

    prepare.__name__ = name
    case(7, says, agent="consul")(prepare)


_GOOD_CLAIM = json.loads(Claim(1, "other", "127.0.0.12", ZK_PORTS).to_json())
for _name, _claim, _says in [
    ("claim_owned_by_another_member", {**_GOOD_CLAIM, "owner": "member-elsewhere"}, "elsewhere"),
    ("claim_not_json", "server.1=evil", "unusable"),
    ("claim_is_a_list", "[1, 2, 3]", "unusable"),
    ("claim_port_70000", {**_GOOD_CLAIM, "ports": {**ZK_PORTS, "client": 70000}}, "unusable"),
    ("claim_port_text", {**_GOOD_CLAIM, "ports": {**ZK_PORTS, "quorum": "abc"}}, "unusable"),
    ("claim_port_zero", {**_GOOD_CLAIM, "ports": {**ZK_PORTS, "election": 0}}, "unusable"),
    ("claim_address_with_newline", {**_GOOD_CLAIM, "address": "10.0.0.9\nx=1"}, "unusable"),
    ("claim_owner_not_printable", {**_GOOD_CLAIM, "owner": "a\x00b"}, "unusable"),
]:
    _claim_case(_name, _claim, _says)


# -- shared values in Consul KV --------------------------------------------------------------


def _shared_case(name: str, value: bytes) -> None:
    def prepare(bed: Bed) -> list[str]:
        assert bed.consul is not None
        bed.register_me(8000)
        connection = http.client.HTTPConnection("127.0.0.1", bed.consul.http_port, timeout=10)
        try:  # raw bytes: the test bed's client would send text
            connection.request("PUT", f"/v1/kv/cluster-bootstrap/{bed.cluster}/shared/token", value)
            assert connection.getresponse().read().strip() == b"true"
        finally:
            connection.close()
        files = [{"path": str(bed.conf / "members.conf"), "content": "{{ shared.token }}\n"}]
        return bed.template({"files": files, "shared": {"token": {"secret": False}}})

    prepare.__name__ = name
    case(6, "shared/token", agent="consul")(prepare)


for _name, _value in [
    ("shared_value_with_nul", b"abc\x00def"),
    ("shared_value_with_newline", b"abc\nserver.9=evil"),
    ("shared_value_too_long", b"a" * 5000),
    ("shared_value_not_utf8", b"\xff\xfe\xfd\xfc"),
]:
    _shared_case(_name, _value)


# -- answers no real agent gives (a hostile HTTP server) -------------------------------------


def _hostile_case(
    name: str,
    code: int,
    says: str,
    method: str,
    path: str,
    answer: Answer,
    *,
    timeout: str = "5",
    huge: bool = False,
) -> None:
    def prepare(bed: Bed) -> list[str]:
        assert bed.fake is not None
        bed.fake.answer(method, path, answer)
        if path.startswith("/v1/health/"):
            # A first start: one with an id on disk restarts from the roster (or builds it from
            # the claims) without reading the registrations at all.
            (bed.data / "myid").unlink()
        return bed.zk("--timeout", timeout)

    prepare.__name__ = name
    case(code, says, agent="hostile", huge=huge)(prepare)


_ENTRY = kv_entry("cluster-bootstrap/x/ids/1", b"{}")
_ENTRY_JSON = json.dumps([_ENTRY]).encode()
for _name, _code, _says, _method, _path, _answer in [
    ("agent_answers_500", 3, "500", "GET", "/v1/", Answer(500, b"rpc error: No cluster leader")),
    ("kv_not_json", 9, "not valid", "GET", "/v1/kv/", Answer(body=b"<html>hi</html>")),
    ("kv_truncated_json", 9, "not valid", "GET", "/v1/kv/", Answer(body=_ENTRY_JSON[:-20])),
    ("kv_empty_body", 9, "not valid", "GET", "/v1/kv/", Answer(body=b"")),
    ("kv_object_not_list", 9, "not valid", "GET", "/v1/kv/", Answer.json({"Key": "a"})),
    ("kv_list_of_strings", 9, "not valid", "GET", "/v1/kv/", Answer.json(["a", "b"])),
    ("kv_entry_without_key", 9, "no key", "GET", "/v1/kv/", Answer.json([{"Value": None}])),
    (
        "kv_value_not_base64",
        9,
        "not valid",
        "GET",
        "/v1/kv/",
        Answer.json([{**_ENTRY, "Value": "!!! not base64 !!!"}]),
    ),
    (
        "kv_modify_index_text",
        9,
        "ModifyIndex",
        "GET",
        "/v1/kv/",
        Answer.json([{**_ENTRY, "ModifyIndex": "5"}]),
    ),
    ("kv_missing_index_header", 9, "not valid", "GET", "/v1/kv/", Answer(404, headers={})),
    (
        "kv_index_not_a_number",
        9,
        "X-Consul-Index",
        "GET",
        "/v1/kv/",
        Answer(404, headers={"X-Consul-Index": "seven"}),
    ),
    (
        "kv_index_negative",
        9,
        "X-Consul-Index",
        "GET",
        "/v1/kv/",
        Answer(404, headers={"X-Consul-Index": "-3"}),
    ),
    ("kv_put_not_a_bool", 9, "true or false", "PUT", "/v1/kv/", Answer.json("maybe")),
    ("kv_put_400", 9, "400", "PUT", "/v1/kv/", Answer(400, b"Request decode failed")),
    (
        "answer_ten_megabytes_with_length",
        9,
        "too big",
        "GET",
        "/v1/kv/",
        Answer(body=b"[" + b" " * TEN_MB + b"]"),
    ),
    (
        "answer_ten_megabytes_streamed",
        9,
        "over",
        "GET",
        "/v1/kv/",
        Answer(body=b"[" + b" " * TEN_MB + b"]", length=False),
    ),
    ("health_not_a_list", 9, "expected a list", "GET", "/v1/health/", Answer.json({"a": 1})),
    ("health_entry_not_object", 9, "not a service", "GET", "/v1/health/", Answer.json([1, 2])),
    (
        "health_index_not_a_number",
        9,
        "X-Consul-Index",
        "GET",
        "/v1/health/",
        Answer(body=b"[]", headers={"X-Consul-Index": "1e9"}),
    ),
    (
        "health_port_not_a_number",
        5,
        "hostile-1",
        "GET",
        "/v1/health/",
        Answer.json([health_entry("x", "hostile-1", "10.0.0.9", "abc")]),
    ),
    (
        "health_address_not_a_string",
        5,
        "hostile-1",
        "GET",
        "/v1/health/",
        Answer.json([health_entry("x", "hostile-1", ["10.0.0.9"], 2181)]),
    ),
]:
    _hostile_case(
        _name,
        _code,
        _says,
        _method,
        _path,
        _answer,
        timeout="2" if _code in (3, 5) else "5",
        huge="megabytes" in _name,
    )


# -- the test --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", CASES, ids=[c.name for c in CASES])
def test_bad_input_fails_cleanly(
    bad: Case, request: pytest.FixtureRequest, tmp_path: Path, cluster: str
) -> None:
    """Proves the input ends in one error line, its documented exit code, and an intact disk."""
    bed = Bed(tmp_path, cluster, {"CONSUL_HTTP_ADDR": f"127.0.0.1:{free_port()}"})
    bed.lay_out()
    with contextlib.ExitStack() as stack:
        if bad.agent in ("consul", "acl"):
            bed.consul = request.getfixturevalue("consul_acl" if bad.agent == "acl" else "consul")
            bed.env = {"CONSUL_HTTP_ADDR": bed.consul.http_addr}  # a token only if the case sets it
        elif bad.agent == "hostile":
            bed.fake = stack.enter_context(HostileAgent())
            bed.env = bed.fake.env()
        args = bad.prepare(bed)
        before = snapshot(tmp_path)
        result = run_limited(args, bed.env)
    line = assert_failed(result, bad.code)
    assert any(piece in line for piece in bad.says), line[:1000]
    assert_disk_unchanged(tmp_path, before)
    if bad.huge:
        assert len(line) <= LONGEST_ERROR_LINE, f"an error line of {len(line)} characters"


def test_every_adapter_option_has_its_cases() -> None:
    """Proves the corpus holds a wrong-type and an out-of-range case for every adapter option."""
    for key in SERVICES:
        option_set = service_class(key).option_set
        assert option_set is not None, key
        for option in option_set:
            for label in (WRONG_TYPE, OUT_OF_RANGE):
                assert (key, option.name, label) in OPTION_CASES, f"{key}.{option.name}: {label}"


def test_corpus_is_large_and_covers_every_documented_failure_code() -> None:
    """Proves the corpus holds 40+ distinct cases reaching exit codes 2, 3, 4, 5, 6, 7 and 9."""
    names = [c.name for c in CASES]
    assert len(names) >= 40 and len(set(names)) == len(names)
    assert {c.code for c in CASES} == {2, 3, 4, 5, 6, 7, 9}
