"""XNAT REST client: sessions, listings, import service, prearchive, archive, resources.

Start from :class:`XnatClient`; the typed errors are in :mod:`xnat_uploader.core.xnat.errors`.
"""

from xnat_uploader.core.xnat.client import XnatClient
from xnat_uploader.core.xnat.errors import XnatError
from xnat_uploader.core.xnat.importer import ArchiveFormat, ImportHandler, ImportOptions, ImportResult, Overwrite
from xnat_uploader.core.xnat.inbox import InboxStatus
from xnat_uploader.core.xnat.models import ArchiveRef, PrearchiveRef, PrearchiveSession
from xnat_uploader.core.xnat.prearchive import ActionResult, ArchiveOverwrite
from xnat_uploader.core.xnat.server_info import ServerInfo
from xnat_uploader.core.xnat.session import ConnectionOptions, StreamBody, XnatSession

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
