"""Security tests talk to the real sandbox over loopback, as the integration tests do."""

from __future__ import annotations

from tests.integration.conftest import sandbox, sandbox_factory  # noqa: F401 - fixtures
