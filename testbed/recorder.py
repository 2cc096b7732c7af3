"""A tiny server for the supervise tests: it records every signal it gets, one line each.

``python -m testbed.recorder LOG [--listen HOST:PORT] [--reload-s S] [--ignore-term]
[--orphans N] [--exit CODE]``

- Each signal is a line ``<NAME> <time>`` in LOG (appended, flushed at once).
- SIGHUP is a reload: ``reload-start <time>``, the listener closed for ``--reload-s`` seconds
  (so a health probe sees it down), then ``reload-end <time>``.
- SIGTERM/SIGINT end it with code 0, unless ``--ignore-term``.
- ``--orphans N`` leaves N grandchildren behind (``sh`` starts them and exits at once), which
  outlive their parent by a second: as PID 1, the supervisor must reap them.
- ``--exit CODE`` exits with CODE after a moment, without any signal.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RECORDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("--listen")
    parser.add_argument("--reload-s", type=float, default=0.0)
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--orphans", type=int, default=0)
    parser.add_argument("--exit", type=int)
    args = parser.parse_args()
    pending: list[str] = []

    def record(line: str) -> None:
        with Path(args.log).open("a", encoding="utf-8") as out:
            out.write(f"{line} {time.time():.3f}\n")

    for name in RECORDED:
        signal.signal(
            getattr(signal, name), lambda sig, _frame: pending.append(signal.Signals(sig).name)
        )

    def listen() -> socket.socket | None:
        if not args.listen:
            return None
        host, _, port = args.listen.rpartition(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
        sock.listen(16)
        sock.settimeout(0.05)
        return sock

    server = listen()
    record(f"started pid={os.getpid()}")
    for _ in range(args.orphans):
        subprocess.run(["sh", "-c", "sleep 1 &"], check=True)
    started = time.monotonic()
    while True:
        if server is not None:
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                pass
        else:
            time.sleep(0.05)
        if args.exit is not None and time.monotonic() - started > 0.5:
            record(f"exit {args.exit}")
            return args.exit
        while pending:
            name = pending.pop(0)
            record(name)
            if name in ("SIGTERM", "SIGINT") and not args.ignore_term:
                return 0
            if name == "SIGHUP":
                record("reload-start")
                if server is not None:
                    server.close()
                time.sleep(args.reload_s)
                server = listen()
                record("reload-end")


if __name__ == "__main__":
    sys.exit(main())
