"""XNAT REST client: sessions, listings, import service, prearchive, archive, resources.

Start from :class:`XnatClient`; the typed errors are in :mod:`xnat_uploader.core.xnat.errors`.
The names below are loaded on first use (PEP 562), so importing a light submodule such as
``errors`` or ``transport`` does not load ``requests`` (commands without HTTP start faster).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "XnatClient": "client",
    "XnatError": "errors",
    "ArchiveFormat": "importer",
    "ImportHandler": "importer",
    "ImportOptions": "importer",
    "ImportResult": "importer",
    "Overwrite": "importer",
    "InboxStatus": "inbox",
    "ArchiveRef": "models",
    "PrearchiveRef": "models",
    "PrearchiveSession": "models",
    "ActionResult": "prearchive",
    "ArchiveOverwrite": "prearchive",
    "ServerInfo": "server_info",
    "ConnectionOptions": "transport",
    "StreamBody": "body",
    "XnatSession": "session",
}

__all__ = [
    "ActionResult",
    "ArchiveFormat",
    "ArchiveOverwrite",
    "ArchiveRef",
    "ConnectionOptions",
    "ImportHandler",
    "ImportOptions",
    "ImportResult",
    "InboxStatus",
    "Overwrite",
    "PrearchiveRef",
    "PrearchiveSession",
    "ServerInfo",
    "StreamBody",
    "XnatClient",
    "XnatError",
    "XnatSession",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from xnat_uploader.core.xnat.body import StreamBody
    from xnat_uploader.core.xnat.client import XnatClient
    from xnat_uploader.core.xnat.errors import XnatError
    from xnat_uploader.core.xnat.importer import ArchiveFormat, ImportHandler, ImportOptions, ImportResult, Overwrite
    from xnat_uploader.core.xnat.inbox import InboxStatus
    from xnat_uploader.core.xnat.models import ArchiveRef, PrearchiveRef, PrearchiveSession
    from xnat_uploader.core.xnat.prearchive import ActionResult, ArchiveOverwrite
    from xnat_uploader.core.xnat.server_info import ServerInfo
    from xnat_uploader.core.xnat.session import XnatSession
    from xnat_uploader.core.xnat.transport import ConnectionOptions
