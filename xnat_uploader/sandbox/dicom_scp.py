"""The sandbox's DICOM C-STORE receiver: XNAT's DICOM SCP (xnat-api.md 9 and 10).

Every received instance goes through the same filing code as a gradual-DICOM upload
(:func:`xnat_uploader.sandbox.sessions.receive`), as XNAT's ``CStoreService`` hands each object to its
gradual importer: routing by the default rules (``Project:``/``Subject:``/``Session:`` in
PatientComments, StudyComments or AdditionalPatientHistory, then StudyDescription/AccessionNumber
for the project, PatientName/PatientID for subject/label, else Unassigned), one prearchive session
per (project, StudyInstanceUID, label), status RECEIVING until the idle timer or a commit builds it.
No ``SOURCE`` and no ``prevent_auto_commit`` are set, so the sandbox's auto-build timer applies.

The dataset is stored exactly as received: the Part-10 file is the peer's encoded bytes behind a
file meta header naming the presentation context's transfer syntax, so compressed pixel data is
never decoded or re-encoded.

Performance notes (DESIGN.md section 4): accepted sockets get TCP_NODELAY (with Nagle on, every
C-STORE-RSP waits for the peer's delayed ACK: 17-21 files/s instead of hundreds) and the receiver
announces a large maximum PDU so peers send few, large P-DATA PDUs.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydicom.uid import UID
from pynetdicom import AE, AllStoragePresentationContexts, build_context, evt
from pynetdicom import sop_class as _sop_classes
from pynetdicom.pdu_primitives import SOPClassCommonExtendedNegotiation
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from xnat_uploader.sandbox import sessions
from xnat_uploader.sandbox.dicomio import NotDicom
from xnat_uploader.sandbox.httpd import HttpError
from xnat_uploader.sandbox.sessions import Target

if TYPE_CHECKING:
    from xnat_uploader.sandbox.app import App
    from xnat_uploader.sandbox.auth import User

log = logging.getLogger(__name__)

DEFAULT_AE_TITLE = "XNAT"
DEFAULT_PORT = 8104  # XNAT's default receiver (xnat-api.md 9)
MAX_PDU = 1 << 20  # announced maximum PDU: dcmtk sends up to this (its own cap is 128 KB)
MAX_ASSOCIATIONS = 32  # several parallel senders (the client's --workers) plus slack

# C-STORE-RSP statuses XNAT's CStoreService answers with (xnat-api.md 10.1).
SUCCESS = 0x0000
CANNOT_UNDERSTAND = 0xC000  # the importer refused the object (client error)
OUT_OF_RESOURCES = 0xA700  # anything else went wrong on the server side

# The storage service class: a private or unknown SOP class is filed as a storage SOP class.
_STORAGE_SERVICE_CLASS = "1.2.840.10008.4.2"

# The data is stored as received and never decoded, so accepting a compressed syntax costs nothing.
TRANSFER_SYNTAXES: list[str] = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old devices)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.5",  # RLE Lossless
]

# Receivers running per sandbox App, for /xapi/dicomscp (weak: a stopped sandbox leaves nothing behind).
_running: weakref.WeakKeyDictionary[App, list[DicomReceiver]] = weakref.WeakKeyDictionary()
_running_lock = threading.Lock()


def receivers(app: App) -> list[DicomReceiver]:
    """The receivers running for ``app``, oldest first (what ``/xapi/dicomscp`` lists)."""
    with _running_lock:
        return list(_running.get(app, ()))


class _NoDelayServer(ThreadedAssociationServer):
    """pynetdicom's threaded acceptor with TCP_NODELAY on every accepted socket (it has no option)."""

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        sock, address = super().get_request()
        with contextlib.suppress(OSError):  # e.g. the peer already hung up: the association fails anyway
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address


def _storage_like(uid: str) -> bool:
    """A SOP class pynetdicom does not know (private, or newer than it): treated as storage, as
    pynetdicom's own unrestricted mode does. Known non-storage classes (Q/R, worklist...) are not."""
    uid = UID(uid)
    return uid.is_private or not (uid.keyword and hasattr(_sop_classes, uid.keyword))


