"""`roiscope` console entry point. `roiscope [PATH...]` opens the GUI; `roiscope export ...` runs
the export headless (that path imports no Qt)."""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "export":
        from app.export_cli import main as export_main

        return export_main(argv[1:])
    if argv and argv[0] in ("-h", "--help"):
        print("usage: roiscope [IMAGE_OR_FOLDER ...]\n       roiscope export IMAGES --annotations PATH --out DIR [options]")
        return 0
    from app.gui.main_window import run_gui

    return run_gui(argv)
