"""`roiscope` console entry point. `roiscope [PATH...]` opens the GUI; subcommands run headless
(those paths import no Qt). Each subcommand lives in its own module with a ``main(argv)``.
``--verbose`` also shows TensorFlow's start-up log (see ``app.tf_quiet``)."""
from __future__ import annotations

import importlib
import sys

# name -> (module with main(argv), one-line usage)
SUBCOMMANDS = {
    "export": ("app.export_cli", "roiscope export IMAGES --annotations PATH --out DIR [options]"),
    "convert": ("app.convert_cli", "roiscope convert ANNOTATIONS --images IMAGES --to labelme|voc|yolo|coco|csv --out DIR"),
    "map": ("app.map_cli", "roiscope map FOLDER_OR_PARQUET [--projection pca|umap] [options]"),
    "suspects": ("app.regionmap.suspects_cli", "roiscope suspects EMBEDDINGS --k 10 --out suspects.csv"),
}

# Subcommands whose parser does not take --verbose but which import TensorFlow, directly or
# through roi_core (export quiets it itself, after parsing its own --verbose; convert needs none).
QUIET_TF = {"map", "suspects"}


def usage() -> str:
    lines = ["usage: roiscope [--verbose] [IMAGE_OR_FOLDER ...]"] + [f"       {text}" for _, text in SUBCOMMANDS.values()]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        name, rest = argv[0], argv[1:]
        if name in QUIET_TF:  # commands that build extractors: keep TensorFlow's start-up lines away
            from app.tf_quiet import import_tensorflow

            import_tensorflow("--verbose" in rest)
            rest = [a for a in rest if a != "--verbose"]
        module = importlib.import_module(SUBCOMMANDS[name][0])
        return module.main(rest)
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    from app.tf_quiet import import_tensorflow

    import_tensorflow(verbose)  # before the window's modules pull it in with its start-up lines
    from app.gui.main_window import run_gui

    return run_gui(argv)
