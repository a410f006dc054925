"""A lean DICOM upper-layer client: associate, C-ECHO, C-STORE of already-encoded datasets, release.

Why not pynetdicom's ``Association`` for the data path: its reactor thread polls the socket and
hands every PDU through queues with 1 ms sleeps, which caps one association at ~270 instances/s
here (dcmtk's ``storescu``: 1,200-2,000/s), and it occasionally loses a response (its issues #842/#850).
The association PDUs (A-ASSOCIATE-RQ/AC/RJ) are encoded and decoded in :mod:`.acse`. What is ours
is the blocking loop: one socket with TCP_NODELAY, the file's dataset bytes sent as they are
(never decoded) in large P-DATA-TF PDUs, then one blocking read of the response with a
short time-out. A lost or late response ends the association (abort) and the caller re-associates.

Two rules of PS3.8 a receiver enforces: every PDV fragment has an even length (so a dataset of odd
length is refused here before anything is sent; :mod:`.encoding` makes it even), and no PDU is longer
than the peer's maximum. What the peer sends is read within the limit we announced, never trusted
beyond it: a longer PDU ends the association instead of being allocated. An A-ABORT or a closed
connection is noticed at once, also between the PDUs of a large dataset, not after the time-out.

Every failure is a typed :class:`DicomError` with a plain message; ``transient`` ones may succeed if
tried again (nothing listening, time-out, association lost, receiver busy). An :class:`Association`
belongs to one thread at a time; the module functions may be called from any thread.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from xnat_uploader import __version__
from xnat_uploader.core.transfer import acse
from xnat_uploader.core.xnat.errors import XnatError

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
# Names this client in associations; UUID-derived (2.25, PS3.5 B.2), so no registered root is needed.
IMPLEMENTATION_UID = "2.25.59727332928321124598795338774989879957"
MAX_PDU = 1 << 20  # what we accept (and refuse beyond); the peer's limit decides what we send
MAX_COMMAND = 64 * 1024  # a response command set is ~100 bytes; more is not a DICOM peer
SEND_PDU_CAP = 256 * 1024  # larger PDUs gain nothing on loopback and cost memory on the peer
MAX_CONTEXTS = 128  # odd context IDs 1..255 (PS3.8 9.3.2.2)

_PDU_HEAD = struct.Struct(">BxL")
_PDV_HEAD = struct.Struct(">BxLLBB")  # P-DATA-TF header + one PDV item header
_ELEM = struct.Struct("<HHL")


class DicomError(XnatError):
    """Base of the DICOM network errors (a :class:`UserError`; ``transient`` says whether to try again)."""


class DicomUnreachableError(DicomError):
    """No TCP connection: nothing listens on the port, or the host cannot be reached."""

    transient = True


class DicomTimeoutError(DicomError):
    """The peer accepted the connection but did not answer in time."""

    transient = True


class AssociationLostError(DicomError):
    """The association broke (aborted by the peer, connection reset) while in use."""

    transient = True


class AssociationRejectedError(DicomError):
    """The receiver refused the association (A-ASSOCIATE-RJ). Transient when it said "try later"."""

    def __init__(self, message: str, hint: str, *, result: int, source: int, reason: int) -> None:
        super().__init__(message, hint, detail=f"result={result} source={source} reason={reason}")
        self.result, self.source, self.reason = result, source, reason
        self.transient = result == 2  # "rejected (transient)": congestion, local limit


class CalledAeTitleError(AssociationRejectedError):
    """The receiver does not know the called AE title we used."""


class CallingAeTitleError(AssociationRejectedError):
    """The receiver does not accept our (calling) AE title."""


class NoContextError(DicomError):
    """The receiver accepted none of the SOP classes / transfer syntaxes proposed."""


class OddLengthError(DicomError):
    """A dataset of odd length: its PDV fragments could not all be even (PS3.8 9.3.5.1), so it is not sent."""


_RJ_RESULT = {1: "permanently", 2: "for now (transient)"}
_RJ_SOURCE = {1: "the receiving application", 2: "the receiver's DICOM service (ACSE)",
              3: "the receiver's DICOM service (presentation)"}  # fmt: skip
_RJ_REASON = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised",
    (1, 7): "called AE title not recognised",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 0): "reserved",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}
_ABORT_REASON = {0: "no reason given", 1: "unrecognised PDU", 2: "unexpected PDU", 4: "unrecognised PDU parameter",
                 5: "unexpected PDU parameter", 6: "invalid PDU parameter value"}  # fmt: skip


def rejection(result: int, source: int, reason: int, called: str, calling: str) -> AssociationRejectedError:
    """Put an A-ASSOCIATE-RJ's result/source/reason into words and pick the error type."""
    why = _RJ_REASON.get((source, reason), f"reason code {reason}")
    message = f"The DICOM receiver rejected the association {_RJ_RESULT.get(result, '')}: {why}"
    message += f" (by {_RJ_SOURCE.get(source, f'source {source}')})."
    args = {"result": result, "source": source, "reason": reason}
    if (source, reason) == (1, 7):
        hint = f"Check the receiver's AE title: '{called}' is not one it answers to (XNAT's default is XNAT)."
        return CalledAeTitleError(message, hint, **args)
    if (source, reason) == (1, 3):
        hint = f"Ask the receiver's administrator to allow the calling AE title '{calling}', or use another one."
        return CallingAeTitleError(message, hint, **args)
    if result == 2:
        return AssociationRejectedError(message, "The receiver is busy; try again in a while.", **args)
    return AssociationRejectedError(
        message, "Check the AE titles, host and port with the receiver's administrator.", **args
    )


