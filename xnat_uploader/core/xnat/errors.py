"""Typed errors of the XNAT client, and the mapping from XNAT's responses to them.

Every error is a :class:`~xnat_uploader.core.errors.UserError`: ``message`` says in plain words what went
wrong, ``hint`` what to do. ``transient`` tells the queue runner whether the same request may succeed if
it is sent again later (connection problems, 5xx, an expired session); permanent errors are never retried.

The server's own text is kept in ``detail`` (shown on demand, never logged by the client). Nothing here
ever contains a password or a session id: the client never passes them in.

All functions are pure and may be called from any thread.
"""

from __future__ import annotations

import datetime
import email.utils
import html
import re
from typing import TYPE_CHECKING

from xnat_uploader.core.errors import UserError
from xnat_uploader.core.upload_choices import OnExisting

if TYPE_CHECKING:
    import requests


class XnatError(UserError):
    """Base of every client error.

    Parameters
    ----------
    message, hint
        Plain-language text for the user.
    status
        HTTP status, or ``None`` when no response arrived.
    detail
        The server's message (from its HTML status page), for a "details" view.
    """

    transient: bool = False

    def __init__(self, message: str, hint: str = "", *, status: int | None = None, detail: str = "") -> None:
        super().__init__(message, hint)
        self.status = status
        self.detail = detail
        self.retry_after: float | None = None  # seconds, from a 429/503 Retry-After header

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, message={self.message!r})"


# --- connection level ---------------------------------------------------------------------------------


class ServerUnreachableError(XnatError):
    """No connection could be opened (DNS, refused, network down, connect time-out)."""

    transient = True


class ConnectionLostError(XnatError):
    """The connection broke while a request or its answer was on the way."""

    transient = True


class ServerTimeoutError(XnatError):
    """The server accepted the connection but did not answer within the read time-out."""

    transient = True


class TlsError(XnatError):
    """The TLS handshake failed: untrusted or mismatched certificate. Retrying does not help."""


# --- authentication -----------------------------------------------------------------------------------


class AuthenticationError(XnatError):
    """Wrong user name or password (or the account is locked/disabled)."""


class PasswordExpiredError(AuthenticationError):
    """XNAT signs the user in only to send them to its change-password page: the password expired (or must be
    changed). Nothing works until it is changed on the web site; retrying never helps."""


class SessionExpiredError(XnatError):
    """The login session ended and could not be renewed for this request (e.g. a streamed body)."""

    transient = True


class UnexpectedResponseError(XnatError):
    """The server answered with something that is not XNAT's API (a login page, a proxy page...)."""


class AnswerTooLargeError(UnexpectedResponseError):
    """The server's answer was larger than any XNAT answer to this request can be; it was not read."""


# --- request level ------------------------------------------------------------------------------------


class BadRequestError(XnatError):
    """XNAT rejected the request (400) for a reason not mapped to a more specific error."""


class NotFoundError(XnatError):
    """Something other than a project was not found (404)."""


class ProjectAccessError(XnatError):
    """The project does not exist or the user may not add data to it (XNAT says 404 for both)."""


class PermissionDeniedError(XnatError):
    """The user lacks the rights for this action (403)."""


class NonDicomFileError(BadRequestError):
    """A file in the upload is not DICOM, so XNAT refused the whole request."""


class FileRefusedError(BadRequestError):
    """XNAT did not store a file that is valid DICOM. Its gradual importer answers any failure on the server
    (database, disk, anonymization script) with 400 "unable to read DICOM object <name>" (xnat-api.md 14), so
    sending it again later may work."""

    transient = True


class NoDicomError(BadRequestError):
    """The upload contained no DICOM at all."""


class UnsupportedFormatError(BadRequestError):
    """XNAT could not tell what kind of archive the body is."""


class MultipleSessionsError(BadRequestError):
    """The archive held several imaging sessions where only one is allowed."""


class SessionExistsError(XnatError):
    """The session already exists in the archive and the request did not allow merging/overwriting."""


class SessionLockedError(XnatError):
    """The prearchive session is busy (being built, archived, moved); try again later."""

    transient = True


class ConcurrentSendError(XnatError):
    """XNAT is still storing the same file from another request; sending it again later works."""

    transient = True


class ServerTooOldError(XnatError):
    """The feature needs a newer XNAT than the server runs."""


class ServerError(XnatError):
    """The server failed (5xx). Usually temporary."""

    transient = True


class ArchiveFailedError(XnatError):
    """Archiving a prearchive session failed on the server (it is left in ERROR or CONFLICT)."""


