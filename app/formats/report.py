"""What an import did, per file: boxes imported, regions derived from other shapes, shapes
skipped and why, files refused and why. Nothing is dropped without a line here."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.formats.common import printable


@dataclass
class FileReport:
    path: Path
    fmt: str
    boxes: int = 0  # boxes imported (derived ones included)
    derived: int = 0  # regions made from polygons, circles, masks, segmentation, pose lines
    images: int = 0  # images this file gave boxes or sizes for
    skipped: list = field(default_factory=list)  # "shapes[3] (point 'nose'): not a region"
    warnings: list = field(default_factory=list)  # kept, but worth knowing (float32 overflow, ...)
    refused: str | None = None  # why the whole file contributed nothing

    def line(self) -> str:
        name = printable(self.path)
        if self.refused:
            return f"{name} [{self.fmt}]: refused: {self.refused}"
        parts = [f"{self.boxes} box{'es' if self.boxes != 1 else ''}"]
        if self.derived:
            parts.append(f"{self.derived} derived from other shapes")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        if self.warnings:
            parts.append(f"{len(self.warnings)} warning{'s' if len(self.warnings) != 1 else ''}")
        return f"{name} [{self.fmt}]: " + ", ".join(parts)


@dataclass
class ImportResult:
    boxes: dict = field(default_factory=dict)  # image Path -> [Box]
    errors: list = field(default_factory=list)  # one line per problem: file (and key/line) and reason
    sizes: dict = field(default_factory=dict)  # image Path -> (w, h) where the file gave one
    files: list = field(default_factory=list)  # [FileReport], in reading order
    notes: list = field(default_factory=list)  # choices made (layout detected, class list used)
    embedded: dict = field(default_factory=dict)  # image Path -> labelme file holding its imageData
    meta: dict = field(default_factory=dict)  # what writers need to write back what was read

    sources: dict = field(default_factory=dict)  # image Path -> [annotation files that gave it boxes]

    def add(self, image, boxes, size=None, source=None):
        image = Path(image)
        self.boxes.setdefault(image, []).extend(boxes)
        if source is not None:
            files = self.sources.setdefault(image, [])
            if Path(source) not in files:
                files.append(Path(source))
        if size is not None:
            self.sizes[image] = (int(size[0]), int(size[1]))

    def refuse(self, report: FileReport, reason: str):
        report.refused = reason
        self.errors.append(f"{printable(report.path)}: {reason}")

    @property
    def box_count(self) -> int:
        return sum(len(v) for v in self.boxes.values())

    def summary_text(self, max_details=20, max_files=50) -> str:
        """Several lines: totals, one line per file (the first ``max_files``), then the skipped
        shapes, warnings and refusals by name (the first ``max_details`` of each kind)."""
        derived = sum(r.derived for r in self.files)
        skipped = [f"{printable(r.path)}: {s}" for r in self.files for s in r.skipped]
        warnings = [f"{printable(r.path)}: {w}" for r in self.files for w in r.warnings]
        refused = [r for r in self.files if r.refused]
        lines = [f"Imported {self.box_count} box(es) for {sum(1 for v in self.boxes.values() if v)} image(s) "
                 f"from {len(self.files) - len(refused)} of {len(self.files)} file(s); {derived} derived from other shapes, "
                 f"{len(skipped)} shape(s) skipped, {len(refused)} file(s) refused."]
        shared = [(img, files) for img, files in self.sources.items() if len(files) > 1]
        lines += [f"  note: {n}" for n in self.notes]
        if shared:
            img, files = shared[0]
            lines.append(f"  note: {len(shared)} image(s) got boxes from more than one file (merged), e.g. {printable(img)} "
                         f"from {', '.join(printable(f.name) for f in files)}")
        lines += ["  " + r.line() for r in self.files[:max_files]]
        if len(self.files) > max_files:
            lines.append(f"  ... and {len(self.files) - max_files} more file(s)")
        file_errors = {f"{printable(r.path)}: {r.refused}" for r in refused}
        for title, items in (("skipped", skipped), ("warning", warnings),
                             ("problem", [e for e in self.errors if e not in file_errors] + sorted(file_errors))):
            lines += [f"  {title}: {item}" for item in items[:max_details]]
            if len(items) > max_details:
                lines.append(f"  ... and {len(items) - max_details} more ({title})")
        return "\n".join(lines)
