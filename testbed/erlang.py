"""Real Erlang nodes for the EMQX tests: a node name, a cookie and seeds, on a real distribution.

No EMQX server can be had here, but Erlang/OTP can (Debian's ``erlang-base``, installed by
``.ci/run``). EMQX runs on that distribution: a node joins its seeds with the node name and cookie
it was started with, and its distribution port is derived from the name (4370 for a name without
a numeric suffix), without epmd. These nodes are started the same way: ``-name``, ``-setcookie``,
``-start_epmd false -erl_epmd_port 4370``, each bound to its own loopback address, so three of
them listen on 4370 as three hosts would.

Each node pings every seed it was given (retrying until a deadline, while its peers start) and
prints one line per seed; it then stays up so the others can reach it. ``-connect_all false``
keeps one node's success from connecting the others behind its back: each ``pong`` is the node's
own. A missing ``erl`` is an error, never a skip.
"""

from __future__ import annotations

import ipaddress
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

DIST_PORT = 4370  # what EMQX derives from a node name without a numeric suffix

# Runs in each node: ping every seed (plain arguments after the deadline), one line per seed.
PROBE = """
[DeadlineArg | SeedArgs] = init:get_plain_arguments(),
Deadline = erlang:monotonic_time(millisecond) + list_to_integer(DeadlineArg),
Ping = fun Ping(Seed) ->
    case net_adm:ping(Seed) of
        pong -> pong;
        pang ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true -> pang;
                false -> timer:sleep(100), Ping(Seed)
            end
    end
end,
io:format("node ~s~n", [node()]),
[io:format("ping ~s ~s~n", [S, Ping(list_to_atom(S))]) || S <- SeedArgs],
io:format("done~n").
"""


def erl() -> str:
    path = shutil.which("erl")
    if path is None:
        raise RuntimeError("erl not found: install Debian's erlang-base (.ci/run does)")
    return path


@dataclass
class Probe:
    """What one node reported: its own name, and ``pong``/``pang`` for each seed."""

    node: str = ""
    pings: dict[str, str] = field(default_factory=dict)


class ErlangNode:
    """One node started with ``name`` and ``cookie`` that pings ``seeds``; a context manager."""

    def __init__(
        self, name: str, cookie: str, seeds: Sequence[str], *, ping_deadline_s: float = 30.0
    ) -> None:
        self.name, self.cookie, self.seeds = name, cookie, list(seeds)
        self.ping_deadline_s = ping_deadline_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.output: list[str] = []

    def argv(self) -> list[str]:
        host = self.name.partition("@")[2]
        address = ipaddress.IPv4Address(host)  # tests use addresses; a name would need DNS
        interface = "{" + ",".join(str(b) for b in address.packed) + "}"
        return [
            erl(),
            "-noinput",
            "-name",
            self.name,
            "-setcookie",
            self.cookie,
            "-start_epmd",
            "false",
            "-erl_epmd_port",
            str(DIST_PORT),
            "-connect_all",
            "false",
            "-kernel",
            "inet_dist_use_interface",
            interface,
            "-eval",
            PROBE,
            "-extra",
            str(int(self.ping_deadline_s * 1000)),
            *self.seeds,
        ]

    def __enter__(self) -> Self:
        self.proc = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            assert self.proc.stdout is not None
            self.proc.stdout.close()

    def probe(self, timeout_s: float) -> Probe:
        """Read the node's report until ``done``; fails with its output after ``timeout_s``."""
        assert self.proc is not None and self.proc.stdout is not None
        result, buffer = Probe(), b""
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    break  # the node exited
                buffer += chunk
                *lines, rest = buffer.split(b"\n")
                buffer = rest
                for raw in lines:
                    line = raw.decode(errors="replace").strip()
                    self.output.append(line)
                    words = line.split()
                    if words[:1] == ["node"] and len(words) == 2:
                        result.node = words[1]
                    elif words[:1] == ["ping"] and len(words) == 3:
                        result.pings[words[1]] = words[2]
                    elif line == "done":
                        return result
        raise RuntimeError(f"node {self.name} did not report: {self.output[-20:]}")
