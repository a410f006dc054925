"""Sub-commands of ``xnat-uploader``. Each module has ``register(subparsers)`` and ``run(args) -> int``.

To add a command, write a module here and list it in ``COMMANDS``.
"""

COMMANDS = ["gui", "scan", "login", "logout", "prearchive", "sandbox", "upload", "echo", "demo"]
COMMANDS += ["resource", "archive_import", "inbox"]  # non-DICOM files and the other import paths (issue 9)
ALIASES = {"import-archive": "archive_import"}  # command name -> module, where they differ


def module_for(name: str) -> str | None:
    """The module of command ``name`` as typed on the command line, or None if there is no such command."""
    module = ALIASES.get(name, name)
    return module if module in COMMANDS else None
