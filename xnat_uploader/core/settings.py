"""Settings: a versioned JSON file in the config dir holding the servers and upload defaults (never a password).

Minimal on purpose (issue 7 extends it). Writes are atomic (temp file + ``os.replace``), so a crash never
leaves half a file. A file that cannot be read is renamed to ``settings.json.corrupt-<time>`` and defaults
are used, with a warning for the UI.

Thread-safety: :func:`load` and :func:`save` may be called from any thread; saves are serialised by a lock.
Callers normally use them from the GUI thread only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xnat_uploader import paths
from xnat_uploader.core.upload_choices import OnExisting, on_existing_for_job, parse_on_existing
from xnat_uploader.core.xnat.transport import ConnectionOptions, normalize_url

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: upload defaults ("defaults"); files of version 0 and 1 load with built-in defaults
FILE_NAME = "settings.json"
_SECRET_KEYS = {"password", "passwd", "secret", "token", "jsessionid"}
_save_lock = threading.Lock()


@dataclass
class ServerEntry:
    """One XNAT server the user signs in to. No password here: that is in the keyring."""

    url: str
    user: str
    name: str = ""
    verify_tls: bool = True
    ca_bundle: str | None = None
    # The server's DICOM C-STORE receiver; empty/0: the server's host, XNAT's port 8104 and AE title XNAT.
    dicom_host: str = ""
    dicom_port: int = 0
    called_aet: str = ""
    calling_aet: str = ""
    # How long one commit/archive request may take (XNAT archives inside it, up to 600 s), and how long to
    # follow XNAT's archiving when that answer is lost or after a Direct-Archive trigger (seconds).
    commit_timeout: float = 660.0
    archive_wait: float = 1800.0
    # The user confirmed once that this plain-http server may get the password unencrypted (the GUI asks
    # before the first sign-in; ``transport.sends_in_clear``). Tied to the URL: another URL asks again.
    plain_http_ok: bool = False

    def __post_init__(self) -> None:
        self.url = normalize_url(self.url)
        if not self.name:
            self.name = self.url.split("://", 1)[-1]

    def connection_options(
        self,
        *,
        workers: int = 4,
        read_timeout: float | None = None,
        commit_timeout: float | None = None,
        archive_wait: float | None = None,
    ) -> ConnectionOptions:
        """Client options for this server: its TLS choices and time-outs, a pool for ``workers`` parallel requests.

        ``commit_timeout``/``archive_wait`` given (a command-line option) win over the server's saved values.
        """
        extra = {"read_timeout": read_timeout, "connect_timeout": min(read_timeout, 10.0)} if read_timeout else {}
        return ConnectionOptions(
            verify_tls=self.verify_tls, ca_bundle=self.ca_bundle, pool_size=workers,
            commit_timeout=commit_timeout or self.commit_timeout, archive_wait=archive_wait or self.archive_wait,
            **extra,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "user": self.user,
            "verify_tls": self.verify_tls,
            "ca_bundle": self.ca_bundle,
            "dicom_host": self.dicom_host,
            "dicom_port": self.dicom_port,
            "called_aet": self.called_aet,
            "calling_aet": self.calling_aet,
            "commit_timeout": self.commit_timeout,
            "archive_wait": self.archive_wait,
            "plain_http_ok": self.plain_http_ok,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerEntry:
        if not isinstance(data, dict) or not isinstance(data.get("url"), str) or not isinstance(data.get("user"), str):
            raise ValueError("a server needs a url and a user")
        ca = data.get("ca_bundle")
        return cls(
            url=data["url"],
            user=data["user"],
            name=str(data.get("name") or ""),
            verify_tls=bool(data.get("verify_tls", True)),
            ca_bundle=str(ca) if ca else None,
            dicom_host=str(data.get("dicom_host") or ""),
            dicom_port=_port(data.get("dicom_port")),
            called_aet=str(data.get("called_aet") or "")[:16],
            calling_aet=str(data.get("calling_aet") or "")[:16],
            commit_timeout=_seconds(data.get("commit_timeout"), 660.0),
            archive_wait=_seconds(data.get("archive_wait"), 1800.0),
            plain_http_ok=data.get("plain_http_ok") is True,
        )


def _seconds(value: Any, default: float) -> float:
    """A positive duration from a settings file, else ``default`` (absent or hand-edited nonsense)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 86400
    return float(value) if ok else default


def _port(value: Any) -> int:
    """A TCP port from a settings file, 0 when absent or not a port (hand-edited files)."""
    try:
        port = int(value or 0)
    except (TypeError, ValueError):
        return 0
    return port if 0 < port < 65536 else 0


TRANSPORTS = ("zip", "gradual", "cstore")
DESTINATIONS = ("prearchive", "archive")


