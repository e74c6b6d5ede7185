"""Safe output: atomic file writes, temporaries a killed process left, and locks on output folders.

Atomic writes go to a temporary file in the same folder, fsynced, then renamed over the target, so
readers never see a half-written file under its real name, whatever kills the process mid-write. The
temporary's name carries the writer's pid (`.metrics.json.<pid>.<random>.tmp`), so the next write, or
the next command that takes the folder, can tell a dead writer's leftover from a live one's file.

A folder lock (`.vemo.lock`, holding the pid, machine, command and start time) keeps two commands
from writing one run folder at once. It is an flock on that file: the kernel drops it when its holder
dies, so a lock left by a killed process is stale by construction and is taken over, said so.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

LOCK_NAME = ".vemo.lock"
# `.<name>.<pid>.<random>.tmp` (atomic_write) and `.tmp-<name>-<pid>` (prepare's cache under construction)
_TEMP_FILE = re.compile(r"^\..+?\.(?P<pid>\d+)\.[^.]+\.tmp$")
_TEMP_DIR = re.compile(r"^\.tmp-.+-(?P<pid>\d+)$")


class OutputError(RuntimeError):
    """An output folder vemo must not or cannot write: in use by another command, not a folder, not
    writable, or holding a finished run. The message names the folder and says what to do."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (signal 0 checks without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _stale(name: str) -> bool:
    """A temporary whose writer is no longer running (names without a pid come from older vemo versions)."""
    m = _TEMP_FILE.match(name) or _TEMP_DIR.match(name)
    return m is not None and not pid_alive(int(m["pid"]))


def remove_stale_temps(folder: str | Path, name: str | None = None) -> list[Path]:
    """Delete temporaries in `folder` left by killed vemo processes (all, or only those of file `name`)."""
    folder = Path(folder)
    pattern = f".{name}.*.tmp" if name else ".*"
    removed = []
    for path in folder.glob(pattern):
        if not _stale(path.name):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode()))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def check_writable(folder: str | Path) -> Path:
    """Create `folder` if needed and prove a file can be written in it, before any work is done for it.

    Raises OutputError naming the folder, so a long computation never ends in a failed write.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder; give an output folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OutputError(f"{folder}: cannot write there ({err.strerror or err})") from err
    return folder


def _holder(fd: int) -> str:
    """What the lock file says about its holder: `vemo train (pid 123 on host, since 2024-...)`."""
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        info = json.loads(os.read(fd, 4096).decode() or "{}")
    except ValueError:
        return "another process"
    return f"{info.get('command', 'vemo')} (pid {info.get('pid')} on {info.get('host')}, since {info.get('since')})"


def _try_lock(path: Path) -> tuple[int, str] | None:
    """An fd holding the flock on `path`, and what the file said before (a stale holder); None to retry.

    The path is checked to still name the locked file: a holder releasing it unlinks it first, and a
    lock on an unlinked file locks nothing.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise OutputError(
            f"{path.parent}: in use by {holder}; wait for it to finish or choose another folder"
        ) from None
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return None
    previous = _holder(fd) if os.fstat(fd).st_size else ""
    return fd, previous


@contextmanager
def folder_lock(folder: str | Path, command: str, log=print) -> Iterator[Path]:
    """Hold `folder` for this process; a second holder gets an OutputError naming the first.

    On entry, temporaries that killed writers left in the folder are removed (no live writer can own
    them: the folder is ours). The lock file is deleted on exit; after a kill it stays, unlocked, and the
    next command takes it over.
    """
    folder = Path(folder)
    created = _first_missing(folder)
    check_writable(folder)
    path = folder / LOCK_NAME
    for _ in range(20):
        if (got := _try_lock(path)) is not None:
            break
    else:
        raise OutputError(f"{folder}: could not take {path} (it keeps being replaced)")
    fd, previous = got
    if previous:
        log(f"note: {folder} was left locked by {previous}, which is no longer running; taking it over")
    info = {"command": command, "pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%F %T")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    try:
        for stale in remove_stale_temps(folder):
            log(f"note: removed {stale.name}, left in {folder} by a killed process")
        yield folder
    finally:
        path.unlink(missing_ok=True)  # while still locked, so no one else can be holding this file
        os.close(fd)
        _remove_if_empty(folder, created)  # a command that failed before writing anything leaves no empty folder


@contextmanager
def tidy_on_failure(folder: str | Path) -> Iterator[None]:
    """Remove `folder` again, if this block created it and fails leaving it empty (a command refused
    late, e.g. on unusable data, leaves no empty output folder behind)."""
    folder = Path(folder)
    created = _first_missing(folder)
    try:
        yield
    except BaseException:
        _remove_if_empty(folder, created)
        raise


def _first_missing(folder: Path) -> Path | None:
    """The outermost of `folder` and its parents that does not exist yet (what making it will create)."""
    missing = None
    for p in (folder, *folder.parents):
        if p.exists() or p.is_symlink():
            break
        missing = p
    return missing


def _remove_if_empty(folder: Path, created: Path | None) -> None:
    """Remove `folder` and its parents up to `created` (the outermost one made for it), each only if
    empty; nothing when nothing was created."""
    if created is None:
        return
    for p in (folder, *folder.parents):
        with suppress(OSError):
            p.rmdir()  # only an empty folder goes
        if p == created or p.exists():
            return
