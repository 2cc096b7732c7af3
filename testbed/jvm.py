"""Command lines and probes for the real JVM peers: ZooKeeper 3.9, Kafka 4.x, Kafka 3.9.

The class paths come from ``.ci/install-jvm-peers`` (Maven Central jars under
``$CB_CACHE/jvm/<name>-<version>/lib``, log configs under ``.../conf``). Every command
built here logs to files under the given log dir (or, for tools, warnings to stderr), so
start them with ``testbed.procs.Process`` (own process group, stdout to a file).
Verified commands and configs: ``docs/testbed-jvm.md``.
"""

from __future__ import annotations

import functools
import shlex
import socket
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

from testbed.procs import cache_dir, port_open

JAVA = "java"
INSTALL_HINT = "run .ci/install-jvm-peers"
PEERS = ("zookeeper", "kafka4", "kafka39")

ZK_SERVER_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
ZK_CLI_MAIN = "org.apache.zookeeper.ZooKeeperMain"
KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
TOPIC_COMMAND = "org.apache.kafka.tools.TopicCommand"
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
METADATA_QUORUM = "org.apache.kafka.tools.MetadataQuorumCommand"
CLUSTER_TOOL = "org.apache.kafka.tools.ClusterTool"
VERIFIABLE_PRODUCER = "org.apache.kafka.tools.VerifiableProducer"

# C1 only + serial GC: short-lived CLI JVMs start ~40% faster (1.5 s -> 0.9 s); servers
# started with these reach "started" sooner on 2 cores. Servers get them only if asked
# (``extra_jvm=FAST_START_JVM``); the tool commands always use them.
FAST_START_JVM = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


def _peers_env() -> dict[str, str]:
    path = cache_dir() / "jvm" / "peers.env"
    try:
        text = path.read_text()
    except OSError as exc:
        raise RuntimeError(f"JVM peers not installed ({path} missing): {INSTALL_HINT}") from exc
    values: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, raw = line.partition("=")
            parts = shlex.split(raw)
            values[key.strip()] = parts[0] if parts else ""
    return values


def peer_libs() -> dict[str, Path]:
    """Lib dirs by peer name (``zookeeper``, ``kafka4``, ``kafka39``); RuntimeError if absent."""
    env = _peers_env()
    libs: dict[str, Path] = {}
    for name in PEERS:
        lib = Path(env.get(f"{name.upper()}_LIB", ""))
        if not env.get(f"{name.upper()}_LIB") or not any(lib.glob("*.jar")):
            raise RuntimeError(f"no jars for {name} in {lib}: {INSTALL_HINT}")
        libs[name] = lib
    return libs


def peer_versions() -> dict[str, str]:
    """Versions by peer name, as pinned by the installer."""
    env = _peers_env()
    return {name: env.get(f"{name.upper()}_VERSION", "") for name in PEERS}


def classpath(lib: Path) -> str:
    """The ``-cp`` value for a lib dir (a Java wildcard, not a shell glob)."""
    return f"{lib}/*"


def _conf(lib: Path, name: str) -> Path:
    path = lib.parent / "conf" / name
    if not path.is_file():
        raise RuntimeError(f"{path} missing: {INSTALL_HINT}")
    return path


def _is_log4j2(lib: Path) -> bool:
    """Kafka 4.x logs through log4j2; Kafka 3.9 through reload4j (log4j 1 API)."""
    return (lib.parent / "conf" / "log4j2.properties").is_file()


def _kafka_log_flags(lib: Path, log_dir: Path | None) -> list[str]:
    """Server (file under ``log_dir``) or tool (WARN to stderr) logging flags for ``lib``."""
    if _is_log4j2(lib):
        conf = _conf(lib, "log4j2.properties" if log_dir else "tools-log4j2.properties")
        flags = [f"-Dlog4j2.configurationFile={conf}"]
    else:
        conf = _conf(lib, "log4j.properties" if log_dir else "tools-log4j.properties")
        flags = [f"-Dlog4j.configuration=file:{conf}"]
    if log_dir is not None:
        flags.append(f"-Dkafka.logs.dir={log_dir}")
    return flags


