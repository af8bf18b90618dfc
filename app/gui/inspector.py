"""The inspection panels on the right of the window, bound to ``app.inspection.Inspection``:
pooled grid(s) of the selected box with values on hover, the gallery (a tile per box), the
region table, and the feature-map mosaic with the enlarged channel. They only draw what the
model holds and forward clicks; the model decides."""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from app.gui.qt_util import qt_signals_blocked
from app.gui.views import ImagePanel
from app.inspection import OP_LABELS
from app.pooling import MULTI_SCALE

TABLE_COLUMNS = ["id", "label", "x1", "y1", "x2", "y2", "note"]


class InspectorPanels(QtWidgets.QSplitter):
    box_clicked = QtCore.Signal(int)  # gallery tile or table row: select this box id
    label_edited = QtCore.Signal(str)  # the Label field, for the selected box

    def __init__(self, inspection, parent=None):
        super().__init__(QtCore.Qt.Orientation.Vertical, parent)
        self.inspection = inspection
        self.gallery_layout = None  # the Mosaic on show, to map clicks back to boxes
        self.mosaic_layout = None
        self._build()
        events = inspection.events
        events.connect("pooled", self._on_pooled)
        events.connect("selection", self._on_selection)
        events.connect("features", self.show_maps)
        events.connect("channel", self._on_channel)
        events.connect("boxes", self.show_table)
        events.connect("settings", self._on_settings)

    def _build(self):
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
        self.label_edit.editingFinished.connect(self._label_finished)
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

        self.table = QtWidgets.QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(TABLE_COLUMNS)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.cellClicked.connect(self._table_clicked)

        self.tabs = QtWidgets.QTabWidget()
        self.tabs.addTab(self.gallery, "Gallery")
        self.tabs.addTab(self.table, "Regions")
        self.addWidget(pooled_box)
        self.addWidget(self.tabs)
        self.addWidget(maps)
        self.setSizes([300, 220, 300])

        self.gallery.clicked.connect(self._gallery_clicked)
        self.mosaic.clicked.connect(self._mosaic_clicked)
        self.pool_panel.hovered.connect(lambda r, c: self._hovered("roi_pool", r, c))
        self.align_panel.hovered.connect(lambda r, c: self._hovered("roi_align", r, c))

    def panels(self):
        return (self.pool_panel, self.align_panel, self.gallery, self.mosaic, self.channel_panel)

    # ------------------------------------------------------------------ model -> views
    def show_pooled(self):
        insp = self.inspection
        box = insp.selected_box()
        align_op = MULTI_SCALE if MULTI_SCALE in insp.ops else "roi_align"
        for op, panel in (("roi_pool", self.pool_panel), (align_op, self.align_panel)):
            panel.setVisible(op in insp.ops)
            grid = insp.grid(op)
            if grid is None:
                waiting = box is not None and insp.features is None
                panel.blank(f"{OP_LABELS[op]}: " + ("waiting for the feature maps" if waiting else "select a box"))
                continue
            if box.problem():
                panel.blank(f"{OP_LABELS[op]}: box {box.id} cannot be pooled")
                continue
            panel.show_array(grid)
            ph, pw = grid.shape
            level = insp.level_text(box)
            panel.set_title(f"{OP_LABELS[op]} {ph}x{pw}, box {box.id}, ch {insp.channel}" + (f", {level}" if level else ""))
        self.show_gallery()
        self.outline_channel_box()

    def show_gallery(self):
        insp = self.inspection
        self.gallery_layout = insp.gallery()
        if self.gallery_layout is None:
            waiting = insp.boxes and insp.features is None
            self.gallery.blank("Gallery: waiting for the feature maps" if waiting else "Gallery: no regions yet (press W and drag on the image)")
            return
        self.gallery.show_array(self.gallery_layout.image, levels=(0, 1))
        self.gallery.set_title(f"Gallery: {self.gallery_layout.count} regions, {insp.channel_name()} (click to select)")
        index = insp.selected_index()
        self.gallery.set_outline(None if index is None else self.gallery_layout.tile_rect(index))

    def show_maps(self):
        insp = self.inspection
        self.mosaic_layout = insp.feature_mosaic()
        if self.mosaic_layout is None:
            self.mosaic.blank("Feature maps")
            self.channel_panel.blank("Channel")
            return
        self.mosaic.show_array(self.mosaic_layout.image, levels=(0, 1))
        h, w, c = insp.maps.shape
        self.mosaic.set_title(f"{c} channels, {w}x{h} (click one)")
        self.mosaic.set_outline(self.mosaic_layout.tile_rect(insp.channel))
        self.show_channel()

    def show_channel(self):
        chan, levels = self.inspection.channel_image()
        if chan is None:
            self.channel_panel.blank("Channel")
            return
        self.channel_panel.show_array(chan, levels=levels)
        self.channel_panel.set_title(self.inspection.channel_name())
        self.outline_channel_box()

    def outline_channel_box(self):
        """Only the outline follows a drag; the channel image is redrawn when it changes."""
        self.channel_panel.set_outline(self.inspection.selected_on_features())

    def show_table(self):
        insp = self.inspection
        problems = insp.problems()
        self.table.setRowCount(len(insp.boxes))
        for i, b in enumerate(insp.boxes):
            derived = b.attr("derived_from")
            notes = [problems.get(b.id), insp.level_text(b), f"derived from a {derived}" if derived else ""]
            note = "; ".join(n for n in notes if n)
            values = (b.id, b.label, f"{b.x1:.1f}", f"{b.y1:.1f}", f"{b.x2:.1f}", f"{b.y2:.1f}", note)
            for j, v in enumerate(values):
                item = QtWidgets.QTableWidgetItem(str(v))
                if b.id in problems:
                    item.setForeground(QtGui.QColor(220, 60, 60))
                    item.setToolTip(problems[b.id])
                self.table.setItem(i, j, item)
        self._select_table_row()

    def _select_table_row(self):
        with qt_signals_blocked(self.table):
            self.table.clearSelection()
            index = self.inspection.selected_index()
            if index is not None:
                self.table.selectRow(index)

    def _on_pooled(self, live):
        self.show_pooled()
        if not live and self.inspection.pyramid is not None:
            self.show_table()  # each box's level follows the pooling

    def _on_selection(self):
        box = self.inspection.selected_box()
        with qt_signals_blocked(self.label_edit):
            self.label_edit.setText(box.label if box else "")
        self.value_label.setText("Hover the pooled grid to read bin values." if box else "Select a box to see its pooled grid.")
        self._select_table_row()
        self.show_pooled()

    def _on_channel(self):
        if self.mosaic_layout is not None:
            self.mosaic.set_outline(self.mosaic_layout.tile_rect(self.inspection.channel))
        self.show_channel()
        self.show_pooled()

    def _on_settings(self, changed):
        if "normalization" in changed:
            self.show_maps()
        if "colormap" in changed:
            for panel in self.panels():
                panel.set_colormap(self.inspection.settings.colormap)

    # ------------------------------------------------------------------ views -> model
    def _hovered(self, op, row, col):
        text = self.inspection.value_text(op, row, col)
        if text:
            self.value_label.setText(text)

    def _gallery_clicked(self, row, col):
        if self.gallery_layout is not None:
            box = self.inspection.box_at_gallery(self.gallery_layout, row, col)
            if box is not None:
                self.box_clicked.emit(box.id)

    def _mosaic_clicked(self, row, col):
        if self.mosaic_layout is not None:
            index = self.mosaic_layout.index_at(row, col)
            if index is not None:
                self.inspection.set_channel(index)

    def _table_clicked(self, row, _col):
        if 0 <= row < len(self.inspection.boxes):
            self.box_clicked.emit(self.inspection.boxes[row].id)

    def _label_finished(self):
        text = self.label_edit.text().strip()
        if text:
            self.label_edited.emit(text)
