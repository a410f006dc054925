"""Sub-commands of ``xnat-uploader``. Each module has ``register(subparsers)`` and ``run(args) -> int``.

To add a command, write a module here and list it in ``COMMANDS``.
"""

COMMANDS = ["gui", "scan", "login", "logout", "prearchive", "sandbox", "upload", "echo", "demo"]
COMMANDS += ["resource", "archive_import", "inbox"]  # non-DICOM files and the other import paths (issue 9)