@dataclass(frozen=True)
class Endpoint:
    """Where a DICOM receiver listens and the AE titles to use. Plain data: any thread."""

    host: str
    port: int
    called_aet: str
    calling_aet: str = "XNATUPLOAD"
    connect_timeout: float = 10.0
    acse_timeout: float = 30.0
    dimse_timeout: float = 30.0  # per response; pynetdicom-era SCPs may lose one: re-associate then

    def __post_init__(self) -> None:
        for role, title in (("called", self.called_aet), ("calling", self.calling_aet)):
            if not 0 < len(title.strip()) <= 16 or "\\" in title or not title.isascii() or not title.isprintable():
                raise DicomError(
                    f"The {role} AE title '{title}' is not valid.",
                    "AE titles have 1 to 16 characters: letters, digits, spaces and most punctuation (no backslash).",
                )

    def __str__(self) -> str:
        return f"{self.called_aet}@{self.host}:{self.port}"


class DatasetStream(Protocol):
    """A data set read as it is sent: its length, known in advance, and ``read(n)`` giving exactly ``n`` bytes."""

    def __len__(self) -> int: ...

    def read(self, n: int) -> bytes: ...


@dataclass(frozen=True)
class StoreStatus:
    """A C-STORE-RSP: ``status`` (0x0000 success) and the receiver's error comment, if any."""

    status: int
    comment: str = ""


