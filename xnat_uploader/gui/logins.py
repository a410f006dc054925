"""The logins of this run: one :class:`XnatClient` per (server, user), shared by listings and upload jobs.

No Qt. Passwords come from the ``credentials`` callable (default: the keyring), read on the GUI thread only
(STYLE.md 6.2.6); job threads only ever get an already-made client's session. Passwords are never logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from xnat_uploader.core.credentials import CredentialStore
from xnat_uploader.core.errors import UserError
from xnat_uploader.core.secret import Secret
from xnat_uploader.core.settings import Settings
from xnat_uploader.core.xnat import ConnectionOptions, XnatClient
from xnat_uploader.core.xnat.session import XnatSession
from xnat_uploader.core.xnat.transport import normalize_url

log = logging.getLogger(__name__)

Credentials = Callable[[str, str], "Secret | str | None"]  # (url, user) -> password or None
POOL_SIZE = 10  # connections per server: enough for the largest "workers" choice plus listings


@dataclass(frozen=True)
class ServerChoice:
    """A server/login the form offers."""

    url: str
    user: str
    name: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.url, self.user)


class Logins:
    def __init__(self, settings: Settings, credentials: Credentials | None = None) -> None:
        self.settings = settings
        self._credentials = credentials or CredentialStore().get
        self._clients: dict[tuple[str, str], XnatClient] = {}
        self._lock = threading.Lock()
        self._extra: list[ServerChoice] = []

    def servers(self) -> list[ServerChoice]:
        """Servers from the settings, then those signed in to during this run."""
        out = [ServerChoice(s.url, s.user, s.name) for s in self.settings.servers]
        return out + [s for s in self._extra if s.key not in {o.key for o in out}]

    def connect(self, url: str, user: str, password: str | Secret) -> tuple[ServerChoice, bool]:
        """Use this login from now on. Returns the server and whether it is new to :meth:`servers`."""
        url = normalize_url(url)
        client = self._make(url, user, Secret(password))
        with self._lock:
            old = self._clients.pop((url, user), None)
            self._clients[(url, user)] = client
        if old is not None:
            close_clients([old])
        entry = self.settings.find(url)
        choice = ServerChoice(url, user, entry.name if entry else url.split("://", 1)[-1])
        new = choice.key not in {s.key for s in self.servers()}
        if new:
            self._extra.append(choice)
        return choice, new

    def client(self, url: str, user: str) -> XnatClient | None:
        """The client for this login, made from the stored password on first use (GUI thread only)."""
        key = (normalize_url(url), user)
        with self._lock:
            client = self._clients.get(key)
        if client is not None:
            return client
        password = self._credentials(*key)
        if not password:
            return None
        client = self._make(key[0], user, Secret(password))
        with self._lock:
            return self._clients.setdefault(key, client)

    def session_for(self, url: str, user: str) -> XnatSession:
        """For job threads: the session of a login made earlier on the GUI thread; else a :class:`UserError`."""
        with self._lock:
            client = self._clients.get((normalize_url(url), user))
        if client is None:
            raise UserError(*not_signed_in(url, user))
        return client.session

    def disconnect(self, url: str, user: str) -> bool:
        """Forget this run's login for (url, user) and log it out in the background. True if there was one."""
        with self._lock:
            client = self._clients.pop((normalize_url(url), user), None)
        if client is not None:
            close_clients([client])
        return client is not None

    def forget_server(self, url: str, user: str) -> None:
        """Drop a server added during this run from :meth:`servers` (and its login)."""
        self.disconnect(url, user)
        key = (normalize_url(url), user)
        self._extra = [s for s in self._extra if s.key != key]

    def close(self, wait: float = 0.0) -> None:
        """Log every client out (in the background; waits up to ``wait`` seconds)."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        close_clients(clients, wait)

    def _make(self, url: str, user: str, password: Secret) -> XnatClient:
        entry = self.settings.find(url)
        options = entry.connection_options(workers=POOL_SIZE) if entry else ConnectionOptions(pool_size=POOL_SIZE)
        return XnatClient(url, user, password, options)


def not_signed_in(url: str, user: str) -> tuple[str, str]:
    """Message and hint for a login without a password."""
    return (f"Not signed in to {url} as {user}.", "Sign in to this server, then press Retry.")


def close_clients(clients: list[XnatClient], wait: float = 0.0) -> None:
    """Log out on a background thread (a network call: never on the GUI thread)."""
    if not clients:
        return

    def close() -> None:
        for client in clients:
            try:
                client.close()
            except Exception as exc:  # noqa: BLE001 - logging out is best effort
                log.info("Logout failed: %s", type(exc).__name__)

    thread = threading.Thread(target=close, name="xnat-logout", daemon=True)
    thread.start()
    if wait:
        thread.join(wait)
