"""The region map panel: every region as a point (``MapPlot``), linked to the
boxes. It only draws and forwards; the data and computations are ``app.regionmap.RegionMap``.

Binding API for a window (all paths are image paths as the window knows them):

signals
    ``region_activated(image, box_id)``  a point, crop or suspect row was clicked: open/select it
    ``relabel_requested(regions, label)`` ``delete_requested(regions)``  regions = [(image, box_id)];
        apply as ONE undo step (``app.regionmap.bulk.relabel_plan`` / ``delete_plan``)
    ``selection_changed(regions)``
slots
    ``set_table(table, method="pca")`` / ``compute(jobs, settings, registry)`` (on a worker, with
        progress and Cancel) / ``set_map(region_map)``
    ``highlight(image, box_id)``  the window selected a box: ring its point, list similar regions
    ``update_region(image, box_id, corners=, label=, embedding=, features=)``  a box was edited:
        pass its new embedding, or the image's ``Features`` (made with the map's extractor and
        layer, ``panel.settings``) to pool it here; a size mismatch leaves the map as it was
    ``remove_region(image, box_id)``

Mouse: wheel zooms, drag pans; Ctrl+drag (or the Lasso tool) draws a freehand lasso, Shift+drag
(or the Rectangle tool) a rectangle; hover shows the region's crop; click activates.
"""
from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from app.gui.region_map_lists import SelectionView, SimilarView, SuspectsView, hover_card
from app.gui.region_map_plot import MapPlot
from app.gui.region_map_worker import TaskRunner
from app.pooling import pool_boxes
from app.regionmap.colors import MODES
from app.regionmap.compute import MapSettings, compute_table
from app.regionmap.crops import CropCache
from app.regionmap.map_model import RegionMap
from app.regionmap.projection import available_methods

PICK_PX = 6  # pick radius in screen pixels
MODS = QtCore.Qt.KeyboardModifier


