"""Read a DICOMDIR (the index file of a CD or DVD export) for the files it names.

The DICOMDIR itself is never uploaded; the files it references are scanned like any other file.
CD file systems are often listed in another case than the DICOMDIR spells them, so each path
component is matched case-insensitively when the exact spelling does not exist.

A DICOMDIR only ever describes its own medium: every file it names must lie in the DICOMDIR's
folder or below it, once symbolic links are resolved. A file ID with ``..`` parts, an absolute path
or a link leading elsewhere would pull in a file the user never chose (another patient's, say): it is
reported with :data:`OUTSIDE_REASON` and not read.

Called from the scanning thread; pure reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from xnat_uploader.core.dicom.values import quiet_pydicom
from xnat_uploader.core.dicom.walk import inside, real

OUTSIDE_REASON = "named by a DICOMDIR but outside the DICOMDIR's folder (not read)"
MISSING_REASON = "file named in the DICOMDIR is missing"


@dataclass
class References:
    """The files a DICOMDIR names: those to read, those missing, those outside its folder (never read)."""

    found: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)


def referenced_files(dicomdir: str) -> References:
    """The files referenced by the DICOMDIR at ``dicomdir``, sorted into found, missing and outside.

    Raises ``OSError`` or pydicom's errors when the DICOMDIR cannot be read.
    """
    from pydicom import dcmread  # only when a DICOMDIR is found

    from xnat_uploader.core.dicom.fallback import WatchedFile

    root = os.path.dirname(os.path.abspath(dicomdir))
    real_root = real(root)
    with open(dicomdir, "rb") as fh, quiet_pydicom():
        # Watched: a damaged length in the DICOMDIR must not make pydicom allocate gigabytes.
        ds = dcmread(WatchedFile(fh, os.fstat(fh.fileno()).st_size), force=True)  # type: ignore[arg-type]
        records = list(ds.get("DirectoryRecordSequence") or [])
        ids = [rec.get("ReferencedFileID") for rec in records]
    refs = References()
    listing: dict[str, dict[str, str]] = {}
    for fid in ids:
        if not fid:
            continue
        parts = [str(fid)] if isinstance(fid, str) else [str(p) for p in fid]
        parts = [p.strip() for p in parts if p.strip() not in ("", ".")]
        if not parts:
            continue
        named = os.path.normpath(os.path.join(root, *parts))
        if not _plain(parts) or not inside(real(named), real_root):
            refs.outside.append(named)
            continue
        path = _resolve(root, parts, listing)
        if path is None:
            refs.missing.append(named)
        elif not inside(real(path), real_root):  # a link inside the folder that leads out of it
            refs.outside.append(path)
        else:
            refs.found.append(path)
    return refs


def _plain(parts: list[str]) -> bool:
    """True when every component is a plain name: no ``..``, no separator, no drive, nothing absolute."""
    return not any(part == ".." or any(c in part for c in "/\\:\0") for part in parts)


def _resolve(root: str, parts: list[str], listing: dict[str, dict[str, str]]) -> str | None:
    exact = os.path.join(root, *parts)
    if os.path.isfile(exact):
        return exact
    current = root
    for part in parts:
        names = listing.get(current)
        if names is None:
            try:
                names = {name.upper(): name for name in os.listdir(current)}
            except OSError:
                return None
            listing[current] = names
        name = names.get(part.upper())
        if name is None:
            return None
        current = os.path.join(current, name)
    return current if os.path.isfile(current) else None
