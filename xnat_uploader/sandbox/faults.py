"""Faults on demand, so the client's resilience can be tested against the sandbox.

A fault spec is a comma-separated list of ``key=value`` items (``--faults`` on the command line,
``faults=`` of :class:`~xnat_uploader.sandbox.server.SandboxServer`, or
``server.set_faults(...)`` on a running server; setting faults again resets their counters):

``http500_every=N``
    Every Nth counted request is answered with HTTP 500 (a Tomcat error page) instead of being
    handled. Nothing is stored for that request.
``drop_body_at=N``
    The Nth counted request that carries a body loses its connection half-way through the body
    (the server reads part of it, then closes the socket without an answer). Once only.
``drop_body_every=N``
    Same, for every Nth counted request with a body.
``drop_answer_at=N``
    The Nth counted request is carried out in full (the session committed, the file stored), then its
    connection is closed without an answer, as when a proxy or the network loses a slow answer. Once only.
``drop_answer_every=N``
    Same, for every Nth counted request.
``slow=S``
    Every counted response is delayed by S seconds (a float).
``expire_after=N``
    A JSESSION id stops working after N authenticated requests made with it (then 401, as after
    XNAT's idle timeout; on an open site, ``require_login=False``, the request runs as guest instead);
    a fresh login gets a fresh allowance.
``path=PREFIX``
    Only requests whose path starts with PREFIX are counted and faulted (e.g.
    ``path=/data/services/import``). Without it every request counts.
``gradual400_every=N``
    Every Nth gradual-DICOM request that carries a valid DICOM file is answered 400 "unable to read
    DICOM object <name>" and nothing is stored: how XNAT's gradual importer answers any failure on
    the server (database, disk, anonymization script; xnat-api.md 14). Counted apart from ``path``.
``gradual400_at=N``
    Same, for the Nth such request only.
``gradual400_sop=UID``
    Same, for every request carrying the instance with this SOPInstanceUID (a fault that does not
    go away until the faults are changed).
``method=METHOD``
    Only requests with this method (e.g. ``POST``) are counted and faulted.

Example: ``"http500_every=5,drop_body_at=3,slow=0.5,expire_after=20,path=/data/services/import"``;
``"drop_answer_at=1,method=POST,path=/data/prearchive/projects"`` loses the answer of the first commit.
An empty spec (or ``"none"``) turns every fault off.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, fields

from xnat_uploader.sandbox.httpd import DropConnection, HttpError, Request

_INT_KEYS = (
    "http500_every", "drop_body_at", "drop_body_every", "expire_after", "gradual400_every", "gradual400_at",
    "drop_answer_at", "drop_answer_every",
)  # fmt: skip


@dataclass(frozen=True)
class FaultSpec:
    """Parsed fault settings; zero/empty means off."""

    http500_every: int = 0
    drop_body_at: int = 0
    drop_body_every: int = 0
    slow: float = 0.0
    expire_after: int = 0
    path: str = ""
    gradual400_every: int = 0
    gradual400_at: int = 0
    gradual400_sop: str = ""
    drop_answer_at: int = 0
    drop_answer_every: int = 0
    method: str = ""

    @classmethod
    def parse(cls, spec: str | FaultSpec | None) -> FaultSpec:
        """Parse ``"key=value,..."``; unknown keys or bad values raise ``ValueError``."""
        if spec is None:
            return cls()
        if isinstance(spec, FaultSpec):
            return spec
        spec = spec.strip()
        if spec in ("", "none", "off"):
            return cls()
        values: dict[str, object] = {}
        known = {f.name for f in fields(cls)}
        for item in spec.split(","):
            if not item.strip():
                continue
            key, sep, raw = item.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep or key not in known:
                raise ValueError(f"unknown fault item {item.strip()!r}; known: {', '.join(sorted(known))}")
            try:
                if key in _INT_KEYS:
                    values[key] = int(raw)
                elif key == "slow":
                    values[key] = float(raw)
                else:
                    values[key] = raw
            except ValueError:
                raise ValueError(f"bad value for fault {key!r}: {raw!r}") from None
            if not isinstance(values[key], str) and values[key] < 0:  # type: ignore[operator]
                raise ValueError(f"fault {key!r} must not be negative")
        return cls(**values)  # type: ignore[arg-type]

    def __str__(self) -> str:
        parts = [f"{f.name}={getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name)]
        return ",".join(parts)

    @property
    def active(self) -> bool:
        return bool(str(self))


class FaultInjector:
    """Applies a :class:`FaultSpec` to requests. Thread-safe; the spec can be swapped at any time."""

    def __init__(self, spec: str | FaultSpec | None = None):
        self._lock = threading.Lock()
        self.set(spec)

    def set(self, spec: str | FaultSpec | None) -> FaultSpec:
        parsed = FaultSpec.parse(spec)
        with self._lock:
            self.spec = parsed
            self._requests = 0
            self._bodies = 0
            self._drop_once_done = False
            self._gradual = 0
            self._answer_once_done = False
            self.injected: dict[str, int] = {"http500": 0, "drop": 0, "slow": 0, "gradual400": 0, "drop_answer": 0}
        return parsed

    def _counted(self, request: Request) -> bool:
        spec = self.spec
        method_ok = not spec.method or request.method == spec.method.upper()
        return spec.active and method_ok and request.path.startswith(spec.path or "/")

    def before(self, request: Request) -> None:
        """Called before routing: may delay, answer 500, or arm a mid-body connection drop."""
        if not self._counted(request):
            return
        spec = self.spec
        with self._lock:
            self._requests += 1
            n = self._requests
            drop = False
            if request.body.present:
                self._bodies += 1
                if spec.drop_body_at and self._bodies == spec.drop_body_at and not self._drop_once_done:
                    self._drop_once_done = drop = True
                if spec.drop_body_every and self._bodies % spec.drop_body_every == 0:
                    drop = True
            fail = bool(spec.http500_every) and n % spec.http500_every == 0
            if spec.drop_answer_at and n == spec.drop_answer_at and not self._answer_once_done:
                self._answer_once_done = True
                request.state["drop_answer"] = True
            if spec.drop_answer_every and n % spec.drop_answer_every == 0:
                request.state["drop_answer"] = True
        if spec.slow:
            self.injected["slow"] += 1
            time.sleep(spec.slow)
        if drop:
            self.injected["drop"] += 1
            self._arm_drop(request)
        if fail:
            self.injected["http500"] += 1
            raise HttpError(500, "Injected fault: internal server error", page="tomcat")

    @staticmethod
    def _arm_drop(request: Request) -> None:
        body = request.body
        # Cut after about half the body (or 64 KiB of a chunked one): the client sees a reset mid-send.
        cut = max(1, (body.length or 128 * 1024) // 2)

        def on_read(consumed: int) -> None:
            if consumed >= cut:
                raise DropConnection()

        body.on_read = on_read
        if body.length is not None and body.length <= 1:
            raise DropConnection()

    def refuse_gradual(self, sop_uid: str) -> bool:
        """Called by the gradual-DICOM handler for each valid file: True means answer 400 without storing it."""
        spec = self.spec
        if not (spec.gradual400_every or spec.gradual400_at or spec.gradual400_sop):
            return False
        with self._lock:
            self._gradual += 1
            n = self._gradual
            refuse = (
                (bool(spec.gradual400_every) and n % spec.gradual400_every == 0)
                or n == spec.gradual400_at
                or sop_uid == spec.gradual400_sop
            )
            if refuse:
                self.injected["gradual400"] += 1
        return refuse

    def answer_lost(self, request: Request) -> bool:
        """After the handler ran: whether this request's answer is to be dropped (``drop_answer_*``)."""
        if not request.state.get("drop_answer"):
            return False
        with self._lock:
            self.injected["drop_answer"] += 1
        return True

    def session_expired(self, uses: int) -> bool:
        """Whether a JSESSION used ``uses`` times is past the ``expire_after`` budget."""
        limit = self.spec.expire_after
        return bool(limit) and uses > limit
