"""The design rules that keep the code easy to see, checked on the source itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from adapters import SERVICES, service_class
from bootstrap.errors import EXIT_CODES, UsageError

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "module", sorted(p.name for p in (ROOT / "bootstrap").glob("*.py") if p.name != "__main__.py")
)
def test_core_never_imports_adapters(module: str) -> None:
    """Proves only the composition root (bootstrap/__main__.py) knows the adapters."""
    imports = imported_modules(ROOT / "bootstrap" / module)
    assert not {name for name in imports if name.split(".")[0] in ("adapters", "consul")}


def test_no_wait_for_that_can_swallow_a_cancellation() -> None:
    """Proves the agent bounds its waits with ``asyncio.timeout``, never ``asyncio.wait_for``:
    on Python 3.11, ``wait_for`` returns the result when the awaited thing finishes at the
    moment the task is cancelled, and the cancellation is lost (the keeper's loop then never
    stopped: a unit test hung under load)."""
    offenders = []
    for path in sorted([*(ROOT / "bootstrap").glob("*.py"), *(ROOT / "adapters").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "wait_for"
                and isinstance(node.value, ast.Name)
                and node.value.id == "asyncio"
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_every_service_module_is_registered_once() -> None:
    """Proves each adapters/<service>.py is in the one SERVICES dict under its own key."""
    # images.py holds the official images' facts that several adapters read: not a service.
    # kafka_voters.py is the Kafka adapter's VoterChanges (KafkaService.voter_changes).
    not_services = {"__init__", "consul", "images", "kafka_voters"}
    modules = {p.stem for p in (ROOT / "adapters").glob("*.py")} - not_services
    assert set(SERVICES) == modules
    assert all(service_class(key).key == key for key in SERVICES)
    assert {path.partition(":")[0] for path in SERVICES.values()} == {
        f"adapters.{m}" for m in modules
    }


def test_unknown_service_lists_the_known_ones() -> None:
    """Proves a wrong service key names every known key."""
    with pytest.raises(UsageError, match="known: " + ", ".join(sorted(SERVICES))):
        service_class("zookeper")


def test_readme_exit_code_table_matches_the_code() -> None:
    """Proves the README documents exactly the exit codes errors.py defines."""
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", readme, re.MULTILINE))
    assert {int(code): text for code, text in rows.items()} == EXIT_CODES


def test_starting_one_service_imports_no_other_adapter() -> None:
    """Proves the registry loads an adapter module only when its service is chosen, and the
    ZooKeeper adapter leaves kazoo (its reconfig client) unimported until reconfig is used."""
    import subprocess
    import sys

    code = (
        "import sys, bootstrap.__main__ as m; from adapters import service_class;"
        "service_class('zookeeper');"
        "watched = ('adapters.', 'jinja2', 'yaml', 'kazoo');"
        "print(sorted(n for n in sys.modules if n.startswith(watched)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['adapters.consul', 'adapters.images', 'adapters.zookeeper']"
