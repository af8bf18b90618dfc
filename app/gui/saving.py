"""Saving a window's documents: Ctrl+S, autosave after edits, and the crash-recovery journal
(mirrored after every edit, offered back at the next start). Any failure is named in the banner
and the boxes stay in memory and in the journal."""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore

from app import recovery
from app.gui import commands
from app.gui.qt_util import shown


class Saving(QtCore.QObject):
    def __init__(self, window):
        super().__init__(window)
        self.window = window

    def save_current(self):
        w = self.window
        doc = w.project.doc()
        if doc is None:
            return True
        size = (w.rgb.shape[1], w.rgb.shape[0]) if w.rgb is not None else None
        try:
            doc.save(size)
        except Exception as exc:  # disk full, permissions, a path the file system refuses
            w.show_error(f"Could not save {doc.sidecar.name}; your boxes are kept in memory.\n{exc}")
            return False
        w._refresh_list_item(doc)
        w.statusBar().showMessage(shown(f"Saved {doc.sidecar.name}"), 3000)
        return True

    def autosave(self):
        w = self.window
        for doc in w.project.images:
            if doc.dirty and not doc.load_error:
                try:
                    doc.save()
                except Exception as exc:
                    w.show_error(f"Autosave failed for {doc.sidecar.name}; your boxes are kept in memory "
                             f"and in the recovery journal.\n{exc}")
                    break
                w._refresh_list_item(doc)
        self.write_journal()

    def write_journal(self):
        w = self.window
        try:
            recovery.write(w.project.opened, w.project.images)
        except Exception as exc:  # the journal is a safety net; failing to write it must not stop editing
            w.statusBar().showMessage(shown(f"Could not write the recovery journal: {exc}"), 5000)

    def offer_recovery(self):
        """Called at start: if a previous session died with unsaved boxes, offer them back."""
        w = self.window
        found = recovery.read()
        if not found:
            return False
        opened, docs = found
        names = ", ".join(Path(p).name for p in list(docs)[:3])
        w.show_error(f"RoIScope closed with unsaved boxes on {len(docs)} image(s) ({names}).",
                     action=("Recover", lambda: self.recover(opened, docs)), dismiss=recovery.clear)
        return True

    def recover(self, opened, docs):
        w = self.window
        w.open_paths(opened)
        for path, boxes in docs.items():
            doc = w.project.doc_for(path)
            if doc is None:
                continue
            w.undo_stack.beginMacro(f"Recover {doc.path.name}")
            for b in list(doc.boxes):
                w.undo_stack.push(commands.remove_box(doc, b.id, w.doc_changed))
            w.undo_stack.push(commands.add_boxes(doc, boxes, w.doc_changed, "Recover boxes"))
            w.undo_stack.endMacro()
        w.banner.hide()
