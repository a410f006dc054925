"""The main window. For now a placeholder; the tree, form and queue come with their issues."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMainWindow

from xnat_uploader import __version__


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle(self.tr("xnat-uploader {}").format(__version__))
        label = QLabel(self.tr("Drop a DICOM folder here (coming soon).\nUse 'xnat-uploader scan PATH' meanwhile."))
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setCentralWidget(label)
        self.resize(1000, 700)
