"""RoIScope's main window: composition only. Image list | canvas (with the error banner) |
inspection panels, a settings bar, menus and a status bar, each bound to the Qt-free models
(``Project`` for documents, ``Inspection`` for what is shown). Edits go through the undo stack;
saving is atomic, autosaved, and mirrored in a crash-recovery journal."""
from __future__ import annotations

import sys
from pathlib import Path

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.extraction import ExtractorRegistry
from app.gui import commands
from app.gui.banner import ErrorBanner
from app.gui.canvas import Canvas
from app.gui.inspector import InspectorPanels
from app.gui.io_dialogs import AnnotationIO
from app.gui.label_picker import LabelPicker
from app.gui.menus import build_actions
from app.gui.region_map_dock import RegionMapDock
from app.gui.saving import Saving
from app.gui.qt_util import install_last_resort_handler, qt_signals_blocked, shown
from app.gui.settings_bar import SettingsBar
from app.gui.worker import FeatureService
from app.images import IMAGE_SUFFIXES
from app.inspection import OP_CHOICES, Inspection
from app.model_files import load_user_model
from app.project import Box, Project

LIVE_INTERVAL_MS = 0  # coalesce queued drag events, then update at once (latest geometry wins)
AUTOSAVE_MS = 800


class MainWindow(QtWidgets.QMainWindow):
    pooled_updated = QtCore.Signal()

    def __init__(self):
        super().__init__()
        self.project = Project()
        self.undo_stack = QtGui.QUndoStack(self)
        self.extractors = ExtractorRegistry()
        self.service = FeatureService(self.extractors, self)
        self.inspection = Inspection()
        self.rgb = None
        self.last_error = None
        self.unreadable = set()  # images that failed to load, marked in the list
        self._build_ui()
        self.actions_ = build_actions(self)
        self._connect()
        self._update_title()
        self.resize(1400, 860)

    # ------------------------------------------------------------------ composition
    def _build_ui(self):
        self.canvas = Canvas()
        self.banner = ErrorBanner()
        centre = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(centre)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.banner)
        layout.addWidget(self.canvas, 1)
        self.setCentralWidget(centre)
        self.label_picker = LabelPicker(self.canvas)

        self.image_list = QtWidgets.QListWidget()
        self.images_dock = self._dock("Images", "images", self.image_list, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)
        self.inspector = InspectorPanels(self.inspection)
        self.inspector_dock = self._dock("Inspection", "inspection", self.inspector, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        self.resizeDocks([self.images_dock, self.inspector_dock], [170, 520], QtCore.Qt.Orientation.Horizontal)
        self.settings_bar = SettingsBar(self.inspection, self.extractors, self.show_error)
        self.io = AnnotationIO(self)
        self.saving = Saving(self)
        self.region_map = RegionMapDock(self)

        self.status_image = QtWidgets.QLabel()
        self.status_cursor = QtWidgets.QLabel()
        self.status_time = QtWidgets.QLabel()
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(120)
        self.progress.setVisible(False)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        bar = self.statusBar()
        bar.addWidget(self.status_image)
        bar.addWidget(self.status_cursor, 1)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel_button)
        bar.addPermanentWidget(self.status_time)
        self.live_timer = self._timer(LIVE_INTERVAL_MS, self._apply_live)
        self.autosave_timer = self._timer(AUTOSAVE_MS, self.saving.autosave)

    def _dock(self, title, name, widget, area):
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(area, dock)
        return dock

    def _timer(self, interval, slot):
        timer = QtCore.QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(interval)
        timer.timeout.connect(slot)
        return timer

    def _connect(self):
        c = self.canvas
        c.box_drawn.connect(self._on_box_drawn)
        c.box_moving.connect(self._on_box_moving)
        c.box_moved.connect(self._on_box_moved)
        c.box_selected.connect(self.inspection.select)
        c.box_activated.connect(self._relabel_dialog)
        c.cursor_moved.connect(self._on_cursor)
        self.image_list.currentRowChanged.connect(self._on_row_changed)
        self.service.image_ready.connect(self._on_image_ready)
        self.service.features_ready.connect(self._on_features_ready)
        self.service.failed.connect(self._on_load_failed)
        self.service.busy_changed.connect(self._on_busy)
        self.cancel_button.clicked.connect(self.service.cancel)
        self.inspector.box_clicked.connect(self.inspection.select)
        self.inspector.label_edited.connect(lambda text: self.relabel(self.inspection.selected, text))
        self.label_picker.chosen.connect(self.relabel)
        events = self.inspection.events
        events.connect("selection", lambda: c.select(self.inspection.selected))
        events.connect("pooled", self._on_pooled)
        events.connect("features", self._update_status)
        events.connect("settings", self._on_settings)

    # ------------------------------------------------------------------ opening
    def open_paths(self, paths):
        images = self.project.open(paths)
        self.undo_stack.clear()
        self.unreadable.clear()
        with qt_signals_blocked(self.image_list):
            self.image_list.clear()
            for doc in images:
                doc.load()
                self.image_list.addItem(self._list_text(doc))
            if images:
                self.image_list.setCurrentRow(0)
        if not images:
            self.show_error(f"No images found in: {', '.join(map(str, paths))}")
            return
        self._show_current()  # once: loading the first image twice would double the wait

    def open_image_dialog(self):
        pattern = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open image", "", f"Images ({pattern})")
        if path:
            self.open_paths([path])

    def open_folder_dialog(self):
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open folder")
        if path:
            self.open_paths([path])

    def step(self, delta):
        if self.project.images:
            self.image_list.setCurrentRow(max(0, min(len(self.project.images) - 1, self.project.current + delta)))

    def _on_row_changed(self, row):
        if row < 0 or row == self.project.current and self.rgb is not None:
            return
        self.saving.autosave()
        self.project.current = row
        self._show_current()

    def _show_current(self):
        doc = self.project.doc()
        self.banner.hide()  # errors belong to the image they were about
        self.rgb = None
        self.canvas.set_image(None)
        self.inspection.clear()
        self.canvas.set_boxes(doc.boxes if doc else [])
        self.inspection.set_boxes(doc.boxes if doc else [])
        if doc is not None and doc.boxes:
            self.inspection.select(doc.boxes[0].id)  # show a pooled grid straight away
        self._update_title()
        self._update_status()
        if doc is None:
            return
        if doc.load_error:
            self.show_error(f"The annotation file could not be read, so no boxes were loaded:\n{doc.load_error}")
        self._request_features(want_image=True)

    def _request_features(self, want_image=False):
        doc = self.project.doc()
        s = self.inspection.settings
        if doc is None or not s.layer:
            return
        # Every op the menu offers, those on show first: switching the op must not stall on a
        # first trace, and the first grid need not wait for the others.
        offered = [ops[0] for ops in (OP_CHOICES[name] for name in self.inspection.op_choices()) if len(ops) == 1]
        ops = list(s.ops) + [op for op in offered if op not in s.ops]
        counts = sorted({1, len(doc.boxes), len(doc.boxes) + 1} - {0})  # a drag, all boxes, one more
        self.service.request(doc.path, s.extractor, s.layer, want_image=want_image or self.rgb is None,
                             warm=[s.pool_settings(op) for op in ops], counts=counts, shown=len(s.ops))

    def _on_settings(self, changed):
        if changed & {"extractor", "layer"}:
            self.inspection.set_features(None)  # never show maps of the previous extractor
            self._request_features()

    def _on_image_ready(self, path, images):
        doc = self.project.doc()
        if doc is None or str(doc.path) != path:
            return
        rgb, display = images
        self.rgb = rgb
        self.canvas.set_image(display, size=(rgb.shape[1], rgb.shape[0]))
        self._update_status()

    def _on_features_ready(self, key, feats):
        doc = self.project.doc()
        s = self.inspection.settings
        if doc is None or key != (str(doc.path), s.extractor, s.layer):
            return
        self.inspection.set_features(feats)
        self.service.warm_loops()  # after the first grid, which must not wait for it

    def _on_load_failed(self, path, message):
        """Nothing of the previous image stays on show, and the list marks this one."""
        doc = self.project.doc()
        if doc is not None and str(doc.path) == path:
            self.rgb = None
            self.canvas.set_image(None)
            self.inspection.set_features(None)
            self.unreadable.add(doc.path)
            self._refresh_list_item(doc)
            self._update_status()
        self.show_error(f"Could not open {Path(path).name}:\n{message}")

    def _on_busy(self, busy):
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)

    def load_model_dialog(self):
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Load Keras model", "", "Keras models (*.keras *.h5 *.hdf5)")
        if path:
            self.load_model(path)

    def load_model(self, path):
        """Add a user's .keras/.h5 model to the extractors (any 4-D layer) and select it."""
        try:
            ext = load_user_model(path)
        except ValueError as exc:
            self.show_error(str(exc))
            return None
        return ext if self.settings_bar.add_extractor(ext) else None

    # ------------------------------------------------------------------ edits
    def current_boxes(self):
        doc = self.project.doc()
        return [] if doc is None else doc.boxes

    def doc_changed(self, doc):
        doc.dirty = True
        if doc is self.project.doc():
            self.canvas.set_boxes(doc.boxes)
            self.inspection.set_boxes(doc.boxes)
        self._refresh_list_item(doc)
        self.region_map.doc_changed(doc)
        self.saving.write_journal()
        self.autosave_timer.start()

    def _on_box_drawn(self, x1, y1, x2, y2):
        doc = self.project.doc()
        if doc is None or self.canvas.image_size is None:
            return
        box = Box.from_corners(x1, y1, x2, y2, label=self.label_picker.default_label())
        self.undo_stack.push(commands.add_boxes(doc, [box], self.doc_changed))
        new = doc.boxes[-1]
        self.inspection.select(new.id)
        corner = self.canvas.mapFromScene(self.canvas.view.mapViewToScene(QtCore.QPointF(x1, y2)))
        self.label_picker.offer(new.id, new.label, corner)

    def _on_box_moving(self, box_id, x1, y1, x2, y2):
        self.inspection.drag(box_id, (x1, y1, x2, y2))
        if not self.live_timer.isActive():
            self.live_timer.start()

    def _apply_live(self):
        self.inspection.apply_live()

    def _on_box_moved(self, box_id, old, new):
        doc = self.project.doc()
        box = doc.box_by_id(box_id) if doc else None
        self.inspection.end_drag(box_id)
        if box is not None:
            self.undo_stack.push(commands.replace_box(doc, box.moved_to(*old), box.moved_to(*new), self.doc_changed))

    def delete_selected(self):
        doc = self.project.doc()
        if doc is not None and doc.box_by_id(self.inspection.selected) is not None:
            self.undo_stack.push(commands.remove_box(doc, self.inspection.selected, self.doc_changed))

    def duplicate_selected(self):
        doc = self.project.doc()
        box = doc.box_by_id(self.inspection.selected) if doc else None
        if box is None:
            return
        offset = max(4.0, 0.05 * max(box.width, box.height))
        copy = Box.from_corners(box.x1 + offset, box.y1 + offset, box.x2 + offset, box.y2 + offset, box.label)
        self.undo_stack.push(commands.add_boxes(doc, [copy], self.doc_changed, "Duplicate box"))
        self.inspection.select(doc.boxes[-1].id)

    def relabel(self, box_id, label):
        doc = self.project.doc()
        box = doc.box_by_id(box_id) if doc else None
        if box is None or box.label == label:
            return
        self.label_picker.remember(label)
        self.undo_stack.push(commands.replace_box(doc, box, box.relabeled(label), self.doc_changed, "Relabel box"))

    def _relabel_dialog(self, box_id):
        doc = self.project.doc()
        box = doc.box_by_id(box_id) if doc else None
        if box is None:
            return
        text, ok = QtWidgets.QInputDialog.getText(self, "Relabel", "Label:", text=box.label)
        if ok and text.strip():
            self.relabel(box_id, text.strip())

    def closeEvent(self, event):
        self.saving.autosave()  # clears the recovery journal when everything is saved
        self.service.cancel()
        super().closeEvent(event)

    # ------------------------------------------------------------------ views
    def _on_pooled(self, live):
        self.canvas.set_grid(*self.inspection.overlay())
        self.status_time.setText(f"update {self.inspection.last_update_ms:.1f} ms")
        self.pooled_updated.emit()

    def _on_cursor(self, x, y):
        parts = [f"x {x:.1f}, y {y:.1f}"]
        if self.rgb is not None:
            h, w = self.rgb.shape[:2]
            if 0 <= x < w and 0 <= y < h:
                parts.append("RGB " + ",".join(str(int(v)) for v in self.rgb[int(y), int(x)]))
        value = self.inspection.feature_text(x, y)
        if value:
            parts.append(value)
        self.status_cursor.setText("   ".join(parts))

    def _update_status(self):
        parts = [f"image {self.rgb.shape[1]}x{self.rgb.shape[0]}"] if self.rgb is not None else []
        parts.append(self.inspection.features_text())
        self.status_image.setText("   ".join(p for p in parts if p))

    def _list_text(self, doc):
        mark = "*" if doc.dirty else ""
        warn = " (unreadable)" if doc.path in self.unreadable else (" (!)" if doc.load_error else "")
        return shown(f"{doc.path.name}{mark}  [{len(doc.boxes)}]{warn}")

    def _refresh_list_item(self, doc):
        try:
            row = self.project.images.index(doc)
        except ValueError:
            return
        item = self.image_list.item(row)
        if item is not None:
            item.setText(self._list_text(doc))
            item.setForeground(QtGui.QColor(220, 60, 60) if doc.path in self.unreadable else self.palette().text().color())

    def _update_title(self):
        doc = self.project.doc()
        self.setWindowTitle(shown(f"RoIScope - {doc.path.name}") if doc else "RoIScope")

    def show_error(self, message, action=None, dismiss=None):
        """Non-blocking message in the banner; the window stays usable. ``action``: optional
        (button text, callback); ``dismiss``: called when the user dismisses the banner."""
        self.last_error = message
        self.banner.show_message(message, action, dismiss)

    def show_info(self, message):
        """A summary worth reading (what an import read and skipped), in the banner, in blue."""
        self.banner.show_message(message, kind="info")

    def report_unexpected(self, message):
        """What the last-resort handler calls for an exception no slot caught: the banner, and
        the recovery journal brought up to date so that no edit is lost if worse follows."""
        self.saving.write_journal()
        self.show_error(message)


def run_gui(paths) -> int:
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("RoIScope")
    window = MainWindow()
    install_last_resort_handler(window.report_unexpected)
    window.show()
    if paths:
        window.open_paths(paths)
    window.saving.offer_recovery()
    return app.exec()