class ProgressUnavailableError(NotFoundError):
    """XNAT started a background job but does not report its progress (no ``/xapi/dicom`` on older servers)."""


class StillRunningError(XnatError):
    """A background job on the server did not end within the time the client was told to wait."""


# --- sign-in problems XNAT answers with a redirect -------------------------------------------------------

# Where XNAT's expired-password filter sends a user (SecurityConfig.expiredPasswordFilter): the change-password
# screen, or the inactive-account screen for an account disabled after a long time without use.
CHANGE_PASSWORD_PAGE = "/app/template/XDATScreen_UpdateUser.vm"
INACTIVE_ACCOUNT_PAGE = "/app/template/InactiveAccount.vm"
_REDIRECTS = (301, 302, 303, 307, 308)


def sign_in_problem(status: int, location: str, body: str, *, user: str, server: str) -> XnatError | None:
    """The error for an answer that means "this login cannot work until the user acts on the web site".

    XnatExpiredPasswordFilter answers a login (or any request) of a user whose password expired with a
    redirect to the change-password page, whatever the User-Agent; in some paths with 403 "Your password has
    expired". ``location`` is the answer's Location header. ``None`` for any other answer. Pure; any thread.
    """
    if status in _REDIRECTS:
        path = location.split("?", 1)[0].split("#", 1)[0].rstrip("/")
        if path.endswith(CHANGE_PASSWORD_PAGE):
            return password_expired(user, server, status)
        if path.endswith(INACTIVE_ACCOUNT_PAGE):
            return AuthenticationError(
                f"The account {user} on {server} was disabled after a long time without use.",
                "Sign in on the XNAT web site to reactivate it (or ask the administrator), then sign in here again.",
                status=status,
            )
        return None
    if status == 403:
        low = extract_message(body).lower()
        if "password has expired" in low:
            return password_expired(user, server, status)
        if "security token has expired" in low:
            return AuthenticationError(
                f"The access token used to sign in to {server} has expired or is not valid.",
                "Create a new token on the XNAT web site, then sign in here again with it.",
                status=status,
            )
    return None


def password_expired(user: str, server: str, status: int | None = None) -> PasswordExpiredError:
    """The plain message for an expired (or must-change) password."""
    return PasswordExpiredError(
        f"The password of {user} on {server} has expired; change it on the XNAT web site, then sign in here again.",
        "Uploads stopped by it continue where they stopped when you press Retry after signing in.",
        status=status,
    )


# --- message extraction -------------------------------------------------------------------------------

# (opening, closing) of the places a message sits: Restlet's <h3>, Tomcat's "Message", a page title. Found by
# two linear searches, not one lazy ``(.*?)`` pattern: that rescans the rest of the page from every opening
# without a closing one, seconds for a 64 KB page of "<h3>" (a broken or hostile server's answer).
_MESSAGE_PLACES = [
    (re.compile(r"<h3>", re.IGNORECASE), re.compile(r"</h3>", re.IGNORECASE)),
    (re.compile(r"<b>(?:Message|Description)</b>\s*", re.IGNORECASE), re.compile(r"</p>", re.IGNORECASE)),
    (re.compile(r"<title>", re.IGNORECASE), re.compile(r"</title>", re.IGNORECASE)),
]
_TAG = re.compile(r"<[^<>]+>")  # no "<" inside, so a run of "<" without ">" is passed over once, not rescanned
_MAX_DETAIL = 500


def _between(text: str, opening: re.Pattern[str], closing: re.Pattern[str]) -> str | None:
    """The text from the first ``opening`` to the next ``closing`` (``None`` when either is missing)."""
    start = opening.search(text)
    if start is None:
        return None
    end = closing.search(text, start.end())
    return None if end is None else text[start.end() : end.start()]


def extract_message(body: str) -> str:
    """The human message inside an XNAT error body (Restlet status page, Tomcat page or plain text).

    >>> extract_message('<html><body><h3>Unknown importer implementation specified: X</h3></body></html>')
    'Unknown importer implementation specified: X'
    """
    text = body.strip()
    if not text:
        return ""
    lowered = text[:200].lower()
    if lowered.startswith(("<html", "<!doctype")) or "<body" in lowered:
        for opening, closing in _MESSAGE_PLACES:
            found = _between(text, opening, closing)
            if found is not None and _TAG.sub("", found).strip():
                text = _TAG.sub("", found)
                break
        else:
            text = _TAG.sub(" ", text)
        text = html.unescape(text)
    text = " ".join(text.split())
    return text[:_MAX_DETAIL]


# --- mapping ------------------------------------------------------------------------------------------

