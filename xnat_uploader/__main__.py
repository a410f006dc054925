"""``python -m xnat_uploader``: same as the ``xnat-uploader`` command."""

import multiprocessing
import sys

from xnat_uploader.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
