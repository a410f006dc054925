"""``xnat-uploader logout``: stop using a server; ``--forget-password`` also removes its stored password."""

from __future__ import annotations

import argparse

from xnat_uploader.commands._connect import EXIT_OK, report, resolve_target
from xnat_uploader.core import settings as settings_mod
from xnat_uploader.core.credentials import CredentialStore
from xnat_uploader.core.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("logout", help="sign out of a server (and optionally forget its password)")
    p.add_argument("--url", help="the server (default: the current one)")
    p.add_argument("--user", help="the user name (default: the one saved for the server)")
    p.add_argument("--forget-password", action="store_true", help="remove the password from the keychain")


def run(args: argparse.Namespace) -> int:
    try:
        target = resolve_target(args)
    except UserError as exc:
        return report(exc, "Sign-out")
    entry, settings = target.entry, target.settings
    # Commands end their server session when they finish (DELETE /data/JSESSION), so signing out here means
    # no longer using this server by default, and forgetting the password when asked.
    if settings.current_server == entry.url:
        settings.current_server = None
        settings_mod.save(settings)
    print(f"Signed out of {entry.url}.")
    if args.forget_password:
        removed = CredentialStore().forget(entry.url, entry.user)
        print("The stored password was removed." if removed else "No stored password was found.")
    return EXIT_OK
