"""Pre-flight checks: what in an index would make an XNAT upload fail, merge wrongly or leak data.

Each :class:`Finding` has a stable ``code``, a :class:`Severity`, a user-facing ``message`` (what it
means for the upload and what to do; it may name a study by date and description but never a
patient name or ID), a ``log_message`` with UIDs and counts only, and the files involved.

Findings are grouped so that a copied folder gives one finding per series, not one per file.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import tarfile
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

from pydicom.uid import UID

from xnat_uploader.core.dicom.index import DicomIndex, SeriesNode, StudyNode, file_key, sorted_series
from xnat_uploader.core.dicom.records import InstanceRecord
from xnat_uploader.core.dicom.values import is_valid_uid

logger = logging.getLogger(__name__)


class Severity(str, enum.Enum):
    """How much a finding matters for the upload (str-valued, so it serialises as itself)."""

    ERROR = "error"  # the upload will fail, or data will be lost or filed under the wrong subject
    WARNING = "warning"  # the upload works, but the result may not be what the user expects
    INFO = "info"  # worth knowing; nothing to do in most cases

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "info": 2}[self.value]


@dataclass(frozen=True, slots=True)
class Finding:
    """One pre-flight finding. ``paths`` are display paths (``archive.zip!member`` for members)."""

    code: str
    severity: Severity
    message: str
    log_message: str
    paths: tuple[str, ...]
    study_uid: str = ""
    series_uid: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the log message is left out: it says the same with UIDs)."""
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "paths": list(self.paths),
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
        }


# Codes, so callers (GUI icons, tests, scripts) need not match on message text.
SEVERAL_PATIENTS = "several-patients-in-study"
DUPLICATE_SAME = "duplicate-sop-instance-same-bytes"
DUPLICATE_DIFFERENT = "duplicate-sop-instance-different-bytes"
SERIES_NUMBER_CONFLICT = "series-number-conflict"
MISSING_STUDY_UID = "missing-study-uid"
MISSING_SERIES_UID = "missing-series-uid"
MISSING_SOP_INSTANCE_UID = "missing-sop-instance-uid"
INVALID_UID = "invalid-uid"
COMPRESSED = "compressed-transfer-syntax"
UNKNOWN_TRANSFER_SYNTAX = "unknown-transfer-syntax"
BURNED_IN = "burned-in-annotation"
SECONDARY_CAPTURE = "secondary-capture"
DERIVED = "derived-series"

_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"  # SC image storage and its multi-frame kin

# Short names users know, and whether the syntax may be lossy. Others fall back to pydicom's name.
_SYNTAX_NAMES: dict[str, tuple[str, bool]] = {
    "1.2.840.10008.1.2.4.50": ("JPEG Baseline", True),
    "1.2.840.10008.1.2.4.51": ("JPEG Extended", True),
    "1.2.840.10008.1.2.4.57": ("JPEG Lossless", False),
    "1.2.840.10008.1.2.4.70": ("JPEG Lossless", False),
    "1.2.840.10008.1.2.4.80": ("JPEG-LS Lossless", False),
    "1.2.840.10008.1.2.4.81": ("JPEG-LS Near-Lossless", True),
    "1.2.840.10008.1.2.4.90": ("JPEG 2000 Lossless", False),
    "1.2.840.10008.1.2.4.91": ("JPEG 2000", True),
    "1.2.840.10008.1.2.4.92": ("JPEG 2000 Part 2 Lossless", False),
    "1.2.840.10008.1.2.4.93": ("JPEG 2000 Part 2", True),
    "1.2.840.10008.1.2.4.201": ("HTJ2K Lossless", False),
    "1.2.840.10008.1.2.4.202": ("HTJ2K Lossless RPCL", False),
    "1.2.840.10008.1.2.4.203": ("HTJ2K", True),
    "1.2.840.10008.1.2.5": ("RLE Lossless", False),
}


def transfer_syntax_name(uid: str) -> str:
    """A short human name for a transfer syntax UID (the UID itself when unknown)."""
    if uid in _SYNTAX_NAMES:
        return _SYNTAX_NAMES[uid][0]
    name = UID(uid).name
    return name or uid


