"""TLS settings of the client: verification on by default, a per-server opt-out, a custom CA bundle.

The sandbox speaks plain HTTP, so a small TLS front (a thread that terminates TLS with a throwaway CA
generated here and forwards bytes to the sandbox) stands in for an HTTPS proxy. Loopback only.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.test_client_direct import RequestsCalls, error_both_ways, gradual, one_file, same_error
from xnat_uploader.core.xnat import ConnectionOptions, XnatClient
from xnat_uploader.core.xnat import errors as E
from xnat_uploader.core.xnat.session import XnatSession


def _make_ca_and_server_cert(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1; returns (ca.pem, server.pem, server.key)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xnat-uploader test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_pem, cert_pem, key_pem


class TlsFront:
    """Terminate TLS on a loopback port and forward each connection to ``target`` (host, port)."""

    def __init__(self, target: tuple[str, int], cert: Path, key: Path) -> None:
        self.target = target
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # the client refused our certificate: exactly what a verifying client does
            return
        upstream = socket.create_connection(self.target)

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pipe, args=(upstream, tls), daemon=True).start()
        pipe(tls, upstream)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.listener.close()


@pytest.fixture
def https(sandbox, tmp_path):
    ca, cert, key = _make_ca_and_server_cert(tmp_path)
    front = TlsFront(("127.0.0.1", sandbox.port), cert, key)
    yield f"https://127.0.0.1:{front.port}", ca
    front.close()


def test_untrusted_certificate_is_refused_by_default(https):
    url, _ = https
    client = XnatClient(url, "admin", "admin", ConnectionOptions(connect_timeout=3, read_timeout=3))
    with pytest.raises(E.TlsError) as info:
        client.connect()
    assert not info.value.transient
    assert "certificate" in info.value.message
    assert "CA file" in info.value.hint
    client.close()


def test_custom_ca_bundle_is_trusted(https):
    url, ca = https
    with XnatClient(url, "admin", "admin", ConnectionOptions(ca_bundle=str(ca))) as client:
        assert client.connect().version_string == "1.8.10"
        assert [p.id for p in client.projects()] == ["DEMO"]


def test_verification_can_be_turned_off_per_server(https):
    url, _ = https
    with XnatClient(url, "admin", "admin", ConnectionOptions(verify_tls=False)) as client:
        assert client.connect().version_string == "1.8.10"
    # Another client of the same process still verifies.
    strict = XnatClient(url, "admin", "admin", ConnectionOptions(connect_timeout=3))
    with pytest.raises(E.TlsError):
        strict.connect()
    strict.close()


# --- the session's lean send path (imports go straight to requests' pool) --------------------------------------


def _signed_in_without_login(url: str, options: ConnectionOptions) -> XnatSession:
    """A session that believes it is signed in: the next request is an import, not a login."""
    session = XnatSession(url, "admin", "admin", options)
    session._jsession = "ABCDEFGH0123456789"
    return session


def test_untrusted_certificate_is_the_same_error_on_the_lean_path(https, tmp_path):
    url, _ = https
    data = one_file(tmp_path)
    options = ConnectionOptions(connect_timeout=3, read_timeout=3)
    lean, plain = error_both_ways(lambda: _signed_in_without_login(url, options), lambda s: gradual(s, data))
    same_error(lean, plain)
    assert isinstance(lean, E.TlsError)
    assert "certificate" in lean.message


def test_https_to_a_plain_http_port_is_the_same_error_on_the_lean_path(sandbox, tmp_path):
    url = sandbox.url.replace("http://", "https://")
    data = one_file(tmp_path)
    options = ConnectionOptions(connect_timeout=2, read_timeout=2)
    lean, plain = error_both_ways(lambda: _signed_in_without_login(url, options), lambda s: gradual(s, data))
    same_error(lean, plain)
    assert "does not answer secure" in lean.message


@pytest.mark.parametrize("trust", ["ca_bundle", "verify_off"])
def test_imports_over_tls_take_the_lean_path_with_the_sessions_tls_settings(https, tmp_path, trust):
    url, ca = https
    options = ConnectionOptions(ca_bundle=str(ca)) if trust == "ca_bundle" else ConnectionOptions(verify_tls=False)
    with XnatSession(url, "admin", "admin", options) as session:
        calls = RequestsCalls(session)
        assert gradual(session, one_file(tmp_path)).uri
        assert calls.to("/data/services/import") == 0
        assert calls.to("/data/JSESSION") == 1
