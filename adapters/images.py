"""What the official images' own scripts read from the environment, and what the agent does with it.

Users arrive with the official images and their variables. The agent replaces those images'
cluster logic, so each variable is either read with the image's meaning, refused in one line
(it decides who is in the cluster, which only the agent may), or reported at start as not
honoured. Nothing is dropped without a word. The facts, per image (``/work/shared/SERVICES.md``,
"The official images' own conventions"):

- ``zookeeper``: its ``docker-entrypoint.sh`` writes ``zoo.cfg`` from ``ZOO_*`` (only when absent)
  and its Dockerfile sets ``ZOO_DATA_LOG_DIR=/datalog``, ``ZOO_STANDALONE_ENABLED=true``,
  ``ZOO_ADMINSERVER_ENABLED=true`` and the limits. The agent reads each with the same meaning;
  the adapter's own options win over the environment.
- ``apache/kafka``: ``CLUSTER_ID`` formats the storage (a fixed default when unset); the launch
  script maps ``KAFKA_JMX_PORT``/``KAFKA_JMX_HOSTNAME`` to JMX flags, generates log4j settings from
  ``KAFKA_LOG4J_*`` and merges ``/mnt/shared/config``. The agent bypasses that script: what
  ``kafka-run-class.sh`` reads by itself still works, the rest is reported as not honoured.
- ``emqx`` 5 and 4.4: ``docker-entrypoint.sh`` exports ``EMQX_NODE_NAME`` when unset, and the
  start script prefers it over every file. The agent sets the name (and cookie, seeds) itself and
  refuses a user's own, which would silently split the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# -- zookeeper ----------------------------------------------------------------------------------

# ZOO_* variable -> the adapter option it means; "extra:<key>" is a further zoo.cfg key.
ZOO_OPTIONS: dict[str, str] = {
    "ZOO_TICK_TIME": "tick_time",
    "ZOO_INIT_LIMIT": "init_limit",
    "ZOO_SYNC_LIMIT": "sync_limit",
    "ZOO_DATA_LOG_DIR": "datalog_dir",
    "ZOO_4LW_COMMANDS_WHITELIST": "four_letter_words",
    "ZOO_ADMINSERVER_ENABLED": "admin_server",
    "ZOO_MAX_CLIENT_CNXNS": "extra:maxClientCnxns",
    "ZOO_AUTOPURGE_PURGEINTERVAL": "extra:autopurge.purgeInterval",
    "ZOO_AUTOPURGE_SNAPRETAINCOUNT": "extra:autopurge.snapRetainCount",
}
ZOO_INTEGERS = frozenset({"ZOO_TICK_TIME", "ZOO_INIT_LIMIT", "ZOO_SYNC_LIMIT"})
# Variables that decide the ensemble: the agent renders them, a user's value is refused.
ZOO_AGENT_OWNED = ("ZOO_MY_ID", "ZOO_SERVERS")
# The image's Dockerfile sets ZOO_STANDALONE_ENABLED=true: that value is the image's, not the
# user's, and the agent overrides it (an ensemble never runs standalone). Any other is refused.
ZOO_STANDALONE = "ZOO_STANDALONE_ENABLED"
# Directories the image names: the agent's own settings must agree with them.
ZOO_DIRS = {"ZOO_DATA_DIR": "data dir", "ZOO_CONF_DIR": "conf dir"}


def zookeeper_options(
    environ: Mapping[str, str], options: Mapping[str, Any], problems: list[str]
) -> dict[str, Any]:
    """``options`` over what the image's ``ZOO_*`` variables say (options win, also in extra)."""
    from_env: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for name in ZOO_AGENT_OWNED:
        if name in environ:
            problems.append(f"{name}: the agent decides the ensemble's ids and servers; unset it")
    standalone = environ.get(ZOO_STANDALONE)
    if standalone is not None and standalone != "true":
        problems.append(
            f"{ZOO_STANDALONE}={standalone!r}: the agent decides it (standaloneEnabled=false "
            "for an ensemble); unset it"
        )
    for name, target in ZOO_OPTIONS.items():
        value = environ.get(name)
        if value is None or value == "":
            continue
        if target.startswith("extra:"):
            extra[target.removeprefix("extra:")] = value
        elif name in ZOO_INTEGERS:
            if not value.isascii() or not value.isdigit():
                problems.append(f"{name}={value!r} is not a whole number")
                continue
            from_env[target] = int(value)
        elif target == "admin_server":
            if value not in ("true", "false"):
                problems.append(f"{name}={value!r} is not true or false")
                continue
            from_env[target] = value == "true"
        else:
            from_env[target] = value
    # The image appends each whitespace-separated word of ZOO_CFG_EXTRA to zoo.cfg as a line.
    for word in environ.get("ZOO_CFG_EXTRA", "").split():
        key, sep, value = word.partition("=")
        if not sep:
            problems.append(f"ZOO_CFG_EXTRA: {word!r} is not key=value")
        else:
            extra[key] = value
    merged: dict[str, Any] = {**from_env, **options}
    if extra:
        own = options.get("extra")
        merged["extra"] = {**extra, **own} if isinstance(own, dict) else own or extra
    return merged


