"""The window's actions, menus and tool bar, with labelme/LabelImg shortcuts."""
from __future__ import annotations

from types import SimpleNamespace

from PySide6 import QtCore, QtGui, QtWidgets


def build_actions(window) -> SimpleNamespace:
    style = window.style()
    sp = QtWidgets.QStyle.StandardPixmap

    def action(text, shortcut, slot, icon=None, checkable=False):
        a = QtGui.QAction(text, window)
        if shortcut:
            a.setShortcut(QtGui.QKeySequence(shortcut))
        if icon is not None:
            a.setIcon(style.standardIcon(icon))
        a.setCheckable(checkable)
        (a.toggled if checkable else a.triggered).connect(slot)
        window.addAction(a)
        return a

    io = window.io
    acts = SimpleNamespace(
        open=action("&Open image...", "Ctrl+O", window.open_image_dialog, sp.SP_DialogOpenButton),
        open_dir=action("Open &folder...", "Ctrl+U", window.open_folder_dialog, sp.SP_DirOpenIcon),
        save=action("&Save boxes", "Ctrl+S", window.saving.save_current, sp.SP_DialogSaveButton),
        next=action("Next image", "D", lambda: window.step(1), sp.SP_ArrowForward),
        prev=action("Previous image", "A", lambda: window.step(-1), sp.SP_ArrowBack),
        draw=action("Draw box (W)", "W", window.canvas.set_draw_mode, sp.SP_FileDialogNewFolder, checkable=True),
        delete=action("Delete box", QtGui.QKeySequence.StandardKey.Delete, window.delete_selected, sp.SP_TrashIcon),
        dup=action("Duplicate box", "Ctrl+D", window.duplicate_selected, sp.SP_FileDialogContentsView),
        fit=action("Fit view", "F", window.canvas.fit, sp.SP_TitleBarMaxButton),
        quit=action("&Quit", "Ctrl+Q", window.close),
        import_=action("&Import annotations...", "Ctrl+I", io.import_dialog),
        import_dir=action("Import annotations from a dataset &folder...", "Ctrl+Shift+I", lambda: io.import_dialog(folder=True)),
        export_ann=action("Export &annotations as...", None, io.export_annotations_dialog),
        export=action("&Export regions and embeddings...", "Ctrl+E", io.export_regions_dialog),
        model=action("Load &Keras model as extractor...", None, window.load_model_dialog),
        region_map=action("&Region map of every box", "Ctrl+M", window.region_map.compute),
    )
    acts.undo = window.undo_stack.createUndoAction(window, "Undo")
    acts.undo.setShortcut(QtGui.QKeySequence("Ctrl+Z"))
    acts.undo.setIcon(style.standardIcon(sp.SP_ArrowBack))
    acts.redo = window.undo_stack.createRedoAction(window, "Redo")
    acts.redo.setShortcuts([QtGui.QKeySequence("Ctrl+Shift+Z"), QtGui.QKeySequence("Ctrl+Y")])
    acts.redo.setIcon(style.standardIcon(sp.SP_ArrowForward))
    window.addActions([acts.undo, acts.redo])

    menu = window.menuBar()
    file_menu = menu.addMenu("&File")
    file_menu.addActions([acts.open, acts.open_dir, acts.save])
    file_menu.addSeparator()
    file_menu.addActions([acts.import_, acts.import_dir, acts.export_ann, acts.export, acts.model])
    file_menu.addSeparator()
    file_menu.addAction(acts.quit)
    menu.addMenu("&Edit").addActions([acts.undo, acts.redo, acts.draw, acts.dup, acts.delete])
    acts.view_menu = menu.addMenu("&View")
    acts.view_menu.addActions([acts.fit, acts.next, acts.prev, acts.region_map])

    tools = QtWidgets.QToolBar("Tools")
    tools.setObjectName("tools")
    tools.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    tools.addActions([acts.open, acts.open_dir, acts.save])
    tools.addSeparator()
    tools.addActions([acts.prev, acts.next])
    tools.addSeparator()
    tools.addActions([acts.draw, acts.dup, acts.delete, acts.undo, acts.redo, acts.fit])
    window.addToolBar(tools)
    window.addToolBarBreak()
    window.addToolBar(window.settings_bar)
    return acts