def run_checks(index: DicomIndex, *, compare_content: bool = True) -> list[Finding]:
    """All pre-flight findings for ``index``, errors first.

    ``compare_content`` reads files with duplicate SOPInstanceUIDs and equal sizes to tell copies
    from conflicts (SHA-256); without it, equal sizes count as copies. This does disk I/O: call it
    from a worker thread, not the GUI thread.
    """
    findings: list[Finding] = []
    findings += check_several_patients(index)
    findings += check_duplicates(index, compare_content=compare_content)
    findings += check_series_numbers(index)
    findings += check_missing_uids(index)
    findings += check_invalid_uids(index)
    findings += check_transfer_syntaxes(index)
    findings += check_burned_in(index)
    findings.sort(key=lambda f: (f.severity.rank, f.code, f.study_uid, f.series_uid, f.paths))
    return findings


def log_findings(findings: Iterable[Finding], log: logging.Logger = logger) -> None:
    """Log each finding's UID-only message at a level matching its severity."""
    levels = {Severity.ERROR: logging.ERROR, Severity.WARNING: logging.WARNING, Severity.INFO: logging.INFO}
    for f in findings:
        log.log(levels[f.severity], "%s: %s (%d files)", f.code, f.log_message, len(f.paths))


# ---- helpers for messages (never a patient name or ID) ------------------------------------------


def _date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value


def describe_study(study: StudyNode) -> str:
    """``the study of 2024-05-01 "BRAIN MR"``: enough for a user to recognise it, no patient data."""
    parts = [f"of {_date(study.date)}" if study.date else "", f'"{study.description}"' if study.description else ""]
    text = " ".join(p for p in parts if p)
    return f"the study {text}" if text else "a study without date or description"


def describe_series(series: SeriesNode) -> str:
    """``series 3 "T1 MPRAGE"`` (number and description, whichever exist)."""
    number = f" {series.number}" if series.number is not None else ""
    desc = f' "{series.description}"' if series.description else ""
    return f"series{number}{desc}" if number or desc else "a series without number or description"


def _paths(records: Iterable[InstanceRecord]) -> tuple[str, ...]:
    return tuple(sorted({r.display_path for r in records}))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _verb(n: int, singular: str, plural: str) -> str:
    return singular if n == 1 else plural


# ---- the checks -------------------------------------------------------------------------------


def check_several_patients(index: DicomIndex) -> list[Finding]:
    """One StudyInstanceUID whose files carry different patients."""
    out = []
    for uid in index.study_uids():
        studies = index.studies(uid)
        if not uid or len(studies) < 2:
            continue  # files without a study UID are reported by check_missing_uids
        records = [r for st in studies for s in st.series for r in s.instances]
        out.append(
            Finding(
                SEVERAL_PATIENTS,
                Severity.ERROR,
                f"{describe_study(studies[0]).capitalize()} holds files of {len(studies)} different patients "
                "under one study UID. XNAT files a study as one session of one subject, so these files would "
                "be merged into one patient's session or rejected. Check with the source which patient is "
                "right; upload each patient's files separately, or fix the headers first.",
                f"study {uid} has files of {len(studies)} patients",
                _paths(records),
                study_uid=uid,
            )
        )
    return out


