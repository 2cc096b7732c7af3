"""Dockerfile.glibc: hadolint-clean, a toolchain and a build stage, ending in the agent.

The image is also built and run for real by tests/containers/; these checks keep the file's
promises (pinned builder, root-owned read-only files, the service user, the floor check) from
drifting without a container runtime.
"""

from __future__ import annotations

import json
import re

from tests.unit.test_image import AGENT, ROOT, args_defaults, hadolint_findings, instructions

DOCKERFILE = ROOT / "Dockerfile.glibc"


def steps() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE)


def runs() -> str:
    return " ".join(rest for keyword, rest in steps() if keyword == "RUN")


def test_hadolint_finds_nothing() -> None:
    """Proves hadolint reports no error, warning, info or style finding."""
    assert hadolint_findings(DOCKERFILE) == ""


def test_stages_from_pinned_images() -> None:
    """Proves toolchain and build stages on a pinned Debian 12 builder, then FROM the BASE."""
    froms = [rest for keyword, rest in steps() if keyword == "FROM"]
    assert froms == ["${BUILDER} AS toolchain", "toolchain AS build", "${BASE}"]
    defaults = args_defaults(DOCKERFILE)
    assert re.fullmatch(r"debian:12\.\d+", defaults["BUILDER"])
    assert re.fullmatch(r"zookeeper:\d+\.\d+\.\d+", defaults["BASE"])
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", defaults["PIP_VERSION"])
    for keyword, rest in steps():
        if keyword in ("FROM", "ARG"):
            assert not re.search(r":latest\b", rest), rest


def test_glibc_floor_is_checked_at_build() -> None:
    """Proves the build reads every bundled ELF file's GLIBC_ versions and fails above 2.35."""
    assert args_defaults(DOCKERFILE)["GLIBC_FLOOR"] == "2.35"
    commands = runs()
    assert "objdump -T" in commands and "GLIBC_REQUIRED" in commands
    assert "-DHAVE_ARC4RANDOM_BUF=OFF" in commands, "Debian's expat would need glibc 2.36"


def test_interpreter_is_bundled_with_relative_run_paths() -> None:
    """Proves CPython and its libraries are copied under /opt and found through $ORIGIN."""
    commands = runs()
    assert "patchelf --set-rpath '$ORIGIN/../lib'" in commands
    assert "lib-dynload" in commands and "'$ORIGIN/../..'" in commands
    # The C library stays the base image's: bundling it would break on every other glibc.
    assert "libc|libm|libdl|libpthread" in commands


def test_pip_is_pinned_keeps_no_cache_and_takes_the_ca_as_a_secret() -> None:
    """Proves a pinned pip, --no-cache-dir everywhere, and the CA bundle only as a build secret."""
    commands = runs()
    assert 'install -q --no-cache-dir "pip==${PIP_VERSION}"' in commands
    installs = re.findall(r"pip (?:--python \S+ )?install[^&]*", commands)
    assert len(installs) == 2 and all("--no-cache-dir" in cmd for cmd in installs)
    assert "--mount=type=secret,id=pip-ca" in commands
    assert "PIP_CERT" not in " ".join(rest for keyword, rest in steps() if keyword == "ENV")


def test_agent_files_are_roots_and_the_service_user_runs_it() -> None:
    """Proves the copied tree is root-owned and read-only to others, and USER is not root."""
    copies = [rest for keyword, rest in steps() if keyword == "COPY" and "--from=build" in rest]
    assert copies == [
        "--from=build --chown=root:root /opt/cluster-bootstrap /opt/cluster-bootstrap"
    ]
    assert "chmod -R go-w /opt/cluster-bootstrap" in runs()
    users = [rest for keyword, rest in steps() if keyword == "USER"]
    assert users == ["${SERVICE_USER}"] and args_defaults(DOCKERFILE)["SERVICE_USER"] == "zookeeper"


def test_import_check_then_entrypoint_is_the_agent() -> None:
    """Proves the final stage imports TLS, expat and the agent, and ENTRYPOINT is the agent."""
    all_steps = steps()
    final = all_steps[max(i for i, (keyword, _) in enumerate(all_steps) if keyword == "FROM") :]
    checks = [json.loads(rest) for keyword, rest in final if keyword == "RUN"]
    assert checks == [
        [
            "/opt/cluster-bootstrap/bin/python",
            "-c",
            "import ssl, pyexpat, adapters, bootstrap.__main__",
        ]
    ]
    as_dict = dict(final)
    assert json.loads(as_dict["ENTRYPOINT"]) == [AGENT]
    assert json.loads(as_dict["CMD"]) == ["zookeeper", "--", "zkServer.sh", "start-foreground"]


def test_build_context_holds_only_the_agents_sources() -> None:
    """Proves .dockerignore keeps the venv, caches and tests out of the build context."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"
    assert {"!pyproject.toml", "!bootstrap", "!adapters", "!entrypoints"} <= set(rules)
