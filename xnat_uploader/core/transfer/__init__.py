"""Upload transports (DICOM-zip, gradual-DICOM, C-STORE) behind one interface."""
