"""Who XNAT runs our requests as: the signed-in user, or its guest account. Pure functions; any thread.

On a site with ``requireLogin=false`` every URL is open (XNAT's ``UpdateSecurityFilterHandlerMethod`` sets
the default pattern to ``permitAll``): once the server session ends, XNAT answers as **guest** instead of
401. Imports then land in Unassigned, listings shrink and writes get 403, with nothing saying "signed out".
Two signs tell it:

* ``GET /xapi/users/username`` is restricted to authenticated users (``UsersApi``, level ``Authenticated``,
  whose authorizer turns guests away): a guest gets 401 even on an open site, a signed-in session its user
  name. ``/data/auth`` and ``GET /data/JSESSION`` cannot tell: they answer the guest too (``User 'guest' is
  logged in``, a guest session id). A server without the XAPI call (404) is asked ``/data/auth`` instead.
* XNAT opens a new server session for a request whose session is gone (its expired-password filter calls
  ``getSession()`` on every request), so that answer sets a ``JSESSIONID`` cookie other than ours. Only a
  hint (a proxy might rotate cookies too): the session asks who it is before acting on it.
"""

from __future__ import annotations

import re

WHO_AM_I = "/xapi/users/username"
WHO_AM_I_OLD = "/data/auth"
GUEST = "guest"

_AUTH_ANSWER = re.compile(r"User '(.*)' is logged in")
_JSESSION_COOKIE = re.compile(r"(?:^|[,;]\s*)JSESSIONID=([^;,\s]+)")
_EXPIRATION_COOKIE = re.compile(r'SESSION_EXPIRATION_TIME="?\d+,(\d{1,15})(?!\d)')  # longer: not a time-out
_MAX_AUTH_ANSWER = 1024  # "User '<login>' is logged in": XNAT logins are at most 255 characters


def user_in_answer(path: str, text: str) -> str | None:
    """The user name in a 200 answer of :data:`WHO_AM_I` or :data:`WHO_AM_I_OLD`; ``None`` for the guest.

    >>> user_in_answer(WHO_AM_I, "jdoe"), user_in_answer(WHO_AM_I_OLD, "User 'guest' is logged in")
    ('jdoe', None)
    """
    text = text.strip()
    if path == WHO_AM_I_OLD:
        # The answer is one short line; searching only its start keeps a long odd answer from costing minutes
        # (the pattern's ".*" rescans the line from every "User '").
        match = _AUTH_ANSWER.search(text[:_MAX_AUTH_ANSWER])
        text = match.group(1) if match else ""
    return text if text and text != GUEST else None


def other_session_cookie(set_cookie: str | None, jsession: str | None) -> bool:
    """Whether an answer's ``Set-Cookie`` header opens a server session other than ``jsession``.

    >>> other_session_cookie("JSESSIONID=B2; Path=/; HttpOnly", "A1"), other_session_cookie(None, "A1")
    (True, False)
    """
    if not set_cookie or "JSESSIONID=" not in set_cookie:
        return False
    return any(found != jsession for found in _JSESSION_COOKIE.findall(set_cookie))


def idle_timeout(set_cookie: str | None) -> float | None:
    """The server's idle time-out in seconds, from the ``SESSION_EXPIRATION_TIME`` cookie XNAT sets
    (``"<now ms>,<timeout ms>"``); ``None`` when absent.

    >>> idle_timeout('SESSION_EXPIRATION_TIME="1714550000000,900000"; Path=/')
    900.0
    """
    match = _EXPIRATION_COOKIE.search(set_cookie or "")
    return int(match.group(1)) / 1000.0 if match else None
