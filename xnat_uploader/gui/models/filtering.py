"""One helper for the filter proxies: change what a QSortFilterProxyModel filters by, the Qt-version-safe way."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSortFilterProxyModel


def change_row_filter(proxy: QSortFilterProxyModel, change: Callable[[], None]) -> None:
    """Apply ``change`` (which alters the filter's inputs) and re-filter the rows."""
    if hasattr(proxy, "beginFilterChange"):  # Qt >= 6.10; invalidateRowsFilter is deprecated there
        proxy.beginFilterChange()
        change()
        proxy.endFilterChange(QSortFilterProxyModel.Direction.Rows)
    else:
        change()
        proxy.invalidateRowsFilter()
