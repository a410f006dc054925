"""Where settings, data (the queue) and logs live. Overridable for tests and portable use.

``XNAT_UPLOADER_CONFIG_DIR`` (or ``--dev-config DIR``) puts everything under one folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from xnat_uploader import APP_NAME

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
    path.mkdir(parents=True, exist_ok=True)
    return path
