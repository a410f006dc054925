"""Sub-commands of ``xnat-uploader``. Each module has ``register(subparsers)`` and ``run(args) -> int``.

To add a command, write a module here and list it in ``COMMANDS``.
"""

COMMANDS = ["gui", "scan", "login", "logout", "prearchive", "sandbox", "upload", "echo", "demo"]
