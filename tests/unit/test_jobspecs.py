"""The Nomad job specs parsed with python-hcl2 and held against the code, so neither drifts.

No Nomad runs here: these checks read the specs. Each task that runs the agent is checked
against its adapter class (port labels, primary port, options) and the settings (environment
names, ``--expect``). The adapters are imported, never restated here.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from bootstrap.cli import SUBCOMMANDS
from bootstrap.ports import ServicePort
from bootstrap.settings import ENV_PREFIX, OWN_KEYS

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "entrypoints" / "nomad").glob("*.nomad.hcl"))
AGENT = "/opt/cluster-bootstrap/bin/cluster-bootstrap"
ADAPTERS = {
    "zookeeper": ("adapters.zookeeper", "ZooKeeperService"),
    "kafka": ("adapters.kafka", "KafkaService"),
    "emqx": ("adapters.emqx", "EmqxService"),
    "template": ("adapters.template", "TemplateService"),
}
OWN_ENV = {ENV_PREFIX + key.upper() for key in OWN_KEYS}


def load_spec(path: Path) -> dict[str, Any]:
    """A spec as plain data, whichever python-hcl2 is installed.

    python-hcl2 8 keeps string quotes and block markers unless told otherwise; 4.x-7.x return
    plain values. ``_plain`` makes both look the same.
    """
    text = path.read_text(encoding="utf-8")
    options = getattr(hcl2, "SerializationOptions", None)
    if options is not None:
        data = hcl2.loads(
            text,
            serialization_options=options(
                strip_string_quotes=True, explicit_blocks=False, with_comments=False
            ),
        )
    else:
        data = hcl2.loads(text)
    plain: dict[str, Any] = _plain(data)
    return plain


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def labelled(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``[{"name": {...}}, ...]`` (labelled blocks) as one mapping name -> body."""
    return {name: body for block in blocks for name, body in block.items()}


def single(blocks: list[dict[str, Any]] | None) -> dict[str, Any]:
    assert blocks and len(blocks) == 1, blocks
    return blocks[0]


def variables(spec: dict[str, Any]) -> dict[str, Any]:
    return {name: body.get("default") for name, body in labelled(spec.get("variable", [])).items()}


def resolved_image(image: str, default_of: dict[str, Any]) -> str:
    """``var.NAME`` (parsed as ``${var.NAME}``) replaced by the variable's default."""
    reference = re.fullmatch(r"\$\{var\.(\w+)\}", image)
    return str(default_of[reference.group(1)]) if reference else image


@dataclass(frozen=True)
class AgentTask:
    """One task that runs cluster-bootstrap, with what its spec says about it."""

    spec: str
    job: str
    group: str
    task: str
    group_body: dict[str, Any]
    body: dict[str, Any]
    image: str
    entrypoint: list[str]
    args: list[str]
    env: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.spec}:{self.group}/{self.task}"

    def split(self) -> tuple[str, str, list[str], list[str]]:
        """(action, service key, options before '--', command after it)."""
        args = list(self.args)
        command: list[str] = []
        if "--" in args:
            cut = args.index("--")
            args, command = args[:cut], args[cut + 1 :]
        action = args.pop(0) if args[0] in SUBCOMMANDS else "run"
        return action, args.pop(0), args, command

    def flag(self, name: str) -> str | None:
        _, _, options, _ = self.split()
        values = [options[i + 1] for i, arg in enumerate(options[:-1]) if arg == name]
        return values[-1] if values else None

    def options(self) -> dict[str, Any]:
        _, _, options, _ = self.split()
        sets = [options[i + 1] for i, arg in enumerate(options[:-1]) if arg == "--set"]
        pairs = (item.partition("=") for item in sets)
        return {key: yaml.safe_load(value) if value else "" for key, _, value in pairs}


def all_tasks(path: Path) -> Iterator[tuple[str, str, str, dict[str, Any], dict[str, Any]]]:
    spec = load_spec(path)
    for job_name, job in labelled(spec["job"]).items():
        for group_name, group in labelled(job["group"]).items():
            for task_name, task in labelled(group["task"]).items():
                yield job_name, group_name, task_name, group, task


def agent_tasks() -> list[AgentTask]:
    found = []
    for path in SPECS:
        default_of = variables(load_spec(path))
        for job, group, task, group_body, body in all_tasks(path):
            config = single(body.get("config"))
            entrypoint = config.get("entrypoint", [])
            if not entrypoint or not entrypoint[0].endswith("cluster-bootstrap"):
                continue
            image = resolved_image(config["image"], default_of)
            env = single(body["env"]) if body.get("env") else {}
            found.append(
                AgentTask(
                    path.name,
                    job,
                    group,
                    task,
                    group_body,
                    body,
                    image,
                    entrypoint,
                    list(config.get("args", [])),
                    env,
                )
            )
    return found


