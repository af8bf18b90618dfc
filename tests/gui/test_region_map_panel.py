"""The region map panel, standalone, driven by real mouse events on the plot's viewport."""
import cv2
import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from app.extraction import ExtractorRegistry, extract_features
from app.formats import labelme
from app.gui import commands
from app.gui.region_map_panel import RegionMapPanel
from app.images import read_image
from app.pooling import pool_boxes
from app.project import Box, Project
from app.regionmap.bulk import relabel_plan
from app.regionmap import compute as compute_mod
from app.regionmap.compute import MapSettings, folder_jobs
from app.regionmap.table import RegionTable

Ev = QtCore.QEvent.Type
LEFT = QtCore.Qt.MouseButton.LeftButton


def three_clusters(n_per=20, dim=16, seed=0):
    """Three well-separated clusters; images a.png/b.png, ids 1.. per image."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, dim, dtype=np.float32) * 10
    X = np.concatenate([c + rng.normal(0, 0.3, (n_per, dim)).astype(np.float32) for c in centres])
    n = len(X)
    images = [("a.png" if k % 2 == 0 else "b.png") for k in range(n)]
    ids = [k // 2 + 1 for k in range(n)]
    labels = ["cat"] * n_per + ["dog"] * n_per + ["cow"] * n_per
    return RegionTable(images, ids, labels, np.tile([0, 0, 10, 10], (n, 1)), X)


@pytest.fixture
def panel(qtbot):
    p = RegionMapPanel()
    qtbot.addWidget(p)
    p.resize(1100, 700)
    p.show()
    qtbot.waitExposed(p)
    yield p
    p.runner.cancel()
    QtCore.QThreadPool.globalInstance().waitForDone(20000)


def widget_pos(panel, x, y) -> QtCore.QPoint:
    scene = panel.vb.mapViewToScene(QtCore.QPointF(float(x), float(y)))
    return panel.plot.mapFromScene(scene)


def send(widget, kind, pos, buttons, button=LEFT, mods=QtCore.Qt.KeyboardModifier.NoModifier):
    ev = QtGui.QMouseEvent(kind, QtCore.QPointF(pos), QtCore.QPointF(widget.mapToGlobal(pos)), button, buttons, mods)
    QtWidgets.QApplication.sendEvent(widget, ev)


def drag_path(qtbot, panel, points, mods):
    vp = panel.plot.viewport()
    pts = [widget_pos(panel, x, y) for x, y in points]
    send(vp, Ev.MouseButtonPress, pts[0], LEFT, mods=mods)
    for p in pts[1:]:
        send(vp, Ev.MouseMove, p, LEFT, QtCore.Qt.MouseButton.NoButton, mods)
        qtbot.wait(12)  # pyqtgraph drops mouse moves closer than its rate limit (100 Hz)
    send(vp, Ev.MouseButtonRelease, pts[-1], QtCore.Qt.MouseButton.NoButton, mods=mods)
    qtbot.wait(20)


def circle_around(xy, pad=1.3, steps=24):
    centre = xy.mean(axis=0)
    radius = np.abs(xy - centre).max() * pad + 1e-3
    t = np.linspace(0, 2 * np.pi, steps)
    return [(centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a)) for a in t]


def test_click_on_a_point_emits_its_image_and_box(panel, qtbot):
    panel.set_table(three_clusters())
    i = 37
    x, y = panel.map.xy[i]
    with qtbot.waitSignal(panel.region_activated, timeout=2000) as sig:
        qtbot.mouseClick(panel.plot.viewport(), LEFT, pos=widget_pos(panel, x, y))
    assert sig.args == list(panel.map.table.key(i)) == ["b.png", 19]
    assert panel.current == i
    qtbot.waitUntil(lambda: panel.similar_view.strip.count() == panel.similar_view.k.value(), timeout=2000)
    first = panel.similar_view.strip.item(0).data(QtCore.Qt.ItemDataRole.UserRole + 1)
    assert panel.map.table.labels[panel.map.index_of(*first)] == "dog"  # from its own cluster


def test_hover_shows_the_region_card_and_leaving_hides_it(panel, qtbot):
    panel.set_table(three_clusters())
    x, y = panel.map.xy[5]
    send(panel.plot.viewport(), Ev.MouseMove, widget_pos(panel, x, y), QtCore.Qt.MouseButton.NoButton, QtCore.Qt.MouseButton.NoButton)
    assert panel.inset.isVisible() and not panel.inset.pixmap().isNull()
    corner = panel.vb.sceneBoundingRect().topLeft() + QtCore.QPointF(3, 3)  # empty: the fit leaves a margin
    assert panel._pick(panel.vb.mapSceneToView(corner)) is None
    qtbot.wait(20)  # pyqtgraph drops mouse moves closer than its rate limit (100 Hz)
    send(panel.plot.viewport(), Ev.MouseMove, panel.plot.mapFromScene(corner), QtCore.Qt.MouseButton.NoButton, QtCore.Qt.MouseButton.NoButton)
    assert not panel.inset.isVisible()


def test_lasso_then_relabel_is_one_undo_step(panel, qtbot, tmp_path, monkeypatch):
    table = three_clusters()
    project = Project()
    docs = {}
    for name in ("a.png", "b.png"):  # documents holding the same boxes as the table
        (tmp_path / name).write_bytes(b"")
    project.open([tmp_path / "a.png", tmp_path / "b.png"])
    for doc in project.images:
        doc.loaded = True
        docs[doc.path.name] = doc
    for k in range(len(table)):
        image, box_id = table.key(k)
        docs[image].add(Box(0, 0, 10, 10, table.labels[k], id=box_id))
    stack = QtGui.QUndoStack()

    def changed(doc):  # what the window does after an edit: keep the map in step
        for b in doc.boxes:
            panel.update_region(doc.path.name, b.id, label=b.label)

    def apply(regions, label):  # the window's slot: one macro
        plan = relabel_plan(lambda image: docs.get(image), regions, label)
        stack.beginMacro(plan.text)
        for doc, old, new in plan.changes:
            stack.push(commands.replace_box(doc, old, new, changed, "Relabel box"))
        stack.endMacro()

    panel.relabel_requested.connect(apply)
    panel.set_table(table)
    dogs = np.flatnonzero(table.labels == "dog")
    drag_path(qtbot, panel, circle_around(panel.map.xy[dogs]), QtCore.Qt.KeyboardModifier.ControlModifier)
    assert sorted(panel.selection) == sorted(dogs)
    monkeypatch.setattr(QtWidgets.QInputDialog, "getItem", staticmethod(lambda *a, **k: ("horse", True)))
    with qtbot.waitSignal(panel.relabel_requested, timeout=2000) as sig:
        qtbot.mouseClick(panel.selection_view.relabel, LEFT)
    assert sorted(sig.args[0]) == sorted(table.key(i) for i in dogs) and sig.args[1] == "horse"
    assert stack.count() == 1
    assert sorted(b.label for d in docs.values() for b in d.boxes).count("horse") == 20
    assert set(panel.map.table.labels[dogs]) == {"horse"}
    qtbot.waitUntil(lambda: "horse" in panel.legend.text(), timeout=2000)  # one redraw per burst
    stack.undo()
    assert all(b.label != "horse" for d in docs.values() for b in d.boxes)
    assert set(panel.map.table.labels[dogs]) == {"dog"}


def test_rectangle_selection_with_shift_and_delete_request(panel, qtbot):
    panel.set_table(three_clusters())
    cows = np.flatnonzero(panel.map.table.labels == "cow")
    lo, hi = panel.map.xy[cows].min(axis=0), panel.map.xy[cows].max(axis=0)
    pad = (hi - lo) * 0.1 + 1e-3
    corners = [tuple(lo - pad), tuple((lo + hi) / 2), tuple(hi + pad)]
    drag_path(qtbot, panel, corners, QtCore.Qt.KeyboardModifier.ShiftModifier)
    assert sorted(panel.selection) == sorted(cows)
    with qtbot.waitSignal(panel.delete_requested, timeout=2000) as sig:
        qtbot.mouseClick(panel.selection_view.delete, LEFT)
    assert sorted(sig.args[0]) == sorted(panel.map.table.key(i) for i in cows)


def test_a_moved_box_moves_its_point(panel, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("ROISCOPE_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(1)
    for i in range(3):
        img = cv2.GaussianBlur(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), (0, 0), 1 + i)
        cv2.imwrite(str(tmp_path / f"im{i}.png"), img)
        labelme.write(tmp_path / f"im{i}.json", tmp_path / f"im{i}.png",
                      [Box(5, 5, 40, 40, "a"), Box(50, 20, 120, 90, "b"), Box(10, 50, 60, 90, "a")])
    jobs, _ = folder_jobs([tmp_path])
    registry = ExtractorRegistry()
    with qtbot.waitSignal(panel.map_ready, timeout=60000):
        panel.compute(jobs, MapSettings(), registry)
    assert len(panel.map) == 9
    image = str(tmp_path / "im1.png")
    i = panel.map.index_of(image, 2)
    before = panel.map.xy.copy()
    feats = extract_features(registry.get("filters"), read_image(image), "stride 4")
    new = (0, 0, 30, 30)  # the box moved and shrank
    assert panel.update_region(image, 2, corners=new, features=feats) == i
    want = panel.map.projection.transform(pool_boxes(feats, np.array([new], np.float32), MapSettings().pool()).reshape(1, -1))[0]
    np.testing.assert_allclose(panel.map.xy[i], want, rtol=1e-5)
    assert not np.allclose(panel.map.xy[i], before[i])
    np.testing.assert_array_equal(np.delete(panel.map.xy, i, 0), np.delete(before, i, 0))
    qtbot.waitUntil(lambda: panel.drawn_position(i) == tuple(panel.map.xy[i]), timeout=2000)  # drawn there too


def test_suspects_table_ranks_and_a_row_click_jumps(panel, qtbot):
    table = three_clusters()
    table.labels[45] = "dog"  # a cow labelled dog
    panel.set_table(table)
    panel.find_suspects(5)
    qtbot.waitUntil(lambda: panel.suspects_view.model.rowCount() == 60, timeout=20000)
    view = panel.suspects_view.view
    assert panel.suspects_view.model.region(0) == 45
    assert view.model().index(0, 2).data() == "cow"
    rect = view.visualRect(view.model().index(0, 1))
    with qtbot.waitSignal(panel.region_activated, timeout=2000) as sig:
        qtbot.mouseClick(view.viewport(), LEFT, pos=rect.center())
    assert sig.args == list(table.key(45))
    view.sortByColumn(0, QtCore.Qt.SortOrder.AscendingOrder)
    assert panel.suspects_view.model.region(59) == 45


def test_map_window_on_a_folder_relabels_sidecars_in_one_undo_step(qtbot, tmp_path, monkeypatch):
    from app.gui.map_window import MapWindow

    monkeypatch.setenv("ROISCOPE_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(2)
    for i in range(2):
        img = rng.integers(0, 255, (80, 120, 3), dtype=np.uint8)
        img[:, 60:] = cv2.GaussianBlur(img[:, 60:], (0, 0), 4)
        cv2.imwrite(str(tmp_path / f"m{i}.png"), img)
        labelme.write(tmp_path / f"m{i}.json", tmp_path / f"m{i}.png",
                      [Box(2, 2, 50, 70, "sharp"), Box(65, 5, 118, 75, "smooth"), Box(5, 10, 55, 60, "sharp")])
    win = MapWindow()
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.panel.map_ready, timeout=60000):
        win.open(tmp_path)
    panel = win.panel
    assert len(panel.map) == 6
    image = str(tmp_path / "m1.png")
    i = panel.map.index_of(image, 2)
    qtbot.mouseClick(panel.plot.viewport(), LEFT, pos=widget_pos(panel, *panel.map.xy[i]))
    assert win.viewer.image.image is not None and win.viewer.image.image.shape[:2] == (80, 120)
    assert win.viewer.outline.isVisible() and "box 2" in win.viewer.title_text()
    sharp = np.flatnonzero(panel.map.table.labels == "sharp")
    panel.select(sharp)
    panel.request_relabel("blurry")
    assert win.undo_stack.count() == 1
    read = lambda n: [b.label for b in labelme.read(tmp_path / f"m{n}.json").boxes]  # noqa: E731
    assert read(0) == read(1) == ["blurry", "smooth", "blurry"]
    win.undo_stack.undo()
    assert read(0) == read(1) == ["sharp", "smooth", "sharp"]
    panel.select([i])
    panel.request_delete()
    assert len(panel.map) == 5 and read(1) == ["sharp", "sharp"]
    win.undo_stack.undo()  # the box comes back, and so does its point
    assert len(panel.map) == 6 and panel.map.index_of(image, 2) is not None


def test_map_window_on_a_parquet_export_is_read_only_and_shows_reachable_images(qtbot, tmp_path, monkeypatch):
    from app.export import ExportOptions, export
    from app.gui.map_window import MapWindow

    monkeypatch.setenv("ROISCOPE_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(3)
    cv2.imwrite(str(tmp_path / "p.png"), rng.integers(0, 255, (60, 90, 3), dtype=np.uint8))
    labelme.write(tmp_path / "p.json", tmp_path / "p.png", [Box(2, 2, 40, 40, "x"), Box(30, 10, 88, 58, "y"),
                                                            Box(5, 30, 50, 58, "x"), Box(60, 0, 89, 30, "y")])
    jobs, _ = folder_jobs([tmp_path / "p.png"])
    export(jobs, ExportOptions(tmp_path / "out"), tmp_path)
    win = MapWindow()
    qtbot.addWidget(win)
    win.show()
    win.open(tmp_path / "out" / "embeddings.parquet")
    panel = win.panel
    assert len(panel.map) == 4 and not panel.selection_view.isEnabled()
    assert panel.settings == MapSettings("filters", "stride 4", "roi_align", (7, 7))
    image, region_id = panel.map.table.key(1)
    win.show_region(image, region_id)
    assert win.viewer.image.image.shape[:2] == (60, 90) and win.viewer.outline.isVisible()
    (tmp_path / "p.png").unlink()  # an export computed elsewhere: the image is not reachable
    win.panel.crops = type(win.panel.crops)()
    win.show_region(image, region_id)
    assert "not found" in win.viewer.title_text() and not win.viewer.outline.isVisible()


def test_cancel_stops_the_embedding_run_and_shows_what_it_has(panel, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("ROISCOPE_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(4)
    for i in range(40):
        cv2.imwrite(str(tmp_path / f"c{i:02d}.png"), rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
        labelme.write(tmp_path / f"c{i:02d}.json", tmp_path / f"c{i:02d}.png", [Box(10, 10, 90, 90, "a"), Box(50, 50, 190, 190, "b")])
    jobs, _ = folder_jobs([tmp_path])
    started = []
    real = compute_mod.compute_table

    def slowed(jobs, settings, registry, cache, progress, cancelled):  # long enough to cancel midway
        def step(done, total, path):
            started.append(done)
            QtCore.QThread.msleep(30)
            progress(done, total, path)
        return real(jobs, settings, registry, cache, step, cancelled)

    monkeypatch.setattr("app.gui.region_map_panel.compute_table", slowed)
    panel.compute(jobs, MapSettings())
    assert panel.cancel.isVisible()
    qtbot.waitUntil(lambda: len(started) >= 2, timeout=30000)
    with qtbot.waitSignal(panel.map_ready, timeout=30000):
        qtbot.mouseClick(panel.cancel, LEFT)
    assert panel.last_compute.cancelled and 0 < len(panel.map) < 80
    assert "cancelled" in panel.status.text() and not panel.cancel.isVisible()


def test_the_lasso_tool_selects_without_a_modifier_and_pan_mode_does_not(panel, qtbot):
    panel.set_table(three_clusters())
    cats = np.flatnonzero(panel.map.table.labels == "cat")
    ring = circle_around(panel.map.xy[cats])
    drag_path(qtbot, panel, ring, QtCore.Qt.KeyboardModifier.NoModifier)  # Pan: the view moves
    assert len(panel.selection) == 0
    panel.fit()
    qtbot.mouseClick(panel.tools["lasso"], LEFT)
    drag_path(qtbot, panel, ring, QtCore.Qt.KeyboardModifier.NoModifier)
    assert sorted(panel.selection) == sorted(cats)


def image_array(image: QtGui.QImage) -> np.ndarray:
    image = image.convertToFormat(QtGui.QImage.Format.Format_RGBA8888)
    return np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())[:, :image.width() * 4].reshape(image.height(), image.width(), 4)


def test_the_points_image_draws_discs_with_the_top_rank_over_the_others():
    from app.gui.region_map_raster import PointsRaster

    item = PointsRaster(size=5, alpha=255)
    red, green, blue = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    # Two points on one pixel (rank 2 must win whatever the order), one apart, one just off the
    # left edge (its disc's edge shows), one far outside.
    item.set_points([(10.2, 10.7), (10.5, 10.5), (30, 5), (-1, 20), (500, 500)], [2, 1, 1, 3, 1], [red, green, blue])
    px = image_array(item.render(QtGui.QTransform(), 40, 25))
    assert px.shape == (25, 40, 4)
    assert tuple(px[10, 10, :3]) == green and tuple(px[10, 12, :3]) == green and tuple(px[12, 10, :3]) == green
    assert px[10, 13, 3] == 0 and px[13, 13, 3] == 0  # outside the 5-px disc: transparent
    assert tuple(px[5, 30, :3]) == red
    assert tuple(px[20, 0, :3]) == blue and tuple(px[20, 1, :3]) == blue and px[20, 2, 3] == 0
    # A view transform (scale 2, shift 4): the point at (3, 2) lands on pixel (10, 8).
    item.set_points([(3, 2)], [1], [red])
    px = image_array(item.render(QtGui.QTransform(2, 0, 0, 2, 4, 4), 20, 20))
    assert tuple(px[8, 10, :3]) == red and px.sum() == 17 * 255 * 2  # the 17 pixels of a 5x5 disc, red + alpha


def test_each_point_shows_in_its_label_colour_on_screen(panel, qtbot):
    panel.set_table(three_clusters())
    qtbot.wait(20)
    shot = image_array(panel.plot.viewport().grab().toImage())
    coloring = panel.map.coloring("label")
    background = np.array([0x1c] * 3)
    for i in (0, 25, 50):
        p = widget_pos(panel, *panel.map.xy[i])
        want = np.asarray(coloring.colours[coloring.codes[i]], float) * 230 / 255 + background * 25 / 255
        np.testing.assert_allclose(shot[p.y(), p.x(), :3], want, atol=3)
    corner = shot[5:30, -30:-5, :3].reshape(-1, 3)  # nothing drawn at the top right: background only
    assert np.all(corner == background)


def test_markers_are_bigger_when_the_map_has_few_points(panel, qtbot):
    from app.gui.region_map_plot import marker_size
    from app.gui.region_map_raster import PointsRaster

    item = PointsRaster(size=marker_size(7), alpha=255)
    item.set_points([(20, 20)], [1], [(255, 0, 0)])
    few = (image_array(item.render(QtGui.QTransform(), 40, 40))[..., 3] > 0).sum()
    item.set_size(marker_size(100_000))
    crowded = (image_array(item.render(QtGui.QTransform(), 40, 40))[..., 3] > 0).sum()
    assert crowded == 17 and few > 3 * crowded  # a 5-px disc; a folder's few boxes get ~9 px
    table = three_clusters()
    panel.set_table(table)
    qtbot.wait(20)
    assert panel.plot.points.radius == marker_size(len(table.labels)) // 2 > marker_size(100_000) // 2


def _grid_table(n_labels=4, side=15, dim=16):
    """Points on a full rectangular grid (PCA keeps it a rectangle: x spread twice y's), so
    every corner of the fitted view has points, the legend's top-left one included."""
    gx, gy = np.meshgrid(np.linspace(-2, 2, side), np.linspace(-1, 1, side))
    X = np.zeros((side * side, dim), np.float32)
    X[:, 0], X[:, 1] = gx.ravel(), gy.ravel()
    n = len(X)
    labels = [f"label{k % n_labels}" for k in range(n)]
    return RegionTable(["a.png"] * n, list(range(1, n + 1)), labels, np.tile([0, 0, 10, 10], (n, 1)), X)


def _legend_scene_rect(panel) -> QtCore.QRectF:
    plot = panel.plot
    geometry = panel.legend.geometry()  # in the plot widget's coordinates
    top_left = plot.viewport().mapFrom(plot, geometry.topLeft())
    return plot.mapToScene(QtCore.QRect(top_left, geometry.size())).boundingRect()


# a short legend is cleared by room at the top; a tall one (many labels) by room on the left
@pytest.mark.parametrize("size, n_labels", [((1100, 700), 4), ((700, 900), 4), ((1100, 700), 14)])
def test_fit_leaves_no_point_under_the_legend(panel, qtbot, size, n_labels):
    panel.resize(*size)
    qtbot.wait(20)
    panel.set_table(_grid_table(n_labels))
    panel.fit()
    qtbot.wait(20)
    legend = _legend_scene_rect(panel)
    assert panel.legend.isVisible() and legend.width() > 50 and legend.height() > 50
    radius = panel.plot.points.radius  # a marker's edge must not hide under it either
    legend.adjust(-radius, -radius, radius, radius)
    view = panel.vb.viewRect()
    positions = [panel.drawn_position(i) for i in range(len(panel.map))]
    assert all(view.contains(QtCore.QPointF(x, y)) for x, y in positions)  # Fit still shows every point
    covered = [i for i, (x, y) in enumerate(positions)
               if legend.contains(panel.vb.mapViewToScene(QtCore.QPointF(x, y)))]
    assert covered == []