def check_duplicates(index: DicomIndex, *, compare_content: bool = True) -> list[Finding]:
    """SOPInstanceUIDs present in more than one file: copies (same bytes) or conflicts (different bytes)."""
    by_uid: dict[str, list[tuple[SeriesNode, InstanceRecord]]] = defaultdict(list)
    for series in index.iter_series():
        for rec in series.instances:
            if rec.sop_instance_uid:
                by_uid[rec.sop_instance_uid].append((series, rec))
    groups = [pairs for pairs in by_uid.values() if len(pairs) > 1]
    # Only equal sizes can be copies, and only those are read; archives are read once for all members.
    digests: dict[str, str] = {}
    if compare_content:
        digests = sha256_many(r for pairs in groups if len({r.size for _, r in pairs}) == 1 for _, r in pairs)
    # Group per series so that a folder copied twice gives one finding per series.
    same: dict[SeriesNode, list[InstanceRecord]] = defaultdict(list)
    different: dict[SeriesNode, list[InstanceRecord]] = defaultdict(list)
    for pairs in groups:
        records = [r for _, r in pairs]
        if len({r.size for r in records}) > 1:
            equal = False
        elif not compare_content:
            equal = True
        else:
            # A file we could not read cannot be proven a copy: it counts as different.
            found = [digests.get(file_key(r.path, r.member)) for r in records]
            equal = None not in found and len(set(found)) == 1
        (same if equal else different)[pairs[0][0]].extend(records)
    out = []
    for series, records in different.items():
        n = len({r.sop_instance_uid for r in records})
        out.append(
            Finding(
                DUPLICATE_DIFFERENT,
                Severity.ERROR,
                f"In {describe_study(series.parent)}, {describe_series(series)}: {_plural(n, 'image')} "
                f"{_verb(n, 'shares its', 'share their')} SOP Instance UID with another file whose content "
                "differs. XNAT keeps one file per UID, so one version would overwrite or be refused in favour of "
                "the other. Find out which file is right and leave the others out of the upload.",
                f"{n} SOPInstanceUIDs in series {series.uid} are in several files with different bytes",
                _paths(records),
                study_uid=series.parent.uid,
                series_uid=series.uid,
            )
        )
    for series, records in same.items():
        n = len({r.sop_instance_uid for r in records})
        out.append(
            Finding(
                DUPLICATE_SAME,
                Severity.INFO,
                f"In {describe_study(series.parent)}, {describe_series(series)}: {_plural(n, 'image')} "
                f"{_verb(n, 'appears', 'appear')} in more than one file with identical content (copies). "
                "XNAT stores each image once; the copies add nothing. You can upload as is.",
                f"{n} SOPInstanceUIDs in series {series.uid} are in several files with the same bytes",
                _paths(records),
                study_uid=series.parent.uid,
                series_uid=series.uid,
            )
        )
    return out


