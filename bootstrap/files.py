"""Atomic file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from bootstrap.errors import RenderError
from bootstrap.model import RenderedFile


def _stage(path: Path, content: str, mode: int) -> Path:
    """A fsynced temp file beside ``path`` holding ``content``.

    The temp file is created with ``mode`` from the start, so a secret is never readable by
    others, not even for a moment.
    """
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise RenderError(f"cannot write {path}: {exc.strerror or exc}") from exc
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise RenderError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return tmp


def _commit(staged: list[tuple[Path, Path]]) -> None:
    """Rename each temp file over its target, then fsync the directory so renames survive."""
    for tmp, path in staged:
        try:
            tmp.replace(path)
        except OSError as exc:
            _discard(staged)
            raise RenderError(f"cannot write {path}: {exc.strerror or exc}") from exc
        _fsync_directory(path.parent)


def _discard(staged: list[tuple[Path, Path]]) -> None:
    for tmp, _ in staged:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_writable(files: tuple[RenderedFile, ...]) -> None:
    """Refuse before anything is written if any target directory cannot take a file.

    Writing is all-or-nothing in practice: every directory is checked first, so one unwritable
    directory leaves every file as it was.
    """
    problems = []
    for rendered in files:
        directory = _nearest_existing(rendered.path.parent)
        if not os.access(directory, os.W_OK | os.X_OK):
            problems.append(f"{rendered.path}: directory {directory} is not writable")
        elif rendered.path.is_dir():
            problems.append(f"{rendered.path}: is a directory")
    if problems:
        raise RenderError("; ".join(problems))


def _nearest_existing(directory: Path) -> Path:
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return directory


def write_all(files: tuple[RenderedFile, ...]) -> list[Path]:
    """Write every file (skipping write-once files that exist); return the paths written.

    Every temp file is written and fsynced before any is renamed into place, so a file that
    cannot be written leaves every other file as it was.
    """
    check_writable(files)
    staged: list[tuple[Path, Path]] = []
    try:
        for rendered in files:
            if rendered.write_once and rendered.path.exists():
                continue
            mode = 0o600 if rendered.secret else rendered.mode
            staged.append((_stage(rendered.path, rendered.content, mode), rendered.path))
    except BaseException:
        _discard(staged)
        raise
    _commit(staged)
    return [path for _, path in staged]
