"""Shared by the commands that talk to a server: which server, which password, and how failures print.

Run on the main thread of a command-line process.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xnat_uploader.core import settings as settings_mod
from xnat_uploader.core.credentials import CredentialStore
from xnat_uploader.core.errors import UserError
from xnat_uploader.core.secret import Secret
from xnat_uploader.core.settings import ServerEntry, Settings
from xnat_uploader.core.xnat.transport import PLAIN_HTTP_REASON, ConnectionOptions, normalize_url, sends_in_clear

if TYPE_CHECKING:
    from xnat_uploader.core.xnat.client import XnatClient

EXIT_OK, EXIT_FAIL = 0, 1


def add_server_args(parser: argparse.ArgumentParser, *, url_required: bool = False) -> None:
    """``--url --user --password-stdin --no-verify --ca-bundle --timeout`` on a sub-command."""
    parser.add_argument(
        "--url", required=url_required, help="XNAT address, e.g. https://xnat.example.org (default: last used)"
    )
    parser.add_argument("--user", help="XNAT user name (default: the one saved for the server)")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from the first input line")
    parser.add_argument(
        "--allow-http", action="store_true",
        help="no warning for a plain http:// server (scripts that know the risk: the password is not encrypted)",
    )  # fmt: skip
    parser.add_argument("--no-verify", action="store_true", help="do not check the TLS certificate (test servers)")
    parser.add_argument("--ca-bundle", metavar="FILE", help="trust the certificate authorities in this PEM file")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="answer time-out (default 120)")
    parser.add_argument(
        "--commit-timeout", type=float, default=None, metavar="SECONDS",
        help="answer time-out of a commit or archive request, which XNAT may take minutes to answer (default 660)",
    )  # fmt: skip
    parser.add_argument(
        "--archive-wait", type=float, default=None, metavar="SECONDS",
        help="how long to follow XNAT's archiving when its answer was lost, or after a Direct-Archive (default 1800)",
    )  # fmt: skip


@dataclass
class Target:
    """The server a command works on, with its saved entry (if any) and the loaded settings."""

    entry: ServerEntry
    settings: Settings
    saved: bool


def resolve_target(args: argparse.Namespace) -> Target:
    """Pick the server from ``--url``/``--user`` or the settings. Raises :class:`UserError`."""
    settings = settings_mod.load()
    for warning in settings.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    url = getattr(args, "url", None)
    if url:
        try:
            url = normalize_url(url)
        except ValueError as exc:
            raise UserError(
                "The server address is not valid.", f"Use a URL such as https://xnat.example.org ({exc})."
            ) from None
        saved = settings.find(url)
    else:
        saved = settings.current()
        if saved is None:
            raise UserError("No server given.", "Sign in first with: xnat-uploader login --url URL --user NAME")
    user = getattr(args, "user", None) or (saved.user if saved else None)
    if not user:
        raise UserError("No user name given.", "Add --user NAME.")
    entry = ServerEntry(
        url=url or saved.url,  # type: ignore[union-attr]
        user=user,
        name=saved.name if saved else "",
        verify_tls=(saved.verify_tls if saved else True) and not getattr(args, "no_verify", False),
        ca_bundle=getattr(args, "ca_bundle", None) or (saved.ca_bundle if saved else None),
        commit_timeout=saved.commit_timeout if saved else ServerEntry.commit_timeout,
        archive_wait=saved.archive_wait if saved else ServerEntry.archive_wait,
    )
    return Target(entry, settings, saved is not None)


def warn_plain_http(args: argparse.Namespace, url: str) -> None:
    """Say on stderr that the password goes out unencrypted to a plain ``http://`` server (not for loopback,
    where nothing crosses a network), unless ``--allow-http``."""
    if sends_in_clear(url) and not getattr(args, "allow_http", False):
        print(
            f"Warning: {url} uses plain http, without encryption: {PLAIN_HTTP_REASON}, and so do the images. "
            "Use https:// if the server offers it (--allow-http hides this warning).",
            file=sys.stderr,
        )


def read_password(
    args: argparse.Namespace, entry: ServerEntry, store: CredentialStore, *, ask_first: bool = False
) -> Secret:
    """``--password-stdin``, else ``XNAT_PASS``, else the keyring (unless ``ask_first``), else a terminal prompt.

    Every command that signs in comes here first: a plain-http server is warned about (:func:`warn_plain_http`).
    """
    warn_plain_http(args, entry.url)
    if getattr(args, "password_stdin", False):
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise UserError("No password on standard input.", 'Pipe the password in, e.g. printf %s "$PW" | ...')
        return Secret(password)
    env = os.environ.get("XNAT_PASS")  # scripts and CI: explicit, and never written anywhere
    if env:
        return Secret(env)
    if not ask_first:
        stored = store.get(entry.url, entry.user)
        if stored:
            return stored
    if sys.stdin is not None and sys.stdin.isatty():
        password = getpass.getpass(f"Password for {entry.user} on {entry.url}: ")
        if password:
            return Secret(password)
    raise UserError(
        f"No password for {entry.user} on {entry.url}.",
        "Use --password-stdin, run the command in a terminal, or sign in with: xnat-uploader login",
    )


def options_for(entry: ServerEntry, args: argparse.Namespace) -> ConnectionOptions:
    """One connection (commands send one request at a time); the time-out options if given."""
    return entry.connection_options(workers=1, **timeout_args(args))


def timeout_args(args: argparse.Namespace) -> dict[str, float | None]:
    """``--timeout``, ``--commit-timeout``, ``--archive-wait`` as :meth:`ServerEntry.connection_options` takes them."""
    return {
        "read_timeout": getattr(args, "timeout", None),
        "commit_timeout": getattr(args, "commit_timeout", None),
        "archive_wait": getattr(args, "archive_wait", None),
    }


def connect(args: argparse.Namespace) -> XnatClient:
    """A logged-in client for the command's server. Raises :class:`UserError` (incl. every XnatError)."""
    target = resolve_target(args)
    password = read_password(args, target.entry, CredentialStore())
    from xnat_uploader.core.xnat.client import XnatClient  # loads requests: only for commands that use HTTP

    client = XnatClient(target.entry.url, target.entry.user, password, options_for(target.entry, args))
    try:
        client.session.login()
    except BaseException:
        client.close()
        raise
    return client


def report(exc: UserError, doing: str = "") -> int:
    """Print a failure plainly (message, then hint) on stderr; returns the exit code."""
    prefix = f"{doing} failed: " if doing else "Error: "
    print(prefix + exc.message, file=sys.stderr)
    if exc.hint:
        print(exc.hint, file=sys.stderr)
    return EXIT_FAIL
