"""Read a DICOMDIR (the index file of a CD or DVD export) for the files it names.

The DICOMDIR itself is never uploaded; the files it references are scanned like any other file.
CD file systems are often listed in another case than the DICOMDIR spells them, so each path
component is matched case-insensitively when the exact spelling does not exist.

Called from the scanning thread; pure reads.
"""

from __future__ import annotations

import os

from xnat_uploader.core.dicom.values import quiet_pydicom


def referenced_files(dicomdir: str) -> tuple[list[str], list[str]]:
    """Return (existing files, missing files) referenced by the DICOMDIR at ``dicomdir``.

    Raises ``OSError`` or pydicom's errors when the DICOMDIR cannot be read.
    """
    from pydicom import dcmread  # only when a DICOMDIR is found

    root = os.path.dirname(dicomdir)
    with quiet_pydicom():
        ds = dcmread(dicomdir)
        records = list(ds.get("DirectoryRecordSequence") or [])
        ids = [rec.get("ReferencedFileID") for rec in records]
    found: list[str] = []
    missing: list[str] = []
    listing: dict[str, dict[str, str]] = {}
    for fid in ids:
        if not fid:
            continue
        parts = [str(fid)] if isinstance(fid, str) else [str(p) for p in fid]
        path = _resolve(root, parts, listing)
        if path is None:
            missing.append(os.path.join(root, *parts))
        else:
            found.append(path)
    return found, missing


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
