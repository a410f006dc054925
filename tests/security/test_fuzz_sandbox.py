"""Property tests of the sandbox's request parsing (``sandbox/httpd.py``, ``sandbox/multipart.py``).

The parts alone (the header reader against ``http.client``'s, chunked bodies, multipart bodies), then whole
requests over a real loopback socket to a running sandbox, which is how it reads them. Each property: an
answer or one of the documented refusals (:class:`HttpError`, a closed connection), never a crashed handler
or a fault in the sandbox's log, in bounded time. Inputs are built from the formats' own pieces so the
checks deep inside are reached; a few dozen examples each.
"""

from __future__ import annotations

import http.client
import io
import logging
import re
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security._network_fakes import bounded_memory
from xnat_uploader.sandbox import multipart
from xnat_uploader.sandbox.httpd import Body, HttpError, read_headers
from xnat_uploader.sandbox.server import SandboxServer

FUZZ = settings(max_examples=120, deadline=2000, database=None, suppress_health_check=[HealthCheck.too_slow])
ADMIN = "Authorization: Basic YWRtaW46YWRtaW4=\r\n"  # admin:admin

# --- headers -----------------------------------------------------------------------------------------------

HEADER_PIECES = st.sampled_from(
    ["Host", "Content-Length", "X-A", "From ", " ", "\t", ":", ": ", "v", "caf\xe9", "\r\n", "\n", "\r", "", "é"]
)
HEADER_BLOCKS = st.one_of(
    st.lists(HEADER_PIECES, max_size=40).map(lambda p: ("".join(p) + "\r\n\r\n").encode("latin-1")),
    st.lists(st.just("X: 1\r\n"), min_size=95, max_size=105).map(lambda p: ("".join(p) + "\r\n").encode()),
    st.binary(max_size=200),
)


def _parsed(reader, block: bytes):  # noqa: ANN001, ANN202 - both readers, same shape
    try:
        msg = reader(io.BytesIO(block))
    except http.client.HTTPException as exc:
        return type(exc).__name__
    return msg.items(), msg.get_payload(), msg.get_unixfrom(), [type(d) for d in msg.defects]


@FUZZ
@given(HEADER_BLOCKS)
def test_header_reader_gives_what_http_client_gives(block: bytes) -> None:
    assert _parsed(read_headers, block) == _parsed(http.client.parse_headers, block)


# --- chunked bodies ----------------------------------------------------------------------------------------


