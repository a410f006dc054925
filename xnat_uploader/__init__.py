"""xnat-uploader: get DICOM folders into XNAT, and review what lands there."""

__version__ = "0.1.0"
APP_NAME = "xnat-uploader"
