"""`roiscope map PATH`: the region map panel in a window of its own, beside a viewer that shows
the clicked region's image with its box outlined (the simplest robust link: no second copy of the
main window's state). On a folder, relabel/delete edit the labelme sidecars with undo/redo
(Ctrl+Z / Ctrl+Shift+Z), each bulk edit one step, saved at once (atomic writes). On a Parquet
export the map is read-only: the boxes live in the export, not in sidecars."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.extraction import ExtractorRegistry
from app.gui import commands
from app.gui.region_map_panel import RegionMapPanel
from app.gui.views import ImagePanel
from app.project import Project
from app.regionmap.bulk import delete_plan, relabel_plan
from app.regionmap.compute import MapSettings, embed_boxes
from app.regionmap.parquet_source import read_parquet_table
from app.regionmap.sources import is_parquet_source


class MapWindow(QtWidgets.QMainWindow):
    def __init__(self):
        super().__init__()
        self.setWindowTitle("RoIScope - region map")
        self.registry = ExtractorRegistry()
        self.project: Project | None = None
        self.undo_stack = QtGui.QUndoStack(self)
        self.panel = RegionMapPanel()
        self.viewer = ImagePanel("Click a point to see its region here")
        self.viewer.setMinimumWidth(320)
        split = QtWidgets.QSplitter()
        split.addWidget(self.panel)
        split.addWidget(self.viewer)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        self.setCentralWidget(split)
        self.panel.region_activated.connect(self.show_region)
        self.panel.relabel_requested.connect(self.relabel)
        self.panel.delete_requested.connect(self.delete)
        undo = self.undo_stack.createUndoAction(self, "Undo")
        undo.setShortcut(QtGui.QKeySequence("Ctrl+Z"))
        redo = self.undo_stack.createRedoAction(self, "Redo")
        redo.setShortcut(QtGui.QKeySequence("Ctrl+Shift+Z"))
        self.addActions([undo, redo])
        self.resize(1400, 860)

    def open(self, path, settings: MapSettings = MapSettings(), method="pca"):
        self.panel.method.setCurrentIndex(max(self.panel.method.findData(method), 0))
        if is_parquet_source(path):
            self.project = None
            self.panel.set_table(read_parquet_table(path), method)
            self.panel.selection_view.relabel.setToolTip("Read-only: the regions come from a Parquet export")
            self.panel.selection_view.setEnabled(False)
            return
        self.project = Project()
        self.project.open([path])
        jobs = []
        for doc in self.project.images:
            doc.load()
            jobs.append((doc.path, list(doc.boxes)))
        self.setWindowTitle(f"RoIScope - region map - {path}")
        self.panel.compute(jobs, settings, self.registry)

    # ------------------------------------------------------------ map -> image
    def show_region(self, image, box_id):
        region_map = self.panel.map
        i = region_map.index_of(image, box_id) if region_map is not None else None
        rgb = self.panel.crops.image(image)
        if i is None or rgb is None:
            why = self.panel.crops.unreadable.get(str(image), "not on the map")
            self.viewer.set_title(f"{Path(image).name}: {why}")
            self.viewer.image.clear()
            self.viewer.set_outline(None)
            return
        x1, y1, x2, y2 = (float(v) for v in region_map.table.corners[i])
        self.viewer.image.setImage(rgb, autoLevels=False, levels=(0, 255))
        self.viewer.set_outline((x1, y1, x2 - x1, y2 - y1))
        self.viewer.vb.autoRange()
        self.viewer.set_title(f"{Path(image).name}  box {box_id}  {region_map.table.labels[i]}")

    # ------------------------------------------------------------ edits (folder only)
    def relabel(self, regions, label):
        if self.project is not None:
            self._push(relabel_plan(self.project.doc_for, regions, label),
                       lambda doc, old, new: commands.replace_box(doc, old, new, self._changed, "Relabel box"))

    def delete(self, regions):
        if self.project is not None:
            self._push(delete_plan(self.project.doc_for, regions),
                       lambda doc, box_id: commands.remove_box(doc, box_id, self._changed))

    def _push(self, plan, command):
        if not plan:
            return
        self.undo_stack.beginMacro(plan.text)
        for change in plan.changes:
            self.undo_stack.push(command(*change))
        self.undo_stack.endMacro()
        self.panel.status.setText(plan.text + (f"; {len(plan.missing)} no longer exist" if plan.missing else ""))

    def _changed(self, doc):
        """After an edit or its undo: save the sidecar and bring the map's rows in step."""
        try:
            doc.save()
        except (OSError, ValueError) as exc:
            self.panel.status.setText(f"Not saved: {exc}")
        region_map = self.panel.map
        table = region_map.table
        ours = {int(b) for p, b in zip(table.images, table.box_ids) if str(p) == str(doc.path)}
        for box_id in ours - {b.id for b in doc.boxes}:
            self.panel.remove_region(str(doc.path), box_id)
        for box in doc.boxes:
            if box.id in ours:
                self.panel.update_region(str(doc.path), box.id, label=box.label)
            elif box.problem() is None:  # back after an undone delete: embed it again (cached)
                emb = embed_boxes(self.registry, doc.path, [box.corners()], self.panel.settings)
                self.panel.update_region(str(doc.path), box.id, box.corners(), box.label, np.asarray(emb)[0])


def run_map_window(args) -> int:
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("RoIScope")
    window = MapWindow()
    window.show()
    try:
        settings = MapSettings(args.extractor, args.layer, args.op, args.size, args.sampling_ratio)
        window.open(args.path, settings, args.projection)
    except ValueError as exc:
        QtWidgets.QMessageBox.critical(window, "roiscope map", str(exc))
        return 1
    QtCore.QTimer.singleShot(0, window.raise_)
    return app.exec()