@st.composite
def chunked_encodings(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(data, its chunked encoding): random cuts, sizes in either case, extensions and trailers."""
    data = draw(st.binary(max_size=300))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=5)))
    out = b""
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        if end > start:
            size = f"{end - start:x}"
            size = size.upper() if draw(st.booleans()) else size
            ext = draw(st.sampled_from(["", ";a=1", ';name="v"', " "]))
            out += f"{size}{ext}\r\n".encode() + data[start:end] + b"\r\n"
    trailers = draw(st.sampled_from(["", "X-T: 1\r\n", "A: 1\r\nB: 2\r\n"]))
    return data, out + f"0\r\n{trailers}\r\n".encode()


@FUZZ
@given(chunked_encodings(), st.booleans())
def test_chunked_bodies_decode_to_what_was_sent(encoded: tuple[bytes, bytes], into: bool) -> None:
    data, wire = encoded
    body = Body(io.BytesIO(wire), None, True)
    if into:  # the path uploads take (readinto a reused buffer)
        out = io.BytesIO()
        body.save(out)
        assert out.getvalue() == data
    else:
        assert body.read_all() == data
    assert body.finished


CHUNK_PIECES = st.sampled_from(
    [b"5", b"0", b"-5", b"0x5", b"+5", b"5_0", b"ffffffffffffffffff", b"fffffffffffffff", b";x", b" ", b"\t",
     b"\r\n", b"\n", b"\r", b"hello", b"X-T: 1", b""]
)  # fmt: skip


@FUZZ
@given(st.one_of(st.lists(CHUNK_PIECES, max_size=30).map(b"".join), chunked_encodings().map(lambda e: e[1][:-3])))
def test_malformed_chunked_bodies_are_refused_with_400(wire: bytes) -> None:
    body = Body(io.BytesIO(wire), None, True)
    status, data = 200, b""
    try:
        with bounded_memory(1 << 20):  # whatever a chunk's size line says
            data = body.read_all(limit=1 << 16)
    except HttpError as err:
        status = err.status
    except ConnectionError:
        status = 0  # the stream ended inside the body: the client went away
    assert status in (0, 200, 400, 413)
    if status == 200:  # taken: its size line was plain hex (no sign, "0x", "_" or empty line, as int() takes)
        first = re.match(rb"([^;\r\n]*)[;\r\n]", wire)
        assert first is not None, wire
        assert re.fullmatch(rb"[0-9A-Fa-f]+[ \t]*", first[1]), wire
        assert len(data) <= len(wire)


# --- multipart bodies --------------------------------------------------------------------------------------

BOUNDARY = "XyZ"


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[list[tuple[str, str | None, bytes]], bytes]:
    """(parts as (name, filename, data), the encoded body)."""
    parts = draw(
        st.lists(
            st.tuples(
                st.text("abc_", min_size=1, max_size=5),
                st.one_of(st.none(), st.text("ab.", min_size=1, max_size=6)),
                st.binary(max_size=80).filter(lambda b: b"\r\n--XyZ" not in b),
            ),
            max_size=4,
        )
    )
    out = draw(st.sampled_from([b"", b"preamble\r\n"]))
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return parts, out + f"--{BOUNDARY}--\r\n".encode()


def _parse(wire: bytes) -> list[multipart.Part]:
    files: list[io.BytesIO] = []

    class Kept(io.BytesIO):
        name = "in-memory"

        def close(self) -> None:  # kept readable for the test
            files.append(self)

    parts = multipart.parse(Body(io.BytesIO(wire), len(wire), False), f"multipart/form-data; boundary={BOUNDARY}",
                            Kept, block=7)  # fmt: skip
    for part, kept in zip([p for p in parts if p.path is not None], files, strict=True):
        part.value = kept.getvalue().decode("latin-1")
    return parts


@FUZZ
@given(multipart_bodies())
def test_multipart_bodies_give_back_their_parts(encoded: tuple[list, bytes]) -> None:
    sent, wire = encoded
    got = _parse(wire)
    assert [(p.name, p.filename) for p in got] == [(name, filename) for name, filename, _ in sent]
    for part, (_name, filename, data) in zip(got, sent, strict=True):
        assert part.size == len(data)
        assert part.value == data.decode("latin-1" if filename is not None else "utf-8", "replace")


MULTIPART_PIECES = st.sampled_from(
    [b"--XyZ", b"--XyZ--", b"\r\n", b"\n", b"\r\n\r\n", b"Content-Disposition: form-data; name=\"a\"",
     b"; filename=\"f\"", b"Content-Type: x/y", b"data", b"--", b"-"]
)  # fmt: skip


@FUZZ
@given(st.one_of(st.lists(MULTIPART_PIECES, max_size=30).map(b"".join), multipart_bodies().map(lambda e: e[1][:-9])))
def test_malformed_multipart_bodies_are_refused_with_400(wire: bytes) -> None:
    status = 200
    try:
        with bounded_memory(1 << 20):
            _parse(wire)
    except HttpError as err:
        status = err.status
    assert status in (200, 400)


# --- whole requests to a running sandbox -------------------------------------------------------------------


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[SandboxServer, _Errors]]:
    """A sandbox for the fuzzed requests (they may create prearchive sessions in it), and its error log."""
    errors = _Errors()
    logger = logging.getLogger("xnat_uploader.sandbox")
    logger.addHandler(errors)
    with SandboxServer(tmp_path_factory.mktemp("fuzzed")) as server:
        yield server, errors
    logger.removeHandler(errors)


# Mostly well-formed request lines (weighted by repeating the branch), so that most requests reach the headers,
# the body and the handlers behind them; the rest tries the request line itself.
_GOOD_METHODS = st.sampled_from(["GET", "POST", "POST", "PUT", "DELETE", "HEAD"])
METHODS = st.one_of(_GOOD_METHODS, _GOOD_METHODS, _GOOD_METHODS, st.text("GETPOS\x00 ", max_size=5))
TARGETS = st.one_of(
    st.sampled_from([
        "/data/services/import?import-handler=DICOM-zip&PROJECT_ID=DEMO",
        "/data/services/import?import-handler=gradual-DICOM&PROJECT_ID=DEMO",
        "/data/services/import?import-handler=SI&PROJECT_ID=DEMO&dest=/prearchive",
        "/data/projects", "/data/JSESSION", "/data/prearchive/projects", "/data/services/prearchive/move",
        "/xapi/siteConfig/buildInfo", "*", "http://[", "//x/data", "/data/projects/DEMO/subjects/%ZZ",
    ]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), max_size=30),
)  # fmt: skip
VERSIONS = st.one_of(
    st.just("HTTP/1.1"),
    st.just("HTTP/1.1"),
    st.sampled_from(["HTTP/1.0", "HTTP/2.0", "HTTP/1.1x", "", "HTTP/9999999999.1"]),
)
HEADERS = st.lists(
    st.sampled_from([
        ADMIN, "Content-Type: application/zip\r\n", "Content-Type: application/dicom\r\n",
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n", "Content-Type: multipart/form-data\r\n",
        "Content-Type: application/x-www-form-urlencoded\r\n", "Content-Type: application/json\r\n",
        "Transfer-Encoding: chunked\r\n", "Transfer-Encoding: gzip\r\n", "Content-Length: 5\r\n",
        "Content-Length: -1\r\n", "Content-Length: 99999999999999999999999\r\n", "Expect: 100-continue\r\n",
        "Connection: keep-alive\r\n", "Cookie: JSESSIONID=x\r\n", "Authorization: Basic !!!\r\n",
        "Authorization: Bearer x\r\n", "Host: x\r\n", " folded\r\n", "bad line\r\n",
    ]),
    max_size=6,
)  # fmt: skip
BODIES = st.one_of(
    st.binary(max_size=64),
    chunked_encodings().map(lambda e: e[1]),
    multipart_bodies().map(lambda e: e[1]),
    st.sampled_from([b"src=/prearchive/projects/DEMO/1/2", b"{" * 5000, b'{"a": 1}']),
)


def _exchange(server: SandboxServer, request: bytes) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=5) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


@FUZZ
@given(METHODS, TARGETS, VERSIONS, HEADERS, BODIES)
def test_any_request_gets_an_answer_without_a_server_fault(served, method, target, version, headers, body) -> None:
    server, errors = served
    line = " ".join(w for w in (method, target, version) if w)
    request = (line + "\r\n" + "".join(headers) + "\r\n").encode("latin-1") + body
    answer = _exchange(server, request)
    # A bad request line is answered as the standard library's server answers it (an HTTP/0.9 page, no status
    # line); anything else with status lines. A fault of the sandbox itself (a crashed handler, a 500 for a bug)
    # is logged as an error: none. (A 500 alone can be XNAT's own answer, e.g. for a gone prearchive session.)
    statuses = [int(s.split(b" ", 2)[1][:3]) for s in answer.split(b"\r\n") if s.startswith(b"HTTP/1.1 ")]
    assert all(100 <= s < 600 for s in statuses), answer[:500]
    assert not errors.records, [r.getMessage() for r in errors.records]
