"""RoIScope's main window: image list | canvas | pooled grids, gallery, feature maps, regions."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app import recovery
from app.export import ExportOptions, export
from app.formats import FORMATS, read_annotations, write_annotations
from app.gui import commands
from app.gui.canvas import Canvas, align_sample_points, pool_cell_lines
from app.gui.views import ImagePanel, normalize, tile
from app.gui.worker import FeatureService
from app.images import IMAGE_SUFFIXES
from app.extraction import ExtractorRegistry
from app.model_files import load_user_model
from app.pooling import OPS, PoolSettings, pool_boxes
from app.project import Box, Project
from roi_core.boxes import roi_align_samples, roi_pool_cells

OP_LABELS = {"roi_pool": "RoIPool", "roi_align": "RoIAlign"}
OP_CHOICES = {"RoIAlign": ("roi_align",), "RoIPool": ("roi_pool",), "Both side by side": ("roi_pool", "roi_align")}
MOSAIC_TILE = 48  # channel tiles are shown at most this many pixels wide
LIVE_INTERVAL_MS = 0  # coalesce queued drag events, then update at once (latest geometry wins)


class _ExportSignals(QtCore.QObject):
    done = QtCore.Signal(object, str)  # summary, error message ("" when fine)


class _ExportTask(QtCore.QRunnable):
    def __init__(self, jobs, options, root):
        super().__init__()
        self.jobs, self.options, self.root = jobs, options, root
        self.signals = _ExportSignals()

    def run(self):
        try:
            self.signals.done.emit(export(self.jobs, self.options, self.root), "")
        except Exception as exc:  # shown in the banner; the window goes on
            self.signals.done.emit(None, str(exc))


class MainWindow(QtWidgets.QMainWindow):
    pooled_updated = QtCore.Signal()
    export_finished = QtCore.Signal()

    def __init__(self):
        super().__init__()
        self.project = Project()
        self.undo_stack = QtGui.QUndoStack(self)
        self.extractors = ExtractorRegistry()
        self.service = FeatureService(self.extractors, self)
        self.rgb = None
        self.features = None  # roi_core Features of the current image
        self.channel = 0
        self.pooled = {}  # op -> (K, ph, pw, C) for the current boxes, in doc order
        self.live = {}  # box id -> corners while a box is being dragged
        self.last_update_ms = 0.0
        self.last_error = None
        self._build_ui()
        self._build_actions()
        self._connect()
        self._update_title()
        self.resize(1400, 860)

    # ------------------------------------------------------------------ UI
    def _build_ui(self):
        self.canvas = Canvas()
        # Errors appear in a banner above the canvas: visible, but never stealing keyboard focus.
        self.banner = QtWidgets.QFrame()
        self.banner.setStyleSheet("QFrame { background: #7a2323; } QLabel { color: white; }")
        self.banner_text = QtWidgets.QLabel()
        self.banner_text.setWordWrap(True)
        self.banner_text.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner_action = QtWidgets.QToolButton()
        self.banner_action.clicked.connect(self._banner_action_clicked)
        self.banner_action.hide()
        self._banner_action = self._banner_dismiss = None
        close = QtWidgets.QToolButton()
        close.setText("Dismiss")
        close.clicked.connect(self._banner_dismissed)
        bl = QtWidgets.QHBoxLayout(self.banner)
        bl.setContentsMargins(8, 4, 8, 4)
        bl.addWidget(self.banner_text, 1)
        bl.addWidget(self.banner_action)
        bl.addWidget(close)
        self.banner.hide()
        centre = QtWidgets.QWidget()
        cl = QtWidgets.QVBoxLayout(centre)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(0)
        cl.addWidget(self.banner)
        cl.addWidget(self.canvas, 1)
        self.setCentralWidget(centre)

        self.image_list = QtWidgets.QListWidget()
        left = QtWidgets.QDockWidget("Images", self)
        left.setObjectName("images")
        left.setWidget(self.image_list)
        left.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, left)

        self.pool_panel = ImagePanel("RoIPool")
        self.align_panel = ImagePanel("RoIAlign")
        pooled_row = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(pooled_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.pool_panel, 1)  # equal halves when both ops are shown
        row.addWidget(self.align_panel, 1)
        self.value_label = QtWidgets.QLabel("Select a box to see its pooled grid.")
        self.label_edit = QtWidgets.QLineEdit()
        self.label_edit.setPlaceholderText("label of the selected box")
        pooled_box = QtWidgets.QWidget()
        pv = QtWidgets.QVBoxLayout(pooled_box)
        pv.setContentsMargins(2, 2, 2, 2)
        pv.addWidget(pooled_row, 1)
        form = QtWidgets.QHBoxLayout()
        form.addWidget(QtWidgets.QLabel("Label:"))
        form.addWidget(self.label_edit, 1)
        pv.addLayout(form)
        pv.addWidget(self.value_label)

        self.gallery = ImagePanel("Gallery: every region (click to select)")
        self.mosaic = ImagePanel("Feature maps (click a channel)")
        self.channel_panel = ImagePanel("Channel")
        maps = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        maps.addWidget(self.mosaic)
        maps.addWidget(self.channel_panel)

        self.table = QtWidgets.QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["id", "label", "x1", "y1", "x2", "y2"])
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)

        tabs = QtWidgets.QTabWidget()
        tabs.addTab(self.gallery, "Gallery")
        tabs.addTab(self.table, "Regions")
        right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        right.addWidget(pooled_box)
        right.addWidget(tabs)
        right.addWidget(maps)
        right.setSizes([300, 220, 300])
        dock = QtWidgets.QDockWidget("Inspection", self)
        dock.setObjectName("inspection")
        dock.setWidget(right)
        dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.resizeDocks([left, dock], [170, 520], QtCore.Qt.Orientation.Horizontal)

        # Settings toolbar
        self.extractor_combo = QtWidgets.QComboBox()
        self.extractor_combo.addItems(self.extractors.names())
        self.layer_combo = QtWidgets.QComboBox()
        self.op_combo = QtWidgets.QComboBox()
        self.op_combo.addItems(list(OP_CHOICES))
        self.size_spin = QtWidgets.QSpinBox()
        self.size_spin.setRange(1, 32)
        self.size_spin.setValue(7)
        self.size_spin.setPrefix("output ")
        self.ratio_spin = QtWidgets.QSpinBox()
        self.ratio_spin.setRange(-1, 16)
        self.ratio_spin.setValue(-1)
        self.ratio_spin.setSpecialValueText("adaptive")
        self.ratio_spin.setPrefix("samples ")
        self.norm_combo = QtWidgets.QComboBox()
        self.norm_combo.addItems(["per-channel", "global"])
        self.cmap_combo = QtWidgets.QComboBox()
        self.cmap_combo.addItems(["viridis", "inferno", "magma", "plasma", "CET-L1"])
        settings = QtWidgets.QToolBar("Settings")
        settings.setObjectName("settings")
        for text, w in (("Extractor", self.extractor_combo), ("Layer", self.layer_combo), ("Op", self.op_combo)):
            settings.addWidget(QtWidgets.QLabel(f" {text} "))
            settings.addWidget(w)
        settings.addWidget(self.size_spin)
        settings.addWidget(self.ratio_spin)
        settings.addWidget(QtWidgets.QLabel(" Maps "))
        settings.addWidget(self.norm_combo)
        settings.addWidget(self.cmap_combo)
        self.settings_bar = settings
        self._fill_layers()

        # Status bar
        self.status_image = QtWidgets.QLabel()
        self.status_cursor = QtWidgets.QLabel()
        self.status_time = QtWidgets.QLabel()
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(120)
        self.progress.setVisible(False)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        sb = self.statusBar()
        sb.addWidget(self.status_image)
        sb.addWidget(self.status_cursor, 1)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.cancel_button)
        sb.addPermanentWidget(self.status_time)

        self.live_timer = QtCore.QTimer(self)
        self.live_timer.setSingleShot(True)
        self.live_timer.setInterval(LIVE_INTERVAL_MS)
        self.autosave_timer = QtCore.QTimer(self)
        self.autosave_timer.setSingleShot(True)
        self.autosave_timer.setInterval(800)

    def _build_actions(self):
        style = self.style()
        sp = QtWidgets.QStyle.StandardPixmap

        def action(text, shortcut, slot, icon=None, checkable=False):
            a = QtGui.QAction(text, self)
            if shortcut:
                a.setShortcut(QtGui.QKeySequence(shortcut))
            if icon is not None:
                a.setIcon(style.standardIcon(icon))
            a.setCheckable(checkable)
            (a.toggled if checkable else a.triggered).connect(slot)
            self.addAction(a)
            return a

        self.act_open = action("&Open image...", "Ctrl+O", self.open_image_dialog, sp.SP_DialogOpenButton)
        self.act_open_dir = action("Open &folder...", "Ctrl+U", self.open_folder_dialog, sp.SP_DirOpenIcon)
        self.act_save = action("&Save boxes", "Ctrl+S", self.save_current, sp.SP_DialogSaveButton)
        self.act_next = action("Next image", "D", lambda: self.step(1), sp.SP_ArrowForward)
        self.act_prev = action("Previous image", "A", lambda: self.step(-1), sp.SP_ArrowBack)
        self.act_draw = action("Draw box (W)", "W", self.canvas.set_draw_mode, sp.SP_FileDialogNewFolder, checkable=True)
        self.act_delete = action("Delete box", QtGui.QKeySequence.StandardKey.Delete, self.delete_selected, sp.SP_TrashIcon)
        self.act_dup = action("Duplicate box", "Ctrl+D", self.duplicate_selected, sp.SP_FileDialogContentsView)
        self.act_undo = self.undo_stack.createUndoAction(self, "Undo")
        self.act_undo.setShortcut(QtGui.QKeySequence("Ctrl+Z"))
        self.act_undo.setIcon(style.standardIcon(sp.SP_ArrowBack))
        self.act_redo = self.undo_stack.createRedoAction(self, "Redo")
        self.act_redo.setShortcuts([QtGui.QKeySequence("Ctrl+Shift+Z"), QtGui.QKeySequence("Ctrl+Y")])
        self.act_redo.setIcon(style.standardIcon(sp.SP_ArrowForward))
        self.addActions([self.act_undo, self.act_redo])
        self.act_fit = action("Fit view", "F", self.canvas.fit, sp.SP_TitleBarMaxButton)
        self.act_quit = action("&Quit", "Ctrl+Q", self.close)

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addActions([self.act_open, self.act_open_dir, self.act_save])
        file_menu.addSeparator()
        self.act_import = action("&Import annotations...", "Ctrl+I", self.import_annotations_dialog)
        self.act_export_ann = action("Export &annotations as...", None, self.export_annotations_dialog)
        self.act_export = action("&Export regions and embeddings...", "Ctrl+E", self.export_regions_dialog)
        self.act_model = action("Load &Keras model as extractor...", None, self.load_model_dialog)
        file_menu.addActions([self.act_import, self.act_export_ann, self.act_export, self.act_model])
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)
        edit = menu.addMenu("&Edit")
        edit.addActions([self.act_undo, self.act_redo, self.act_draw, self.act_dup, self.act_delete])
        view = menu.addMenu("&View")
        view.addActions([self.act_fit, self.act_next, self.act_prev])

        tools = QtWidgets.QToolBar("Tools")
        tools.setObjectName("tools")
        tools.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tools.addActions([self.act_open, self.act_open_dir, self.act_save])
        tools.addSeparator()
        tools.addActions([self.act_prev, self.act_next])
        tools.addSeparator()
        tools.addActions([self.act_draw, self.act_dup, self.act_delete, self.act_undo, self.act_redo, self.act_fit])
        self.addToolBar(tools)
        self.addToolBarBreak()
        self.addToolBar(self.settings_bar)

    def _connect(self):
        self.canvas.box_drawn.connect(self._on_box_drawn)
        self.canvas.box_moving.connect(self._on_box_moving)
        self.canvas.box_moved.connect(self._on_box_moved)
        self.canvas.box_selected.connect(self._on_selected)
        self.canvas.box_activated.connect(self._relabel_dialog)
        self.canvas.cursor_moved.connect(self._on_cursor)
        self.image_list.currentRowChanged.connect(self._on_row_changed)
        self.service.image_ready.connect(self._on_image_ready)
        self.service.features_ready.connect(self._on_features_ready)
        self.service.failed.connect(self._on_load_failed)
        self.service.busy_changed.connect(self._on_busy)
        self.cancel_button.clicked.connect(self.service.cancel)
        self.live_timer.timeout.connect(self._apply_live)
        self.autosave_timer.timeout.connect(self._autosave)
        self.extractor_combo.currentTextChanged.connect(self._on_extractor_changed)
        self.layer_combo.currentTextChanged.connect(lambda _: self._request_features())
        for w in (self.op_combo,):
            w.currentTextChanged.connect(lambda _: self.refresh_pooled())
        for w in (self.size_spin, self.ratio_spin):
            w.valueChanged.connect(lambda _: self.refresh_pooled())
        self.norm_combo.currentTextChanged.connect(lambda _: self._show_mosaic())
        self.cmap_combo.currentTextChanged.connect(self._on_colormap)
        self.mosaic.clicked.connect(self._on_mosaic_clicked)
        self.gallery.clicked.connect(self._on_gallery_clicked)
        self.pool_panel.hovered.connect(lambda r, c: self._on_pooled_hover("roi_pool", r, c))
        self.align_panel.hovered.connect(lambda r, c: self._on_pooled_hover("roi_align", r, c))
        self.label_edit.editingFinished.connect(self._on_label_edited)
        self.table.cellClicked.connect(lambda row, _: self._select_row(row))

    # ------------------------------------------------------------------ opening
    def open_paths(self, paths):
        images = self.project.open(paths)
        self.undo_stack.clear()
        self.image_list.blockSignals(True)
        self.image_list.clear()
        for doc in images:
            doc.load()
            self.image_list.addItem(self._list_text(doc))
        self.image_list.blockSignals(False)
        if not images:
            self.show_error(f"No images found in: {', '.join(map(str, paths))}")
            return
        self.image_list.blockSignals(True)
        self.image_list.setCurrentRow(0)
        self.image_list.blockSignals(False)
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
        self._autosave()
        self.project.current = row
        self._show_current()

    def _show_current(self):
        doc = self.project.doc()
        self.banner.hide()  # errors belong to the image they were about
        self.rgb, self.features, self.pooled, self.live = None, None, {}, {}
        self.canvas.set_image(None)
        self.canvas.selected = -1
        self.canvas.set_boxes(doc.boxes if doc else [])
        if doc is not None and doc.boxes:
            self.canvas.select(doc.boxes[0].id)  # show a pooled grid straight away
            self.label_edit.setText(doc.boxes[0].label)
            self.value_label.setText("Hover the pooled grid to read bin values.")
        self._update_title()
        self._refresh_table()
        if doc is None:
            return
        if doc.load_error:
            self.show_error(f"The annotation file could not be read, so no boxes were loaded:\n{doc.load_error}")
        self._request_features(want_image=True)

    def _request_features(self, want_image=False):
        doc = self.project.doc()
        layer = self.layer_combo.currentText()
        if doc is None or not layer:
            return
        warm = [self.settings_for(op) for op in OPS]  # both: switching the op must not stall either
        counts = sorted({1, len(doc.boxes), len(doc.boxes) + 1} - {0})  # a drag, all boxes, one more
        self.service.request(doc.path, self.extractor_combo.currentText(), layer,
                             want_image=want_image or self.rgb is None, warm=warm, counts=counts)

    def _on_image_ready(self, path, images):
        doc = self.project.doc()
        if doc is None or str(doc.path) != path:
            return
        rgb, display = images
        self.rgb = rgb
        self.canvas.set_image(display, size=(rgb.shape[1], rgb.shape[0]))
        h, w = rgb.shape[:2]
        self.status_image.setText(f"image {w}x{h}")

    def _on_features_ready(self, key, feats):
        doc = self.project.doc()
        if doc is None or key != (str(doc.path), self.extractor_combo.currentText(), self.layer_combo.currentText()):
            return
        self.features = feats
        self.channel = min(self.channel, feats.features.shape[-1] - 1)
        self._show_mosaic()
        self.refresh_pooled()

    def _on_load_failed(self, path, message):
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
        self.extractors.add(ext)
        if self.extractor_combo.findText(ext.name) < 0:
            self.extractor_combo.addItem(ext.name)
        self.extractor_combo.setCurrentText(ext.name)
        return ext

    def _on_extractor_changed(self, _):
        self._fill_layers()
        self._request_features()

    def _fill_layers(self):
        name = self.extractor_combo.currentText()
        try:
            ext = self.extractors.get(name)  # models are built once
            layers, default = ext.layers(), ext.default_layer
        except Exception as exc:  # e.g. ImageNet weights unavailable offline
            self.show_error(str(exc))
            layers, default = [], None
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(layers)
        if default:
            self.layer_combo.setCurrentText(default)
        self.layer_combo.blockSignals(False)

    # ------------------------------------------------------------------ edits
    def _doc_changed(self, doc):
        doc.dirty = True
        if doc is self.project.doc():
            self.canvas.set_boxes(doc.boxes)
            self.refresh_pooled()
            self._refresh_table()
        self._refresh_list_item(doc)
        self._write_journal()
        self.autosave_timer.start()

    def _on_box_drawn(self, x1, y1, x2, y2):
        doc = self.project.doc()
        if doc is None:
            return
        label = self.label_edit.text().strip() or "object"
        box = Box.from_corners(x1, y1, x2, y2, label=label)
        cmd = commands.add_boxes(doc, [box], self._doc_changed)
        self.undo_stack.push(cmd)
        self.canvas.select(doc.boxes[-1].id, emit=True)

    def _on_box_moving(self, box_id, x1, y1, x2, y2):
        self.live[box_id] = (x1, y1, x2, y2)
        if not self.live_timer.isActive():
            self.live_timer.start()

    def _on_box_moved(self, box_id, old, new):
        doc = self.project.doc()
        box = doc.box_by_id(box_id) if doc else None
        self.live.pop(box_id, None)
        if box is None:
            return
        self.undo_stack.push(commands.replace_box(doc, box.moved_to(*old), box.moved_to(*new), self._doc_changed))

    def delete_selected(self):
        doc = self.project.doc()
        if doc is not None and doc.box_by_id(self.canvas.selected) is not None:
            self.undo_stack.push(commands.remove_box(doc, self.canvas.selected, self._doc_changed))

    def duplicate_selected(self):
        doc = self.project.doc()
        box = doc.box_by_id(self.canvas.selected) if doc else None
        if box is None:
            return
        offset = max(4.0, 0.05 * max(box.width, box.height))
        copy = Box.from_corners(box.x1 + offset, box.y1 + offset, box.x2 + offset, box.y2 + offset, box.label)
        self.undo_stack.push(commands.add_boxes(doc, [copy], self._doc_changed, "Duplicate box"))
        self.canvas.select(doc.boxes[-1].id, emit=True)

    def relabel(self, box_id, label):
        doc = self.project.doc()
        box = doc.box_by_id(box_id) if doc else None
        if box is None or box.label == label:
            return
        self.undo_stack.push(commands.replace_box(doc, box, box.relabeled(label), self._doc_changed, "Relabel box"))

    def _on_label_edited(self):
        text = self.label_edit.text().strip()
        if text and self.canvas.selected >= 0:
            self.relabel(self.canvas.selected, text)

    def _relabel_dialog(self, box_id):
        doc = self.project.doc()
        box = doc.box_by_id(box_id) if doc else None
        if box is None:
            return
        text, ok = QtWidgets.QInputDialog.getText(self, "Relabel", "Label:", text=box.label)
        if ok and text.strip():
            self.relabel(box_id, text.strip())

    # ------------------------------------------------------------------ saving
    def save_current(self):
        doc = self.project.doc()
        if doc is None:
            return True
        size = (self.rgb.shape[1], self.rgb.shape[0]) if self.rgb is not None else None
        try:
            doc.save(size)
        except (OSError, ValueError) as exc:
            self.show_error(f"Could not save {doc.sidecar.name}; your boxes are kept in memory.\n{exc}")
            return False
        self._refresh_list_item(doc)
        self.statusBar().showMessage(f"Saved {doc.sidecar.name}", 3000)
        return True

    def _autosave(self):
        for doc in self.project.images:
            if doc.dirty and not doc.load_error:
                try:
                    doc.save()
                except OSError as exc:
                    self.show_error(f"Autosave failed for {doc.sidecar.name}; your boxes are kept in memory "
                                    f"and in the recovery journal.\n{exc}")
                    break
                self._refresh_list_item(doc)
        self._write_journal()

    def _write_journal(self):
        try:
            recovery.write(self.project.opened, self.project.images)
        except OSError:
            pass  # the journal is a safety net; failing to write it must not stop editing

    def offer_recovery(self):
        """Called at start: if a previous session died with unsaved boxes, offer them back."""
        found = recovery.read()
        if not found:
            return False
        opened, docs = found
        names = ", ".join(Path(p).name for p in list(docs)[:3])
        self.show_error(f"RoIScope closed with unsaved boxes on {len(docs)} image(s) ({names}).",
                        action=("Recover", lambda: self.recover(opened, docs)), dismiss=recovery.clear)
        return True

    def recover(self, opened, docs):
        self.open_paths(opened)
        for path, boxes in docs.items():
            doc = self.project.doc_for(path)
            if doc is None:
                continue
            self.undo_stack.beginMacro(f"Recover {doc.path.name}")
            for b in list(doc.boxes):
                self.undo_stack.push(commands.remove_box(doc, b.id, self._doc_changed))
            self.undo_stack.push(commands.add_boxes(doc, boxes, self._doc_changed, "Recover boxes"))
            self.undo_stack.endMacro()
        self.banner.hide()

    def closeEvent(self, event):
        self._autosave()  # clears the recovery journal when everything is saved
        self.service.cancel()
        super().closeEvent(event)

    # ------------------------------------------------------------------ pooling and views
    def settings_for(self, op):
        size = self.size_spin.value()
        return PoolSettings(op=op, output_size=(size, size), sampling_ratio=self.ratio_spin.value())

    def ops(self):
        return OP_CHOICES[self.op_combo.currentText()]

    def current_boxes(self):
        doc = self.project.doc()
        return [] if doc is None else doc.boxes

    def refresh_pooled(self):
        """Pool every box of the current image (one batched call per op) and redraw."""
        started = time.perf_counter()
        self.pooled = {}
        boxes = self.current_boxes()
        if self.features is not None and boxes:
            corners = np.array([self.live.get(b.id, b.corners()) for b in boxes], np.float32)
            for op in self.ops():
                self.pooled[op] = pool_boxes(self.features, corners, self.settings_for(op))
        self._redraw_pooled(started)

    def _apply_live(self):
        """Throttled drag update: re-pool only the boxes being dragged (latest geometry wins)."""
        if not self.live or self.features is None or not self.pooled:
            return
        started = time.perf_counter()
        boxes = self.current_boxes()
        index = {b.id: i for i, b in enumerate(boxes)}
        ids = [bid for bid in self.live if bid in index]
        if not ids:
            return
        corners = np.array([self.live[bid] for bid in ids], np.float32)
        for op in self.ops():
            if op in self.pooled and len(self.pooled[op]) == len(boxes):
                fresh = pool_boxes(self.features, corners, self.settings_for(op))
                for j, bid in enumerate(ids):
                    self.pooled[op][index[bid]] = fresh[j]
        self._redraw_pooled(started)

    def _redraw_pooled(self, started):
        boxes = self.current_boxes()
        ops = self.ops()
        self.pool_panel.setVisible("roi_pool" in ops)
        self.align_panel.setVisible("roi_align" in ops)
        sel = self._selected_index()
        for op, panel in (("roi_pool", self.pool_panel), ("roi_align", self.align_panel)):
            if op not in self.pooled or sel is None:
                panel.image.clear()
                panel.set_title(f"{OP_LABELS[op]}: select a box")
                continue
            grid = self.pooled[op][sel, :, :, self.channel]
            panel.show_array(grid)
            ph, pw = grid.shape
            panel.set_title(f"{OP_LABELS[op]} {ph}x{pw}, box {boxes[sel].id}, ch {self.channel}")
        self._show_gallery()
        self._show_grid_overlay()
        self._outline_channel_box()
        self.last_update_ms = (time.perf_counter() - started) * 1000
        self.status_time.setText(f"update {self.last_update_ms:.1f} ms")
        self.pooled_updated.emit()

    def _show_gallery(self):
        op = self.ops()[-1]
        if op not in self.pooled or len(self.pooled[op]) == 0:
            self.gallery.image.clear()
            self.gallery.set_title("Gallery: no regions yet (press W and drag on the image)")
            self._gallery_columns = 1
            return
        tiles = self.pooled[op][:, :, :, self.channel]
        lo, hi = float(tiles.min()), float(tiles.max())
        mosaic, self._gallery_columns = tile([normalize(t, lo, hi) for t in tiles], gap=1)
        self.gallery.show_array(mosaic, levels=(0, 1))
        self.gallery.set_title(f"Gallery: {len(tiles)} regions, {self._channel_name()} (click to select)")
        sel = self._selected_index()
        if sel is not None:
            ph, pw = tiles.shape[1:]
            r, c = divmod(sel, self._gallery_columns)
            self.gallery.set_outline((c * (pw + 1) - 0.5, r * (ph + 1) - 0.5, pw + 1, ph + 1))
        else:
            self.gallery.set_outline(None)

    def _show_mosaic(self):
        if self.features is None:
            self.mosaic.image.clear()
            return
        f = self.features.features[0]
        h, w, c = f.shape
        step = max(1, int(np.ceil(max(h, w) / MOSAIC_TILE)))
        small = f[::step, ::step]
        if self.norm_combo.currentText() == "global":
            lo, hi = float(small.min()), float(small.max())
            chans = [normalize(small[:, :, i], lo, hi) for i in range(c)]
        else:
            chans = [normalize(small[:, :, i]) for i in range(c)]
        mosaic, self._mosaic_columns = tile(chans, gap=1)
        self._mosaic_tile = small.shape[:2]
        self.mosaic.show_array(mosaic, levels=(0, 1))
        self.mosaic.set_title(f"{c} channels, {w}x{h} (click one)")
        self._outline_mosaic_channel()
        self._show_channel()
        self._update_status()

    def _outline_mosaic_channel(self):
        if self.features is None:
            return
        th, tw = self._mosaic_tile
        r, c = divmod(self.channel, self._mosaic_columns)
        self.mosaic.set_outline((c * (tw + 1) - 0.5, r * (th + 1) - 0.5, tw + 1, th + 1))

    def _show_channel(self):
        if self.features is None:
            self.channel_panel.image.clear()
            return
        chan = self.features.features[0, :, :, self.channel]
        if self.norm_combo.currentText() == "global":
            f = self.features.features
            self.channel_panel.show_array(chan, levels=(float(f.min()), float(f.max()) + 1e-9))
        else:
            self.channel_panel.show_array(chan)
        self.channel_panel.set_title(self._channel_name())
        self._outline_channel_box()

    def _outline_channel_box(self):
        """Only the outline follows a drag; the channel image is redrawn when it changes."""
        sel = self._selected_index()
        if sel is None or self.features is None:
            self.channel_panel.set_outline(None)
            return
        box = self.current_boxes()[sel]
        x1, y1, x2, y2 = self.live.get(box.id, box.corners())
        s = self.features.spatial_scale
        self.channel_panel.set_outline((x1 * s, y1 * s, (x2 - x1) * s, (y2 - y1) * s))

    def _show_grid_overlay(self):
        sel = self._selected_index()
        if sel is None or self.features is None:
            self.canvas.set_grid(None, None)
            return
        box = self.current_boxes()[sel]
        corners = self.live.get(box.id, box.corners())
        scale = self.features.spatial_scale
        stride = 1.0 / scale
        size = self.size_spin.value()
        lines = points = None
        if "roi_pool" in self.ops():
            h, w = self.features.features.shape[1:3]
            lines = pool_cell_lines(roi_pool_cells(corners, scale, size, (h, w)), stride)
        if "roi_align" in self.ops():
            samples = roi_align_samples(corners, scale, size, self.ratio_spin.value(), aligned=True)
            points = align_sample_points(samples, stride)
        self.canvas.set_grid(lines, points)

    def _channel_name(self):
        if self.features is None:
            return ""
        names = self.features.channel_names
        return f"channel {self.channel}" + (f" ({names[self.channel]})" if self.channel < len(names) else "")

    def set_channel(self, channel):
        if self.features is None:
            return
        self.channel = int(np.clip(channel, 0, self.features.features.shape[-1] - 1))
        self._outline_mosaic_channel()
        self._show_channel()
        self._redraw_pooled(time.perf_counter())

    def _on_mosaic_clicked(self, r, c):
        if self.features is None:
            return
        th, tw = self._mosaic_tile
        row, col = r // (th + 1), c // (tw + 1)
        idx = row * self._mosaic_columns + col
        if idx < self.features.features.shape[-1]:
            self.set_channel(idx)

    def _on_gallery_clicked(self, r, c):
        op = self.ops()[-1]
        if op not in self.pooled:
            return
        ph, pw = self.pooled[op].shape[1:3]
        idx = (r // (ph + 1)) * self._gallery_columns + c // (pw + 1)
        boxes = self.current_boxes()
        if idx < len(boxes):
            self.canvas.select(boxes[idx].id, emit=True)

    def _on_selected(self, box_id):
        doc = self.project.doc()
        box = doc.box_by_id(box_id) if doc else None
        self.label_edit.setText(box.label if box else "")
        self.value_label.setText("Hover the pooled grid to read bin values." if box else "Select a box to see its pooled grid.")
        self._select_table_row(box_id)
        self._redraw_pooled(time.perf_counter())

    def _selected_index(self):
        for i, b in enumerate(self.current_boxes()):
            if b.id == self.canvas.selected:
                return i
        return None

    def _on_pooled_hover(self, op, r, c):
        sel = self._selected_index()
        if op in self.pooled and sel is not None:
            v = self.pooled[op][sel, r, c, self.channel]
            self.value_label.setText(f"{OP_LABELS[op]} bin ({r}, {c}) = {v:.5g}")

    def _on_cursor(self, x, y):
        parts = [f"x {x:.1f}, y {y:.1f}"]
        if self.rgb is not None:
            h, w = self.rgb.shape[:2]
            if 0 <= x < w and 0 <= y < h:
                parts.append("RGB " + ",".join(str(int(v)) for v in self.rgb[int(y), int(x)]))
        if self.features is not None:
            s = self.features.spatial_scale
            fh, fw = self.features.features.shape[1:3]
            fx, fy = int(x * s), int(y * s)
            if 0 <= fx < fw and 0 <= fy < fh:
                parts.append(f"feature ({fy}, {fx}) = {self.features.features[0, fy, fx, self.channel]:.4g}")
        self.status_cursor.setText("   ".join(parts))

    def _update_status(self):
        parts = []
        if self.rgb is not None:
            parts.append(f"image {self.rgb.shape[1]}x{self.rgb.shape[0]}")
        if self.features is not None:
            _, fh, fw, c = self.features.features.shape
            parts.append(f"features {fw}x{fh}x{c}")
            parts.append(f"stride {self.features.stride:.3g} (scale {self.features.spatial_scale:.4g})")
        self.status_image.setText("   ".join(parts))

    def _on_colormap(self, name):
        for panel in (self.pool_panel, self.align_panel, self.gallery, self.mosaic, self.channel_panel):
            panel.set_colormap(name)

    # ------------------------------------------------------------------ lists
    def _list_text(self, doc):
        mark = "*" if doc.dirty else ""
        warn = " (!)" if doc.load_error else ""
        return f"{doc.path.name}{mark}  [{len(doc.boxes)}]{warn}"

    def _refresh_list_item(self, doc):
        try:
            row = self.project.images.index(doc)
        except ValueError:
            return
        item = self.image_list.item(row)
        if item is not None:
            item.setText(self._list_text(doc))

    def _refresh_table(self):
        boxes = self.current_boxes()
        self.table.setRowCount(len(boxes))
        for i, b in enumerate(boxes):
            for j, v in enumerate((b.id, b.label, f"{b.x1:.1f}", f"{b.y1:.1f}", f"{b.x2:.1f}", f"{b.y2:.1f}")):
                self.table.setItem(i, j, QtWidgets.QTableWidgetItem(str(v)))
        self._select_table_row(self.canvas.selected)

    def _select_table_row(self, box_id):
        self.table.blockSignals(True)
        self.table.clearSelection()
        for i, b in enumerate(self.current_boxes()):
            if b.id == box_id:
                self.table.selectRow(i)
        self.table.blockSignals(False)

    def _select_row(self, row):
        boxes = self.current_boxes()
        if 0 <= row < len(boxes):
            self.canvas.select(boxes[row].id, emit=True)

    def _update_title(self):
        doc = self.project.doc()
        self.setWindowTitle(f"RoIScope - {doc.path.name}" if doc else "RoIScope")

    def show_error(self, message, action=None, dismiss=None):
        """Non-blocking message in the banner; the window stays usable. ``action``: optional
        (button text, callback); ``dismiss``: called when the user dismisses the banner."""
        self.last_error = message
        self.banner_text.setText(message)
        self.banner_action.setVisible(action is not None)
        self._banner_action = action[1] if action else None
        self._banner_dismiss = dismiss
        if action:
            self.banner_action.setText(action[0])
        self.banner.show()

    def _banner_action_clicked(self):
        callback, self._banner_action = self._banner_action, None
        self.banner.hide()
        if callback:
            callback()

    def _banner_dismissed(self):
        callback, self._banner_dismiss = self._banner_dismiss, None
        self.banner.hide()
        if callback:
            callback()

    # ------------------------------------------------------------------ import / export
    def import_annotations_dialog(self):
        if not self.project.images:
            self.show_error("Open images first, then import their annotations.")
            return
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Import annotations", str(self.project.root or ""),
            "Annotations (*.json *.xml *.txt *.csv);;All files (*)")
        if path:
            self.import_annotations(path)

    def import_annotations(self, path):
        """Add the boxes a file (or folder) holds for the open images: one undo step. A malformed
        file contributes nothing and is named in the banner."""
        result = read_annotations(path, [d.path for d in self.project.images], self.project.root)
        docs = [(self.project.doc_for(img), boxes) for img, boxes in result.boxes.items() if boxes]
        docs = [(d, b) for d, b in docs if d is not None]
        if docs:
            self.undo_stack.beginMacro(f"Import {Path(path).name}")
            for doc, boxes in docs:
                self.undo_stack.push(commands.add_boxes(doc, boxes, self._doc_changed, "Import boxes"))
            self.undo_stack.endMacro()
        count = sum(len(b) for _, b in docs)
        self.statusBar().showMessage(f"Imported {count} boxes for {len(docs)} image(s) from {Path(path).name}", 5000)
        if result.errors:
            self.show_error("Some annotations were not imported:\n" + "\n".join(result.errors))
        return count

    def export_annotations_dialog(self):
        fmt, ok = QtWidgets.QInputDialog.getItem(self, "Export annotations", "Format:", list(FORMATS), 0, False)
        if not ok:
            return
        if fmt in ("coco", "csv"):
            target, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export annotations", "", f"*.{'json' if fmt == 'coco' else 'csv'}")
        else:
            target = QtWidgets.QFileDialog.getExistingDirectory(self, "Export annotations into folder")
        if not target:
            return
        try:
            self.export_annotations(fmt, target)
        except FileExistsError as exc:
            answer = QtWidgets.QMessageBox.question(self, "Replace files?", f"{exc}.\nReplace them?")
            if answer == QtWidgets.QMessageBox.StandardButton.Yes:
                self.export_annotations(fmt, target, overwrite=True)

    def export_annotations(self, fmt, target, overwrite=False):
        entries = [(d.path, d.boxes, None) for d in self.project.images]
        try:
            written = write_annotations(fmt, target, entries, self.project.root, overwrite=overwrite)
        except OSError as exc:
            if isinstance(exc, FileExistsError):
                raise
            self.show_error(f"Could not export annotations: {exc}")
            return []
        self.statusBar().showMessage(f"Wrote {len(written)} file(s) in {fmt} format", 5000)
        return written

    def export_regions_dialog(self):
        target = QtWidgets.QFileDialog.getExistingDirectory(self, "Export regions and embeddings into folder")
        if target:
            self.export_regions(target, crops=True)

    def export_regions(self, out_dir, crops=True, fmt="parquet"):
        """Run the same export as `roiscope export` with the current settings, off the GUI thread."""
        self._autosave()
        ops = self.ops()
        size = self.size_spin.value()
        options = ExportOptions(out_dir, fmt, crops, 0, self.extractor_combo.currentText(), self.layer_combo.currentText(),
                                ops[-1], (size, size), self.ratio_spin.value())
        jobs = [(d.path, list(d.boxes)) for d in self.project.images]
        task = _ExportTask(jobs, options, self.project.root)
        task.signals.done.connect(self._export_done)
        self.progress.setVisible(True)
        self.statusBar().showMessage(f"Exporting {len(jobs)} image(s) to {out_dir}...")
        self._export_task = task
        self.service.pool.start(task)

    def _export_done(self, summary, error):
        self.progress.setVisible(False)
        self.last_export = summary
        if error:
            self.show_error(f"Export failed: {error}")
        elif summary.failures:
            self.show_error(summary.text())
        else:
            self.statusBar().showMessage(summary.text().splitlines()[0], 8000)
        self.export_finished.emit()


def run_gui(paths) -> int:
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("RoIScope")
    window = MainWindow()
    window.show()
    if paths:
        window.open_paths(paths)
    window.offer_recovery()
    return app.exec()
