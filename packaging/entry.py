"""Entry script of the frozen app (PyInstaller runs this file as ``__main__``).

``multiprocessing.freeze_support()`` must run before anything else: the scanner uses a ``spawn``
process pool, and a spawned worker of a frozen app is the app's own executable started with
``--multiprocessing-fork``; without this call every worker would open another main window.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()

    from xnat_uploader.cli import main

    sys.exit(main())
