"""Passwords: the only module that touches ``keyring``.

Entries are stored under service ``xnat-uploader`` with username ``user@server-url``. When the active keyring
backend cannot keep secrets (keyring's ``fail`` backend, which raises, or its ``null`` backend, which
silently drops them) the password is kept in memory for this process only, and :attr:`CredentialStore.warning`
says so for the UI. Every keyring call is guarded: a locked or broken keychain never crashes the app.

Passwords travel as :class:`~xnat_uploader.core.secret.Secret` and are never logged.

Thread-safety: the in-memory fallback is guarded by a lock, so any thread may call this module; the GUI
still reads passwords on its own thread before a job starts (STYLE.md 6.2.6), so keyring backends that
dislike threads are only used from one.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from xnat_uploader.core.secret import Secret
from xnat_uploader.core.xnat.transport import normalize_url

if TYPE_CHECKING:
    import keyring.backend

log = logging.getLogger(__name__)


def _keyring() -> ModuleType:
    """keyring, loaded on first use (it costs ~0.06 s at start-up; commands without a password skip it)."""
    import keyring
    import keyring.backends.fail
    import keyring.backends.null
    import keyring.errors

    return keyring


def _errors() -> tuple[type[BaseException], ...]:
    """What a keyring call may raise that must not crash the app."""
    return (_keyring().errors.KeyringError, RuntimeError, OSError)


SERVICE = "xnat-uploader"

NOT_SECURE_WARNING = (
    "No secure password store (keychain) is available on this computer, so the password is kept only "
    "until the program closes; you will be asked again next time."
)
ERROR_WARNING = (
    "The system password store (keychain) could not be used ({kind}); the password is kept only until the "
    "program closes. Unlock the keychain to have it remembered."
)

_memory: dict[str, Secret] = {}
_memory_lock = threading.Lock()


def account_name(url: str, user: str) -> str:
    """The keyring username for a login: ``user@https://server/context`` (URL normalised)."""
    return f"{user}@{normalize_url(url)}"


def backend_is_secure(backend: keyring.backend.KeyringBackend | None = None) -> bool:
    """False for keyring's ``fail`` and ``null`` backends (and chains made only of them)."""
    kr = _keyring()
    backend = backend if backend is not None else kr.get_keyring()
    insecure = (kr.backends.fail.Keyring, kr.backends.null.Keyring)
    inner = getattr(backend, "backends", None)  # ChainerBackend
    if inner is not None and not isinstance(backend, insecure):
        return any(not isinstance(b, insecure) for b in inner)
    return not isinstance(backend, insecure)


@dataclass(frozen=True)
class StoreOutcome:
    """Where a password went: ``"keyring"``, ``"memory"`` (this process only) or ``"nowhere"``."""

    where: str
    warning: str | None = None

    @property
    def remembered(self) -> bool:
        return self.where == "keyring"


class CredentialStore:
    """Get, set and forget passwords. Thread-safe (see the module docstring).

    ``backend`` defaults to keyring's active backend at each call (tests swap it with ``keyring.set_keyring``).
    """

    def __init__(self, backend: keyring.backend.KeyringBackend | None = None) -> None:
        self._backend = backend
        self._last_warning: str | None = None

    def __repr__(self) -> str:
        return f"CredentialStore(backend={type(self.backend).__name__}, secure={self.secure})"

    @property
    def backend(self) -> keyring.backend.KeyringBackend:
        return self._backend if self._backend is not None else _keyring().get_keyring()

    @property
    def secure(self) -> bool:
        """Whether passwords can be remembered between runs."""
        return backend_is_secure(self.backend)

    @property
    def warning(self) -> str | None:
        """A sentence for the UI when passwords will not be remembered (or the keychain failed)."""
        if not self.secure:
            return NOT_SECURE_WARNING
        return self._last_warning

    def get(self, url: str, user: str) -> Secret | None:
        """The password for ``user`` on ``url``: this process's memory first, then the keyring."""
        account = account_name(url, user)
        with _memory_lock:
            remembered = _memory.get(account)
        if remembered is not None:
            return remembered
        if not self.secure:
            return None
        try:
            value = self.backend.get_password(SERVICE, account)
        except _errors() as exc:
            self._failed("read", exc)
            return None
        return Secret(value) if value else None

    def set(self, url: str, user: str, password: str | Secret, *, remember: bool = True) -> StoreOutcome:
        """Keep ``password`` for this process, and in the keyring when ``remember`` and a secure one exists."""
        account = account_name(url, user)
        secret = Secret(password)
        with _memory_lock:
            _memory[account] = secret
        if not remember:
            return StoreOutcome("memory")
        if not self.secure:
            log.warning("No secure keyring backend (%s); password kept in memory only", type(self.backend).__name__)
            return StoreOutcome("memory", NOT_SECURE_WARNING)
        try:
            self.backend.set_password(SERVICE, account, secret.reveal())
        except _errors() as exc:
            return StoreOutcome("memory", self._failed("store", exc))
        return StoreOutcome("keyring")

    def forget(self, url: str, user: str, *, keyring_too: bool = True) -> bool:
        """Drop the password from memory and (by default) from the keyring. True if the keyring had one."""
        account = account_name(url, user)
        with _memory_lock:
            _memory.pop(account, None)
        if not keyring_too or not self.secure:
            return False
        try:
            if self.backend.get_password(SERVICE, account) is None:
                return False
            self.backend.delete_password(SERVICE, account)
        except _keyring().errors.PasswordDeleteError:
            return False
        except _errors() as exc:
            self._failed("delete", exc)
            return False
        return True

    def _failed(self, what: str, exc: BaseException) -> str:
        # Only the exception's type: some backends put the account (user@server) in messages; never a secret,
        # but the type is all the user needs.
        kind = type(exc).__name__
        log.warning("Keyring %s failed: %s", what, kind)
        self._last_warning = ERROR_WARNING.format(kind=kind)
        return self._last_warning


def forget_memory() -> None:
    """Clear this process's in-memory passwords (tests; "sign out everywhere")."""
    with _memory_lock:
        _memory.clear()
