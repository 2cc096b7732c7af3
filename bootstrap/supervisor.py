"""The supervisor: the server as this agent's child, with the agent staying as PID 1.

Contract (see DESIGN.md, "Day 2"):

- ``start`` starts the server as a child (never a shell) with the rendered environment.
- SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to the agent go to the child.
  After SIGTERM or SIGINT the child has ``kill_timeout_s`` to exit, then it gets SIGKILL.
- Every child that exits is reaped, the server's own orphans included (as PID 1 of a
  container they are re-parented to us). The agent must not start asyncio subprocesses while
  a ``Child`` runs: their exit status would be reaped here. A short program the agent needs
  meanwhile (an adapter's quorum tool) runs through ``run_tool``, which gets its exit code
  from the same reaper.
- ``wait`` returns the server's exit code the way a shell reports it: the code, or 128+N for
  signal N. The agent exits with it. It never restarts the server on its own: the scheduler's
  restart policy does, with its back-off (README, "Supervise mode").
- ``restart`` (``--on-change restart``) stops the server the same way and starts it again; the
  exit it causes is not the agent's exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from typing import IO

from bootstrap.errors import ExecError
from bootstrap.log import log

FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
STOPPING = (signal.SIGTERM, signal.SIGINT)


def exit_code(status: int) -> int:
    """A wait status as a shell shows it: the exit code, or 128+N for signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Child:
    """The server process, supervised. Use ``async with Child(...)`` inside a running loop."""

    def __init__(
        self,
        program: str,
        command: Sequence[str],
        env: Mapping[str, str],
        kill_timeout_s: float,
    ) -> None:
        self.program = program
        self.command = list(command)
        self.env = dict(env)
        self.kill_timeout_s = kill_timeout_s
        self.pid: int | None = None
        self.stopping = False  # a stop was asked for (by a signal or a restart)
        self._restarting = False
        self._exited: asyncio.Future[int] | None = None  # this run of the server
        self._final: asyncio.Future[int] | None = None  # the run whose exit ends the agent
        self._killer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.reaped_orphans = 0
        self._tools: dict[int, asyncio.Future[int]] = {}  # run_tool's programs, by pid

    async def __aenter__(self) -> Child:
        loop = self._loop = asyncio.get_running_loop()
        self._final = loop.create_future()
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        for sig in FORWARDED:
            loop.add_signal_handler(sig, self.forward, sig)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.pid is not None and self._exited is not None and not self._exited.done():
            # Leaving early (an error in the agent): never leave the server behind.
            self.forward(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.kill_timeout_s + 5):
                    await asyncio.shield(self._exited)
        loop = asyncio.get_running_loop()
        for sig in (*FORWARDED, signal.SIGCHLD):
            loop.remove_signal_handler(sig)
        if self._killer is not None:
            self._killer.cancel()

    def start(self) -> int:
        """Start the server; its pid. Raise ``ExecError`` if it cannot be started."""
        if self._loop is None:
            raise RuntimeError("Child.start outside 'async with'")
        self._exited = self._loop.create_future()
        self.stopping = False
        try:
            # Popen, not asyncio's subprocess: our SIGCHLD handler reaps every child itself.
            proc = subprocess.Popen(  # the user's own command, no shell
                self.command, executable=self.program, env=self.env, close_fds=True
            )
        except OSError as exc:
            raise ExecError(f"cannot start {self.program}: {exc.strerror}") from exc
        # Popen must not reap it behind our back (its __del__ polls); we own the pid now.
        proc.returncode = 0
        self.pid = proc.pid
        log.info("started %s as pid %d (supervised)", " ".join(self.command), self.pid)
        self._reap()  # it may have exited before the handler could see it
        return self.pid

    async def run_tool(self, argv: Sequence[str], timeout_s: float) -> tuple[int, str]:
        """Run a short program beside the server (no shell): its exit code (128+N for signal
        N) and its output, stdout and stderr together. ``OSError`` if it cannot start,
        ``TimeoutError`` (after SIGKILL) if it runs longer than ``timeout_s``."""
        if self._loop is None:
            raise RuntimeError("Child.run_tool outside 'async with'")
        with tempfile.TemporaryFile() as output:
            pid = self._spawn_tool(argv, output)
            exited = self._tools[pid] = self._loop.create_future()
            self._reap()  # it may have exited already
            try:
                async with asyncio.timeout(timeout_s):
                    code = await asyncio.shield(exited)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                await exited
                raise
            finally:
                if exited.done():
                    self._tools.pop(pid, None)
            output.seek(0)
            return code, output.read().decode(errors="replace")

    @staticmethod
    def _spawn_tool(argv: Sequence[str], output: IO[bytes]) -> int:
        # Popen, not asyncio's subprocess (as in start): _reap collects its exit status.
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
        proc.returncode = 0  # Popen must not reap it behind our back (see start)
        return proc.pid

    async def wait(self) -> int:
        """Until the server exits (not for a restart); its exit code (128+N for signal N)."""
        if self._final is None:
            raise RuntimeError("Child.wait outside 'async with'")
        return await asyncio.shield(self._final)

    @property
    def running(self) -> bool:
        return self._exited is not None and not self._exited.done()

    def forward(self, sig: int) -> None:
        """Send ``sig`` to the server; SIGTERM/SIGINT also arm the SIGKILL timer."""
        if not self.running or self.pid is None:
            return
        name = signal.Signals(sig).name
        log.info("forwarding %s to pid %d", name, self.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
        if sig in STOPPING:
            self.stopping = True
            if self._killer is None and self._loop is not None:
                self._killer = self._loop.call_later(self.kill_timeout_s, self._kill)

    def _kill(self) -> None:
        self._killer = None
        if self.running and self.pid is not None:
            log.warning(
                "pid %d still running %gs after the stop signal: SIGKILL",
                self.pid,
                self.kill_timeout_s,
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    async def restart(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after the kill timeout) and start it again."""
        if self._exited is None or self._final is None or self._final.done():
            return
        self._restarting = True
        try:
            self.forward(signal.SIGTERM)
            code = await asyncio.shield(self._exited)
            log.info("pid %s exited with %d for the restart", self.pid, code)
            self.start()
        except ExecError as exc:
            log.error("%s", exc)
            self._final.set_result(ExecError.exit_code)
        finally:
            self._restarting = False

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid and self._exited is not None and not self._exited.done():
                if self._killer is not None:
                    self._killer.cancel()
                    self._killer = None
                code = exit_code(status)
                log.info("pid %d exited with %d", pid, code)
                self._exited.set_result(code)
                if not self._restarting and self._final is not None and not self._final.done():
                    self._final.set_result(code)
            elif pid in self._tools:
                exited = self._tools.pop(pid)
                if not exited.done():
                    exited.set_result(exit_code(status))
            else:
                self.reaped_orphans += 1
                log.debug("reaped pid %d (an orphan)", pid)