class RegionMapPanel(QtWidgets.QWidget):
    region_activated = QtCore.Signal(object, int)  # image path as a Python str: any bytes
    relabel_requested = QtCore.Signal(list, str)
    delete_requested = QtCore.Signal(list)
    selection_changed = QtCore.Signal(list)
    map_ready = QtCore.Signal()

    def __init__(self, parent=None, crops=None):
        super().__init__(parent)
        self.map: RegionMap | None = None
        self.settings = MapSettings()
        self.crops = crops or CropCache()
        self.selection = np.zeros(0, np.int64)
        self.current: int | None = None
        self._shape, self._tool = [], "pan"
        self.umap_options = {}  # UMAPProjection's (n_epochs, random_state...)
        self._refresh_timer = QtCore.QTimer(self, singleShot=True, interval=0)
        self._refresh_timer.timeout.connect(self._refresh_now)
        self._similar_timer = QtCore.QTimer(self, singleShot=True, interval=0)
        self._similar_timer.timeout.connect(self._show_similar)
        self._build()

    # ------------------------------------------------------------ layout
    def _build(self):
        self.colour = QtWidgets.QComboBox()
        self.colour.addItems([f"Colour: {m}" for m in MODES])
        self.colour.currentIndexChanged.connect(self._recolour)
        self.method = QtWidgets.QComboBox()
        for m in ("pca", "umap"):
            self.method.addItem(m.upper(), m)
        self.method.model().item(1).setEnabled("umap" in available_methods())
        self.method.setItemData(1, "UMAP needs the optional package umap-learn" if "umap" not in available_methods()
                                else "UMAP (cosine), computed on a worker", QtCore.Qt.ItemDataRole.ToolTipRole)
        self.method.currentIndexChanged.connect(self._method_changed)
        self.tools = {}
        group = QtWidgets.QButtonGroup(self)
        for name, tip in (("pan", "Drag pans, wheel zooms"), ("lasso", "Drag a freehand lasso (or Ctrl+drag)"),
                          ("rectangle", "Drag a rectangle (or Shift+drag)")):
            button = QtWidgets.QToolButton(text=name.capitalize(), checkable=True, toolTip=tip)
            group.addButton(button)
            self.tools[name] = button
        self.tools["pan"].setChecked(True)
        fit = QtWidgets.QToolButton(text="Fit", toolTip="Show every point")
        fit.clicked.connect(self.fit)
        self.progress = QtWidgets.QProgressBar(maximumWidth=160, visible=False)
        self.cancel = QtWidgets.QPushButton("Cancel", visible=False)
        self.status = QtWidgets.QLabel()
        self.runner = TaskRunner(self.progress, self.cancel, self.status, self)
        self._run = self.runner.run
        bar = QtWidgets.QHBoxLayout()
        for w in (self.colour, self.method, *self.tools.values(), fit):
            bar.addWidget(w)
        bar.addWidget(self.status, 1)
        bar.addWidget(self.progress)
        bar.addWidget(self.cancel)

        self.plot = MapPlot(self)
        self.vb, self.legend, self.inset = self.plot.vb, self.plot.legend, self.plot.inset
        self.plot.scene().sigMouseMoved.connect(self._hover)

        self.selection_view = SelectionView(self.crops)
        self.selection_view.relabel.clicked.connect(lambda: self.request_relabel())
        self.selection_view.delete.clicked.connect(self.request_delete)
        self.similar_view = SimilarView(self.crops)
        self.similar_view.k.valueChanged.connect(lambda _: self._similar_timer.start())
        self.suspects_view = SuspectsView()
        self.suspects_view.find_requested.connect(self.find_suspects)
        for view in (self.selection_view, self.similar_view, self.suspects_view):
            view.activated.connect(self.activate)
        self.tabs = QtWidgets.QTabWidget(minimumWidth=400)
        self.tabs.addTab(self.selection_view, "Selection")
        self.tabs.addTab(self.similar_view, "Similar")
        self.tabs.addTab(self.suspects_view, "Suspects")
        split = QtWidgets.QSplitter()
        split.addWidget(self.plot)
        split.addWidget(self.tabs)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(bar)
        layout.addWidget(split, 1)

    # ------------------------------------------------------------ data in
    def set_table(self, table, method=None):
        """Show ``table``: PCA at once; UMAP on the worker (progress shows it is busy)."""
        method = method or self.method.currentData()
        self._adopt_settings(table.settings)
        if method == "umap" and len(table) >= 4:
            self._run(lambda progress, cancelled: RegionMap(table, "umap", progress=progress, options=self.umap_options),
                      self.set_map, f"UMAP of {len(table)} regions")
        else:
            self.set_map(RegionMap(table, "pca"))

    def set_map(self, region_map: RegionMap):
        self.map = region_map
        self.selection, self.current = np.zeros(0, np.int64), None
        self._adopt_settings(region_map.table.settings)
        self._recolour()
        self._draw_marks()
        self.selection_view.show_selection(region_map.table, self.selection)
        self.suspects_view.show_suspects(region_map.table, region_map.suspects)
        images = len(set(region_map.table.images))
        self.status.setText(f"{len(region_map)} regions in {images} image(s), {region_map.projection.method.upper()}")
        self.fit()
        self.map_ready.emit()

    def compute(self, jobs, settings: MapSettings = MapSettings(), registry=None, cache=None):
        """Embed the boxes of ``jobs`` ((image path, [Box])) on the worker, then show them."""
        self.settings = settings

        def work(progress, cancelled):
            return compute_table(jobs, settings, registry, cache, lambda d, t, _: progress(d, t), cancelled)

        self._run(work, self._computed, f"Embedding regions of {len(jobs)} image(s)")

    def _computed(self, result):
        self.last_compute = result
        self.set_table(result.table)
        note = f"; cancelled: {len(result.table)} regions so far" if result.cancelled else ""
        problems = f"; {len(result.problems)} problem(s) (tooltip)" if result.problems else ""
        self.status.setText(self.status.text() + f" ({result.hits} image(s) from cache){note}{problems}")
        self.status.setToolTip("\n".join(result.problems[:50]))

    def _adopt_settings(self, info):
        if info.get("op"):
            self.settings = MapSettings(info.get("extractor") or "filters", info.get("layer"), info["op"],
                                        tuple(info.get("output_size") or (7, 7)), info.get("sampling_ratio", -1))

    # ------------------------------------------------------------ window -> map
    def highlight(self, image, box_id) -> bool:
        i = self.map.index_of(image, box_id) if self.map is not None else None
        self.set_current(i)
        return i is not None

    def update_region(self, image, box_id, corners=None, label=None, embedding=None, features=None):
        """A box was added, moved or relabelled: its row changes and its point moves (the fitted
        projection's ``transform``). Returns its index, or None if it cannot be placed."""
        if self.map is None:
            return None
        if embedding is None and features is not None and corners is not None:
            embedding = pool_boxes(features, np.asarray(corners, np.float32).reshape(1, 4), self.settings.pool()).reshape(-1)
        try:
            i = self.map.update_region(image, box_id, corners, label, embedding)
        except ValueError:
            return None
        self._refresh_after_edit()
        return i

    def remove_region(self, image, box_id) -> bool:
        key = (str(image), int(box_id))
        keys = [self.map.table.key(i) for i in self.selection] if self.map is not None else []
        current = self.map.table.key(self.current) if self.map is not None and self.current is not None else None
        if self.map is None or not self.map.remove_region(image, box_id):
            return False
        self.selection = np.array([j for j in (self.map.index_of(*k) for k in keys if k != key) if j is not None], np.int64)
        self.current = self.map.index_of(*current) if current and current != key else None
        self._refresh_after_edit()
        self.selection_view.show_selection(self.map.table, self.selection)
        return True

    def _refresh_after_edit(self):
        """Redraw once per burst of edits (a bulk relabel updates many regions in a row)."""
        self._refresh_timer.start()

    def _refresh_now(self):
        if self.map is not None:
            self._recolour()
            self._draw_marks()
            self.suspects_view.show_suspects(self.map.table, None)

    # ------------------------------------------------------------ drawing
    def _recolour(self):
        if self.map is None:
            return
        mode = MODES[self.colour.currentIndex()]
        if mode == "suspect score" and self.map.suspects is None:
            self.find_suspects(self.suspects_view.k.value())
            return
        coloring = self.map.coloring(mode)
        self.plot.draw_points(self.map.xy, coloring, mode)

    def drawn_position(self, i):
        return self.plot.drawn_position(i)

    def _draw_marks(self):
        xy = self.map.xy if self.map is not None else np.zeros((0, 2))
        for name, idx in (("selection", self.selection), ("current", [] if self.current is None else [self.current])):
            idx = np.asarray(idx, np.int64)
            self.plot.marks[name].setData(x=xy[idx, 0], y=xy[idx, 1])
        self._similar_timer.start()  # after this event: a click answers before the neighbours

    def fit(self):
        if self.map is not None and len(self.map):
            self.plot.fit()

    # ------------------------------------------------------------ mouse
    def drag_tool(self, modifiers) -> str:
        if modifiers & MODS.ControlModifier:
            return "lasso"
        if modifiers & MODS.ShiftModifier:
            return "rectangle"
        return next(name for name, button in self.tools.items() if button.isChecked())

    def shape_started(self, tool, p):
        self._tool, self._shape = tool, [(p.x(), p.y())]

    def shape_moved(self, p):
        if self._tool == "lasso":
            self._shape.append((p.x(), p.y()))
            outline = self._shape + self._shape[:1]
        else:
            self._shape = self._shape[:1] + [(p.x(), p.y())]
            (x0, y0), (x1, y1) = self._shape
            outline = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        self.plot.set_outline(outline)

    def shape_finished(self):
        self.plot.set_outline([])
        if self.map is None or len(self._shape) < 2:
            return
        if self._tool == "lasso":
            self.select(self.map.in_polygon(self._shape))
        else:
            (x0, y0), (x1, y1) = self._shape
            self.select(self.map.in_rect(x0, y0, x1, y1))

    def _pick(self, p):
        if self.map is None:
            return None
        px, py = self.vb.viewPixelSize()
        return self.map.point_at(p.x(), p.y(), PICK_PX * px, PICK_PX * py)

    def clicked_at(self, p):
        i = self._pick(p)
        if i is not None:
            self.activate(*self.map.table.key(i))

    def activate(self, image, box_id):
        """Jump to a region: tell the window, ring its point; its neighbours follow."""
        self.region_activated.emit(str(image), int(box_id))
        self.highlight(image, box_id)

    def _hover(self, scene_pos):
        i = self._pick(self.vb.mapSceneToView(scene_pos)) if self.vb.sceneBoundingRect().contains(scene_pos) else None
        self.plot.show_card(None if i is None else self.inset_pixmap(i), scene_pos)

    def inset_pixmap(self, i) -> QtGui.QPixmap:
        return hover_card(self.crops, self.map.table, i)

    # ------------------------------------------------------------ selection and lists
    def select(self, indices):
        self.selection = np.unique(np.asarray(indices, np.int64))
        self._draw_marks()
        self.selection_view.show_selection(self.map.table, self.selection)
        self.tabs.setCurrentWidget(self.selection_view)
        self.selection_changed.emit(self.selected_regions())

    def selected_regions(self) -> list:
        return self.map.regions(self.selection) if self.map is not None else []

    def set_current(self, i):
        self.current = i
        self._draw_marks()

    def _show_similar(self):
        if self.map is None or self.current is None:
            self.plot.marks["similar"].setData(x=[], y=[])
            return
        idx, dist = self.map.similar(self.current, self.similar_view.k.value())
        self.plot.marks["similar"].setData(x=self.map.xy[idx, 0], y=self.map.xy[idx, 1])
        self.similar_view.show_similar(self.map.table, self.current, idx, dist)

    def request_relabel(self, label=None):
        regions = self.selected_regions()
        if not regions:
            return
        if label is None:
            labels = sorted(set(self.map.table.labels.astype(str)))
            label, ok = QtWidgets.QInputDialog.getItem(self, "Relabel regions", f"New label for {len(regions)} region(s):", labels, 0, True)
            if not ok or not label.strip():
                return
        self.relabel_requested.emit(regions, label.strip())

    def request_delete(self):
        regions = self.selected_regions()
        if regions:
            self.delete_requested.emit(regions)

    def find_suspects(self, k=10):
        if self.map is None or len(self.map) < 2:
            return
        region_map = self.map

        def done(suspects):
            if region_map is self.map:
                self.suspects_view.show_suspects(self.map.table, suspects)
                self._recolour()
                self.status.setText(f"{len(region_map)} regions: suspects ranked (k={k})")

        self._run(lambda progress, cancelled: region_map.compute_suspects(k, progress=progress, cancelled=cancelled),
                  done, f"Neighbours of {len(region_map)} regions")

    def _method_changed(self, _):
        if self.map is not None:
            self.set_table(self.map.table, self.method.currentData())
