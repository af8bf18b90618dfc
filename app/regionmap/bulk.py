"""A bulk edit of many regions planned without Qt, so the window can push it as ONE undo macro:

    plan = relabel_plan(project.doc_for, regions, "cat")
    stack.beginMacro(plan.text)
    for doc, old, new in plan.changes:
        stack.push(commands.replace_box(doc, old, new, changed, "Relabel box"))
    stack.endMacro()

(and ``delete_plan`` with ``commands.remove_box(doc, box_id, changed)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BulkPlan:
    text: str
    changes: list = field(default_factory=list)  # relabel: (doc, old, new); delete: (doc, box_id)
    missing: list = field(default_factory=list)  # (image, box_id) no longer in the project

    def __bool__(self):
        return bool(self.changes)


def group_by_image(regions) -> dict[str, list[int]]:
    """``[(image, box_id), ...]`` -> ``{image: [box_id, ...]}``, first-seen order, no repeats."""
    grouped: dict[str, list[int]] = {}
    for image, box_id in regions:
        ids = grouped.setdefault(str(image), [])
        if int(box_id) not in ids:
            ids.append(int(box_id))
    return grouped


def _each_box(doc_for, regions, missing):
    for image, ids in group_by_image(regions).items():
        doc = doc_for(image)
        for box_id in ids:
            box = doc.box_by_id(box_id) if doc is not None else None
            if box is None:
                missing.append((image, box_id))
            else:
                yield doc, box


def relabel_plan(doc_for, regions, new_label) -> BulkPlan:
    """``doc_for(image)`` -> the image's document (``Project.doc_for``) or None. Boxes that already
    carry ``new_label`` are left out (no empty undo steps)."""
    plan = BulkPlan("")
    for doc, box in _each_box(doc_for, regions, plan.missing):
        if box.label != new_label:
            plan.changes.append((doc, box, box.relabeled(new_label)))
    images = len({id(doc) for doc, *_ in plan.changes})
    plan.text = f"Relabel {len(plan.changes)} region(s) in {images} image(s) as {new_label!r}"
    return plan


def delete_plan(doc_for, regions) -> BulkPlan:
    plan = BulkPlan("")
    for doc, box in _each_box(doc_for, regions, plan.missing):
        plan.changes.append((doc, box.id))
    images = len({id(doc) for doc, _ in plan.changes})
    plan.text = f"Delete {len(plan.changes)} region(s) in {images} image(s)"
    return plan