AGENT_TASKS = agent_tasks()


def adapter_class(key: str) -> type[ServicePort]:
    """The adapter for ``key``, imported from its module (a missing module fails the test)."""
    assert key in ADAPTERS, f"no adapter module known for service {key!r}"
    module_name, class_name = ADAPTERS[key]
    cls: type[ServicePort] = getattr(importlib.import_module(module_name), class_name)
    assert cls.key == key
    return cls


def network_labels(group: dict[str, Any]) -> list[str]:
    return list(labelled(single(group.get("network")).get("port", [])))


def test_every_spec_parses_and_runs_the_agent() -> None:
    """Proves the seven specs parse with python-hcl2 and each has a task running the agent."""
    names = {path.name for path in SPECS}
    assert names == {
        "zookeeper.nomad.hcl",
        "kafka.nomad.hcl",
        "kafka-split.nomad.hcl",
        "emqx.nomad.hcl",
        "prestart.nomad.hcl",
        "supervise.nomad.hcl",
        "watch.nomad.hcl",
    }
    assert {task.spec for task in AGENT_TASKS} == names


def test_split_spec_has_three_controllers_and_two_brokers_as_two_services() -> None:
    """Proves kafka-split runs a controllers group of 3 and a brokers group of 2, two services."""
    groups = {t.group: t for t in AGENT_TASKS if t.spec == "kafka-split.nomad.hcl"}
    assert {name: t.group_body["count"] for name, t in groups.items()} == {
        "controllers": 3,
        "brokers": 2,
    }
    services = {single(t.group_body["service"])["name"] for t in groups.values()}
    assert len(services) == 2
    clusters = {t.env["CLUSTER_BOOTSTRAP_CLUSTER"] for t in groups.values()}
    assert len(clusters) == 1, "one cluster: node ids come from one range"


@pytest.mark.parametrize("task", AGENT_TASKS, ids=lambda t: t.id)
def test_service_key_names_an_adapter_and_its_options_are_accepted(task: AgentTask) -> None:
    """Proves the subcommand and service key exist and the adapter accepts the --set options."""
    action, key, _, command = task.split()
    assert action in SUBCOMMANDS
    assert task.entrypoint == [AGENT]
    cls = adapter_class(key)
    cls(task.options())  # raises UsageError on an option the adapter does not know
    assert bool(command) == (action == "run"), "run needs a command after --; render takes none"


@pytest.mark.parametrize("task", AGENT_TASKS, ids=lambda t: t.id)
def test_network_labels_are_exactly_the_adapter_port_labels(task: AgentTask) -> None:
    """Proves the group's port labels are the adapter's: Nomad sets NOMAD_*_<label> from them."""
    _, key, _, _ = task.split()
    labels = network_labels(task.group_body)
    assert sorted(labels) == sorted(adapter_class(key).port_labels)
    mapped = single(task.body["config"]).get("ports")
    if mapped is not None:
        assert sorted(mapped) == sorted(labels)


@pytest.mark.parametrize("task", AGENT_TASKS, ids=lambda t: t.id)
def test_primary_label_has_a_group_consul_service_the_agent_discovers(task: AgentTask) -> None:
    """Proves a group-level Consul service on the primary label, named as the agent looks it up."""
    _, key, _, _ = task.split()
    service = single(task.group_body.get("service"))
    assert service.get("provider") == "consul"
    assert service["port"] == adapter_class(key).primary_port()
    assert service.get("address_mode", "host") == "host"
    assert "service" not in task.body, "a task service registers only after the task started"
    cluster = task.flag("--cluster") or task.env.get("CLUSTER_BOOTSTRAP_CLUSTER") or key
    wanted = (
        task.flag("--consul-service") or task.env.get("CLUSTER_BOOTSTRAP_CONSUL_SERVICE") or cluster
    )
    assert service["name"] == wanted


@pytest.mark.parametrize("task", AGENT_TASKS, ids=lambda t: t.id)
def test_environment_names_are_ones_the_settings_read(task: AgentTask) -> None:
    """Proves every CLUSTER_BOOTSTRAP_* name in a spec is read by bootstrap.settings."""
    ours = {name for name in task.env if name.startswith(ENV_PREFIX)}
    assert ours, "each agent task sets its cluster through CLUSTER_BOOTSTRAP_*"
    assert ours <= OWN_ENV, sorted(ours - OWN_ENV)


