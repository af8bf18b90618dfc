"""File > Import / Export annotations / Export regions: the dialogs, and the export task that
runs off the GUI thread. Every failure is reported in the banner; none escapes."""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore, QtWidgets

from app.export import ExportOptions, export
from app.formats import FORMATS, read_annotations, write_annotations
from app.gui import commands
from app.gui.qt_util import shown


class _ExportSignals(QtCore.QObject):
    done = QtCore.Signal(object, object)  # summary, error message ("" when fine)


class _ExportTask(QtCore.QRunnable):
    def __init__(self, jobs, options, root):
        super().__init__()
        self.jobs, self.options, self.root = jobs, options, root
        self.signals = _ExportSignals()

    def run(self):
        try:
            self.signals.done.emit(export(self.jobs, self.options, self.root), "")
        except Exception as exc:  # shown in the banner; the window goes on
            self.signals.done.emit(None, str(exc) or type(exc).__name__)


class AnnotationIO(QtCore.QObject):
    """Import and export for a window: ``window`` provides project, undo_stack, inspection,
    show_error, statusBar, doc_changed, saving and the service's thread pool."""

    export_finished = QtCore.Signal()

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.last_export = None
        self._task = None

    # ------------------------------------------------------------------ import
    def import_dialog(self, folder=False):
        """A file, or with ``folder`` a dataset root (data.yaml, a COCO file, Annotations/, ...)."""
        w = self.window
        if not w.project.images:
            w.show_error("Open images first, then import their annotations.")
            return
        start = str(w.project.root or "")
        if folder:
            path = QtWidgets.QFileDialog.getExistingDirectory(w, "Import annotations from a dataset folder", start)
        else:
            path, _ = QtWidgets.QFileDialog.getOpenFileName(
                w, "Import annotations", start, "Annotations (*.json *.xml *.txt *.csv *.yaml *.yml *.data);;All files (*)")
        if path:
            self.import_annotations(path)

    def import_annotations(self, path):
        """Add the boxes a file (or folder) holds for the open images: one undo step. A malformed
        file contributes nothing and is named in the banner. Returns the number of boxes."""
        w = self.window
        try:
            result = read_annotations(path, [d.path for d in w.project.images], w.project.root)
        except Exception as exc:  # a reader bug must not cost the session
            w.show_error(f"Could not import {Path(path).name}: {exc or type(exc).__name__}")
            return 0
        docs = [(w.project.doc_for(img), boxes) for img, boxes in result.boxes.items() if boxes]
        docs = [(d, b) for d, b in docs if d is not None]
        if docs:
            w.undo_stack.beginMacro(f"Import {Path(path).name}")
            for doc, boxes in docs:
                w.undo_stack.push(commands.add_boxes(doc, boxes, w.doc_changed, "Import boxes"))
            w.undo_stack.endMacro()
        count = sum(len(b) for _, b in docs)
        w.statusBar().showMessage(shown(f"Imported {count} boxes for {len(docs)} image(s) from {Path(path).name}"), 5000)
        # Every import ends with its per-file summary: imported, derived, skipped and refused.
        summary = result.summary_text()
        if result.errors:
            w.show_error("Some annotations were not imported:\n" + "\n".join(result.errors) + "\n\n" + summary)
        else:
            w.show_info(summary)
        return count

    # ------------------------------------------------------------------ export annotations
    def export_annotations_dialog(self):
        w = self.window
        fmt, ok = QtWidgets.QInputDialog.getItem(w, "Export annotations", "Format:", list(FORMATS), 0, False)
        if not ok:
            return
        if fmt in ("coco", "csv"):
            target, _ = QtWidgets.QFileDialog.getSaveFileName(w, "Export annotations", "", f"*.{'json' if fmt == 'coco' else 'csv'}")
        else:
            target = QtWidgets.QFileDialog.getExistingDirectory(w, "Export annotations into folder")
        if not target:
            return
        try:
            self.export_annotations(fmt, target)
        except FileExistsError as exc:
            answer = QtWidgets.QMessageBox.question(w, "Replace files?", f"{exc}.\nReplace them?")
            if answer == QtWidgets.QMessageBox.StandardButton.Yes:
                self.export_annotations(fmt, target, overwrite=True)

    def export_annotations(self, fmt, target, overwrite=False):
        w = self.window
        entries = [(d.path, d.boxes, None) for d in w.project.images]
        try:
            written = write_annotations(fmt, target, entries, w.project.root, overwrite=overwrite)
        except FileExistsError:
            raise  # the dialog asks before replacing
        except Exception as exc:
            w.show_error(f"Could not export annotations: {exc or type(exc).__name__}")
            return []
        w.statusBar().showMessage(shown(f"Wrote {len(written)} file(s) in {fmt} format"), 5000)
        return written

    # ------------------------------------------------------------------ export regions
    def export_regions_dialog(self):
        target = QtWidgets.QFileDialog.getExistingDirectory(self.window, "Export regions and embeddings into folder")
        if target:
            self.export_regions(target, crops=True)

    def export_regions(self, out_dir, crops=True, fmt="parquet"):
        """The same export as `roiscope export` with the current settings, off the GUI thread."""
        w = self.window
        w.saving.autosave()
        s = w.inspection.settings
        try:
            options = ExportOptions(out_dir, fmt, crops, 0, s.extractor, s.layer, s.pool_settings(s.ops[-1]))
        except Exception as exc:
            w.show_error(f"Cannot export: {exc}")
            return
        jobs = [(d.path, list(d.boxes)) for d in w.project.images]
        task = _ExportTask(jobs, options, w.project.root)
        task.signals.done.connect(self._export_done)
        w.progress.setVisible(True)
        w.statusBar().showMessage(shown(f"Exporting {len(jobs)} image(s) to {out_dir}..."))
        self._task = task
        w.service.pool.start(task)

    def _export_done(self, summary, error):
        w = self.window
        w.progress.setVisible(False)
        self.last_export = summary
        if error:
            w.show_error(f"Export failed: {error}")
        elif summary.failures:
            w.show_error(summary.text())
        else:
            w.statusBar().showMessage(shown(summary.text().splitlines()[0]), 8000)
        self.export_finished.emit()
