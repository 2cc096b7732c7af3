"""The adapters' options: declared once, checked in one place, every problem in one UsageError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters import SERVICES, service_class
from bootstrap.errors import UsageError
from bootstrap.options import OUT_OF_RANGE, WRONG_TYPE, FileMode, OptionSet

# Values that let an adapter's other options apply (its required ones, where they apply).
BASE: dict[str, dict[str, Any]] = {
    "template": {"files": [{"path": "conf/out.conf", "content": "x"}]},
    "kafka": {"controller_service": "controllers", "zookeeper_cluster": "zk"},
}


def options_for(key: str, name: str, value: Any) -> dict[str, Any]:
    """Options under which ``name`` applies, with ``value`` for it."""
    option = service_class(key).option_set.options[name]  # type: ignore[union-attr]
    base = dict(option.when)
    for other, example in BASE.get(key, {}).items():
        when = service_class(key).option_set.options[other].when  # type: ignore[union-attr]
        if other != name and all(base.get(k, v) == v for k, v in when.items()):
            base.setdefault(other, example)
    if key == "template" and name == "files":
        base["env"] = {"X": "y"}
    return {**base, name: value}


def every_refused() -> list[tuple[str, str, str, Any]]:
    cases = []
    for key in sorted(SERVICES):
        option_set = service_class(key).option_set
        assert option_set is not None
        for option in option_set:
            for label, value in option.kind.refused():
                cases.append((key, option.name, label, value))
    return cases


def test_every_adapter_declares_its_options() -> None:
    """Proves no adapter checks options on its own: each has an OptionSet."""
    for key in SERVICES:
        assert isinstance(service_class(key).option_set, OptionSet), key


def test_every_option_has_a_wrong_type_and_an_out_of_range_value() -> None:
    """Proves the bad-input corpus, built from these, covers every option both ways."""
    for key in SERVICES:
        for option in service_class(key).option_set or ():
            labels = {label for label, _ in option.kind.refused()}
            assert {WRONG_TYPE, OUT_OF_RANGE} <= labels, f"{key}.{option.name}"


@pytest.mark.parametrize(("key", "name", "label", "value"), every_refused())
def test_each_refused_value_is_one_usage_error_naming_the_option(
    key: str, name: str, label: str, value: Any
) -> None:
    """Proves a refused value ends in UsageError (exit 2) naming the option, never a crash."""
    with pytest.raises(UsageError) as err:
        service_class(key)(options_for(key, name, value))
    assert err.value.exit_code == 2
    assert any(f"options.{name}" in p for p in err.value.problems), err.value.problems


@pytest.mark.parametrize("key", sorted(SERVICES))
def test_defaults_with_the_base_options_are_accepted(key: str) -> None:
    """Proves the corpus's base options are valid on their own (a case fails for its value)."""
    base = BASE.get(key, {})
    if key == "kafka":
        base = {}
    service_class(key)(base)


@pytest.mark.parametrize("mode", [0o644, 420, "0644", "0o644", "644"])
def test_file_mode_takes_yaml_ints_and_octal_strings(mode: object) -> None:
    """Proves mode 0o644 (a string to YAML 1.1) and "0644" both mean rw-r--r--."""
    assert FileMode().check(mode) == 0o644


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"files": [{"path": "x", "content": "a", "mode": "0899"}]}, "options.files: [0]: '0899'"),
        ({"env": {"A": "b"}, "shared": {"cookie": True}}, "options.shared: cookie: True"),
    ],
)
def test_template_options_that_crashed_are_usage_errors(options: dict[str, Any], says: str) -> None:
    """Proves mode "0899" (was ValueError) and shared {cookie: true} (was AttributeError)."""
    with pytest.raises(UsageError, match=__import__("re").escape(says)):
        service_class("template")(options)


def test_all_problems_are_reported_together() -> None:
    """Proves several bad options give one UsageError listing each of them."""
    with pytest.raises(UsageError) as err:
        service_class("zookeeper")({"tick_time": "x", "admin_server": 2, "tickTime": 1})
    assert len(err.value.problems) == 3


def test_kafka_does_not_import_the_zookeeper_adapter_for_its_port_labels() -> None:
    """Proves the port labels a ZooKeeper-mode broker uses are the zookeeper adapter's."""
    import adapters.kafka
    from adapters.zookeeper import ZooKeeperService

    assert dict(adapters.kafka.ZOOKEEPER_PORT_LABELS) == dict(ZooKeeperService.port_labels)
    assert "adapters.zookeeper" not in Path(adapters.kafka.__file__).read_text()
