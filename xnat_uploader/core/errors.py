"""User-facing errors: a short message in plain words and a hint on what to do."""

from __future__ import annotations


class UserError(Exception):
    """An error whose message can be shown to a user as it is.

    Never put a password, a session token or a patient identifier into ``message`` or ``hint``.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class Cancelled(Exception):
    """Raised inside core work when its cancel event is set."""
