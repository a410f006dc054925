"""DICOM scanning, indexing, pre-flight checks and header preview data."""
