"""What every failed start must look like: one error line, the documented code, disk untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.integration.conftest import AGENT, Result

PREFIX = "cluster-bootstrap: "
ERROR_PREFIX = "cluster-bootstrap: error: "
MEMORY_LIMIT = 384 * 1024**2  # no input, however hostile, may make a start use more
# Sets the address-space limit, then becomes the console script (no threads, no preexec_fn).
_LIMITED_EXEC = (
    "import os, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1]))); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def run_limited(args: Sequence[str], env: dict[str, str], timeout_s: float = 120) -> Result:
    """Run the installed console script as a user would, within ``MEMORY_LIMIT``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "NOMAD_"))}
    full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", _LIMITED_EXEC, str(MEMORY_LIMIT), AGENT, *args],
        env=full_env,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout_s,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def error_line(result: Result) -> str:
    """The one ``error:`` line of a failed run; fails unless the run ended exactly so."""
    lines = result.stderr.splitlines()
    exited = f"exit {result.code}"
    assert "Traceback" not in result.stderr, f"{exited} with a traceback: {result.stderr[-1500:]}"
    strays = [line for line in lines if not line.startswith(PREFIX)]
    assert not strays, f"{exited}; stderr lines that are not ours: {strays[:3]}"
    errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1, f"{exited}; {len(errors)} error lines: {result.stderr[-1500:]}"
    assert lines[-1] == errors[0], f"{exited}; the error line is not the last line"
    return errors[0]


def assert_failed(result: Result, code: int) -> str:
    """Exit ``code``, nothing on stdout, one error line (returned)."""
    line = error_line(result)
    assert result.code == code, f"exit {result.code}, expected {code}: {line[:500]}"
    assert result.stdout == "", result.stdout[:500]
    return line


def snapshot(root: Path) -> dict[str, tuple[str, bytes | None, int]]:
    """Every path under ``root``: kind, content (files) and permission bits."""
    found: dict[str, tuple[str, bytes | None, int]] = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode & 0o7777
        if path.is_symlink():
            found[str(path.relative_to(root))] = ("link", str(path.readlink()).encode(), mode)
        elif path.is_dir():
            found[str(path.relative_to(root))] = ("dir", None, mode)
        else:
            found[str(path.relative_to(root))] = ("file", path.read_bytes(), mode)
    return found


def assert_disk_unchanged(root: Path, before: dict[str, tuple[str, bytes | None, int]]) -> None:
    """Byte-identical files, same modes, nothing added or removed, no temp files left."""
    leftovers = [str(p) for p in root.rglob(".*.tmp")]
    assert not leftovers, f"temp files left behind: {leftovers}"
    after = snapshot(root)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or changed), f"added {added}, removed {removed}, changed {changed}"
