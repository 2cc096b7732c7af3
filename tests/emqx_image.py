"""What the official EMQX images' start scripts do with a node's name and cookie, as a model.

No EMQX image runs here (no Docker engine). These functions are the scripts' logic, written down
from their source with the final ``exec`` replaced by returning what it would pass on, so tests
can follow a rendering through the image to the ``-name`` and ``-setcookie`` EMQX starts with.

EMQX 5 (5.8 image):

- ``docker-entrypoint.sh``: when neither ``EMQX_NODE_NAME`` nor ``EMQX_NODE__NAME`` is set, it
  exports ``EMQX_NODE_NAME=$EMQX_NAME@$EMQX_HOST`` (``EMQX_NAME`` defaults to ``emqx``,
  ``EMQX_HOST`` to the container's IP, from ``hostname -i``).
- ``bin/emqx`` (``common_defs2.sh``): a set ``EMQX_NODE_NAME`` is copied over
  ``EMQX_NODE__NAME`` and unset (the same for ``EMQX_NODE_COOKIE``); the name is
  ``EMQX_NODE__NAME``, else ``node.name`` of emqx.conf as HOCON reads it (its includes merged,
  a later key winning), else ``emqx``. The cookie likewise.

EMQX 4.4 (4.4 image):

- ``docker-entrypoint.sh``: ``EMQX_NAME`` defaults to the host name, ``EMQX_HOST`` to the
  container's IP; when ``EMQX_NODE_NAME`` is unset it exports ``$EMQX_NAME@$EMQX_HOST``. It writes
  nothing into emqx.conf.
- ``bin/emqx`` exports the cuttlefish override prefix ``EMQX_``; cuttlefish's ``NODE_NAME``
  override (``EMQX_NODE_NAME``) beats ``EMQX_NODE__NAME``, which beats emqx.conf. In emqx.conf a
  key of the main file beats the same key in an included file.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyhocon import ConfigFactory

CONTAINER_IP = "172.17.0.5"
HOSTNAME = "3f2a9c1d7e4b"  # Docker's default host name: the container id's first 12 characters
# The images' own emqx.conf values for what the agent renders.
IMAGE_5_NODE = {"name": "emqx@127.0.0.1", "cookie": "emqxsecretcookie"}
IMAGE_44_CONF = {
    "node.name": "emqx@127.0.0.1",
    "node.cookie": "emqxsecretcookie",
    "cluster.discovery": "manual",
}


def entrypoint_5(env: Mapping[str, str], container_ip: str = CONTAINER_IP) -> dict[str, str]:
    """The environment EMQX 5's ``docker-entrypoint.sh`` passes to ``bin/emqx``."""
    out = dict(env)
    out.setdefault("EMQX_NAME", "emqx")
    if not out.get("EMQX_NODE_NAME") and not out.get("EMQX_NODE__NAME"):
        out["EMQX_NODE_NAME"] = f"{out['EMQX_NAME']}@{out.get('EMQX_HOST') or container_ip}"
    return out


def emqx_conf_5(include: str | None) -> str:
    """The image's emqx.conf, with the ``include`` line the README asks for (if any) last."""
    name, cookie = IMAGE_5_NODE["name"], IMAGE_5_NODE["cookie"]
    conf = f'node {{\n  name = "{name}"\n  cookie = "{cookie}"\n  data_dir = "data"\n}}\n'
    return conf + (f'include "{include}"\n' if include else "")


def bin_emqx_5(env: Mapping[str, str], emqx_conf: str) -> tuple[str, str]:
    """The ``-name`` and ``-setcookie`` EMQX 5's ``bin/emqx`` starts the node with.

    ``emqx_conf`` is emqx.conf's text; its includes name absolute paths.
    """
    out = dict(env)
    for short, long in (
        ("EMQX_NODE_NAME", "EMQX_NODE__NAME"),
        ("EMQX_NODE_COOKIE", "EMQX_NODE__COOKIE"),
    ):
        if out.get(short):
            out[long] = out.pop(short)
    conf = ConfigFactory.parse_string(emqx_conf)
    name = out.get("EMQX_NODE__NAME") or conf.get_string("node.name", "") or "emqx"
    cookie = out.get("EMQX_NODE__COOKIE") or conf.get_string("node.cookie", "")
    return name, cookie


def entrypoint_44(
    env: Mapping[str, str], hostname: str = HOSTNAME, container_ip: str = CONTAINER_IP
) -> dict[str, str]:
    """The environment EMQX 4.4's ``docker-entrypoint.sh`` passes to ``bin/emqx``."""
    out = dict(env)
    out.setdefault("EMQX_NAME", hostname)
    out.setdefault("EMQX_HOST", container_ip)
    if not out.get("EMQX_NODE_NAME"):
        out["EMQX_NODE_NAME"] = f"{out['EMQX_NAME']}@{out['EMQX_HOST']}"
    return out


def cuttlefish_44(
    env: Mapping[str, str], included: Mapping[str, str] | None = None
) -> dict[str, str]:
    """EMQX 4.4's effective settings: overrides > EMQX_* variables > emqx.conf > its includes."""
    settings = {**(included or {}), **IMAGE_44_CONF}
    for name, value in env.items():
        if name.startswith("EMQX_") and "__" in name:
            settings[name.removeprefix("EMQX_").lower().replace("__", ".")] = value
    if env.get("EMQX_NODE_NAME"):
        settings["node.name"] = env["EMQX_NODE_NAME"]
    return settings
