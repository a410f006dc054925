"""One window per data folder: starting the app again brings the running window forward instead.

Two windows on one queue would each think they own its uploads (the queue's claims keep them from sending
a job twice, but a second window would still be a confusing second view). So the first copy holds a lock
file in the data folder (:class:`QLockFile`: the operating system's lock, taken over at once when the copy
that held it has crashed) and listens on a local socket named after the user and the data folder. A second
copy finds the lock held, asks the first over that socket to come forward, and exits. Separate data folders
(``--dev-config``, the demo) are separate queues: their windows do not meet.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)

_COME_FORWARD = b"come-forward\n"


def server_name(folder: Path) -> str:
    """The local socket's name for this user and data folder (a hash: no path or user name in /tmp)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database
        user = ""
    key = f"{user}\0{folder.resolve()}".encode("utf-8", "surrogatepass")
    return "xnat-uploader-" + hashlib.sha256(key).hexdigest()[:20]


class SingleInstance(QObject):
    """The guard for one data folder. ``acquire()`` on start: True for the first copy (it then listens and
    emits ``come_forward_requested`` when another copy starts); False when another copy holds the folder,
    which is then asked with :meth:`ask_to_come_forward`. GUI thread only."""

    come_forward_requested = Signal()

    def __init__(self, folder: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = server_name(folder)
        self._lock = QLockFile(str(folder / "app.lock"))
        self._lock.setStaleLockTime(0)  # never stale by age: only when its process is gone
        self._server: QLocalServer | None = None

    def acquire(self) -> bool:
        if not self._lock.tryLock(0):
            return False
        QLocalServer.removeServer(self.name)  # a socket file a crashed copy left behind
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)  # this user only
        server.newConnection.connect(self._on_connection)
        if not server.listen(self.name):  # the lock still holds; only the coming forward is lost
            log.warning("Could not listen for a second copy of the app: %s", server.errorString())
        self._server = server
        return True

    def holder_pid(self) -> int | None:
        """The process id of the copy holding the folder, when the lock file tells."""
        info = self._lock.getLockInfo()
        return int(info[0]) if isinstance(info, tuple) and info and info[0] else None

    def ask_to_come_forward(self, timeout_ms: int = 2000) -> bool:
        """Ask the first copy to bring its window forward. False if it does not answer in time."""
        socket = QLocalSocket()  # Python's own: gone when this returns (no deleteLater to outlive the guard)
        try:
            socket.connectToServer(self.name)
            if not socket.waitForConnected(timeout_ms):
                return False
            socket.write(_COME_FORWARD)
            return bool(socket.waitForBytesWritten(timeout_ms))
        finally:
            socket.abort()

    def release(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._lock.unlock()

    @Slot()
    def _on_connection(self) -> None:
        # The sockets stay children of the server (closed once read, deleted with it): a few bytes each, and
        # only as many as times the app was started again.
        while self._server is not None and (socket := self._server.nextPendingConnection()) is not None:
            socket.readyRead.connect(self._on_ready_read)
            self._read(socket)  # the message may have come with the connection

    @Slot()
    def _on_ready_read(self) -> None:
        socket = self.sender()
        if isinstance(socket, QLocalSocket):
            self._read(socket)

    def _read(self, socket: QLocalSocket) -> None:
        if socket.canReadLine():
            line = bytes(socket.readLine().data())
            socket.close()
            if line == _COME_FORWARD:
                self.come_forward_requested.emit()
