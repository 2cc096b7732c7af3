"""Network namespaces for the production-shaped bed: hosts on two subnets behind a router.

``Network`` builds, per run, a router namespace with one bridge per subnet and a host namespace
per host, each joined to its subnet's bridge by a veth pair created *inside* the router
namespace (so no interface ever appears in the machine's own namespace). The router forwards
between the subnets; nothing has a default route, so nothing reaches beyond the two subnets.

Every name starts with ``cb<pid>-`` (the pid of the process that made it): the next
``Network`` finds namespaces whose maker is dead, kills what still runs in them and deletes
them. ``close`` (also registered with ``atexit``) does the same for its own run.

Code of the bed that must talk to a process inside a namespace runs ``in_netns(name, fn)``:
``fn`` runs in a short-lived thread that entered the namespace (``setns`` switches only the
calling thread), so sockets it opens belong there.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
PREFIX_RE = re.compile(r"^cb(\d+)-")
SUBNETS = {"a": "198.51.100", "b": "203.0.113"}  # RFC 5737 documentation ranges


class NetnsUnavailable(RuntimeError):
    """Namespaces cannot be made here (not root, no ``ip``, or the kernel refuses)."""


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """Run ``ip [-n netns] args``; its stdout, or NetnsUnavailable/RuntimeError with stderr."""
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError as exc:
        raise NetnsUnavailable("no `ip` program: install iproute2 (.ci/install-system)") from exc
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def netns_exec(name: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside namespace ``name`` (``ip netns exec`` execs it: same pid)."""
    return ["ip", "netns", "exec", name, *argv]


