"""The region map's side lists: a strip of region crops (selection, similar regions) and the
label suspects table (a model over NumPy arrays: 100k rows without 100k items)."""
from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

KEY_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1
THUMB = 72


def rgb_pixmap(rgb) -> QtGui.QPixmap:
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    image = QtGui.QImage(rgb.data, w, h, 3 * w, QtGui.QImage.Format.Format_RGB888)
    return QtGui.QPixmap.fromImage(image.copy())  # copy: the QImage must not outlive the array


def short_name(path) -> str:
    return str(path).replace("\\", "/").rsplit("/", 1)[-1]


def hover_card(crops, table, i) -> QtGui.QPixmap:
    """The hover card of region ``i``: its crop (cut on demand, cached) over its label and image."""
    image, box_id = table.key(i)
    thumb = crops.crop(image, table.corners[i])
    lines = [str(table.labels[i]), f"{short_name(image)}  box {box_id}"] + ([] if thumb is not None else ["(image not reachable)"])
    font = QtGui.QFont()
    metrics = QtGui.QFontMetrics(font)
    crop_w, crop_h = (thumb.shape[1], thumb.shape[0]) if thumb is not None else (0, 0)
    pixmap = QtGui.QPixmap(max(max(metrics.horizontalAdvance(t) for t in lines), crop_w) + 4,
                           crop_h + metrics.height() * len(lines) + 6)
    pixmap.fill(QtGui.QColor(20, 20, 20))
    painter = QtGui.QPainter(pixmap)
    if thumb is not None:
        painter.drawPixmap(2, 2, rgb_pixmap(thumb))
    painter.setPen(QtGui.QColor("#eee"))
    painter.setFont(font)
    for n, text in enumerate(lines):
        painter.drawText(2, crop_h + 4 + metrics.ascent() + n * metrics.height(), text)
    painter.end()
    return pixmap


class CropStrip(QtWidgets.QListWidget):
    """Crops with captions; a click emits ``activated(image, box_id)``. Shows at most ``limit``
    crops (cut on demand), and says how many more there are."""

    activated = QtCore.Signal(object, int)  # image path as a Python str: any bytes

    def __init__(self, crops, limit=200, flow=QtWidgets.QListView.Flow.LeftToRight, wrap=True, parent=None):
        super().__init__(parent)
        self.crops, self.limit = crops, limit
        self.setViewMode(QtWidgets.QListView.ViewMode.IconMode)
        self.setFlow(flow)
        self.setWrapping(wrap)
        self.setResizeMode(QtWidgets.QListView.ResizeMode.Adjust)
        self.setMovement(QtWidgets.QListView.Movement.Static)
        self.setIconSize(QtCore.QSize(THUMB, THUMB))
        self.setGridSize(QtCore.QSize(THUMB + 24, THUMB + 34))
        self.setUniformItemSizes(True)
        self.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        self.itemClicked.connect(self._clicked)
        self._blank = QtGui.QPixmap(THUMB, THUMB)
        self._blank.fill(QtGui.QColor("#444"))

    def show_regions(self, table, indices, captions=None):
        self.clear()
        for n, i in enumerate(list(indices)[:self.limit]):
            image, box_id = table.key(i)
            thumb = self.crops.crop(image, table.corners[i])
            icon = QtGui.QIcon(rgb_pixmap(thumb) if thumb is not None else self._blank)
            caption = captions[n] if captions is not None else str(table.labels[i])
            item = QtWidgets.QListWidgetItem(icon, caption)
            item.setData(KEY_ROLE, (image, box_id))
            item.setToolTip(f"{table.labels[i]}\n{image}\nbox {box_id}" + ("" if thumb is not None else "\n(image not reachable)"))
            self.addItem(item)

    def _clicked(self, item):
        image, box_id = item.data(KEY_ROLE)
        self.activated.emit(image, box_id)


