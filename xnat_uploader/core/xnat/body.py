"""Request bodies for uploads: bytes, a path, a file object, or a :class:`StreamBody` produced while it is sent.

XNAT refuses in-body uploads of unknown length except zips (xnat-api.md 3.1, 11.19), so every body here has a
known length and is sent with a ``Content-Length``, never chunked.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


class StreamBody:
    """A request body produced while it is sent, with its exact length known up front.

    ``source`` is either an iterable of byte chunks (sent once) or a zero-argument callable returning a fresh
    iterable (so the body can be sent again after a re-login). ``length`` becomes the ``Content-Length``:
    XNAT refuses bodies of unknown length except zips (xnat-api.md 3.1), so chunked encoding is never used.
    """

    def __init__(self, source: Iterable[bytes] | Callable[[], Iterable[bytes]], length: int) -> None:
        if length < 0:
            raise ValueError("length must be >= 0")
        self._source = source
        self.length = int(length)
        self._used = False

    @property
    def replayable(self) -> bool:
        return callable(self._source) or not self._used

    def __len__(self) -> int:  # requests reads the Content-Length from here
        return self.length

    def __iter__(self) -> Iterator[bytes | memoryview]:
        if self._used and not callable(self._source):
            raise RuntimeError("this body was already sent and cannot be replayed")
        self._used = True
        chunks = self._source() if callable(self._source) else self._source
        sent = 0
        for chunk in chunks:
            if chunk:
                sent += len(chunk)
                yield chunk if isinstance(chunk, bytes | memoryview) else bytes(chunk)
        if sent != self.length:
            # The server would wait for the missing bytes (or reject the surplus): fail loudly instead.
            raise ValueError(f"stream body produced {sent} bytes but declared {self.length}")


Body = bytes | bytearray | str | os.PathLike | IO[bytes] | StreamBody | None


@dataclass
class PreparedBody:
    """A body ready for one send attempt, with how to rewind it for the next attempt."""

    data: Any
    _replayable: bool | Callable[[], bool]
    rewind: Callable[[], None] = field(default=lambda: None)
    close: Callable[[], None] = field(default=lambda: None)

    @property
    def replayable(self) -> bool:
        """Whether the body can be sent (again) now; a one-shot stream stops being so once sent."""
        return self._replayable() if callable(self._replayable) else self._replayable


def prepare_body(body: Body) -> PreparedBody:
    """Wrap ``body`` for sending, with how to rewind it for a second attempt (after a re-login)."""
    if body is None or isinstance(body, bytes | bytearray):
        return PreparedBody(bytes(body) if body is not None else None, True)
    if isinstance(body, str | os.PathLike):
        handle = open(Path(body), "rb")  # noqa: SIM115 - closed by PreparedBody.close
        return PreparedBody(handle, True, rewind=lambda: handle.seek(0), close=handle.close)
    if isinstance(body, StreamBody):
        return PreparedBody(body, lambda: body.replayable)
    if isinstance(body, io.IOBase) or hasattr(body, "read"):
        try:
            start = body.tell()
            seekable = body.seekable() if hasattr(body, "seekable") else True
        except (OSError, AttributeError, ValueError):
            start, seekable = 0, False
        return PreparedBody(body, seekable, rewind=lambda: body.seek(start) if seekable else None)
    raise TypeError(f"unsupported body type {type(body).__name__}: use bytes, a path, a file or StreamBody")
