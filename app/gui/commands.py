"""Undo commands: each edit of a document is one QUndoCommand; a whole gesture is one step."""
from __future__ import annotations

from PySide6 import QtGui


class DocCommand(QtGui.QUndoCommand):
    """Apply ``do``/``undo`` callables to a document, then tell the window what changed."""

    def __init__(self, text, doc, do, undo, changed):
        super().__init__(text)
        self.doc, self._do, self._undo, self._changed = doc, do, undo, changed

    def redo(self):
        self._do()
        self._changed(self.doc)

    def undo(self):
        self._undo()
        self._changed(self.doc)


def add_boxes(doc, boxes, changed, text="Add box"):
    added = []

    def do():
        added.clear()
        for b in boxes:
            added.append(doc.add(b))

    def undo():
        for b in added:
            doc.remove(b.id)

    return DocCommand(text, doc, do, undo, changed)


def remove_box(doc, box_id, changed):
    state = {}

    def do():
        state["index"], state["box"] = doc.remove(box_id)

    def undo():
        doc.add(state["box"], index=state["index"])

    return DocCommand("Delete box", doc, do, undo, changed)


def replace_box(doc, old, new, changed, text="Move box"):
    return DocCommand(text, doc, lambda: doc.replace_box(new), lambda: doc.replace_box(old), changed)