# XNAT's refusals of a merge that holds files or instances the archived session already has, whatever their
# bytes (MergeSessionsA.HAS_FILES, CAT_ENTRY_MATCH): nothing is merged, the upload waits in the prearchive.
_HELD = ("session already exists with matching files", "session already exists with the same resources")
ALREADY_HELD = (
    "The session in the archive already holds some of these images, so XNAT added none of them (it refuses to "
    "add an image a session already has, even an identical one)."
)
ALREADY_HELD_HINT = (
    f'Choose "{OnExisting.REPLACE.label}" to overwrite them (upload again, or archive it from the Prearchive tab), '
    "or leave out the series already archived."
)


def already_held(text: str) -> bool:
    """``text`` (XNAT's words) is its refusal to merge images the archived session already holds."""
    low = text.lower()
    return any(words in low for words in _HELD)


_HINT_SUPPORT = "If it keeps happening, send the details to your XNAT administrator."


def _classify_text(status: int, detail: str, project: str | None) -> XnatError | None:
    """Errors recognised by XNAT's message text, whatever the status."""
    low = detail.lower()
    where = f" '{project}'" if project else ""
    if "unable to read dicom object" in low or ("contains no sop" in low and "uid" in low):
        name = detail.split("object", 1)[-1].strip() if "object" in detail else ""
        return NonDicomFileError(
            f"A file in the upload is not a readable DICOM file{': ' + name if name else ''}.",
            "Remove non-DICOM files (reports, text files) from the upload, or allow XNAT to skip them "
            "('ignore unparsable files', XNAT 1.8.3 or newer).",
            status=status,
            detail=detail,
        )
    if "did not include parsable files" in low:
        return NoDicomError(
            "The upload contains no DICOM files XNAT could read.",
            "Check that the folder or archive holds DICOM images.",
            status=status,
            detail=detail,
        )
    if "multiple imaging sessions" in low or "only include data for one imaging session" in low:
        return MultipleSessionsError(
            "The upload holds more than one imaging session (study), which this kind of upload does not allow.",
            "Upload one study at a time, or use the DICOM upload that splits studies.",
            status=status,
            detail=detail,
        )
    if low.startswith("unsupported format") or "archive file is corrupt" in low:
        return UnsupportedFormatError(
            "XNAT could not open the uploaded archive.",
            "Send a .zip, .tar or .tar.gz file with a matching name or content type.",
            status=status,
            detail=detail,
        )
    if already_held(low):
        return SessionExistsError(ALREADY_HELD, ALREADY_HELD_HINT, status=status, detail=detail)
    if "already exists" in low or "already contains a scan" in low or "manual merge" in low or status == 409:
        if "locked" in low:
            return SessionLockedError(
                "The prearchive session is busy on the server.",
                "Wait until its status is READY and try again.",
                status=status,
                detail=detail,
            )
        return SessionExistsError(
            "This session already exists in XNAT and the upload was not allowed to change it.",
            "Choose another session label, or allow merging/overwriting of existing data.",
            status=status,
            detail=detail,
        )
    if "unable to archive for the prearchive session" in low:
        # DICOM-zip with action=commit hides the archiver's reason (DicomZipImporter); the usual one is a
        # session that already exists in the archive.
        return ArchiveFailedError(
            "XNAT received the files but could not archive the session (most often: it already exists).",
            "Allow merging into the existing session, or look at the session in the prearchive for the reason.",
            status=status,
            detail=detail,
        )
    if "concurrent file sends" in low:
        return ConcurrentSendError(
            "XNAT is still storing the same file from another upload.",
            "It will be sent again automatically.",
            status=status,
            detail=detail,
        )
    if "locked" in low or "operation already in progress" in low:
        return SessionLockedError(
            "The prearchive session is busy on the server.",
            "Wait until its status is READY and try again.",
            status=status,
            detail=detail,
        )
    if (
        "unable to identify project" in low
        or "no project named" in low
        or "does not have access to the requested project" in low
        or "specified projects does not exist" in low
        or "unable to modify session data for destination project" in low
        or "invalid project tag" in low
    ):
        return ProjectAccessError(
            f"The project{where} does not exist, or you may not add data to it.",
            "Check the project ID (not its title) and ask the project owner for member or owner access.",
            status=status,
            detail=detail,
        )
    if "unassigned folder" in low:
        return BadRequestError(
            "Sessions in the Unassigned folder cannot be archived.",
            "Move the session to a project first.",
            status=status,
            detail=detail,
        )
    return None


