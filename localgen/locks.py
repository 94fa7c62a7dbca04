"""One writer per folder: an exclusive OS file lock that every command writing a run
folder (generate, run, boost, curate, report) holds while it works.

The lock is `flock` on a small file in the folder, so the kernel releases it when the
process ends however it ends: a SIGKILL never leaves a stale lock. The file holds who
took it (pid, command, host, start time), for the message a second writer gets; it is
left in place when the lock is released, except by a command that created it and then
failed (a folder it refused keeps nothing of localgen's). A writer that locked a file
checks that the folder still holds that file, so a file removed by its last holder is
never locked by one process while another locks its replacement. Readers (`show`,
`export`) take no lock: every file a writer leaves is whole (written to a temporary name
and renamed), so what they read is consistent. A command that runs another on the same
folder (`run` runs generate and curate) holds the lock once; the inner ones see that
this process holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from localgen.artifacts import utc_now
from localgen.errors import OutputError

LOCK_FILE = ".localgen.lock"

_held: dict[Path, int] = {}  # folders this process holds, and how many times it took each


def _holder(fd: int) -> str:
    """Who holds the lock, as the lock file says."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        who = f"pid {info['pid']} on {info['host']}, since {info['since']}"
        return f"localgen {info['command']} ({who})"
    except (ValueError, KeyError, TypeError, OSError):
        return "another localgen process"


@contextmanager
def writing(folder: Path, command: str, create: bool = True) -> Iterator[None]:
    """Hold `folder`'s writer lock for the block; OutputError at once if another process
    holds it. `create` makes the folder; without it a missing folder is not locked (the
    command then says it is missing)."""
    key = folder.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file; give a folder")
    if not folder.is_dir():
        if not create:
            yield
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create {folder}: {e.strerror}") from None
    fd, made = _lock(folder)
    try:
        info = {"pid": os.getpid(), "command": command, "host": socket.gethostname()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info | {"since": utc_now()}).encode(), 0)
        _held[key] = 1
        try:
            yield
        except BaseException:
            if made:  # removed while still held: see the module docstring
                (folder / LOCK_FILE).unlink(missing_ok=True)
            raise
        finally:
            del _held[key]
    finally:
        os.close(fd)  # releases the lock


def _lock(folder: Path) -> tuple[int, bool]:
    """The locked lock file of `folder`, and whether this call created it; OutputError
    when another process holds it."""
    path = folder / LOCK_FILE
    while True:
        made = True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            made = False
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:  # its holder removed it just now: make a new one
                continue
            except OSError as e:
                raise OutputError(f"cannot lock {folder}: {e.strerror}") from None
        except OSError as e:
            raise OutputError(f"cannot lock {folder}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputError(
                f"{folder} is being written by {holder}; wait for it to finish, "
                "or choose another --out"
            ) from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd, made
        except FileNotFoundError:
            pass
        os.close(fd)  # locked a file its last holder removed: lock the new one
