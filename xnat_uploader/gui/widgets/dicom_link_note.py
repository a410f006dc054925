"""A short note wherever the C-STORE receiver is set: the DICOM link is not encrypted.

C-STORE (DICOM's own network transfer) runs over a plain TCP connection here, as XNAT's receiver expects: the
images, and the patient's name and ID in their headers, cross the network readable by others. The note says so
in a few words; its tooltip says what to do. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QWidget


class DicomLinkNote(QLabel):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("dicom_link_note")
        self.setText(self.tr("\u26a0 The DICOM link (C-STORE) is not encrypted."))
        self.setStyleSheet("color: #8a5a00")
        self.setToolTip(
            self.tr(
                "C-STORE sends the images as they are, with the patient's name and ID in their headers, over an "
                "unencrypted connection: anyone on the network between this computer and the DICOM receiver can "
                "read them.\nUse it inside the hospital network or over a VPN. DICOM-zip and gradual uploads to "
                "an https:// server are encrypted."
            )
        )
