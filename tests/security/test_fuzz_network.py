"""Property tests of the decoders that read what a network peer sends: DICOM association PDUs and responses
(``core/transfer/acse.py``, ``dimse.py``), and XNAT's answers (``core/xnat/models.py``, ``errors.py``,
``whoami.py``, ``server_info.py``, ``resources.py``).

Each property: whatever the bytes, the decoder returns, or raises only our own documented error types, in
bounded time (hypothesis's ``deadline``). Inputs are built from the formats' own pieces (PDU items, PDV
items, command elements, JSON tables, HTML error pages) with lengths that lie, then cut and flipped at
random, so the decoders' checks are reached rather than the first length test. The whole association is
also run over a socketpair against the same bytes. Few examples each: a few seconds per test.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security._network_fakes import IMPLICIT, ac_pdu, bounded_memory, echo_rsp, pdata
from xnat_uploader.core.transfer import acse, dimse
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.models import parse_json, parse_result_set, parse_uri_list
from xnat_uploader.core.xnat.resources import parse_duplicates
from xnat_uploader.core.xnat.server_info import parse_build_info
from xnat_uploader.core.xnat.whoami import WHO_AM_I, WHO_AM_I_OLD, idle_timeout, other_session_cookie, user_in_answer

FUZZ = settings(max_examples=150, deadline=1000, database=None, suppress_health_check=[HealthCheck.too_slow])
CT = "1.2.840.10008.5.1.4.1.1.2"

# --- pieces of the DICOM upper layer, with lengths that may lie --------------------------------------------

ITEM_KINDS = st.sampled_from([0x10, 0x20, 0x21, 0x30, 0x40, 0x50, 0x51, 0x52, 0x55, 0x00, 0xFF])


@st.composite
def items(draw: st.DrawFn, depth: int = 2) -> bytes:
    """A run of PDU items (PS3.8 9.3): presentation context and user information items nest sub-items."""
    out = b""
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(ITEM_KINDS)
        if depth and kind in (0x20, 0x21, 0x50):
            head = draw(st.binary(min_size=4, max_size=4)) if kind != 0x50 else b""
            data = head + draw(items(depth - 1))
        elif kind == 0x51:
            data = draw(st.sampled_from([struct.pack(">L", 0), struct.pack(">L", 16384), b"\xff" * 4, b"\x01"]))
        else:
            data = draw(st.binary(max_size=24))
        length = draw(st.one_of(st.just(len(data)), st.integers(0, 0xFFFF)))
        out += struct.pack(">BxH", kind, length) + data
    return out


@st.composite
def mangled(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` cut short and with a few bytes changed (or as it is)."""
    if data and draw(st.booleans()):
        near_end = st.integers(1, 4).map(lambda k: max(len(data) - k, 0))  # inside the last value
        data = data[: draw(st.one_of(st.integers(0, len(data)), near_end))]
    flips = draw(st.lists(st.tuples(st.integers(0, max(len(data) - 1, 0)), st.integers(0, 255)), max_size=3))
    buf = bytearray(data)
    for pos, value in flips:
        if pos < len(buf):
            buf[pos] = value
    return bytes(buf)


@st.composite
def association_bodies(draw: st.DrawFn) -> bytes:
    """An A-ASSOCIATE-AC body: the 68-byte fixed part, then items."""
    fixed = struct.pack(">HH16s16s32x", 1, 0, b"XNAT".ljust(16), b"XNATUPLOAD".ljust(16))
    return draw(mangled(fixed + draw(items())))


@st.composite
def pdus(draw: st.DrawFn, body: bytes) -> bytes:
    kind = draw(st.one_of(st.sampled_from([0x02, 0x03, 0x04, 0x05, 0x07]), st.integers(0, 255)))
    length = draw(st.one_of(st.just(len(body)), st.integers(0, 0xFFFFFFFF), st.just(dimse.MAX_PDU + 1)))
    return struct.pack(">BxL", kind, length) + body


ELEMENTS = st.sampled_from([0x0000, 0x0002, 0x0100, 0x0120, 0x0800, 0x0900, 0x0902, 0x1000, 0xFFFF])


@st.composite
def commands(draw: st.DrawFn) -> bytes:
    """A response command set (group 0000, implicit VR): elements whose lengths may lie, or a real answer."""
    if draw(st.booleans()):
        return draw(mangled(echo_rsp(draw(st.integers(0, 3)), draw(st.integers(0, 0xFFFF)))))
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        value = draw(st.binary(max_size=12))
        length = draw(st.one_of(st.just(len(value)), st.integers(0, 0xFFFFFFFF)))
        out += struct.pack("<HHL", draw(st.sampled_from([0, 0, 0, 8])), draw(ELEMENTS), length) + value
    return draw(mangled(out))


