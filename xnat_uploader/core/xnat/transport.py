"""Connection options, URL normalisation, plain http, and typed errors for ``requests`` failures.

Plain data and pure functions; any thread. ``requests`` itself is imported by the session only, so
commands that never talk HTTP (C-STORE without a server login) do not pay for loading it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from xnat_uploader import __version__
from xnat_uploader.core.xnat import errors as E

if TYPE_CHECKING:
    import requests

    from xnat_uploader.core.xnat.answer import AnswerTooLarge

USER_AGENT = f"xnat-uploader/{__version__}"
__all__ = [
    "PLAIN_HTTP_REASON", "USER_AGENT", "ConnectionOptions", "normalize_url", "sends_in_clear",
    "transport_error",
]  # fmt: skip


@dataclass(frozen=True)
class ConnectionOptions:
    """How to talk to a server. Immutable, so it can be shared between threads.

    ``verify_tls=False`` turns certificate checks off for this server only; ``ca_bundle`` names a PEM file
    of extra trusted authorities (it wins over ``verify_tls``). ``pool_size`` should be the number of
    upload workers. ``get_retries`` re-sends GETs after a 5xx or a dropped connection (writes are never
    re-sent here: the queue runner decides that). ``keepalive_interval``: how often a running job asks XNAT
    whether its login still holds (:mod:`.keepalive`); shortened to a third of the server's own session
    time-out when the server announces a shorter one.

    ``commit_timeout`` is the answer time-out of a commit or an archive request alone: XNAT builds and
    archives inside that request, up to its ``sessionArchiveTimeoutInterval`` (600 s), so it gets longer
    than XNAT's own limit. ``archive_wait`` bounds how long the client follows XNAT's work when such an
    answer was lost, or after a Direct-Archive trigger (which only queues the work).
    """

    verify_tls: bool = True
    ca_bundle: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    pool_size: int = 4
    get_retries: int = 2
    retry_backoff: float = 0.5
    keepalive_interval: float = 180.0
    user_agent: str = USER_AGENT
    commit_timeout: float = 660.0
    archive_wait: float = 1800.0

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    @property
    def commit_timeouts(self) -> tuple[float, float]:
        """(connect, answer) time-outs of one commit/archive request."""
        return (self.connect_timeout, self.commit_timeout)


def normalize_url(url: str) -> str:
    """The server URL as the client uses it: scheme and host lower-case, no trailing slash, no query.

    Raises ``ValueError`` for anything that is not an http(s) URL.
    """
    url = url.strip()
    match = re.fullmatch(r"(?i)(https?)://([^/?#]+)([^?#]*)(?:[?#].*)?", url)
    if not match:
        raise ValueError(f"not an http(s) URL: {url!r}")
    scheme, host, path = match.groups()
    if "@" in host:
        raise ValueError("put the user name in its own field, not in the URL")
    return f"{scheme.lower()}://{host.lower()}{path.rstrip('/')}"


PLAIN_HTTP_REASON = "the password crosses the network readable by others"


def sends_in_clear(url: str) -> bool:
    """Whether what goes to ``url`` (the password first: XNAT's sign-in is HTTP Basic) may cross a network
    unencrypted: any plain ``http://`` address, except a literal loopback address.

    ``127.x.x.x`` and ``::1`` (the demo's built-in sandbox runs on 127.0.0.1) are exempt: nothing leaves this
    computer, so nobody on a network can read it. A name is not, ``localhost`` included: a hosts file or a DNS
    search domain can send it to another computer.
    """
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "http":
        return False
    try:
        return not ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:  # a name
        return True


def answer_too_large(exc: AnswerTooLarge, action: str = "") -> E.AnswerTooLargeError:
    """The user error for an answer over the client's limit (:mod:`.answer`). Pure; any thread."""
    doing = f" while {action}" if action else ""
    size = f"{exc.limit / (1 << 20):g} MB" if exc.limit >= 1 << 20 else f"{exc.limit // 1024} KB"
    return E.AnswerTooLargeError(
        f"XNAT answered with more data than expected{doing} (more than {size}), so the answer was not used.",
        "Check the server address: something other than XNAT may be answering there. If it is right, "
        "send the details to your XNAT administrator.",
        detail=f"announced {exc.announced} bytes" if exc.announced is not None else "",
    )


def transport_error(exc: requests.RequestException, options: ConnectionOptions, action: str = "") -> E.XnatError:
    """Map a ``requests`` exception (no response) to a typed error. Pure; any thread."""
    import requests  # loaded by then: only a request raises these

    doing = f" while {action}" if action else ""
    kind = type(exc).__name__
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        lowered = text.lower()
        if "wrong version number" in lowered or "record layer failure" in lowered or "unknown protocol" in lowered:
            return E.TlsError(
                "The server does not answer secure (HTTPS) connections at this address.",
                "Check the URL: the server may use http:// or another port.",
                detail=kind,
            )
        if "certificate" in lowered or "hostname" in lowered:
            return E.TlsError(
                "The secure (TLS) connection failed: the server's certificate is not trusted or does not match.",
                "If the server uses a private certificate authority, add its CA file in the server settings; "
                "turn certificate checks off only for a test server you trust.",
                detail=kind,
            )
        return E.TlsError(
            "The secure (TLS) connection to the server failed.",
            "Check the URL and the server's TLS set-up; a proxy may be interfering.",
            detail=kind,
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return E.ServerUnreachableError(
            f"The server did not accept a connection within {options.connect_timeout:g} s.",
            "Check the address and your network (VPN, proxy, firewall).",
            detail=kind,
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return E.ServerTimeoutError(
            f"The server did not answer within {options.read_timeout:g} s{doing}.",
            "The server may be busy; it will be tried again. Raise the time-out in the settings if this repeats.",
            detail=kind,
        )
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return E.ConnectionLostError(
            f"The connection broke while the server's answer was arriving{doing}.",
            "It will be tried again.",
            detail=kind,
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        lowered = text.lower()
        unreachable = any(
            marker in lowered
            for marker in (
                "newconnectionerror",
                "nameresolutionerror",
                "connection refused",
                "failed to establish",
                "name or service not known",
                "nodename nor servname",
                "getaddrinfo failed",
                "no route to host",
                "network is unreachable",
            )
        )
        if unreachable:
            return E.ServerUnreachableError(
                "The server cannot be reached.",
                "Check the address, that the server is running, and your network (VPN, proxy, firewall).",
                detail=kind,
            )
        return E.ConnectionLostError(
            f"The connection to the server broke{doing}.",
            "It will be tried again.",
            detail=kind,
        )
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return E.XnatError("The server address is not valid.", "Use a URL such as https://xnat.example.org.")
    return E.ConnectionLostError(f"The request failed{doing}.", "It will be tried again.", detail=kind)
