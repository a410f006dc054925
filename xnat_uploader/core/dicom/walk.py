"""Find the files to scan: an iterative ``os.scandir`` walk that streams, dedups and never loops.

Folders are walked with an explicit stack (no recursion limit, however deep). Each folder and file is
known by ``(st_dev, st_ino)``: a folder reached twice (a symbolic link loop, or a link to a folder
already walked) is reported once and not followed; a file reached twice (given twice, or a folder and
a file inside it) is scanned once. Unreadable folders, broken links and special files are reported,
never fatal. Nothing is opened here except folders for listing.

Symbolic links met during the walk are followed only when their target lies inside one of the chosen
paths (after resolving every link): a link from one folder of an export to another is normal, and the
file it points at is scanned once whichever way it was reached. A link that leads out of what the user
chose (another patient's folder, the home folder) is reported and not followed, so a scan never reads
more than was picked. A path the user gives directly is the choice itself: a link given as such is followed.

Used by :mod:`.scan` on its own thread; the generator is not shared between threads.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator

from xnat_uploader.core.dicom.records import Rejected


def os_error_reason(exc: OSError, what: str = "file") -> str:
    """A plain-language reason for an OSError (never a path: the caller shows the path)."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{what} cannot be read (permission denied)"
    if exc.errno == errno.ENOENT:
        return f"{what} not found (it may have been removed during the scan)"
    if exc.errno == errno.ENAMETOOLONG:
        return f"{what} path too long for the system"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop (not followed)"
    return f"{what} cannot be read ({exc.strerror or type(exc).__name__})"


OUTSIDE_LINK = "symbolic link to a place outside the chosen folders (not followed)"


def real(path: str) -> str:
    """``path`` with every symbolic link resolved, normalised for comparisons (case-folded on Windows)."""
    return os.path.normcase(os.path.realpath(path))


def inside(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or below it (both resolved paths, see :func:`real`)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Walker:
    """Turns the user's paths into a stream of files to read and things to report.

    ``files`` yields ``str`` paths of regular files, first seen first; ``Rejected`` entries come in
    the same stream. ``add_file`` lets the scanner feed back files named by a DICOMDIR, deduplicated
    against everything walked.
    """

    def __init__(self) -> None:
        self._seen_files: set[tuple[int, int]] = set()
        self._seen_dirs: set[tuple[int, int]] = set()
        self._roots: list[str] = []  # the chosen paths, links resolved: links found in the walk must stay inside

    def claim_file(self, path: str) -> bool:
        """True the first time a file (by device and inode) is claimed; False for a duplicate."""
        try:
            st = os.stat(path)
        except OSError:
            return True  # let the reader report why it cannot be opened
        key = (st.st_dev, st.st_ino)
        if key in self._seen_files:
            return False
        self._seen_files.add(key)
        return True

    def _inside_roots(self, path: str) -> bool:
        return any(inside(path, root) for root in self._roots)

    def walk(self, paths: list[str]) -> Iterator[str | Rejected]:
        """Yield files to read (``str``) and problems (``Rejected``) for ``paths``, streaming."""
        stack: list[tuple[str, int]] = []
        self._roots.extend(real(path) for path in paths)
        for path in paths:
            try:
                st = os.stat(path)
            except OSError as exc:
                yield Rejected(path, os_error_reason(exc, "path"))
                continue
            key = (st.st_dev, st.st_ino)
            if stat.S_ISDIR(st.st_mode):
                if key not in self._seen_dirs:
                    self._seen_dirs.add(key)
                    stack.append((path, st.st_dev))
                    yield from self._drain(stack)
            elif stat.S_ISREG(st.st_mode):
                if key not in self._seen_files:
                    self._seen_files.add(key)
                    yield path
            else:
                yield Rejected(path, "not a regular file or folder")

    def _drain(self, stack: list[tuple[str, int]]) -> Iterator[str | Rejected]:
        seen_files, seen_dirs = self._seen_files, self._seen_dirs
        while stack:
            folder, dev = stack.pop()
            try:
                with os.scandir(folder) as it:
                    subdirs: list[tuple[str, int]] = []
                    for entry in it:
                        try:
                            outside = entry.is_symlink() and not self._inside_roots(real(entry.path))
                            if outside and os.path.exists(entry.path):  # a broken link is reported below
                                yield Rejected(entry.path, OUTSIDE_LINK)
                                continue
                            if entry.is_file():
                                if entry.is_symlink():
                                    st = entry.stat()
                                    key = (st.st_dev, st.st_ino)
                                else:
                                    key = (dev, entry.inode())
                                if key not in seen_files:
                                    seen_files.add(key)
                                    yield entry.path
                            elif entry.is_dir():
                                st = entry.stat()
                                key = (st.st_dev, st.st_ino)
                                if key in seen_dirs:
                                    if entry.is_symlink():
                                        yield Rejected(entry.path, _link_reason(entry.path))
                                    continue
                                seen_dirs.add(key)
                                subdirs.append((entry.path, st.st_dev))
                            elif entry.is_symlink():
                                yield Rejected(entry.path, _broken_link_reason(entry.path))
                            else:
                                yield Rejected(entry.path, "not a regular file (device, pipe or socket)")
                        except OSError as exc:
                            yield Rejected(entry.path, os_error_reason(exc))
                    # Depth-first, in listing order: push subfolders reversed so the first is walked first.
                    stack.extend(reversed(subdirs))
            except OSError as exc:
                yield Rejected(folder, os_error_reason(exc, "folder"))


def _link_reason(path: str) -> str:
    """A link to a folder already walked: a loop if it points at one of its own parents."""
    try:
        target = os.path.realpath(path)
        parent = os.path.realpath(os.path.dirname(path))
    except OSError:
        return "symbolic link loop (not followed)"
    if parent == target or parent.startswith(target.rstrip(os.sep) + os.sep):
        return "symbolic link loop (not followed)"
    return "symbolic link to a folder already scanned (not followed)"


def _broken_link_reason(path: str) -> str:
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (not followed)"
    return "broken symbolic link (its target does not exist)"
