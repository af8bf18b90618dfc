"""After a box is drawn, a small panel over the canvas offers its label: type one (with
completion) or click one of the recent labels, as labelme's label dialog does. It is a child of
the canvas, not a modal dialog, so drawing box after box stays fast: Enter keeps the label shown,
Esc closes the panel and the box keeps the label it was given."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

MAX_RECENT = 8


class LabelPicker(QtWidgets.QFrame):
    chosen = QtCore.Signal(int, str)  # box id, label

    def __init__(self, parent):
        super().__init__(parent)
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.recent: list[str] = []
        self.box_id = -1
        self.edit = QtWidgets.QLineEdit()
        self.edit.setPlaceholderText("label, then Enter")
        self.completer_model = QtCore.QStringListModel()
        completer = QtWidgets.QCompleter(self.completer_model, self)
        completer.setCaseSensitivity(QtCore.Qt.CaseSensitivity.CaseInsensitive)
        self.edit.setCompleter(completer)
        self.edit.returnPressed.connect(self._accept)
        self.buttons = QtWidgets.QHBoxLayout()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addWidget(QtWidgets.QLabel("Label of the new box (Enter to keep, Esc to close):"))
        layout.addWidget(self.edit)
        layout.addLayout(self.buttons)
        self.hide()

    def default_label(self) -> str:
        return self.recent[0] if self.recent else "object"

    def remember(self, label: str) -> None:
        if label in self.recent:
            self.recent.remove(label)
        self.recent.insert(0, label)
        del self.recent[MAX_RECENT:]
        self.completer_model.setStringList(self.recent)

    def offer(self, box_id: int, label: str, at: QtCore.QPoint) -> None:
        """Show the panel for ``box_id`` (which already carries ``label``) near ``at``."""
        self.box_id = box_id
        while self.buttons.count():
            item = self.buttons.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        for text in self.recent:
            button = QtWidgets.QPushButton(text)
            button.setFlat(True)
            button.clicked.connect(lambda _=False, t=text: self._choose(t))
            self.buttons.addWidget(button)
        self.buttons.addStretch(1)
        self.edit.setText(label)
        self.edit.selectAll()
        self.adjustSize()
        parent = self.parentWidget().rect()
        x = min(max(at.x(), 0), max(parent.width() - self.width(), 0))
        y = min(max(at.y(), 0), max(parent.height() - self.height(), 0))
        self.move(x, y)
        self.show()
        self.raise_()
        self.edit.setFocus()

    def keyPressEvent(self, event):
        if event.key() == QtCore.Qt.Key.Key_Escape:
            self.hide()
            return
        super().keyPressEvent(event)

    def _accept(self):
        text = self.edit.text().strip()
        if text:
            self._choose(text)
        else:
            self.hide()

    def _choose(self, text):
        self.hide()
        self.remember(text)
        self.chosen.emit(self.box_id, text)
