"""Where settings, data (the queue, receipts) and logs live. Overridable for tests and portable use.

``XNAT_UPLOADER_CONFIG_DIR`` (or ``--dev-config DIR``) puts everything under one folder. Every folder made
here is owner-only (:mod:`xnat_uploader.core.private`): they hold labels and source paths.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from xnat_uploader import APP_NAME
from xnat_uploader.core import private

_ENV = "XNAT_UPLOADER_CONFIG_DIR"


def _base() -> Path | None:
    value = os.environ.get(_ENV)
    return Path(value) if value else None


def set_base(folder: str | os.PathLike[str]) -> None:
    """Put config, data and logs under ``folder`` for this process (``--dev-config``)."""
    os.environ[_ENV] = str(folder)


def config_dir() -> Path:
    base = _base()
    return base / "config" if base else platformdirs.user_config_path(APP_NAME, appauthor=False)


def data_dir() -> Path:
    base = _base()
    return base / "data" if base else platformdirs.user_data_path(APP_NAME, appauthor=False)


def log_dir() -> Path:
    base = _base()
    return base / "logs" if base else platformdirs.user_log_path(APP_NAME, appauthor=False)


def ensure(path: Path) -> Path:
    """Make ``path`` (one of the app's folders, or a folder inside one) if missing, owner-only."""
    return private.private_dir(path)


def tighten_app_folders() -> int:
    """Bring the settings, data and log folders of an older install to owner-only (on start). Walks only
    these folders; returns how many entries were changed."""
    return private.tighten({config_dir(), data_dir(), log_dir()})