def error_for_status(
    status: int, body: str = "", *, project: str | None = None, action: str = "", project_404: bool = True
) -> XnatError:
    """Map an HTTP error answer to a typed error.

    Parameters
    ----------
    status
        The HTTP status (>= 300).
    body
        The response body as text; the message is extracted from XNAT's HTML.
    project
        The project the request was about, to name it in the message.
    project_404
        Whether a bare 404 means the project is unknown/hidden (listings of a project) rather than the
        object itself (a prearchive session, a file).
    action
        A few words on what was being done ("listing subjects"), for generic messages.
    """
    detail = extract_message(body)
    doing = f" while {action}" if action else ""
    known = _classify_text(status, detail, project)
    if known is not None:
        return known
    if status == 401:
        return AuthenticationError(
            "XNAT did not accept the user name or password.",
            "Check them, and sign in on the XNAT web page to see whether the account is locked or expired.",
            status=status,
            detail=detail,
        )
    if status == 403:
        return PermissionDeniedError(
            f"You do not have permission for this{doing}.",
            "Ask the project owner or an XNAT administrator for access.",
            status=status,
            detail=detail,
        )
    if status == 404:
        if project is not None and project_404:
            return ProjectAccessError(
                f"The project '{project}' does not exist, or you may not see it.",
                "Check the project ID (not its title) and ask the project owner for access.",
                status=status,
                detail=detail,
            )
        return NotFoundError(
            f"XNAT could not find what was asked for{doing}.",
            "It may have been moved, archived or deleted; refresh and try again.",
            status=status,
            detail=detail,
        )
    if status in (301, 302, 303, 307, 308):
        return UnexpectedResponseError(
            f"XNAT answered with an unexpected redirect{doing}.",
            "Check the server address (https, context path such as /xnat) and that no login portal sits in front.",
            status=status,
            detail=detail,
        )
    if status >= 500 and detail.upper().startswith("FAILED"):
        return ArchiveFailedError(
            "XNAT could not archive the session.",
            "Open the prearchive to see the session's status and log; fix the cause and archive again.",
            status=status,
            detail=detail,
        )
    if status >= 500 or status == 429:
        return ServerError(
            f"The XNAT server had a problem{doing} (HTTP {status}).",
            "This is usually temporary; the upload will be retried. " + _HINT_SUPPORT,
            status=status,
            detail=detail,
        )
    if status == 400:
        return BadRequestError(
            f"XNAT refused the request{doing}: {detail or 'no reason given'}.",
            _HINT_SUPPORT,
            status=status,
            detail=detail,
        )
    return XnatError(
        f"XNAT answered with HTTP {status}{doing}.",
        _HINT_SUPPORT,
        status=status,
        detail=detail,
    )


def error_for_response(
    response: requests.Response, *, project: str | None = None, action: str = "", project_404: bool = True
) -> XnatError:
    """:func:`error_for_status` for a ``requests`` response (reads at most the first 64 KiB of the body)."""
    body = page_text(response)
    err = error_for_status(response.status_code, body, project=project, action=action, project_404=project_404)
    err.retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return err


def page_text(response: requests.Response, limit: int = 65536) -> str:
    """The start of an answer's body as text: its first ``limit`` characters, decoded by its charset (else
    UTF-8), never the whole body (``requests``' ``text`` guesses the charset of all of it when none is given)."""
    try:
        return response.content[: 4 * limit].decode(response.encoding or "utf-8", "replace")[:limit]
    except Exception:  # noqa: BLE001 - a broken body (or an unknown charset) must not hide the status
        return ""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), else ``None``."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


def refused_valid_file(exc: XnatError, what: str) -> FileRefusedError | None:
    """``exc`` as :class:`FileRefusedError` when it is XNAT's "unable to read DICOM object" for ``what``, a file
    the scan read as valid DICOM; ``None`` for any other error (e.g. "contains no SOP Class UID")."""
    if not isinstance(exc, NonDicomFileError) or not exc.detail.lower().startswith("unable to read dicom object"):
        return None
    return FileRefusedError(
        f"XNAT did not store {what}, although it is a valid DICOM file (XNAT says: {exc.detail}). XNAT answers "
        "this way for trouble on the server: its database, its disk or an anonymization script.",
        "It is sent again a few times. If it keeps failing, send the details to your XNAT administrator.",
        status=exc.status,
        detail=exc.detail,
    )


def server_too_old(feature: str, needed: str, found: str | None) -> ServerTooOldError:
    """The error for a feature the server's version does not offer."""
    have = f"runs XNAT {found}" if found else "does not report its version"
    return ServerTooOldError(
        f"{feature} needs XNAT {needed} or newer; this server {have}.",
        "Turn the option off, or ask your administrator to upgrade XNAT.",
    )