@dataclass
class Defaults:
    """What a new upload form starts with. ``workers=None``: the transport's own default; ``deflate=None``: stored.

    Values that are not allowed (a hand-edited file) fall back to the built-in default, one field at a time.
    """

    transport: str = "zip"
    workers: int | None = None
    destination: str = "prearchive"
    overwrite: str = OnExisting.REFUSE.value  # an OnExisting value; older files' none/append/delete are read
    deflate: int | None = None

    def __post_init__(self) -> None:
        # One rule with queued jobs: an old name is read as its choice, and Replace without an archiving step
        # (an older file's "delete" with the prearchive as destination) is Add, which is what XNAT did with it.
        options = {"overwrite": self.overwrite, "destination": self.destination}
        self.overwrite = on_existing_for_job(options, self.transport).value

    def to_dict(self) -> dict[str, Any]:
        return {
            "transport": self.transport,
            "workers": self.workers,
            "destination": self.destination,
            "overwrite": self.overwrite,
            "deflate": self.deflate,
        }

    @classmethod
    def from_dict(cls, data: object) -> Defaults:
        if not isinstance(data, dict):
            return cls()
        base = cls()

        def choice(key: str, allowed: tuple[str, ...]) -> str:
            value = data.get(key)
            return value if value in allowed else getattr(base, key)

        def number(key: str, low: int, high: int) -> int | None:
            value = data.get(key)
            ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
            return value if ok else None

        return cls(
            transport=choice("transport", TRANSPORTS),
            workers=number("workers", 1, 32),
            destination=choice("destination", DESTINATIONS),
            overwrite=(parse_on_existing(data.get("overwrite")) or OnExisting.REFUSE).value,  # then __post_init__
            deflate=number("deflate", 1, 9),
        )


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an older file's dict up to :data:`SCHEMA_VERSION` (one small step per version)."""
    version = data.get("schema_version", 0)
    if version < 2:  # 0/1 -> 2: no upload defaults yet
        data = {**data, "defaults": Defaults().to_dict()}
    return data


@dataclass
class Settings:
    """Everything the app remembers between runs: servers, upload defaults. Unknown keys of newer versions are kept."""

    servers: list[ServerEntry] = field(default_factory=list)
    current_server: str | None = None
    defaults: Defaults = field(default_factory=Defaults)
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list, compare=False, repr=False)

    def find(self, url: str) -> ServerEntry | None:
        key = normalize_url(url)
        return next((s for s in self.servers if s.url == key), None)

    def upsert(self, entry: ServerEntry) -> ServerEntry:
        """Add ``entry`` or replace the entry with the same URL; returns it."""
        for i, existing in enumerate(self.servers):
            if existing.url == entry.url:
                self.servers[i] = entry
                return entry
        self.servers.append(entry)
        return entry

    def remove(self, url: str) -> bool:
        key = normalize_url(url)
        before = len(self.servers)
        self.servers = [s for s in self.servers if s.url != key]
        if self.current_server == key:
            self.current_server = None
        return len(self.servers) != before

    def current(self) -> ServerEntry | None:
        """The selected server, else the only one."""
        if self.current_server:
            found = self.find(self.current_server)
            if found:
                return found
        return self.servers[0] if len(self.servers) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        extra = {k: v for k, v in self.extra.items() if k.lower() not in _SECRET_KEYS}
        return {
            **extra,
            "schema_version": SCHEMA_VERSION,
            "servers": [s.to_dict() for s in self.servers],
            "current_server": self.current_server,
            "defaults": self.defaults.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        if not isinstance(data, dict):
            raise ValueError("settings must be a JSON object")
        version = data.get("schema_version", 0)
        if not isinstance(version, int):
            raise ValueError("schema_version must be a number")
        servers = data.get("servers", [])
        if not isinstance(servers, list):
            raise ValueError("servers must be a list")
        current = data.get("current_server")
        data = _migrate(data)
        known = {"schema_version", "servers", "current_server", "defaults"}
        extra = {k: v for k, v in data.items() if k not in known and k.lower() not in _SECRET_KEYS}
        settings = cls(
            servers=[ServerEntry.from_dict(s) for s in servers],
            current_server=normalize_url(current) if isinstance(current, str) and current else None,
            defaults=Defaults.from_dict(data.get("defaults")),
            schema_version=version,
            extra=extra,
        )
        if version > SCHEMA_VERSION:
            settings.warnings.append(
                f"The settings file was written by a newer version (format {version}); unknown options are kept."
            )
        return settings


def settings_path() -> Path:
    """``<config dir>/settings.json``."""
    return paths.config_dir() / FILE_NAME


def load(path: Path | None = None) -> Settings:
    """Read the settings; missing file -> defaults; unreadable file -> backed up, defaults, a warning.

    Warnings for the UI are in ``settings.warnings``.
    """
    path = path or settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings()
    except OSError as exc:
        settings = Settings()
        settings.warnings.append(f"The settings file could not be read ({exc.strerror}); using defaults.")
        return settings
    try:
        settings = Settings.from_dict(json.loads(text))
    except (ValueError, TypeError) as exc:
        backup = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.replace(path, backup)
        except OSError:
            backup = None  # type: ignore[assignment]
        log.warning("Settings file is damaged (%s); backed up and replaced by defaults", type(exc).__name__)
        settings = Settings()
        where = f" A copy was kept as {backup.name}." if backup else ""
        settings.warnings.append(f"The settings file was damaged and has been reset to defaults.{where}")
        return settings
    if settings.schema_version < SCHEMA_VERSION:
        _backup_before_migration(path, settings.schema_version)
    return settings


def _backup_before_migration(path: Path, version: int) -> None:
    """Keep the older file as ``settings.json.v<version>`` (once) before the next save rewrites it."""
    backup = path.with_name(f"{path.name}.v{version}")
    if backup.exists():
        return
    try:
        shutil.copy2(path, backup)
    except OSError as exc:
        log.warning("Cannot back up the settings file before upgrading it: %s", exc.strerror)


def save(settings: Settings, path: Path | None = None) -> Path:
    """Write the settings atomically (temp file in the same folder, then ``os.replace``). Returns the path."""
    path = path or settings_path()
    data = json.dumps(settings.to_dict(), indent=2, sort_keys=False) + "\n"
    with _save_lock:
        paths.ensure(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return path
