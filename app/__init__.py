"""RoIScope application: Qt-free document model, formats and export; the GUI lives in app.gui."""
