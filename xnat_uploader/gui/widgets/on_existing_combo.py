"""The "If the session exists" choice as a combo box: the three choices of
:class:`~xnat_uploader.core.upload_choices.OnExisting` with their help as tips, "Replace" greyed out (with the
reason) where XNAT cannot replace. Used by the upload form's Advanced section and the Settings dialog."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QWidget

from xnat_uploader.core.upload_choices import OnExisting, parse_on_existing, replace_unavailable


class OnExistingCombo(QComboBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        for choice in OnExisting:
            self.addItem(choice.label, choice.value)
            self.setItemData(self.count() - 1, choice.help, Qt.ItemDataRole.ToolTipRole)

    def choice(self) -> OnExisting:
        return parse_on_existing(self.currentData()) or OnExisting.REFUSE

    def set_choice(self, value: object) -> None:
        """Show ``value``: a choice or a stored name, old names (``none``, ``append``, ``delete``) included."""
        choice = parse_on_existing(value) or OnExisting.REFUSE
        self.setCurrentIndex(self.findData(choice.value))

    def follow(self, destination: str, mode: str) -> None:
        """Offer "Replace" only where XNAT can do it; a chosen "Replace" that no longer can becomes "Add" (what XNAT
        then does: it merges on commit). Emits ``currentIndexChanged`` only when the choice changes."""
        why_not = replace_unavailable(destination, mode)
        index = self.findData(OnExisting.REPLACE.value)
        self.model().item(index).setEnabled(why_not is None)  # type: ignore[attr-defined]
        tip = OnExisting.REPLACE.help + (f"\n{why_not}" if why_not else "")
        self.setItemData(index, tip, Qt.ItemDataRole.ToolTipRole)
        if why_not and self.choice() is OnExisting.REPLACE:
            self.set_choice(OnExisting.ADD)