@st.composite
def pdv_pdus(draw: st.DrawFn) -> bytes:
    """A P-DATA-TF PDU of PDV items (command or data fragments), its lengths true or not."""
    body = b""
    for _ in range(draw(st.integers(0, 3))):
        data = draw(commands())
        control = draw(st.one_of(st.sampled_from([0x00, 0x01, 0x02, 0x03]), st.integers(0, 255)))
        item_len = draw(st.one_of(st.just(len(data) + 2), st.integers(0, 0xFFFFFFFF)))
        body += struct.pack(">LBB", item_len, draw(st.sampled_from([1, 3, 255])), control) + data
    return draw(pdus(body))


# --- the decoders alone ------------------------------------------------------------------------------------


@FUZZ
@given(st.one_of(association_bodies(), st.binary(max_size=200)))
def test_associate_ac_decoder_returns_or_says_malformed(body: bytes) -> None:
    try:
        ac = acse.parse_associate_ac(body)
    except acse.PduError:
        return
    assert all(0 <= cid <= 255 and isinstance(ts, str) for cid, (_result, ts) in ac.results.items())
    assert 0 <= ac.max_pdu <= 0xFFFFFFFF


@FUZZ
@given(st.binary(max_size=12))
def test_reject_and_abort_decoders_return_or_say_malformed(body: bytes) -> None:
    try:
        assert all(0 <= v <= 255 for v in acse.parse_associate_rj(body))
    except acse.PduError:
        assert len(body) < 4
    assert all(0 <= v <= 255 for v in acse.parse_abort(body))


@FUZZ
@given(commands())
def test_response_command_decoder_returns_or_says_malformed(command: bytes) -> None:
    try:
        msg_id, status, comment = dimse._parse_response(command)
    except acse.PduError:
        return
    assert -1 <= msg_id <= 0xFFFF
    assert 0 <= status <= 0xFFFF
    assert isinstance(comment, str)


# --- the decoders reading from a socket: a whole association against the same bytes ------------------------


def _associate_over(peer_bytes: bytes, contexts: list[tuple[str, str]], work):  # noqa: ANN202 - test helper
    """Run ``work(association)`` on an association whose peer has already sent ``peer_bytes`` and then closed
    its side (so every read ends); ``Association`` reads it from one end of a socketpair. Whatever lengths the
    bytes announce, the client allocates at most a PDU of the size it accepts (twice, while it copies one)."""
    ours, theirs = socket.socketpair()
    endpoint = dimse.Endpoint("fuzz.invalid", 104, "XNAT", acse_timeout=2, dimse_timeout=2)
    try:
        theirs.sendall(peer_bytes)
        theirs.shutdown(socket.SHUT_WR)
        with (
            bounded_memory(2 * dimse.MAX_PDU + (256 << 10)),
            mock.patch.object(dimse, "_connect", return_value=ours),
            dimse.Association(endpoint, contexts) as assoc,
        ):
            return work(assoc)
    finally:
        ours.close()
        theirs.close()


@FUZZ
@given(
    st.one_of(st.just(ac_pdu()), association_bodies().flatmap(pdus)),
    st.lists(st.one_of(pdv_pdus(), st.just(pdata(1, 0x03, echo_rsp()))), max_size=3),
)
def test_echo_over_a_socket_answers_or_fails_with_a_dicom_error(accept: bytes, answers: list[bytes]) -> None:
    try:
        status = _associate_over(accept + b"".join(answers), [(dimse.VERIFICATION, IMPLICIT)], lambda a: a.echo())
    except dimse.DicomError as exc:
        message = exc.message
    else:
        assert 0 <= status <= 0xFFFF
        return
    assert message.startswith(("The DICOM receiver", "The connection to the DICOM receiver"))


@FUZZ
@given(
    st.one_of(st.just(ac_pdu([(1, 0, IMPLICIT)])), association_bodies().flatmap(pdus)),
    st.lists(pdv_pdus(), max_size=3),
    st.binary(max_size=64).map(lambda b: b + b"\0" * (len(b) % 2)),
)
def test_store_over_a_socket_answers_or_fails_with_a_dicom_error(accept: bytes, answers: list, data: bytes) -> None:
    def store(assoc: dimse.Association) -> dimse.StoreStatus:
        return assoc.store(CT, "1.2.3.4", IMPLICIT, data)

    try:
        result = _associate_over(accept + b"".join(answers), [(CT, IMPLICIT)], store)
    except dimse.DicomError:
        return
    assert 0 <= result.status <= 0xFFFF