def in_netns(name: str, fn: Callable[[], T]) -> T:
    """``fn()`` run in a thread that entered namespace ``name``; its result or its exception."""
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(NETNS_DIR / name, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {name}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=run, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def pids_in(name: str) -> list[int]:
    out = ip("netns", "pids", name, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def kill_all_in(name: str, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, every process left in namespace ``name``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = pids_in(name)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + timeout_s
        while pids and time.monotonic() < end:
            time.sleep(0.05)
            pids = pids_in(name)
        if not pids:
            return


def remove_namespace(name: str) -> None:
    kill_all_in(name)
    ip("netns", "delete", name, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def remove_leftovers() -> list[str]:
    """Delete the namespaces of runs whose process is gone; returns their names."""
    removed = []
    for name in namespaces():
        match = PREFIX_RE.match(name)
        if match and not _alive(int(match.group(1))):
            remove_namespace(name)
            removed.append(name)
    return removed


@dataclass(frozen=True)
class Host:
    """One host namespace: its short name, subnet key, address and veth name in the router."""

    short: str
    subnet: str
    address: str
    netns: str

    @property
    def router_port(self) -> str:
        return f"v-{self.short}"  # this host's end of its link, inside the router namespace


class Network:
    """A router and hosts on the two subnets; ``add_host`` per host, ``close`` removes all."""

    def __init__(self) -> None:
        self.prefix = f"cb{os.getpid()}-"
        self.router = self.prefix + "router"
        self.hosts: dict[str, Host] = {}
        self._next = {key: 10 for key in SUBNETS}  # .1 is the router
        self._made: list[str] = []
        self._closed = False
        check_root()
        self.leftovers = remove_leftovers()
        for name in namespaces():
            if name.startswith(self.prefix):
                remove_namespace(name)  # ours from an earlier Network in this process
        atexit.register(self.close)
        self._make(self.router)
        ip("link", "set", "lo", "up", netns=self.router)
        for key, net in SUBNETS.items():
            ip("link", "add", f"br-{key}", "type", "bridge", netns=self.router)
            ip("addr", "add", f"{net}.1/24", "dev", f"br-{key}", netns=self.router)
            ip("link", "set", f"br-{key}", "up", netns=self.router)
        subprocess.run(
            netns_exec(self.router, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]),
            check=True,
            timeout=30,
        )

    def _make(self, name: str) -> None:
        try:
            ip("netns", "add", name)
        except RuntimeError as exc:
            raise NetnsUnavailable(
                f"cannot create network namespace {name} (the hosts bed needs root with "
                f"CAP_SYS_ADMIN and CAP_NET_ADMIN): {exc}"
            ) from exc
        self._made.append(name)

    def add_host(self, short: str, subnet: str) -> Host:
        """A host namespace on ``subnet`` (``"a"`` or ``"b"``) with the next free address."""
        net = SUBNETS[subnet]
        host = Host(short, subnet, f"{net}.{self._next[subnet]}", self.prefix + short)
        self._next[subnet] += 1
        self._make(host.netns)
        ip(
            "link", "add", host.router_port, "type", "veth",
            "peer", "name", "eth0", "netns", host.netns,
            netns=self.router,
        )  # fmt: skip
        ip("link", "set", host.router_port, "master", f"br-{subnet}", netns=self.router)
        ip("link", "set", host.router_port, "up", netns=self.router)
        ip("link", "set", "lo", "up", netns=host.netns)
        ip("addr", "add", f"{host.address}/24", "dev", "eth0", netns=host.netns)
        ip("link", "set", "eth0", "up", netns=host.netns)
        for key, other in SUBNETS.items():
            if key != subnet:
                ip("route", "add", f"{other}.0/24", "via", f"{net}.1", netns=host.netns)
        self.hosts[short] = host
        return host

    def link(self, short: str, up: bool, timeout_s: float = 10.0) -> None:
        """Cut (or restore) a host's link at the router; the host keeps its addresses and routes.

        Restoring returns once both ends and the subnet's bridge are operationally up: the
        kernel reports a carrier coming back up to a second late (linkwatch), and until then
        nothing passes. The bridge counts too: when a host's port is the only one on its
        subnet, the bridge loses its carrier with it, and the router has no route to the
        subnet until the bridge is up again (CI once reached the host too early without it).
        """
        host = self.hosts[short]
        ip("link", "set", host.router_port, "up" if up else "down", netns=self.router)
        end = time.monotonic() + timeout_s
        while up and not (
            "state UP" in ip("link", "show", host.router_port, netns=self.router)
            and "state UP" in ip("link", "show", f"br-{host.subnet}", netns=self.router)
            and "state UP" in ip("link", "show", "eth0", netns=host.netns)
        ):
            if time.monotonic() > end:
                raise TimeoutError(f"link of {short} not up after {timeout_s:.0f}s")
            time.sleep(0.05)

    @contextlib.contextmanager
    def cut(self, short: str) -> Iterator[None]:
        self.link(short, up=False)
        try:
            yield
        finally:
            self.link(short, up=True)

    @contextlib.contextmanager
    def partition(self, one: str, other: str) -> Iterator[None]:
        """``one`` and ``other`` stop hearing each other (dropped silently, both ways); each
        still reaches every other host: a partition only some members see."""
        pairs = [(self.hosts[one], self.hosts[other]), (self.hosts[other], self.hosts[one])]
        rules = [("INPUT", "-s"), ("OUTPUT", "-d")]

        def iptables(host: Host, action: str, chain: str, match: str, peer: Host) -> None:
            argv = ["iptables", "-w", action, chain, match, peer.address, "-j", "DROP"]
            subprocess.run(netns_exec(host.netns, argv), check=True, timeout=30)

        for host, peer in pairs:
            for chain, match in rules:
                iptables(host, "-I", chain, match, peer)
        try:
            yield
        finally:
            for host, peer in pairs:
                for chain, match in rules:
                    iptables(host, "-D", chain, match, peer)

    def close(self) -> None:
        """Kill every process in this run's namespaces and delete them (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for name in reversed(self._made):
            remove_namespace(name)
        atexit.unregister(self.close)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_root() -> None:
    """Fail with one clear line where namespaces cannot be made; the bed never skips."""
    if os.geteuid() != 0:
        raise NetnsUnavailable(
            "the hosts bed needs root (network namespaces); run the tests as root, as CI does"
        )
    ip("-V")
