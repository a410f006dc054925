"""How much of a server's answer the client reads into memory, and the one reader that holds to it.

Why: every answer the client reads is small and read whole (a listing, a JSON table, a session id, a
uri-list, an error page), and its size is the server's word: a ``Content-Length`` of 10 GB, an endless
chunked body or a gzip bomb would otherwise be read into memory until the machine gives out. So an answer
the request expects is read up to :data:`MAX_ANSWER` (a listing of a very large project is a few MB) and
refused beyond it with :class:`AnswerTooLarge`, before a byte is read when its length says so; an error
page is read up to :data:`MAX_ERROR_PAGE` and cut there (its message is at the start; the connection is
then closed, as the rest of the page is never read). Sizes count decoded bytes (``Content-Encoding``).

Pure, no I/O of its own: the session and :mod:`.direct` hand it the pieces they read. Any thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MAX_ANSWER = 64 << 20
MAX_ERROR_PAGE = 1 << 20
PIECE = 64 << 10  # bytes asked for per read (decoded pieces are at most this long too)


class AnswerTooLarge(Exception):
    """An answer larger than the request allows; the session turns it into a user error with its action."""

    def __init__(self, limit: int, announced: int | None = None) -> None:
        super().__init__(f"answer over {limit} bytes" + (f" (announced {announced})" if announced else ""))
        self.limit = limit
        self.announced = announced


@dataclass(frozen=True)
class AnswerLimit:
    """What one request may read: ``limit`` bytes of an answer whose status is in ``expected``, and at most
    :data:`MAX_ERROR_PAGE` of any other (cut, not refused: the status says what happened)."""

    expected: frozenset[int] = frozenset({200})
    limit: int = MAX_ANSWER

    def for_status(self, status: int) -> tuple[int, bool]:
        """(bytes to read at most, whether to cut rather than refuse beyond them) for an answer of ``status``."""
        if status in self.expected:
            return self.limit, False
        return min(self.limit, MAX_ERROR_PAGE), True


def announced_length(value: str | None) -> int | None:
    """A ``Content-Length`` header's value when it is a plain number, else ``None`` (left to the reader)."""
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() and value.isascii() and len(value) <= 20 else None


def check_announced(announced: int | None, limit: int, cut: bool) -> None:
    """Refuse at once an answer that announces more than ``limit`` bytes (unless it is to be cut)."""
    if announced is not None and announced > limit and not cut:
        raise AnswerTooLarge(limit, announced)


def gather(pieces: Iterable[bytes], limit: int, cut: bool) -> tuple[bytes, bool]:
    """Join ``pieces`` up to ``limit`` bytes: (the bytes, whether the answer ended within the limit).

    Beyond ``limit``: :class:`AnswerTooLarge`, or with ``cut`` the first ``limit`` bytes and ``False``
    (the caller closes the connection: the rest of the answer is still on it). Stops reading at once.
    """
    parts: list[bytes] = []
    total = 0
    for piece in pieces:
        if not piece:
            continue
        total += len(piece)
        if total > limit:
            if not cut:
                raise AnswerTooLarge(limit)
            parts.append(piece[: len(piece) - (total - limit)])
            return b"".join(parts), False
        parts.append(piece)
    return b"".join(parts), True
