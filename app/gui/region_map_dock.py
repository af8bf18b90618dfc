"""The region map docked in the main window, linked both ways with the boxes: a click on a point
opens its image and selects the box; selecting a box rings its point; an edit, move or relabel
moves or recolours its point; a lasso relabel or delete is one undo step across images. The map
follows the inspection settings (extractor, layer, op, output size), recomputing through the
per-image embeddings cache on the panel's worker."""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore, QtWidgets

from app.gui import commands
from app.gui.region_map_panel import RegionMapPanel
from app.regionmap.bulk import delete_plan, relabel_plan
from app.regionmap.compute import MapSettings

_MAP_FIELDS = {"extractor", "layer", "ops", "output_size", "sampling_ratio"}


class RegionMapDock(QtCore.QObject):
    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.panel = RegionMapPanel()
        self.dock = QtWidgets.QDockWidget("Region map", window)
        self.dock.setObjectName("region map")
        self.dock.setWidget(self.panel)
        window.addDockWidget(QtCore.Qt.DockWidgetArea.BottomDockWidgetArea, self.dock)
        self.dock.hide()
        self._known = {}  # image path -> {box id: Box} as the map last saw them
        self.panel.region_activated.connect(self.open_region)
        self.panel.relabel_requested.connect(self.relabel)
        self.panel.delete_requested.connect(self.delete)
        self.panel.map_ready.connect(self._highlight)  # the selected box's point, from the start
        events = window.inspection.events
        events.connect("selection", self._highlight)
        events.connect("settings", self._settings_changed)

    def settings(self) -> MapSettings:
        s = self.window.inspection.settings
        return MapSettings(s.extractor, s.layer or None, s.ops[-1], (s.output_size, s.output_size), s.sampling_ratio)

    def compute(self):
        """Embed every box of the open images (cached per image) and show the map."""
        w = self.window
        if not w.project.images:
            w.show_error("Open a folder first: the region map shows every box of its images.")
            return
        if not self.dock.isVisible():
            self.dock.show()
            # A third of the window: the inspection panels above keep room for their grids.
            w.resizeDocks([self.dock], [max(w.height() // 3, 240)], QtCore.Qt.Orientation.Vertical)
        self.dock.raise_()
        docs = w.project.images
        for doc in docs:
            doc.load()
        self._known = {str(d.path): {b.id: b for b in d.boxes} for d in docs}
        self.panel.compute([(d.path, list(d.boxes)) for d in docs], self.settings(), w.extractors)

    # ------------------------------------------------------------------ map -> window
    def open_region(self, image, box_id):
        w = self.window
        for row, doc in enumerate(w.project.images):
            if str(doc.path) == str(image):
                if row != w.project.current:
                    w.image_list.setCurrentRow(row)  # opens the image (synchronously sets its boxes)
                w.inspection.select(int(box_id))
                return
        w.show_error(f"{Path(image).name} is not among the open images")

    def relabel(self, regions, label):
        self._push(relabel_plan(self._doc_for, regions, label),
                   lambda doc, old, new: commands.replace_box(doc, old, new, self.window.doc_changed, "Relabel box"))

    def delete(self, regions):
        self._push(delete_plan(self._doc_for, regions),
                   lambda doc, box_id: commands.remove_box(doc, box_id, self.window.doc_changed))

    def _push(self, plan, command):
        stack = self.window.undo_stack
        if plan:
            stack.beginMacro(plan.text)  # one undo step, however many images it touches
            for change in plan.changes:
                stack.push(command(*change))
            stack.endMacro()
        if plan.missing:
            self.window.show_error(f"{len(plan.missing)} region(s) are no longer in the open images")

    def _doc_for(self, image):
        return self.window.project.doc_for(image)

    # ------------------------------------------------------------------ window -> map
    def _highlight(self):
        doc = self.window.project.doc()
        if self.panel.map is not None and doc is not None and self.window.inspection.selected >= 0:
            self.panel.highlight(str(doc.path), self.window.inspection.selected)

    def doc_changed(self, doc):
        """Move, recolour, add or drop the points of ``doc``'s boxes that changed."""
        if self.panel.map is None:
            return
        key = str(doc.path)
        before = self._known.get(key, {})
        now = {b.id: b for b in doc.boxes}
        insp = self.window.inspection
        same_maps = doc is self.window.project.doc() and self.panel.settings == self.settings()
        features = insp.source if same_maps else None  # only maps made with the map's settings
        for box_id in set(before) - set(now):
            self.panel.remove_region(key, box_id)
        for box_id, box in now.items():
            old = before.get(box_id)
            if old == box or box.problem():
                continue
            moved = old is None or old.corners() != box.corners()
            if moved and features is None:
                continue  # its image's maps are not at hand: the next compute places it
            self.panel.update_region(key, box_id, corners=box.corners(), label=box.label,
                                     features=features if moved else None)
        self._known[key] = now

    def _settings_changed(self, changed):
        if changed & _MAP_FIELDS and self.panel.map is not None and self.dock.isVisible():
            self.compute()