def zookeeper_command(
    zoo_cfg: Path,
    log_dir: Path,
    heap: str = "256m",
    lib: Path | None = None,
    extra_jvm: Sequence[str] = (),
) -> list[str]:
    """QuorumPeerMain on ``zoo_cfg``; its log goes to ``log_dir/zookeeper.log``."""
    lib = lib or peer_libs()["zookeeper"]
    return [
        JAVA,
        f"-Xmx{heap}",
        f"-Dzookeeper.log.dir={log_dir}",
        f"-Dlogback.configurationFile={_conf(lib, 'logback.xml')}",
        *extra_jvm,
        "-cp",
        classpath(lib),
        ZK_SERVER_MAIN,
        str(zoo_cfg),
    ]


def zookeeper_cli_command(server: str, args: Sequence[str], lib: Path | None = None) -> list[str]:
    """``ZooKeeperMain -server host:port <args>`` (e.g. ``create /x hello``); exit 1 on error."""
    lib = lib or peer_libs()["zookeeper"]
    return [
        JAVA,
        "-Xmx64m",
        *FAST_START_JVM,
        f"-Dlogback.configurationFile={_conf(lib, 'logback-cli.xml')}",
        "-cp",
        classpath(lib),
        ZK_CLI_MAIN,
        "-server",
        server,
        *args,
    ]


def kafka_command(
    lib: Path,
    server_properties: Path,
    log_dir: Path,
    heap: str = "512m",
    extra_jvm: Sequence[str] = (),
) -> list[str]:
    """``kafka.Kafka`` (KRaft or ZooKeeper mode); its log goes to ``log_dir/server.log``."""
    return [
        JAVA,
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-Djava.awt.headless=true",
        *_kafka_log_flags(lib, log_dir),
        *extra_jvm,
        "-cp",
        classpath(lib),
        KAFKA_MAIN,
        str(server_properties),
    ]


def kafka_tool_command(
    lib: Path, main_class: str, args: Sequence[str], heap: str = "256m"
) -> list[str]:
    """Any Kafka CLI main class with the tools log config (warnings to stderr)."""
    return [
        JAVA,
        f"-Xmx{heap}",
        *FAST_START_JVM,
        *_kafka_log_flags(lib, None),
        "-cp",
        classpath(lib),
        main_class,
        *args,
    ]


def kafka_storage_command(lib: Path, args: Sequence[str]) -> list[str]:
    """``kafka-storage``: e.g. ``["random-uuid"]`` or ``["format", "-t", id, "-c", props]``."""
    return kafka_tool_command(lib, STORAGE_TOOL, args)


@functools.cache
def console_producer_class(lib: Path) -> str:
    """``org.apache.kafka.tools.ConsoleProducer`` (4.x) or ``kafka.tools.ConsoleProducer`` (3.9)."""
    for jar in lib.glob("kafka-tools-*.jar"):
        with zipfile.ZipFile(jar) as zf:
            if "org/apache/kafka/tools/ConsoleProducer.class" in zf.namelist():
                return "org.apache.kafka.tools.ConsoleProducer"
    return "kafka.tools.ConsoleProducer"


def four_letter(host: str, port: int, cmd: str, timeout: float = 2.0) -> str:
    """Send a ZooKeeper four-letter word; the reply, or '' if the server can't be reached."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(cmd.encode("ascii"))
            sock.shutdown(socket.SHUT_WR)
            chunks: list[bytes] = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return ""
    return b"".join(chunks).decode("utf-8", errors="replace")


def zk_mode(host: str, port: int) -> str | None:
    """'leader', 'follower', 'standalone' (or 'observer') from ``srvr``; None if not serving."""
    for line in four_letter(host, port, "srvr").splitlines():
        if line.startswith("Mode:"):
            return line.partition(":")[2].strip()
    return None


def wait_for_port(host: str, port: int, timeout: float = 60.0, interval: float = 0.1) -> float:
    """Block until ``host:port`` accepts; return seconds waited, TimeoutError at the deadline."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if port_open(host, port, timeout_s=min(0.5, max(0.05, deadline - time.monotonic()))):
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} not accepting after {timeout:.1f}s")
        time.sleep(interval)