def _hash_stream(f: IO[bytes], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    while data := f.read(chunk):
        h.update(data)
    return h.hexdigest()


def file_sha256(rec: InstanceRecord) -> str:
    """SHA-256 of one instance's bytes, for a plain file or a zip/tar member. Raises OSError/KeyError."""
    digest = sha256_many([rec]).get(file_key(rec.path, rec.member))
    if digest is None:
        raise OSError(f"cannot read {rec.display_path}")
    return digest


def sha256_many(records: Iterable[InstanceRecord]) -> dict[str, str]:
    """SHA-256 of many instances, keyed by :func:`file_key`; unreadable ones are left out (and logged).

    Each archive is opened once: zip members are read directly, a tar is read in one pass, which keeps
    compressed tars from being decompressed again for every member.
    """
    out: dict[str, str] = {}
    members: dict[str, set[str]] = defaultdict(set)
    for rec in records:
        if rec.member:
            members[rec.path].add(rec.member)
            continue
        try:
            with open(rec.path, "rb") as f:
                out[file_key(rec.path)] = _hash_stream(f)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__  # not the file's path
            logger.warning("Cannot read a file to compare duplicates (%s): %s", rec.sop_instance_uid, reason)
    for archive, wanted in members.items():
        try:
            if zipfile.is_zipfile(archive):
                # The first member of a name, as the scan and the uploads read it (archives.open_member).
                with zipfile.ZipFile(archive) as z:
                    for zinfo in z.infolist():
                        key = file_key(archive, zinfo.filename)
                        if zinfo.filename in wanted and key not in out:
                            with z.open(zinfo) as f:
                                out[key] = _hash_stream(f)
            else:
                with tarfile.open(archive) as t:
                    for info in t:
                        key = file_key(archive, info.name)
                        member = t.extractfile(info) if info.name in wanted and info.isfile() else None
                        if member is not None and key not in out:
                            out[key] = _hash_stream(member)
        except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
            logger.warning("Cannot read an archive to compare duplicates: %s", type(exc).__name__)
    return out


def check_series_numbers(index: DicomIndex) -> list[Finding]:
    """Two or more series UIDs with the same series number in one study."""
    out = []
    for study in index.iter_studies():
        by_number: dict[int, list[SeriesNode]] = defaultdict(list)
        for series in study.series:
            if series.number is not None and series.uid:
                by_number[series.number].append(series)
        for number, group in sorted(by_number.items()):
            if len(group) < 2:
                continue
            group = sorted_series(group)
            descriptions = ", ".join(f'"{s.description}"' for s in group if s.description)
            out.append(
                Finding(
                    SERIES_NUMBER_CONFLICT,
                    Severity.WARNING,
                    f"In {describe_study(study)}, {len(group)} different series share series number {number}"
                    f"{f' ({descriptions})' if descriptions else ''}. XNAT names scans after the series number, "
                    "so they may be merged into one scan or given altered scan IDs. Check the scans in XNAT "
                    "after the upload, or renumber the series before.",
                    f"study {study.uid}: series number {number} used by series " + ", ".join(s.uid for s in group),
                    _paths(r for s in group for r in s.instances),
                    study_uid=study.uid,
                )
            )
    return out


def check_missing_uids(index: DicomIndex) -> list[Finding]:
    """Files without a StudyInstanceUID, SeriesInstanceUID or SOPInstanceUID."""
    missing: dict[str, list[InstanceRecord]] = {"study": [], "series": [], "SOP instance": []}
    for rec in index.iter_instances():
        if not rec.study_uid:
            missing["study"].append(rec)
        if not rec.series_uid:
            missing["series"].append(rec)
        if not rec.sop_instance_uid:
            missing["SOP instance"].append(rec)
    codes = {"study": MISSING_STUDY_UID, "series": MISSING_SERIES_UID, "SOP instance": MISSING_SOP_INSTANCE_UID}
    role = {
        "study": "which session a file belongs to",
        "series": "which scan a file belongs to",
        "SOP instance": "which image a file is, to store and check it",
    }
    out = []
    for kind, records in missing.items():
        if not records:
            continue
        n = len(records)
        out.append(
            Finding(
                codes[kind],
                Severity.ERROR,
                f"{_plural(n, 'file')} {_verb(n, 'has', 'have')} no {kind} UID. XNAT uses this UID to know "
                f"{role[kind]}; the upload would refuse such files or file them wrongly. Leave them out, or have "
                "the source system export them again.",
                f"{len(records)} files without a {kind} UID",
                _paths(records),
                study_uid=records[0].study_uid if kind != "study" and len({r.study_uid for r in records}) == 1 else "",
            )
        )
    return out


def check_invalid_uids(index: DicomIndex) -> list[Finding]:
    """Files whose study, series or SOP instance UID is not digits and dots (at most 64 characters).

    Such a UID comes from a faulty system or a crafted file. Names the uploads send are built from valid UIDs
    only (:func:`~xnat_uploader.core.transfer.dicom_zip.arcname`), but XNAT files a session by these values.
    Empty UIDs are :func:`check_missing_uids`' business.
    """
    bad: list[InstanceRecord] = []
    kinds: set[str] = set()
    for rec in index.iter_instances():
        uids = (("study", rec.study_uid), ("series", rec.series_uid), ("SOP instance", rec.sop_instance_uid))
        wrong = [kind for kind, value in uids if value and not is_valid_uid(value)]
        if wrong:
            bad.append(rec)
            kinds.update(wrong)
    if not bad:
        return []
    n = len(bad)
    which = ", ".join(k for k in ("study", "series", "SOP instance") if k in kinds)
    return [
        Finding(
            INVALID_UID,
            Severity.ERROR,
            f"{_plural(n, 'file')} {_verb(n, 'has', 'have')} an invalid UID ({which}): a DICOM UID is made of digits "
            "and dots only, at most 64 characters. Such files come from a faulty system or were altered; XNAT may "
            "refuse them or file them in the wrong place. Leave them out, or have the source export them again.",
            f"{n} files with an invalid {which} UID",
            _paths(bad),
        )
    ]


def check_transfer_syntaxes(index: DicomIndex) -> list[Finding]:
    """Compressed (and unrecognised) transfer syntaxes, one finding per syntax."""
    by_syntax: dict[str, list[InstanceRecord]] = defaultdict(list)
    for series in index.iter_series():
        for rec in series.instances:
            by_syntax[rec.transfer_syntax].append(rec)
    out = []
    for uid, records in sorted(by_syntax.items()):
        if not uid:
            continue  # no transfer syntax in the file meta: the reader assumed implicit VR; nothing to say
        known = UID(uid).is_transfer_syntax
        n = len(records)
        if not known:
            out.append(
                Finding(
                    UNKNOWN_TRANSFER_SYNTAX,
                    Severity.WARNING,
                    f"{_plural(n, 'file')} {_verb(n, 'uses', 'use')} a transfer syntax this program does not know "
                    f"({uid}). XNAT may not be able to read them; a C-STORE upload will fail unless the receiver "
                    "accepts it.",
                    f"{n} files with unknown transfer syntax {uid}",
                    _paths(records),
                )
            )
            continue
        if not UID(uid).is_compressed:
            continue
        name = transfer_syntax_name(uid)
        lossy = _SYNTAX_NAMES.get(uid, (name, True))[1]
        out.append(
            Finding(
                COMPRESSED,
                Severity.WARNING if lossy else Severity.INFO,
                f"{_plural(n, 'file')} {_verb(n, 'is', 'are')} compressed ({name}"
                f"{', possibly lossy' if lossy else ''}). XNAT stores such files as they are, but its viewer and some "
                "pipelines cannot decode every compression, and a C-STORE upload needs a receiver that accepts "
                "this syntax. Upload as is unless your analysis needs uncompressed images.",
                f"{n} files with transfer syntax {uid} ({name})",
                _paths(records),
            )
        )
    return out


def _image_type_words(value: str) -> set[str]:
    return set(value.upper().replace("\\", " ").split())


def check_burned_in(index: DicomIndex) -> list[Finding]:
    """Series that may carry text in their pixels: BurnedInAnnotation YES, secondary captures, derived."""
    out = []
    for series in index.iter_series():
        burned = [r for r in series.instances if r.burned_in_annotation.strip().upper() == "YES"]
        secondary = [
            r
            for r in series.instances
            if r.sop_class_uid.startswith(_SECONDARY_CAPTURE_PREFIX) or "SECONDARY" in _image_type_words(r.image_type)
        ]
        derived = [r for r in series.instances if "DERIVED" in _image_type_words(r.image_type)]
        where = f"In {describe_study(series.parent)}, {describe_series(series)}"
        advice = (
            "Removing names from the headers does not remove text drawn into the images. Look at the images "
            "before the upload and leave the series out if they show names, dates of birth or IDs."
        )
        if burned:
            code, severity, records = BURNED_IN, Severity.WARNING, burned
            n = len(records)
            what = f"{_verb(n, 'declares', 'declare')} burned-in annotation (text in the pixels)."
        elif secondary:
            code, severity, records = SECONDARY_CAPTURE, Severity.WARNING, secondary
            n = len(records)
            what = (
                f"{_verb(n, 'is a secondary capture', 'are secondary captures')} (screenshots, scanned pages), "
                "which often show patient details as text in the pixels."
            )
        elif derived:
            code, severity, records = DERIVED, Severity.INFO, derived
            n = len(records)
            what = (
                f"{_verb(n, 'is a derived image', 'are derived images')} (reformats, maps), which sometimes "
                "carry burned-in text."
            )
        else:
            continue
        out.append(
            Finding(
                code,
                severity,
                f"{where}: {_plural(n, 'image')} {what} {advice}",
                f"series {series.uid}: {len(records)} images flagged {code}",
                _paths(records),
                study_uid=series.parent.uid,
                series_uid=series.uid,
            )
        )
    return out
