"""A string that does not show itself: passwords are carried as :class:`Secret` so that a ``repr``, an f-string
or a log line of an object holding one never reveals it.
"""

from __future__ import annotations


class Secret:
    """An immutable secret text. ``str()``/``repr()`` print a mask; :meth:`reveal` returns the text.

    Thread-safe (immutable).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        object.__setattr__(self, "_value", str(value))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Secret is immutable")

    def reveal(self) -> str:
        """The secret text. Only hand it to the code that needs it (an auth header, the keyring)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> object:
        # Pickling would write the secret somewhere; refuse rather than leak.
        raise TypeError("a Secret cannot be pickled")
