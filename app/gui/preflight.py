"""`make run` calls this first: say which system libraries Qt misses instead of a bare crash."""
import ctypes.util
import os
import sys

NEEDED = {  # library name -> Debian/Ubuntu package (what Qt's xcb plugin loads)
    "xcb-cursor": "libxcb-cursor0",
    "xkbcommon-x11": "libxkbcommon-x11-0",
    "EGL": "libegl1",
    "fontconfig": "libfontconfig1",
    "xcb-icccm": "libxcb-icccm4",
    "xcb-image": "libxcb-image0",
    "xcb-keysyms": "libxcb-keysyms1",
    "xcb-randr": "libxcb-randr0",
    "xcb-render-util": "libxcb-render-util0",
    "xcb-shape": "libxcb-shape0",
    "xcb-xkb": "libxcb-xkb1",
}


def main() -> int:
    if sys.platform != "linux" or os.environ.get("QT_QPA_PLATFORM", "") == "offscreen":
        return 0
    missing = [pkg for lib, pkg in NEEDED.items() if ctypes.util.find_library(lib) is None]
    if missing:
        print(
            "RoIScope: Qt needs system libraries that are missing here. On Debian/Ubuntu run:\n"
            f"  sudo apt-get install {' '.join(missing)}\n",
            file=sys.stderr,
        )
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        print("RoIScope: no display found (DISPLAY / WAYLAND_DISPLAY unset); start it from a desktop session.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
