"""Exam folders: a dropped folder holding DICOM and, next to it, reports, protocols or other files.

The DICOM becomes the session; every top-level sub-folder without DICOM becomes a resource named after the
folder, and loose non-DICOM files go into ``MISC``. What is DICOM is decided by the scan (the
:class:`DicomIndex`), never guessed again here: a file is attached only when the scan found it to be
something else than DICOM. Broken DICOM (truncated, unreadable headers) stays a problem to show, never an
attachment. Pure functions over the index and the file system; any thread may call them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from xnat_uploader.core.attach import MISC
from xnat_uploader.core.dicom.index import DicomIndex
from xnat_uploader.core.dicom.rejects import DICOMDIR_REASON
from xnat_uploader.core.dicom.walk import OUTSIDE_LINK
from xnat_uploader.core.plan import Plan, make_label
from xnat_uploader.core.transfer.folders import folder_files, inside, is_junk

__all__ = ["MISC", "ExamItem", "assign_exam_items", "find_exam_items"]

# Reasons the scan gives to files that are simply not DICOM (reader.not_dicom_reason); anything else
# (truncated DICOM, unreadable header, damaged archive, unreadable file...) is a problem, not an attachment.
_OTHER_FILE = "not a DICOM file"
_EMPTY = "empty file"  # neither DICOM nor worth attaching (XNAT refuses an empty upload body)


@dataclass(frozen=True)
class ExamItem:
    """One top-level file or folder of a dropped folder that is not DICOM, proposed as a session resource."""

    path: str  # the top-level file or folder, joined from the dropped root
    resource: str  # the folder name made label-safe, MISC for loose files
    is_folder: bool
    files: int  # number of files (1 for a loose file)
    bytes: int
    root: str  # the dropped folder it was found in


def _norm(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))


def _top_names(roots: Sequence[str], paths: Iterable[str]) -> set[tuple[str, str]]:
    """``(root, first name below root)`` for each path below one of the (normalised) roots.

    Paths are grouped by folder first: a scan of 100,000 files has only a few hundred folders to normalise.
    """
    by_dir: dict[str, set[str]] = {}
    for path in paths:
        folder, name = os.path.split(path)
        by_dir.setdefault(folder, set()).add(name)
    out: set[tuple[str, str]] = set()
    for folder, names in by_dir.items():
        norm = _norm(folder)
        for root in roots:
            if norm == root:
                out.update((root, os.path.normcase(n)) for n in names)
            elif norm.startswith(root + os.sep):
                out.add((root, norm[len(root) + 1 :].split(os.sep, 1)[0]))
    return out


def find_exam_items(roots: Iterable[str], index: DicomIndex) -> list[ExamItem]:
    """The non-DICOM top-level items of each dropped folder in ``roots`` (files and archives are skipped).

    A sub-folder is an item when nothing below it is a DICOM instance (archive members included) or broken
    DICOM. A loose file is an item when the scan found it is not DICOM (archives: none of their members is),
    and it is not a DICOMDIR, hidden, or OS clutter (.DS_Store, Thumbs.db, desktop.ini). Files the scan did
    not see are left out. Symbolic links leading out of the root are never followed. Sorted by path.
    """
    folders = [r for r in dict.fromkeys(roots) if os.path.isdir(r)]
    norm_roots = [_norm(r) for r in folders]
    instance_paths = {rec.path for rec in index.iter_instances()}
    held = _top_names(norm_roots, instance_paths)
    other = {_norm(r.path) for r in index.rejected if not r.member and r.reason.startswith(_OTHER_FILE)}
    broken = _top_names(norm_roots, (r.path for r in index.rejected if _broken(r.reason)))
    seen = {_norm(r.path) for r in index.rejected}
    items: list[ExamItem] = []
    for root, norm_root in zip(folders, norm_roots, strict=True):
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError:
            continue  # the scan reported it already
        real_root = os.path.realpath(root)
        for entry in entries:
            key = (norm_root, os.path.normcase(entry.name))
            if is_junk(entry.name) or key in held or key in broken:
                continue
            if entry.is_symlink() and not inside(os.path.realpath(entry.path), real_root):
                continue
            try:
                if entry.is_dir():
                    files = folder_files(entry.path, real_root)
                    if files:
                        size = sum(os.path.getsize(p) for p, _ in files)
                        name = make_label(entry.name, MISC)
                        items.append(ExamItem(entry.path, name, True, len(files), size, root))
                elif entry.is_file() and entry.name.upper() != "DICOMDIR":
                    norm = _norm(entry.path)
                    if norm in other or (norm in seen and _archive_without_dicom(norm, index)):
                        items.append(ExamItem(entry.path, MISC, False, 1, entry.stat().st_size, root))
            except OSError:
                continue  # removed or unreadable since the scan: nothing to offer
    return sorted(items, key=lambda i: i.path)


def _broken(reason: str) -> bool:
    """Broken DICOM, an unreadable file or a damaged archive: shown as a problem, never attached."""
    return not reason.startswith((_OTHER_FILE, _EMPTY)) and reason not in (DICOMDIR_REASON, OUTSIDE_LINK)


def _archive_without_dicom(norm: str, index: DicomIndex) -> bool:
    """An archive whose members the scan saw, all of them plain non-DICOM files (a zip of PDFs, say)."""
    reasons = [r.reason for r in index.rejected if r.member and _norm(r.path) == norm]
    return bool(reasons) and all(r.startswith((_OTHER_FILE, _EMPTY)) for r in reasons)


def _any_below(folders: Iterable[str], root: str) -> bool:
    """Whether one of the (normalised) ``folders`` is ``root`` or lies below it."""
    return any(d == root or d.startswith(root + os.sep) for d in folders)


def assign_exam_items(plan: Plan, items: Sequence[ExamItem]) -> list[str]:
    """Give each item to the planned job whose DICOM lies below the item's root (sets ``PlannedJob.resources``).

    Every job's ``resources`` is set afresh, so calling it again with other items replaces the choice.
    Returns problems in plain words: items whose folder makes no job, or several sessions (they cannot be
    placed automatically). Problems are not added to the plan; the caller shows them.
    """
    by_root: dict[str, list[ExamItem]] = {}
    for item in items:
        by_root.setdefault(item.root, []).append(item)
    for job in plan.jobs:
        job.resources = []
    problems = []
    # Normalise each job's folders, not its files: a session of thousands of files has a few folders.
    folders = [{_norm(d) for d in {os.path.dirname(f.path) for f in j.files}} for j in plan.jobs]
    for root, group in by_root.items():
        norm_root = _norm(root)
        jobs = [job for job, dirs in zip(plan.jobs, folders, strict=True) if _any_below(dirs, norm_root)]
        names = ", ".join(os.path.basename(i.path) for i in group)
        if len(jobs) == 1:
            jobs[0].resources.extend(group)
        elif not jobs:
            problems.append(f"{names} in {root}: no session of this upload comes from that folder, so "
                            "there is nothing to attach them to.")  # fmt: skip
        else:
            problems.append(
                f"{names} in {root} cannot be placed: the DICOM in that folder makes {len(jobs)} sessions "
                f"({', '.join(j.session_label for j in jobs)}). Attach them later with `xnat-uploader resource upload`."
            )
    return problems