class DicomReceiver:
    """A C-STORE (and C-ECHO) SCP filing into the sandbox prearchive of ``app``.

    ``user`` is XNAT's "received file user" (the site administrator): routing may pick any project.
    ``port=0`` binds any free port; :attr:`port` holds the real one after :meth:`start`. A wrong
    called AE title is rejected ("called AE title not recognised"); with ``calling_aets`` only those
    calling AE titles are accepted (XNAT's receiver whitelist; reason "calling AE title not
    recognised"), changeable at run time through :attr:`calling_aets`.
    """

    def __init__(
        self,
        app: App,
        user: User,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ae_title: str = DEFAULT_AE_TITLE,
        calling_aets: Iterable[str] = (),
        receiver_id: int = 1,
    ):
        self.app = app
        self.user = user
        self.host, self.port = host, port
        self.ae_title = ae_title
        self.id = receiver_id
        self.created = int(time.time() * 1000)
        self.stats = {"associations": 0, "rejected": 0, "stored": 0, "failed": 0, "echoes": 0}
        self._stats_lock = threading.Lock()
        self._ae = AE(ae_title=ae_title)
        self._ae.maximum_pdu_size = MAX_PDU
        self._ae.maximum_associations = MAX_ASSOCIATIONS
        self._ae.require_called_aet = True  # XNAT answers an unknown called AE title with a rejection
        self._ae.require_calling_aet = [t.strip() for t in calling_aets]
        for context in AllStoragePresentationContexts:
            self._ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
        self._ae.add_supported_context(Verification, ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
        self._server: _NoDelayServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration ----------------------------------------------------------------------------
    @property
    def calling_aets(self) -> list[str]:
        """Calling AE titles allowed to associate; empty: anyone (read per association)."""
        return list(self._ae.require_calling_aet)

    @calling_aets.setter
    def calling_aets(self, titles: Iterable[str]) -> None:
        self._ae.require_calling_aet = [t.strip() for t in titles]

    @property
    def address(self) -> str:
        """``AE@host:port``, for messages."""
        return f"{self.ae_title}@{self.host}:{self.port}"

    def describe(self) -> dict[str, Any]:
        """The receiver as ``/xapi/dicomscp`` lists it (XNAT's DicomSCPInstance bean properties)."""
        whitelist = self.calling_aets
        return {
            "id": self.id,
            "aeTitle": self.ae_title,
            "port": self.port,
            "identifier": "dicomObjectIdentifier",
            "fileNamer": "",
            "enabled": self._server is not None,
            "customProcessing": False,
            "directArchive": False,
            "anonymizationEnabled": True,
            "whitelistEnabled": bool(whitelist),
            "whitelist": whitelist,
            "routingExpressionsEnabled": False,
            "projectRoutingExpression": "",
            "subjectRoutingExpression": "",
            "sessionRoutingExpression": "",
            "label": f"{self.ae_title}:{self.port}",
            "created": self.created,
            "timestamp": self.created,
            "disabled": 0,
        }

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> DicomReceiver:
        """Bind and serve in a background thread; returns at once with :attr:`port` set."""
        if self._server is not None:
            return self
        handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
        ]
        server = self._ae.make_server((self.host, self.port), evt_handlers=handlers, server_class=_NoDelayServer)
        self._server = server
        self.port = server.server_address[1]
        # ThreadedAssociationServer.shutdown() removes itself from the AE's list: it must be there.
        self._ae._servers.append(server)
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sandbox-dicom-{self.port}", daemon=True
        )
        self._thread.start()
        with _running_lock:
            _running.setdefault(self.app, []).append(self)
        log.info("sandbox DICOM receiver %s listening", self.address)
        return self

    def stop(self) -> None:
        """Stop listening and abort associations still open."""
        with _running_lock:
            mine = _running.get(self.app, [])
            if self in mine:
                mine.remove(self)
        if self._server is None:
            return
        self._server.shutdown()  # no new associations
        self._server = None
        # Abort only established associations: AE.shutdown() would also abort a just-rejected one
        # still waiting for its peer to close, which trips pynetdicom's state machine (Evt15 in Sta13).
        for assoc in self._ae.active_associations:
            if assoc.is_established:
                assoc.abort()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- event handlers ---------------------------------------------------------------------------
    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def _on_requested(self, event: evt.Event) -> None:
        """Before negotiation: support proposed private/unknown storage SOP classes too, so that for
        instance a scanner's private non-image objects are received as XNAT's receiver does."""
        assoc = event.assoc
        proposed = assoc.requestor.primitive.presentation_context_definition_list
        supported = assoc.acceptor.supported_contexts
        known = {str(cx.abstract_syntax) for cx in supported}
        extra = {str(cx.abstract_syntax) for cx in proposed} - known
        extra = {uid for uid in extra if _storage_like(uid)}
        if extra:
            assoc.acceptor.supported_contexts = supported + [build_context(uid, TRANSFER_SYNTAXES) for uid in extra]

    def _on_accepted(self, event: evt.Event) -> None:
        self._count("associations")
        assoc = event.assoc
        log.debug("DICOM association from %s@%s accepted", assoc.requestor.ae_title, assoc.requestor.address)
        # pynetdicom routes a C-STORE by its SOP class; one it does not know would find no service
        # class. Mapping it to the storage service (what SOP Class Common Extended Negotiation is for)
        # hands it to our C-STORE handler. Uses a private attribute: on failure such classes fail alone.
        try:
            for cx in assoc.accepted_contexts:
                uid = str(cx.abstract_syntax)
                if _storage_like(uid):
                    item = SOPClassCommonExtendedNegotiation()
                    item.sop_class_uid = uid
                    item.service_class_uid = _STORAGE_SERVICE_CLASS
                    assoc.acceptor._common_ext[UID(uid)] = item
        except Exception:  # noqa: BLE001 - a pynetdicom change must not break standard classes
            log.debug("private SOP classes cannot be mapped to the storage service", exc_info=True)

    def _on_rejected(self, event: evt.Event) -> None:
        self._count("rejected")
        log.info("DICOM association from %s rejected", event.assoc.requestor.address)

    def _on_echo(self, event: evt.Event) -> int:
        self._count("echoes")
        return SUCCESS

    def _on_store(self, event: evt.Event) -> int:
        """File one instance; the answer follows XNAT's CStoreService (0xC000 / 0xA700 on failure)."""
        store = self.app.store
        sop_uid = str(event.request.AffectedSOPInstanceUID or "").strip()
        temp, out = store.temp_file(".dcm")
        try:
            with out:
                data = event.encoded_dataset()  # preamble + file meta (context's syntax) + bytes as received
                out.write(data)
            # rename: C-STORE has no file name, XNAT's file namer names by UIDs.
            target = Target(rename=True)
            sessions.receive(store, self.user, target, temp, f"{sop_uid or 'instance'}.dcm", len(data))
        except NotDicom as err:
            self._count("failed")
            log.info("C-STORE of %s refused: %s", sop_uid, err)
            return CANNOT_UNDERSTAND
        except HttpError as err:
            # Only the status: some importer messages name session folders, i.e. labels that routing
            # may have taken from PatientID.
            self._count("failed")
            log.info("C-STORE of %s refused with HTTP status %s", sop_uid, err.status)
            return CANNOT_UNDERSTAND if err.status < 500 else OUT_OF_RESOURCES
        except Exception as exc:  # noqa: BLE001 - any failure must become a C-STORE status, as XNAT's
            # The type only, for the same reason (an OSError carries a path under the session folder).
            self._count("failed")
            log.error("C-STORE of %s failed: %s", sop_uid, type(exc).__name__)
            return OUT_OF_RESOURCES
        finally:
            temp.unlink(missing_ok=True)  # receive() moved it into the session on success
        self._count("stored")
        return SUCCESS

    def __repr__(self) -> str:
        return f"DicomReceiver({self.address!r})"


__all__ = ["DicomReceiver", "receivers", "DEFAULT_AE_TITLE", "DEFAULT_PORT", "TRANSFER_SYNTAXES"]
