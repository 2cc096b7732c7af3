"""A node name the EMQX adapter renders is the name the official images' scripts start EMQX with.

The images' scripts are modelled in ``tests/emqx_image.py`` (facts from their source). Each test
follows one rendering through the image's entrypoint and start script to ``-name``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.emqx import EmqxService
from bootstrap.errors import UsageError
from bootstrap.files import write_all
from bootstrap.model import Rendering
from tests import emqx_image
from tests.unit.test_emqx import COOKIE, build_view

NAME = "emqx@10.0.0.1"
# What a user may have in the container: the image's own defaults of EMQX_NAME / EMQX_HOST.
BACKGROUNDS: list[dict[str, str]] = [{}, {"EMQX_NAME": "emqx"}, {"EMQX_HOST": "node1.example"}]


def started_5(rendering: Rendering, tmp_path: Path, background: dict[str, str]) -> tuple[str, str]:
    """(-name, -setcookie) of EMQX 5 started through the image with ``rendering`` applied."""
    write_all(rendering.files)
    include = str(rendering.files[0].path) if rendering.files else None
    env = emqx_image.entrypoint_5(background | dict(rendering.env))
    return emqx_image.bin_emqx_5(env, emqx_image.emqx_conf_5(include))


@pytest.mark.parametrize("background", BACKGROUNDS)
@pytest.mark.parametrize("output", ["file", "env"])
def test_emqx5_starts_with_the_rendered_name_and_cookie(
    tmp_path: Path, output: str, background: dict[str, str]
) -> None:
    """Proves both EMQX 5 outputs survive the 5.8 entrypoint: -name, -setcookie are the agent's."""
    rendering = EmqxService({"output": output}).render(build_view(base=tmp_path))
    assert started_5(rendering, tmp_path, background) == (NAME, COOKIE)


def test_emqx5_file_form_without_the_name_in_env_would_get_the_container_ip(
    tmp_path: Path,
) -> None:
    """Proves the fact behind the fix: a name only in the included file loses to the entrypoint."""
    rendering = EmqxService({}).render(build_view(base=tmp_path))
    file_only = Rendering(rendering.files)
    name, cookie = started_5(file_only, tmp_path, {})
    assert name == f"emqx@{emqx_image.CONTAINER_IP}" != NAME
    assert cookie == COOKIE  # the cookie has no such override: the included file gives it


@pytest.mark.parametrize("background", BACKGROUNDS)
def test_emqx44_starts_with_the_rendered_name_cookie_and_seeds(background: dict[str, str]) -> None:
    """Proves the 4.4 env output survives the 4.4 entrypoint and cuttlefish's override order."""
    rendering = EmqxService({"version": 4}).render(build_view())
    env = emqx_image.entrypoint_44(background | dict(rendering.env))
    settings = emqx_image.cuttlefish_44(env)
    assert settings["node.name"] == NAME
    assert settings["node.cookie"] == COOKIE
    assert settings["cluster.discovery"] == "static"
    assert settings["cluster.static.seeds"] == "emqx@10.0.0.1,emqx@10.0.0.2,emqx@10.0.0.3"


def test_emqx44_name_only_as_double_underscore_would_lose_to_the_entrypoint() -> None:
    """Proves the fact behind the fix: EMQX_NODE__NAME alone loses to the 4.4 entrypoint's name."""
    env = emqx_image.entrypoint_44({"EMQX_NODE__NAME": NAME})
    assert emqx_image.cuttlefish_44(env)["node.name"] == (
        f"{emqx_image.HOSTNAME}@{emqx_image.CONTAINER_IP}"
    )


def test_emqx44_included_file_loses_to_the_image_emqx_conf_so_the_file_form_is_refused() -> None:
    """Proves why 4.4 output: file is refused: main emqx.conf keys beat an included file's."""
    included = {"node.name": NAME, "cluster.discovery": "static"}
    settings = emqx_image.cuttlefish_44({}, included)
    assert settings["node.name"] != NAME and settings["cluster.discovery"] == "manual"
    with pytest.raises(UsageError, match=r"output: file does not work with EMQX 4\.4"):
        EmqxService({"version": 4, "output": "file"})


@pytest.mark.parametrize(
    "name",
    [
        "EMQX_NODE_NAME",
        "EMQX_NODE__NAME",
        "EMQX_NODE_COOKIE",
        "EMQX_NODE__COOKIE",
        "EMQX_CLUSTER__DISCOVERY_STRATEGY",
        "EMQX_CLUSTER__STATIC__SEEDS",
    ],
)
@pytest.mark.parametrize("options", [{}, {"output": "env"}, {"version": 4}])
def test_a_users_own_node_name_cookie_or_discovery_variable_is_refused(
    name: str, options: dict[str, Any]
) -> None:
    """Proves a user's EMQX name/cookie/discovery variable is one clear usage error, not a split."""
    with pytest.raises(UsageError, match=f"{name} is set: the agent renders"):
        EmqxService(options, {name: "emqx@172.17.0.9"})


def test_unrelated_emqx_variables_pass() -> None:
    """Proves other EMQX_* settings (listeners, dashboard) are the user's and left alone."""
    env = {"EMQX_DASHBOARD__DEFAULT_PASSWORD": "x", "EMQX_NAME": "emqx", "EMQX_HOST": "h.example"}
    assert EmqxService({}, env).output == "file"
