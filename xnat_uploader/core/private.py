"""Owner-only folders and files for what the app keeps: settings, the upload queue, logs and receipts.

They hold labels taken from PatientID and the paths of the source files, so on POSIX every folder the app
makes is 0700 and every file 0600, whatever the umask: other accounts on a shared lab machine read nothing.
:func:`tighten` brings the folders of an older install to the same rule on start.

On Windows nothing is done: these folders live in the user's profile (``%LOCALAPPDATA%``), whose access list
already shuts out other accounts, and ``chmod`` there only sets the read-only flag.

Pure file-system calls; any thread.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
ENFORCED = os.name == "posix"  # see the module docstring for Windows


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Make ``path`` (and any missing parent) owner-only; an existing folder of ours is tightened too.

    Folders that already existed above it are left as they are (the user's home, ``~/.local/share``).
    """
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        # exist_ok: another process (a CLI beside the GUI) may make it at the same moment
        folder.mkdir(mode=DIR_MODE, exist_ok=True)
    _chmod(path, DIR_MODE)
    return path


def private_file(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` empty if missing, owner-only either way (e.g. the queue database before SQLite opens it:
    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode)."""
    path = Path(path)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    _chmod(path, FILE_MODE)
    return path


def opener(name: str | os.PathLike[str], flags: int) -> int:
    """``open(..., opener=opener)``: a file created owner-only (an existing one is tightened)."""
    fd = os.open(name, flags, FILE_MODE)
    if ENFORCED:
        with contextlib.suppress(OSError):  # a file of another owner (shared folder): leave it
            if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
                os.fchmod(fd, FILE_MODE)
    return fd


def write_private_text(path: Path, text: str, *, errors: str = "strict") -> None:
    """Write ``text`` (UTF-8) to ``path``, created owner-only. The caller renames it into place."""
    with open(path, "w", encoding="utf-8", errors=errors, opener=opener) as handle:
        handle.write(text)


def tighten(folders: Iterable[str | os.PathLike[str]]) -> int:
    """Make every folder under ``folders`` 0700 and every file 0600; returns how many were changed.

    Only the app's own folders may be given: symbolic links are never followed (a link to the user's DICOM
    is not walked into), and entries owned by another account are left alone.
    """
    if not ENFORCED:
        return 0
    changed = 0
    for top in folders:
        top = Path(top)
        if not top.is_dir() or top.is_symlink():
            continue
        changed += _chmod(top, DIR_MODE)
        for root, dirs, files in os.walk(top, followlinks=False):
            for name in dirs:
                changed += _chmod(Path(root, name), DIR_MODE)
            for name in files:
                changed += _chmod(Path(root, name), FILE_MODE)
    return changed


def _chmod(path: Path, mode: int) -> int:
    """Set ``mode`` on a folder or regular file of ours (never through a link); 1 if it changed."""
    if not ENFORCED:
        return 0
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) == mode:
            return 0
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            return 0
        os.chmod(path, mode)
    except OSError:  # gone meanwhile, or a file system without modes (a FAT stick): nothing to protect there
        return 0
    return 1