@pytest.mark.parametrize("task", AGENT_TASKS, ids=lambda t: t.id)
def test_group_count_matches_expect(task: AgentTask) -> None:
    """Proves --expect (or CLUSTER_BOOTSTRAP_EXPECT) equals the group's count."""
    expect = task.flag("--expect") or task.env.get("CLUSTER_BOOTSTRAP_EXPECT")
    assert expect is not None, "the agent needs to know how many members to wait for"
    assert int(expect) == task.group_body["count"]


def image_tag(image: str) -> str:
    """The tag of an image reference ("" without one); a registry port is not a tag."""
    name = image.rsplit("/", 1)[-1]
    return name.partition(":")[2]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_task_uses_docker_with_a_pinned_image(path: Path) -> None:
    """Proves every task runs on the docker driver with an image pinned to a version tag."""
    default_of = variables(load_spec(path))
    for _, _, task, _, body in all_tasks(path):
        assert body["driver"] == "docker", task
        image = resolved_image(single(body["config"])["image"], default_of)
        tag = image_tag(image)
        assert re.fullmatch(r"\d+(\.\d+)+([\w.\-]*)", tag), f"{task}: {image} is not pinned"
        assert "latest" not in tag


def test_prestart_renders_into_the_alloc_dir_the_stock_task_reads() -> None:
    """Proves the prestart agent renders into NOMAD_ALLOC_DIR and the stock task reads there."""
    (agent,) = [t for t in AGENT_TASKS if t.spec == "prestart.nomad.hcl"]
    assert single(agent.body["lifecycle"])["hook"] == "prestart"
    action, key, _, _ = agent.split()
    assert (action, key) == ("render", "zookeeper")
    conf_dir, data_dir = agent.flag("--conf-dir"), agent.flag("--data-dir")
    assert conf_dir and conf_dir.startswith("${NOMAD_ALLOC_DIR}/")
    assert data_dir and data_dir.startswith("${NOMAD_ALLOC_DIR}/")
    (service_task,) = [
        body
        for _, group, name, _, body in all_tasks(ROOT / "entrypoints" / "nomad" / agent.spec)
        if name != agent.task and group == agent.group
    ]
    config = single(service_task["config"])
    assert config["image"] == "zookeeper:3.9.3"
    assert "entrypoint" not in config, "the stock image's own entrypoint stays"
    assert config["args"][-1] == f"{conf_dir}/zoo.cfg"
    assert single(service_task["env"])["ZOO_DATA_DIR"] == data_dir


def _seconds(duration: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(s|m)", duration).groups()  # type: ignore[union-attr]
    return float(number) * (60 if unit == "m" else 1)


def test_supervise_spec_runs_the_agent_as_pid_1_with_room_to_stop() -> None:
    """Proves the supervise spec runs the server as the agent's child, and Nomad's kill_timeout
    leaves room for the agent's --kill-timeout plus its bounded clean-up."""
    from bootstrap.day2 import DEREGISTER_TIMEOUT_S

    (task,) = [t for t in AGENT_TASKS if t.spec == "supervise.nomad.hcl"]
    action, _, options, command = task.split()
    assert action == "run" and "--supervise" in options and command
    agent_kill = float(task.flag("--kill-timeout") or 30)
    nomad_kill = _seconds(task.body["kill_timeout"])
    assert nomad_kill > agent_kill + DEREGISTER_TIMEOUT_S
    assert single(task.group_body["restart"])["attempts"] >= 1, "Nomad restarts, not the agent"


def test_watch_spec_runs_the_loop_as_a_prestart_sidecar_into_the_alloc_dir() -> None:
    """Proves the watch spec renders once before the server, keeps a prestart sidecar running
    the watch loop on the same files, and the stock server task reads them from the alloc dir."""
    tasks = {t.task: t for t in AGENT_TASKS if t.spec == "watch.nomad.hcl"}
    assert set(tasks) == {"render", "watch"}
    lifecycles = {name: single(t.body["lifecycle"]) for name, t in tasks.items()}
    assert lifecycles["render"] == {"hook": "prestart", "sidecar": False}
    assert lifecycles["watch"] == {"hook": "prestart", "sidecar": True}
    assert tasks["render"].split()[0] == "render" and tasks["watch"].split()[0] == "watch"
    assert tasks["render"].options() == tasks["watch"].options(), "one rendering, two tasks"
    (path,) = {f["path"] for f in tasks["watch"].options()["files"]}
    assert path.startswith("${NOMAD_ALLOC_DIR}/")
    (server,) = [
        body
        for _, _, name, _, body in all_tasks(ROOT / "entrypoints" / "nomad" / "watch.nomad.hcl")
        if name not in tasks
    ]
    config = single(server["config"])
    assert "entrypoint" not in config, "the stock image stays as it is"
    assert path in config["args"]
