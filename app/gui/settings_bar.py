"""The settings toolbar: extractor, layer, op, output size, sampling ratio, map normalization and
colormap. Every widget writes to the inspection model's settings and is updated from them
(signals blocked), so the model is the one place settings live."""
from __future__ import annotations

from PySide6 import QtWidgets

from app.extraction import layer_choices
from app.gui.qt_util import qt_signals_blocked
from app.inspection import COLORMAPS, NORMALIZATIONS, OP_CHOICES


class SettingsBar(QtWidgets.QToolBar):
    def __init__(self, inspection, registry, report_error, parent=None):
        super().__init__("Settings", parent)
        self.setObjectName("settings")
        self.inspection, self.registry, self.report_error = inspection, registry, report_error
        self.extractor_combo = QtWidgets.QComboBox()
        self.extractor_combo.addItems(registry.names())
        self.layer_combo = QtWidgets.QComboBox()
        self.op_combo = QtWidgets.QComboBox()
        self.op_combo.addItems(list(OP_CHOICES))
        self.size_spin = QtWidgets.QSpinBox()
        self.size_spin.setRange(1, 32)
        self.size_spin.setPrefix("output ")
        self.ratio_spin = QtWidgets.QSpinBox()
        self.ratio_spin.setRange(-1, 16)
        self.ratio_spin.setSpecialValueText("adaptive")
        self.ratio_spin.setPrefix("samples ")
        self.norm_combo = QtWidgets.QComboBox()
        self.norm_combo.addItems(list(NORMALIZATIONS))
        self.cmap_combo = QtWidgets.QComboBox()
        self.cmap_combo.addItems(list(COLORMAPS))
        for text, widget in (("Extractor", self.extractor_combo), ("Layer", self.layer_combo), ("Op", self.op_combo)):
            self.addWidget(QtWidgets.QLabel(f" {text} "))
            self.addWidget(widget)
        self.addWidget(self.size_spin)
        self.addWidget(self.ratio_spin)
        self.addWidget(QtWidgets.QLabel(" Maps "))
        self.addWidget(self.norm_combo)
        self.addWidget(self.cmap_combo)

        update = inspection.update_settings
        self.extractor_combo.currentTextChanged.connect(self.choose_extractor)
        self.layer_combo.currentTextChanged.connect(lambda text: update(layer=text))
        self.op_combo.currentTextChanged.connect(lambda text: update(ops=OP_CHOICES[text]))
        self.size_spin.valueChanged.connect(lambda v: update(output_size=v))
        self.ratio_spin.valueChanged.connect(lambda v: update(sampling_ratio=v))
        self.norm_combo.currentTextChanged.connect(lambda text: update(normalization=text))
        self.cmap_combo.currentTextChanged.connect(lambda text: update(colormap=text))
        inspection.events.connect("settings", lambda changed: self.show_settings())
        self.show_settings()
        self.choose_extractor(inspection.settings.extractor)

    def widgets(self):
        return (self.extractor_combo, self.layer_combo, self.op_combo, self.size_spin, self.ratio_spin,
                self.norm_combo, self.cmap_combo)

    def show_settings(self):
        s = self.inspection.settings
        with qt_signals_blocked(*self.widgets()):
            if self.extractor_combo.findText(s.extractor) < 0:
                self.extractor_combo.addItem(s.extractor)
            self.extractor_combo.setCurrentText(s.extractor)
            self.layer_combo.setCurrentText(s.layer)
            choices = self.inspection.op_choices()
            if [self.op_combo.itemText(i) for i in range(self.op_combo.count())] != choices:
                self.op_combo.clear()
                self.op_combo.addItems(choices)
            self.op_combo.setCurrentText(s.op_choice)
            self.size_spin.setValue(s.output_size)
            self.ratio_spin.setValue(s.sampling_ratio)
            self.norm_combo.setCurrentText(s.normalization)
            self.cmap_combo.setCurrentText(s.colormap)

    def choose_extractor(self, name):
        """Build (once) the extractor and list its layers. If it cannot be built (weights offline,
        a broken model), say why and keep the previous extractor on show and in use."""
        try:
            ext = self.registry.get(name)
            layers, default = layer_choices(ext), ext.default_layer
            if not layers:
                raise ValueError(f"{name}: no layer with a 4-D (batch, h, w, channels) output")
        except Exception as exc:  # e.g. ImageNet weights unavailable offline
            self.report_error(f"Could not use the extractor {name}: {exc}")
            self.show_settings()  # the combo goes back to the extractor in use
            return False
        with qt_signals_blocked(self.layer_combo):
            self.layer_combo.clear()
            self.layer_combo.addItems(layers)
        keep = self.inspection.settings.layer if name == self.inspection.settings.extractor else ""
        self.inspection.update_settings(extractor=name, layer=keep if keep in layers else default)
        self.show_settings()
        return True

    def add_extractor(self, extractor):
        """A model the user loaded: register it, list it and switch to it."""
        self.registry.add(extractor)
        if self.extractor_combo.findText(extractor.name) < 0:
            with qt_signals_blocked(self.extractor_combo):
                self.extractor_combo.addItem(extractor.name)
        return self.choose_extractor(extractor.name)
