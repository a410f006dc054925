"""What logs and support reports must not hold, removed in one place: secrets, and what identifies a patient.

Every log line (the log file, stderr, the window's log panel: :class:`RedactingFormatter`) and every line of
"copy diagnostics" goes through :func:`redact`. It removes:

* passwords and other ``key=value`` secrets, credentials in URLs, ``Authorization`` headers, ``Basic``/``Bearer``
  tokens, ``JSESSIONID`` values and any 32-hex token;
* patient values written as such: ``PatientName=``, ``PatientID:``, DICOM tags ``(0010,xxxx)``, ``DOE^JANE``;
* the labels and IDs in XNAT routes (``/data/archive/projects/*/subjects/*/experiments/*``, :func:`redact_path`);
* local file paths (``[path]``): scanner exports are often filed under the patient's name or ID;
* the identifiers this process has met (:func:`remember`): subject and session labels, PatientID and the parts
  of PatientName, wherever they appear (an error message quoting a label, a folder named after the patient).

UIDs (digits and dots) stay: they identify studies, not people, and support needs them. So do project IDs in
plain text, user names and server addresses. Receipts are the user's own record and keep labels and paths (they
are owner-only files, :mod:`core.private`); nothing here touches them.

Call sites still keep identifiers out of their messages (log a UID, a count, a redacted route); this module is
the net under them. Any thread may call these functions.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

REDACTED = "[redacted]"
PATH = "[path]"

# Fixed words of XNAT's routes; every other segment of a route is a project, subject, session, scan or file name.
_KEEP_SEGMENTS = {
    "data", "REST", "xapi", "archive", "projects", "subjects", "experiments", "scans", "resources", "files",
    "prearchive", "services", "import", "JSESSION", "siteConfig", "buildInfo", "move", "delete", "rebuild",
    "version", "auth", "config", "anon", "dicomscp", "direct-archive",
}  # fmt: skip

_ROUTE_ROOTS = r"(?:data|REST|xapi)"

_SECRET_RULES: list[tuple[re.Pattern[str], str]] = [
    # Authorization: Basic xxx / Bearer xxx / any scheme, to the end of the header value
    (re.compile(r"(authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,}]*", re.I), rf"\1{REDACTED}"),
    (re.compile(r"\b(basic|bearer)\s+[A-Za-z0-9+/=._~-]{6,}", re.I), rf"\1 {REDACTED}"),
    # JSESSIONID=..., "JSESSIONID": "...", Cookie headers
    (re.compile(r"(jsessionid[\"']?\s*[:=]\s*[\"']?)[^\s;,\"'&}]+", re.I), rf"\1{REDACTED}"),
    (re.compile(r"(cookie[\"']?\s*[:=]\s*)[^\r\n]*", re.I), rf"\1{REDACTED}"),
    # password=..., "password": "...", token: ..., secret=...
    (
        re.compile(r"((?:password|passwd|pwd|secret|token|api[_-]?key)[\"']?\s*[:=]\s*[\"']?)[^\s,;&\"'}]+", re.I),
        rf"\1{REDACTED}",
    ),
    # credentials in a URL: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s/:@]+:)[^\s/@]+@", re.I), rf"\1{REDACTED}@"),
    # any 32-hex token with at least one letter (a session id), not a decimal UID component
    (re.compile(r"\b(?=[0-9]*[A-Fa-f])[0-9A-Fa-f]{32}\b"), REDACTED),
]

# A route's segments end at a space, quote, bracket or the punctuation after it ("Verified /data/...: ok").
_ROUTE = re.compile(rf"/{_ROUTE_ROOTS}(?:/[^\s'\"?#)\]:,;]*)*(?:\?[^\s'\")\]]*)?")

_PATH_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bfile://[^\s'\"]+", re.I), f"file://{PATH}"),
    # a quoted absolute path, spaces and all (exception messages quote them): '/home/u/DOE JANE/IM1'
    (re.compile(rf"(['\"])(?:~?/(?!{_ROUTE_ROOTS}/)|[A-Za-z]:[\\/]|\\\\)[^'\"\r\n]*\1"), rf"\1{PATH}\1"),
    # an absolute POSIX path with at least two parts, not a route, not inside a URL or a word: /home/u/scan
    (re.compile(rf"(?<![\w:/.*\-])~?/(?!{_ROUTE_ROOTS}(?:[/\s'\"]|$))[^\s/'\"(),;]+/[^\s'\"(),;]*"), PATH),
    # Windows drive and UNC paths: C:\Users\u\scan, \\server\share\scan
    (re.compile(r"(?<![\w])[A-Za-z]:\\[^\s'\"]*|\\\\[^\s'\"\\]+\\[^\s'\"]*"), PATH),
]

# person names in DICOM PN form: DOE^JANE, DOE^JANE^M^^
_PN = re.compile(r"\w[^\s^=:,;\"'()\[\]]*(?:\^[^\s^=:,;\"'()\[\]]*)+")

_PATIENT_RULES: list[tuple[re.Pattern[str], str]] = [
    # PatientName=..., PatientID: ..., patient_id=..., "Patient's Name": ... up to a separator
    (
        re.compile(r"(patient(?:'s)?[\s_]*(?:name|id|birth[\s_]*date)\b[\"']?\s*[:=]\s*)[^,;|)\"'\r\n]*", re.I),
        rf"\1{REDACTED}",
    ),
    # DICOM patient module tags as printed by pydicom: "(0010, 0010) Patient's Name  PN: 'DOE^JANE'"
    (re.compile(r"(\(0010,\s*[0-9A-Fa-f]{4}\)).*"), rf"\1 {REDACTED}"),
    (_PN, REDACTED),
]


def _path_gone(replacement: str) -> Callable[[re.Match[str]], str]:
    """The path rule's replacement, except for the program's own source files (``.../core/scan.py`` in a
    traceback): they name code, not patients, and support needs them."""

    def replace(m: re.Match[str]) -> str:
        return m.group(0) if m.group(0).rstrip("'\"").endswith(".py") else m.expand(replacement)

    return replace


def redact_path(path: str) -> str:
    """The route of an XNAT ``path`` without labels or IDs, and without its query: ``/data/projects/*/subjects/*``."""
    path = path.split("?", 1)[0]
    parts = path.split("/")
    return "/".join(p if (p in _KEEP_SEGMENTS or p == "") else "*" for p in parts)


# ---- identifiers met in this process --------------------------------------------------------------------------

MIN_LENGTH = 3  # shorter pieces ("MR", "1") identify nobody, and would blank out ordinary words and numbers
_MAX_KNOWN = 50_000
_known: dict[str, None] = {}  # lower-case; a dict keeps insertion order, so the oldest go first past the cap
_known_lock = threading.Lock()
_TOKEN = re.compile(r"[\w-]+")
_PIECE = re.compile(r"[^\W_]+")


def remember(*values: str | None, pieces: bool = False) -> None:
    """Redact ``values`` from every later log line of this process.

    ``pieces``: also each word of the value (for PatientName and PatientID, which appear split up in folder
    names: ``DOE^JANE`` as ``Doe_Jane``); labels are matched whole (``Visit`` alone stays readable).
    """
    new = []
    for value in values:
        text = (value or "").strip().lower()
        if len(text) >= MIN_LENGTH:
            new.append(text)
        if pieces:
            new += [p for p in _PIECE.findall(text) if len(p) >= MIN_LENGTH]
    if not new:
        return
    with _known_lock:
        for text in new:
            _known[text] = None
        while len(_known) > _MAX_KNOWN:
            del _known[next(iter(_known))]


def forget_all() -> None:
    """Forget every remembered identifier (tests; a long-lived process could call it between users)."""
    with _known_lock:
        _known.clear()


def _in_uid(line: str, start: int, end: int) -> bool:
    """A run of digits that is a component of a dotted UID (``1.2.840.12345``): UIDs stay."""
    before = start >= 2 and line[start - 1] == "." and line[start - 2].isdigit()
    after = end + 1 < len(line) and line[end] == "." and line[end + 1].isdigit()
    return before or after


def _scrub_known(line: str) -> str:
    known = _known
    if not known:
        return line

    def token(m: re.Match[str]) -> str:
        text = m.group(0)
        if text.lower() in known and not (text.isdigit() and _in_uid(line, m.start(), m.end())):
            return REDACTED
        if "_" not in text and "-" not in text:
            return text

        def piece(p: re.Match[str]) -> str:
            word = p.group(0)
            return REDACTED if word.lower() in known else word

        return _PIECE.sub(piece, text)

    return _TOKEN.sub(token, line)


def redact(line: str) -> str:
    """``line`` without secrets, XNAT labels, local paths and patient identifiers (see the module docstring)."""
    for pattern, replacement in _SECRET_RULES:
        line = pattern.sub(replacement, line)
    line = _ROUTE.sub(lambda m: redact_path(m.group(0)), line)
    for pattern, replacement in _PATH_RULES:
        line = pattern.sub(_path_gone(replacement), line)
    for pattern, replacement in _PATIENT_RULES:
        if pattern is not _PN or "^" in line:  # the slowest rule: only where a PN value can be
            line = pattern.sub(replacement, line)
    return _scrub_known(line)


class RedactingFormatter(logging.Formatter):
    """A log formatter whose every line (message, traceback and all) went through :func:`redact`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
