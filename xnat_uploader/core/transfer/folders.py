"""Files of a folder to send as one zip: what counts (no hidden files, OS clutter or links leading out), and
the streamed ZIP_STORED body. Pure functions over the file system; any thread may call them.
"""

from __future__ import annotations

import os

from xnat_uploader.core.dicom.walk import inside
from xnat_uploader.core.errors import UserError
from xnat_uploader.core.transfer.zipstream import ZipMember, ZipStream, stored_length
from xnat_uploader.core.xnat.body import StreamBody

_JUNK = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})


def is_junk(name: str) -> bool:
    """Hidden files and the clutter operating systems leave in folders: never attached."""
    return name.startswith(".") or name.lower() in _JUNK or name.startswith("~$")


def folder_files(folder: str, root: str | None = None) -> list[tuple[str, str]]:
    """``(path, name relative to folder with '/')`` for every file below ``folder``, sorted by name.

    Hidden files and OS clutter are left out. Linked folders are not entered, and linked files count only when
    they point inside ``root`` (default: the folder itself), so a link never pulls in files from elsewhere.
    """
    real_root = os.path.realpath(root or folder)
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):  # os.walk never descends into linked folders
        dirnames[:] = [d for d in dirnames if not is_junk(d)]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if is_junk(name) or not os.path.isfile(path):
                continue
            if os.path.islink(path) and not inside(os.path.realpath(path), real_root):
                continue
            out.append((path, os.path.relpath(path, folder).replace(os.sep, "/")))
    return sorted(out, key=lambda pair: pair[1])


def folder_body(folder: str) -> tuple[StreamBody, int]:
    """A streamed ZIP_STORED archive of the files below ``folder`` (see :func:`folder_files`) and their count."""
    members = [ZipMember.from_path(p, name) for p, name in folder_files(folder)]
    if not members:
        raise UserError(f"The folder {os.path.basename(folder)} holds no files.", "Give a folder with files in it.")
    return StreamBody(lambda: ZipStream(members), stored_length(members)), len(members)