def zookeeper_dir_problems(environ: Mapping[str, str], dirs: Mapping[str, str]) -> list[str]:
    """``ZOO_DATA_DIR``/``ZOO_CONF_DIR`` that disagree with the agent's ``dirs`` (by setting)."""
    problems = []
    for name, setting in ZOO_DIRS.items():
        value = environ.get(name)
        if value and value.rstrip("/") != dirs[setting].rstrip("/"):
            problems.append(
                f"{name}={value} but the agent's {setting} is {dirs[setting]}: set "
                f"CLUSTER_BOOTSTRAP_{setting.upper().replace(' ', '_')}={value} (or unset {name})"
            )
    return problems


# -- apache/kafka --------------------------------------------------------------------------------

CLUSTER_ID_VAR = "CLUSTER_ID"
IMAGE_DEFAULT_CLUSTER_ID = "5L6g3nShT-eMCtK--X86sw"  # what the image formats with when unset
# The image's variables that kafka-server-start.sh / kafka-run-class.sh read by themselves: they
# still work when the agent starts Kafka. Never properties.
KAFKA_RUN_CLASS_VARS = frozenset(
    {
        "KAFKA_HEAP_OPTS",
        "KAFKA_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_JMX_OPTS",
        "KAFKA_DEBUG",
        "KAFKA_HOME",
    }
)
# The image's launch script's own variables: the agent bypasses that script, so they do nothing.
# Never properties; a warning at start says so and what to use instead.
KAFKA_LAUNCH_ONLY_VARS: dict[str, str] = {
    "KAFKA_JMX_PORT": "set JMX_PORT (kafka-run-class.sh reads it) and KAFKA_JMX_OPTS",
    "KAFKA_JMX_HOSTNAME": "add -Djava.rmi.server.hostname=<host> to KAFKA_JMX_OPTS",
    "KAFKA_LOG4J_ROOT_LOGLEVEL": "use KAFKA_LOG4J_OPTS with a log4j file of your own",
    "KAFKA_LOG4J_LOGGERS": "use KAFKA_LOG4J_OPTS with a log4j file of your own",
    "KAFKA_TOOLS_LOG4J_LOGLEVEL": "use KAFKA_LOG4J_OPTS with a log4j file of your own",
}
# Other names of the image's that are no properties either (and need no warning).
KAFKA_IMAGE_NAMES = frozenset({"KAFKA_HEAP_OPT", "KAFKA_VERSION"})
KAFKA_NON_PROPERTY_VARS = (
    KAFKA_RUN_CLASS_VARS | frozenset(KAFKA_LAUNCH_ONLY_VARS) | KAFKA_IMAGE_NAMES
)
KAFKA_SHARED_CONFIG_DIR = "/mnt/shared/config"  # merged by the image's wrapper, not by the agent


def kafka_not_honoured(environ: Mapping[str, str], shared_config_files: list[str]) -> list[str]:
    """One warning per image feature that is set but does nothing when the agent starts Kafka."""
    warnings = [
        f"{name} is set but only the apache/kafka launch script reads it, which the agent "
        f"bypasses: {hint}"
        for name, hint in sorted(KAFKA_LAUNCH_ONLY_VARS.items())
        if name in environ
    ]
    if shared_config_files:
        warnings.append(
            f"{KAFKA_SHARED_CONFIG_DIR} holds {', '.join(sorted(shared_config_files))}, which the "
            "agent does not merge: put those properties in options.extra or KAFKA_* variables"
        )
    return warnings


# -- emqx 5 and 4.4 ------------------------------------------------------------------------------

# What decides a node's name, cookie and peers in the image's scripts. The 5.x start script copies
# EMQX_NODE_NAME over EMQX_NODE__NAME (and *_COOKIE likewise); 4.4's prefers EMQX_NODE_NAME too.
# The agent sets these; a user's own would silently beat or split what it renders.
EMQX_AGENT_OWNED = (
    "EMQX_NODE_NAME",
    "EMQX_NODE__NAME",
    "EMQX_NODE_COOKIE",
    "EMQX_NODE__COOKIE",
    "EMQX_CLUSTER__DISCOVERY",
    "EMQX_CLUSTER__DISCOVERY_STRATEGY",
    "EMQX_CLUSTER__STATIC__SEEDS",
)


def emqx_env_problems(environ: Mapping[str, str]) -> list[str]:
    return [
        f"{name} is set: the agent renders the node name, cookie and seeds; unset it"
        for name in EMQX_AGENT_OWNED
        if name in environ
    ]
