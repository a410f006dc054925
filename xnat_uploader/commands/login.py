"""``xnat-uploader login``: check a server (reachable, XNAT version, credentials) and remember it."""

from __future__ import annotations

import argparse
import sys

from xnat_uploader.commands._connect import EXIT_OK, add_server_args, options_for, read_password, report, resolve_target
from xnat_uploader.core import settings as settings_mod
from xnat_uploader.core.credentials import CredentialStore
from xnat_uploader.core.errors import UserError
from xnat_uploader.core.xnat import XnatClient


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("login", help="sign in to an XNAT server and remember it")
    add_server_args(p, url_required=True)
    p.add_argument("--no-remember", action="store_true", help="do not store the password in the keychain")
    p.add_argument("--name", help="a short name for the server (default: its host)")


def run(args: argparse.Namespace) -> int:
    store = CredentialStore()
    client = None
    try:
        target = resolve_target(args)
        password = read_password(args, target.entry, store, ask_first=True)
        client = XnatClient(target.entry.url, target.entry.user, password, options_for(target.entry, args))
        info = client.connect()
    except UserError as exc:
        return report(exc, "Sign-in")
    finally:
        if client is not None:
            client.close()
    entry = target.entry
    if args.name:
        entry.name = args.name
    target.settings.upsert(entry)
    target.settings.current_server = entry.url
    settings_mod.save(target.settings)
    version = f"XNAT {info.version_string}" if info.version_string else "XNAT (version not reported)"
    print(f"Signed in to {entry.url} as {entry.user} ({version}).")
    if info.version is None:
        print("The server did not report its version: direct archiving and skipping non-DICOM files stay off.")
    elif not info.supports_direct_archive:
        print("This server is older than XNAT 1.8.3: direct archiving and skipping non-DICOM files are unavailable.")
    if not args.no_remember:
        outcome = store.set(entry.url, entry.user, password)
        if outcome.remembered:
            print("The password is stored in the system keychain.")
        elif outcome.warning:
            print(f"Warning: {outcome.warning}", file=sys.stderr)
    return EXIT_OK