class SuspectsModel(QtCore.QAbstractTableModel):
    COLUMNS = ("Score", "Label", "Suggested", "Image", "Box")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.table = self.suspects = None
        self.rows = np.zeros(0, np.int64)  # region index shown in each row

    def set_suspects(self, table, suspects):
        self.beginResetModel()
        self.table, self.suspects = table, suspects
        self.rows = suspects.order.copy() if suspects is not None else np.zeros(0, np.int64)
        self.endResetModel()

    def rowCount(self, parent=QtCore.QModelIndex()):
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QtCore.QModelIndex()):
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section, orientation, role=QtCore.Qt.ItemDataRole.DisplayRole):
        if role == QtCore.Qt.ItemDataRole.DisplayRole and orientation == QtCore.Qt.Orientation.Horizontal:
            return self.COLUMNS[section]
        return None

    def data(self, index, role=QtCore.Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or role not in (QtCore.Qt.ItemDataRole.DisplayRole, QtCore.Qt.ItemDataRole.ToolTipRole):
            return None
        i, col = int(self.rows[index.row()]), index.column()
        if col == 0:
            return f"{float(self.suspects.score[i]):.2f}"
        if col == 1:
            return str(self.table.labels[i])
        if col == 2:
            return str(self.suspects.suggested[i])
        if col == 3:
            path = str(self.table.images[i])
            return path if role == QtCore.Qt.ItemDataRole.ToolTipRole else short_name(path)
        return str(int(self.table.box_ids[i]))

    def region(self, row) -> int:
        return int(self.rows[row])

    def sort(self, column, order=QtCore.Qt.SortOrder.AscendingOrder):
        if self.suspects is None:
            return
        keys = {0: self.suspects.score, 1: self.table.labels.astype(str), 2: self.suspects.suggested.astype(str),
                3: self.table.images.astype(str), 4: self.table.box_ids}[column]
        descending = order == QtCore.Qt.SortOrder.DescendingOrder
        if column == 0 and descending:
            rank = self.suspects.order  # the ranking itself (ties as ranked)
        else:
            rank = np.argsort(keys, kind="stable")
            rank = rank[::-1] if descending else rank
        self.layoutAboutToBeChanged.emit()
        self.rows = rank.astype(np.int64)
        self.layoutChanged.emit()


class SuspectsView(QtWidgets.QWidget):
    """The ranked suspects as a sortable table; clicking a row emits ``activated``."""

    activated = QtCore.Signal(object, int)  # image path as a Python str: any bytes
    find_requested = QtCore.Signal(int)  # k

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = SuspectsModel(self)
        self.view = QtWidgets.QTableView()
        self.view.setModel(self.model)
        self.view.setSortingEnabled(True)
        self.view.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(self.view.fontMetrics().height() + 6)
        self.view.horizontalHeader().setResizeContentsPrecision(200)  # sample rows: 100k stay cheap
        self.view.horizontalHeader().setStretchLastSection(True)
        self.view.clicked.connect(self._clicked)
        self.k = QtWidgets.QSpinBox(minimum=1, maximum=100, value=10, prefix="k = ")
        self.k.setToolTip("How many nearest regions vote on each region's label")
        self.find = QtWidgets.QPushButton("Find suspects")
        self.find.setToolTip("Rank regions whose nearest neighbours mostly carry another label")
        self.find.clicked.connect(lambda: self.find_requested.emit(self.k.value()))
        self.note = QtWidgets.QLabel("Not computed yet.")
        self.note.setWordWrap(True)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.k)
        top.addWidget(self.find)
        top.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.note)
        layout.addWidget(self.view, 1)

    def show_suspects(self, table, suspects):
        self.model.set_suspects(table, suspects)
        self.view.horizontalHeader().setSortIndicator(0, QtCore.Qt.SortOrder.DescendingOrder)
        self.view.resizeColumnsToContents()
        if suspects is None:
            self.note.setText("Not computed yet." if table is None else "Out of date after an edit: find again.")
        else:
            flagged = int((suspects.score > 0.5).sum())
            self.note.setText(f"{flagged} of {len(table)} regions have most of their {suspects.k} nearest "
                              "labelled otherwise. Click a row to jump to it.")

    def _clicked(self, index):
        i = self.model.region(index.row())
        self.activated.emit(*self.model.table.key(i))


class SelectionView(QtWidgets.QWidget):
    """The regions a lasso or rectangle selected, as crops, with Relabel... and Delete."""

    def __init__(self, crops, parent=None):
        super().__init__(parent)
        self.strip = CropStrip(crops)
        self.activated = self.strip.activated
        self.label = QtWidgets.QLabel("Drag a lasso (Ctrl+drag) or a rectangle (Shift+drag) on the map to select regions.")
        self.label.setWordWrap(True)
        self.relabel = QtWidgets.QPushButton("Relabel...", enabled=False, toolTip="Give every selected region one label (one undo step)")
        self.delete = QtWidgets.QPushButton("Delete", enabled=False, toolTip="Delete every selected box (one undo step)")
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.relabel)
        buttons.addWidget(self.delete)
        buttons.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.label)
        layout.addLayout(buttons)
        layout.addWidget(self.strip, 1)

    def show_selection(self, table, indices):
        n = len(indices)
        self.strip.show_regions(table, indices)
        labels = ", ".join(f"{name} {count}" for name, count in zip(*np.unique(table.labels[indices].astype(str), return_counts=True))) if n else ""
        more = f" (first {self.strip.limit} shown)" if n > self.strip.limit else ""
        self.label.setText(f"{n} region(s) selected{more}: {labels}" if n else "Nothing selected.")
        self.relabel.setEnabled(n > 0)
        self.delete.setEnabled(n > 0)


class SimilarView(QtWidgets.QWidget):
    """The k nearest regions (cosine on the pooled embedding) of the current one, with distances."""

    def __init__(self, crops, parent=None):
        super().__init__(parent)
        self.strip = CropStrip(crops, limit=100)
        self.activated = self.strip.activated
        self.k = QtWidgets.QSpinBox(minimum=1, maximum=100, value=12, prefix="k = ")
        self.label = QtWidgets.QLabel("Click a point (or select a box) to list its nearest regions.")
        self.label.setWordWrap(True)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.k)
        layout.addWidget(self.label)
        layout.addWidget(self.strip, 1)

    def show_similar(self, table, i, indices, distances):
        self.strip.show_regions(table, indices, [f"{table.labels[j]}\nd={d:.3f}" for j, d in zip(indices, distances)])
        self.label.setText(f"Nearest to {table.labels[i]} (box {table.box_ids[i]} of "
                           f"{short_name(table.images[i])}); d = cosine distance")