class Association:
    """One open association. ``accepted`` maps (SOP class, transfer syntax) to its context ID.

    Not thread-safe: one thread sends on it at a time (the transport gives each worker its own).
    """

    def __init__(self, endpoint: Endpoint, contexts: Iterable[tuple[str, str]]) -> None:
        self.endpoint = endpoint
        self.requested = list(dict.fromkeys(contexts))
        if not 0 < len(self.requested) <= MAX_CONTEXTS:
            raise ValueError(f"1..{MAX_CONTEXTS} presentation contexts needed, got {len(self.requested)}")
        self.accepted: dict[tuple[str, str], int] = {}
        self.peer_max_pdu = 0
        self._msg_id = 0
        self._pending: list[tuple[int, bytes]] = []  # PDUs read ahead (by peer_closed), handed out first
        self._sock = _connect(endpoint)
        try:
            self._negotiate()
        except BaseException:
            self._close()
            raise

    # -- negotiation --------------------------------------------------------------------------------
    def _negotiate(self) -> None:
        ep = self.endpoint
        contexts = [(2 * n + 1, sop, (ts,)) for n, (sop, ts) in enumerate(self.requested)]
        rq = acse.associate_rq(
            ep.called_aet, ep.calling_aet, APPLICATION_CONTEXT, contexts, max_pdu=MAX_PDU,
            implementation_uid=IMPLEMENTATION_UID, implementation_version=f"XNATUPL_{__version__}"[:16],
        )  # fmt: skip
        self._sock.settimeout(ep.acse_timeout)
        self._send(rq)
        kind, body = self._read_pdu("waiting for the association to be accepted", ep.acse_timeout)
        try:
            if kind == 0x03:
                raise rejection(*acse.parse_associate_rj(body), ep.called_aet, ep.calling_aet)
            if kind != 0x02:
                raise self._unexpected(kind, body)
            ac = acse.parse_associate_ac(body)
        except acse.PduError as exc:
            self.abort()
            raise AssociationLostError(
                f"The DICOM receiver {ep} answered the association request with a malformed PDU ({exc}).",
                "Check that the host and port are a DICOM receiver's.",
            ) from None
        by_id = {2 * n + 1: pair for n, pair in enumerate(self.requested)}
        for context_id, (result, _ts) in ac.results.items():
            if result == 0 and context_id in by_id:
                self.accepted[by_id[context_id]] = context_id
        self.peer_max_pdu = ac.max_pdu
        self._sock.settimeout(ep.dimse_timeout)
        if not self.accepted:
            self.abort()
            raise NoContextError(
                f"The DICOM receiver {ep} accepted none of the {len(self.requested)} kinds of DICOM data proposed.",
                "It does not take these SOP classes or transfer syntaxes; check its configuration.",
            )

    # -- DIMSE --------------------------------------------------------------------------------------
    def echo(self) -> int:
        """Send a C-ECHO-RQ; returns the response status (0x0000: the receiver answers)."""
        context_id = self.accepted.get((VERIFICATION, _IMPLICIT_LE))
        if context_id is None:
            context_id = next((c for (sop, _ts), c in self.accepted.items() if sop == VERIFICATION), None)
        if context_id is None:
            raise NoContextError(f"The DICOM receiver {self.endpoint} does not offer the verification service.")
        msg_id = self._next_id()
        command = _command(VERIFICATION, 0x0030, msg_id, None)
        self._send_pdv(context_id, command, 0x03)
        return self._read_response(msg_id).status

    def store(
        self, sop_class: str, sop_uid: str, transfer_syntax: str, dataset: bytes | memoryview | DatasetStream,
        while_waiting: Callable[[], object] | None = None,
    ) -> StoreStatus:  # fmt: skip
        """Send one instance (its dataset bytes, already in ``transfer_syntax``); returns the receiver's status.

        ``dataset`` may be a :class:`DatasetStream` (a large file or archive member): it is read one fragment
        at a time, so memory stays at a fragment whatever the file's size. A read that fails mid-way aborts
        the association (the receiver drops the incomplete message) and its error is raised.

        ``while_waiting`` is called once the request is sent, before the answer is read: work done there
        (a checksum) overlaps the receiver's work instead of adding to each file's round trip.

        Raises :class:`NoContextError` when the pair was not accepted, and transient errors when the
        association broke or no answer came within the DIMSE time-out (the association is then closed).
        """
        context_id = self.accepted.get((sop_class, transfer_syntax))
        if context_id is None:
            raise NoContextError("The receiver did not accept this SOP class / transfer syntax.")
        stream: DatasetStream | None = None
        if isinstance(dataset, (bytes, bytearray, memoryview)):
            view = memoryview(dataset)
        else:
            stream, view = dataset, memoryview(b"")
        size = len(view) if stream is None else len(stream)
        if size % 2:
            raise OddLengthError(
                f"The file's data set has an odd length ({size} bytes), which DICOM does not allow.",
                "It was not sent; the receiver would break off the connection.",
            )
        chunk = self._fragment_size()
        msg_id = self._next_id()
        self._send_pdv(context_id, _command(sop_class, 0x0001, msg_id, sop_uid), 0x03)
        if not size:
            self._send_pdv(context_id, b"", 0x02)
        for start in range(0, size, chunk):
            if start:
                self._check_peer()  # an A-ABORT mid-dataset ends the wait now, not at the time-out
            if stream is None:
                part: bytes | memoryview = view[start : start + chunk]
            else:
                try:
                    part = stream.read(want := min(chunk, size - start))
                    if len(part) != want:  # the PDV would not carry the length its header says
                        raise ValueError(f"a data set stream gave {len(part)} bytes for {want}")
                except BaseException:
                    self.abort()  # half a message sent: the association cannot carry another
                    raise
            self._send_pdv(context_id, part, 0x02 if start + chunk >= size else 0x00)
        if while_waiting is not None:
            while_waiting()
        return self._read_response(msg_id)

    def peer_closed(self) -> bool:
        """Whether the receiver ended this association while it was idle (A-ABORT, A-RELEASE or a closed
        connection; a receiver's idle time-out does that). The association is then closed."""
        if self._pending:
            return False
        try:
            readable = select.select([self._sock], [], [], 0)[0]
        except (OSError, ValueError):
            self._close()
            return True
        if not readable:
            return False
        try:
            kind, body = self._read_pdu("checking the association", self.endpoint.dimse_timeout)
        except DicomError:
            return True
        if kind == 0x04:  # data the peer sent unasked: keep it for the next read
            self._pending.append((kind, body))
            return False
        self._close()
        return True

    def release(self) -> None:
        """End the association politely (A-RELEASE); any failure just closes the socket."""
        try:
            self._send(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00")
            self._sock.settimeout(min(5.0, self.endpoint.acse_timeout))
            self._read_pdu("waiting for the release", 5.0)
        except (OSError, DicomError):
            pass
        finally:
            self._close()

    def abort(self) -> None:
        """Abort (A-ABORT) and close; used when the association can no longer be trusted. Never raises: an
        association already closed (after a malformed PDU, say) keeps the error that closed it."""
        try:
            with contextlib.suppress(OSError):
                self._sock.sendall(b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00")
        finally:
            self._close()

    def __enter__(self) -> Association:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.release()
        else:
            self.abort()

    # -- wire ---------------------------------------------------------------------------------------
    def _fragment_size(self) -> int:
        """The largest even PDV payload within the peer's maximum PDU (PS3.8 9.3.5.1: fragments are even)."""
        limit = min(self.peer_max_pdu or SEND_PDU_CAP, SEND_PDU_CAP) - 6  # 6: the PDV item's header
        if limit < 2:
            self.abort()
            raise DicomError(
                f"The DICOM receiver {self.endpoint} allows messages of only {self.peer_max_pdu} bytes, too small "
                "to carry data.",
                "Check the receiver's maximum PDU size setting.",
            )
        return limit - limit % 2

    def _check_peer(self) -> None:
        """Raise :class:`AssociationLostError` now when the peer aborted or closed while we were sending."""
        if self.peer_closed():
            raise AssociationLostError(
                f"The DICOM receiver {self.endpoint} ended the association while this file was being sent.",
                "The upload re-connects and tries again; if it keeps happening, check the receiver's log.",
            )

    def _next_id(self) -> int:
        self._msg_id = self._msg_id % 0xFFFF + 1
        return self._msg_id

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise self._lost(exc) from None

    def _send_pdv(self, context_id: int, payload: bytes | memoryview, control: int) -> None:
        n = len(payload)
        head = _PDV_HEAD.pack(0x04, n + 6, n + 2, context_id, control)
        try:
            # One sendmsg per PDU: no copy of the payload, and with TCP_NODELAY no 40 ms waits.
            sent = self._sock.sendmsg([head, payload])
            if sent < len(head) + n:
                rest = (head + bytes(payload))[sent:]
                self._sock.sendall(rest)
        except OSError as exc:
            raise self._lost(exc) from None

    def _read_response(self, msg_id: int) -> StoreStatus:
        command = bytearray()
        # One deadline for the whole answer: a peer that keeps sending data fragments, answers to older
        # requests or one byte at a time never holds the association past the DIMSE time-out.
        deadline = time.monotonic() + self.endpoint.dimse_timeout
        while True:
            kind, body = self._read_pdu("waiting for the receiver's answer", self.endpoint.dimse_timeout, deadline)
            if kind != 0x04:
                raise self._unexpected(kind, body)
            pos = 0
            while pos < len(body):
                if pos + 6 > len(body):
                    raise self._malformed("a PDV item header runs past the end of its PDU")
                (item_len,) = struct.unpack_from(">L", body, pos)
                if item_len < 2 or pos + 4 + item_len > len(body):
                    raise self._malformed(f"a PDV item of {item_len} bytes does not fit its PDU")
                control = body[pos + 5]
                data = body[pos + 6 : pos + 4 + item_len]
                pos += 4 + item_len
                if control & 0x01:
                    command += data
                    if len(command) > MAX_COMMAND:
                        raise self._malformed(f"a response command longer than {MAX_COMMAND} bytes")
                    if control & 0x02:
                        try:
                            status = _parse_response(bytes(command))
                        except acse.PduError as exc:
                            raise self._malformed(f"an answer that is cut short ({exc})") from None
                        if status[0] != msg_id:
                            command.clear()  # an answer to an older, timed-out request: skip it
                            continue
                        return StoreStatus(status[1], status[2])

    def _read_pdu(self, doing: str, timeout: float, deadline: float | None = None) -> tuple[int, bytes]:
        """The next PDU (type, body), read by ``deadline`` (default: ``timeout`` from now) whatever the peer
        does; its length is checked against what we announced before anything is allocated for it."""
        if self._pending:
            return self._pending.pop(0)
        if deadline is None:
            deadline = time.monotonic() + timeout
        head = self._recv_exact(6, doing, timeout, deadline)
        kind, length = _PDU_HEAD.unpack(head)
        if length > MAX_PDU:  # we announced MAX_PDU; a longer length is not allocated, whatever it says
            raise self._malformed(f"a message of {length:,} bytes, more than the {MAX_PDU:,} agreed")
        body = self._recv_exact(length, doing, timeout, deadline) if length else b""
        return kind, body

    def _malformed(self, what: str) -> AssociationLostError:
        self.abort()
        return AssociationLostError(
            f"The DICOM receiver {self.endpoint} sent {what}; the association was ended.",
            "The upload re-connects and tries again; if it keeps happening, check the receiver.",
        )

    def _recv_exact(self, n: int, doing: str, timeout: float, deadline: float) -> bytes:
        """``n`` bytes (``n`` <= :data:`MAX_PDU`) by ``deadline``: a peer sending a byte now and then cannot
        stretch the wait, as each ``recv`` waits at most until the deadline."""
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        io_timeout = self._sock.gettimeout()
        try:
            while got < n:
                left = deadline - time.monotonic()
                try:
                    if left <= 0:
                        raise TimeoutError
                    if io_timeout is None or left < io_timeout:
                        self._sock.settimeout(left)  # only near the deadline: no system call per read otherwise
                    k = self._sock.recv_into(view[got:])
                except TimeoutError:
                    self.abort()
                    raise DicomTimeoutError(
                        f"The DICOM receiver {self.endpoint} did not answer within {timeout:g} s ({doing}).",
                        "It may be overloaded; the upload re-connects and tries again.",
                    ) from None
                except OSError as exc:
                    raise self._lost(exc) from None
                if k == 0:
                    self._close()
                    raise AssociationLostError(
                        f"The DICOM receiver {self.endpoint} closed the connection ({doing}).",
                        "The upload re-connects and sends the rest; if it keeps happening, check the receiver's log.",
                    )
                got += k
        finally:
            if self._sock.fileno() >= 0 and self._sock.gettimeout() != io_timeout:
                self._sock.settimeout(io_timeout)
        return bytes(buf)

    def _lost(self, exc: OSError) -> AssociationLostError:
        self._close()
        return AssociationLostError(
            f"The connection to the DICOM receiver {self.endpoint} broke ({exc.strerror or type(exc).__name__}).",
            "The upload re-connects and sends the rest.",
        )

    def _unexpected(self, kind: int, body: bytes) -> DicomError:
        self._close()
        if kind == 0x07:
            source, reason = acse.parse_abort(body)
            why = _ABORT_REASON.get(reason, "no reason given") if source == 2 else ""
            return AssociationLostError(
                f"The DICOM receiver {self.endpoint} aborted the association{': ' + why if why else ''}.",
                "The upload re-connects and sends the rest; if it keeps happening, check the receiver's log.",
            )
        if kind == 0x05:
            return AssociationLostError(f"The DICOM receiver {self.endpoint} asked to end the association.")
        return DicomError(f"The DICOM receiver {self.endpoint} sent an unexpected message (PDU type {kind}).")

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


_IMPLICIT_LE = "1.2.840.10008.1.2"


def _connect(ep: Endpoint) -> socket.socket:
    try:
        sock = socket.create_connection((ep.host, ep.port), timeout=ep.connect_timeout)
    except socket.gaierror:
        raise DicomUnreachableError(
            f"The host name '{ep.host}' of the DICOM receiver is unknown.", "Check the host name."
        ) from None
    except ConnectionRefusedError:
        raise DicomUnreachableError(
            f"Nothing answers on {ep.host} port {ep.port} (connection refused).",
            "Check the port, and that the DICOM receiver is running and enabled.",
        ) from None
    except TimeoutError:
        raise DicomTimeoutError(
            f"No connection to {ep.host} port {ep.port} within {ep.connect_timeout:g} s.",
            "Check the host and port; a firewall may block DICOM.",
        ) from None
    except OSError as exc:
        raise DicomUnreachableError(
            f"Cannot connect to {ep.host} port {ep.port} ({exc.strerror or type(exc).__name__}).",
            "Check the host, the port and the network.",
        ) from None
    # Nagle's algorithm holds back the small command PDUs for up to 40 ms each: off, as dcmtk does.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def _command(sop_class: str, field: int, msg_id: int, sop_uid: str | None) -> bytes:
    """An implicit-VR-LE command set (PS3.7 9.3): C-STORE-RQ with a dataset, or C-ECHO-RQ without."""
    elems = [_elem(0x0002, _uid(sop_class)), _elem(0x0100, struct.pack("<H", field)),
             _elem(0x0110, struct.pack("<H", msg_id))]  # fmt: skip
    if sop_uid is not None:
        elems.append(_elem(0x0700, struct.pack("<H", 0)))  # priority: medium
        elems.append(_elem(0x0800, struct.pack("<H", 0x0000)))  # a dataset follows
        elems.append(_elem(0x1000, _uid(sop_uid)))
    else:
        elems.append(_elem(0x0800, struct.pack("<H", 0x0101)))  # no dataset
    body = b"".join(elems)
    return _elem(0x0000, struct.pack("<L", len(body))) + body


def _elem(element: int, value: bytes) -> bytes:
    return _ELEM.pack(0x0000, element, len(value)) + value


def _parse_response(command: bytes) -> tuple[int, int, str]:
    """(MessageIDBeingRespondedTo, Status, ErrorComment) from a response command set; :class:`acse.PduError`
    when an element of the command group runs past its end (the peer's lengths are never taken on trust)."""
    pos, msg_id, status, comment = 0, -1, 0xFFFF, ""
    while pos + 8 <= len(command):
        group, element, length = _ELEM.unpack_from(command, pos)
        if group != 0x0000:
            break
        if pos + 8 + length > len(command):
            raise acse.PduError(f"command element (0000,{element:04X}) runs past the end of the command")
        value = command[pos + 8 : pos + 8 + length]
        pos += 8 + length
        if element == 0x0120 and length == 2:
            msg_id = struct.unpack("<H", value)[0]
        elif element == 0x0900 and length == 2:
            status = struct.unpack("<H", value)[0]
        elif element == 0x0902:
            comment = value.decode("ascii", "replace").strip(" \0")
    return msg_id, status, comment


def echo(endpoint: Endpoint) -> int:
    """Associate (verification only), C-ECHO, release. Returns the status; raises :class:`DicomError`."""
    with Association(endpoint, [(VERIFICATION, _IMPLICIT_LE)]) as assoc:
        return assoc.echo()


def group_contexts(kinds: Mapping[str, Iterable[str]]) -> list[list[tuple[str, str]]]:
    """Presentation contexts (SOP class, transfer syntax) in groups of at most 128, one association each.

    ``kinds`` maps each SOP class to the transfer syntaxes to propose for it. The contexts of one SOP
    class stay in one group whenever they fit in one, so a file's alternatives are offered together.
    """
    groups: list[list[tuple[str, str]]] = [[]]
    for sop_class in sorted(kinds):
        pairs = [(sop_class, ts) for ts in sorted(set(kinds[sop_class]))]
        if groups[-1] and len(groups[-1]) + len(pairs) > MAX_CONTEXTS:
            groups.append([])
        for pair in pairs:
            if len(groups[-1]) == MAX_CONTEXTS:
                groups.append([])
            groups[-1].append(pair)
    return [g for g in groups if g]