# --- XNAT's answers ----------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
TABLES = st.builds(
    lambda rows, extra: {"ResultSet": {"Result": rows, **extra}},
    st.lists(st.one_of(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=5), JSON_VALUES), max_size=5),
    st.dictionaries(st.sampled_from(["totalRecords", "title"]), JSON_VALUES, max_size=2),
)
NESTED = st.integers(1, 200_000).map(lambda n: "[" * n + "]" * n)


@FUZZ
@given(st.one_of(TABLES.map(json.dumps), JSON_VALUES.map(json.dumps), st.text(max_size=200), NESTED, st.binary()))
def test_result_set_parser_returns_rows_or_says_not_a_table(text: str | bytes) -> None:
    try:
        rows = parse_result_set(text)
    except E.UnexpectedResponseError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for row in rows for k, v in row.items())


@FUZZ
@given(st.one_of(TABLES, JSON_VALUES))
def test_result_set_parser_takes_decoded_json_too(data: object) -> None:
    with contextlib.suppress(E.UnexpectedResponseError):
        parse_result_set(data)


@FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300), NESTED, st.integers(4300, 6000).map("9".__mul__)))
def test_json_bodies_decode_or_raise_value_error(text: str | bytes) -> None:
    for parse in (parse_json, parse_build_info):
        with contextlib.suppress(ValueError, E.UnexpectedResponseError):
            parse(text)
    if isinstance(text, str):  # a file PUT's answer, read as text
        assert all(isinstance(name, str) for name in parse_duplicates(text))


@FUZZ
@given(
    st.one_of(st.text(), st.binary(), st.lists(st.sampled_from(["a", "#c", "\r\n", "\n", " ", "\x85"])).map("".join))
)
def test_uri_list_parser_keeps_order_and_drops_duplicates(text: str | bytes) -> None:
    uris = parse_uri_list(text)
    assert len(uris) == len(set(uris))
    assert all(uri and uri == uri.strip() and not uri.startswith("#") for uri in uris)


HTML_PIECES = st.sampled_from(
    ["<html>", "<body>", "<h3>", "</h3>", "<b>Message</b>", "<b>Description</b>", "</p>", "<title>", "</title>",
     "<", ">", "&amp;", "&#x", "Unable to read DICOM object", "locked", " ", "\n", "x"]
)  # fmt: skip
PAGES = st.one_of(st.text(max_size=300), st.lists(HTML_PIECES, max_size=4000).map("".join))


@FUZZ
@given(PAGES, st.integers(300, 599))
def test_error_pages_give_a_short_message_and_a_typed_error(page: str, status: int) -> None:
    detail = E.extract_message(page)
    assert len(detail) <= 500
    assert isinstance(E.error_for_status(status, page, project="P", action="listing"), E.XnatError)
    problem = E.sign_in_problem(403, "", page, user="u", server="https://x")
    assert problem is None or isinstance(problem, E.AuthenticationError)


@FUZZ
@given(st.one_of(st.text(max_size=64), st.from_regex(r"[0-9 .eE+-]{0,30}", fullmatch=True)))
def test_retry_after_is_none_or_a_number_of_seconds(value: str) -> None:
    seconds = E.parse_retry_after(value)
    assert seconds is None or seconds >= 0


COOKIES = st.one_of(
    st.text(max_size=100),
    st.lists(st.sampled_from(["JSESSIONID=", "SESSION_EXPIRATION_TIME=", '"', "1", "9" * 30, ",", ";", " ", "A"]),
             max_size=50).map("".join),
)  # fmt: skip


@FUZZ
@given(
    COOKIES, st.one_of(st.text(max_size=40), st.lists(st.sampled_from(["User '", "' is logged in", "x"])).map("".join))
)
def test_sign_in_answers_and_cookies_parse_or_say_nothing(cookie: str, answer: str) -> None:
    timeout = idle_timeout(cookie)
    assert timeout is None or 0 <= timeout < 1e13
    assert isinstance(other_session_cookie(cookie, "A1"), bool)
    for path in (WHO_AM_I, WHO_AM_I_OLD):
        user = user_in_answer(path, answer)
        assert user is None or isinstance(user, str)
