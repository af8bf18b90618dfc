"""The banner above the canvas: errors (red) and summaries (blue, e.g. what an import read),
visible, never stealing keyboard focus, with an optional action button (e.g. Recover) and
Dismiss."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from app.gui.qt_util import shown


STYLES = {"error": "#7a2323", "info": "#23507a"}


class ErrorBanner(QtWidgets.QFrame):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.kind = "error"
        self.text = QtWidgets.QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action_button = QtWidgets.QToolButton()
        self.action_button.clicked.connect(self._action_clicked)
        self.action_button.hide()
        close = QtWidgets.QToolButton()
        close.setText("Dismiss")
        close.clicked.connect(self._dismissed)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.action_button)
        layout.addWidget(close)
        self._action = self._dismiss = None
        self.hide()

    def show_message(self, message, action=None, dismiss=None, kind="error"):
        """``action``: optional (button text, callback); ``dismiss``: called on Dismiss;
        ``kind``: "error" or "info"."""
        self.kind = kind
        self.setStyleSheet(f"QFrame {{ background: {STYLES[kind]}; }} QLabel {{ color: white; }}")
        self.text.setText(shown(message))
        self.action_button.setVisible(action is not None)
        self._action = action[1] if action else None
        self._dismiss = dismiss
        if action:
            self.action_button.setText(action[0])
        self.show()

    def _action_clicked(self):
        callback, self._action = self._action, None
        self.hide()
        if callback:
            callback()

    def _dismissed(self):
        callback, self._dismiss = self._dismiss, None
        self.hide()
        if callback:
            callback()
