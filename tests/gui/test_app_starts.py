"""The window opens and shows its title with the version."""

from xnat_uploader import __version__
from xnat_uploader.gui.main_window import MainWindow


def test_main_window_opens(qtbot):
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert __version__ in window.windowTitle()
