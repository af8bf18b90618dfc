"""The suspect ranking finds planted label errors: two classes of distinct textures through the
real extractor, 5% of labels flipped; the top 10% of the ranking must hold >= 80% of them."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.formats import labelme
from app.project import Box
from app.regionmap.compute import MapSettings, compute_table, folder_jobs
from app.regionmap.suspects import find_suspects


def texture(kind, size, rng):
    """'stripes': oriented sinusoid with noise; 'blobs': blurred speckle. Varied per region."""
    h, w = size
    if kind == "stripes":
        yy, xx = np.mgrid[0:h, 0:w]
        angle, period = rng.uniform(0, np.pi), rng.uniform(5, 9)
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        gray = 128 + 90 * wave + rng.normal(0, 12, (h, w))
    else:
        gray = cv2.GaussianBlur(rng.normal(128, 80, (h, w)), (0, 0), rng.uniform(1.5, 3))
        gray = 128 + (gray - 128) * 2.5
    gray = np.clip(gray, 0, 255).astype(np.uint8)
    tint = rng.uniform(0.8, 1.0, 3)
    return (gray[:, :, None] * tint).astype(np.uint8)


def planted_dataset(folder, seed=0, images=30, per_image=8, flip=0.05):
    """Images of 256x128 with per_image textured patches (half of each kind), labelme sidecars.
    Returns the set of (image path, box id) whose label was flipped."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    total = images * per_image
    flipped = set(rng.choice(total, int(round(total * flip)), replace=False).tolist())
    planted = set()
    for i in range(images):
        img = np.full((128, 256, 3), 110, np.uint8)
        boxes = []
        for j in range(per_image):
            kind = "stripes" if j % 2 == 0 else "blobs"
            x, y = (j % 4) * 64, (j // 4) * 64
            img[y + 4:y + 60, x + 4:x + 60] = texture(kind, (56, 56), rng)
            label = kind
            if i * per_image + j in flipped:
                label = "blobs" if kind == "stripes" else "stripes"
            boxes.append(Box(x + 4, y + 4, x + 60, y + 60, label, id=j + 1))
        path = folder / f"tex{i:03d}.png"
        cv2.imwrite(str(path), img)
        labelme.write(folder / f"tex{i:03d}.json", path, boxes)
        planted |= {(str(path), j + 1) for j in range(per_image) if i * per_image + j in flipped}
    return planted


def recall_at(table, suspects, planted, share=0.10):
    top = suspects.order[:int(round(len(table) * share))]
    found = {table.key(i) for i in top} & planted
    return len(found) / len(planted)


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "approximate"])
def test_top_tenth_holds_most_flipped_labels(tmp_path, monkeypatch, exact):
    monkeypatch.setenv("ROISCOPE_CACHE_DIR", str(tmp_path / "cache"))
    planted = planted_dataset(tmp_path / "tex", seed=0)
    jobs, _ = folder_jobs([tmp_path / "tex"])
    table = compute_table(jobs, MapSettings()).table
    assert len(table) == 240 and len(planted) == 12
    suspects = find_suspects(table, k=10, exact=exact)  # False: the path large tables take
    recall = recall_at(table, suspects, planted)
    random_order = np.random.default_rng(0).permutation(len(table))
    baseline = len({table.key(i) for i in random_order[:24]} & planted) / len(planted)
    assert recall >= 0.8, f"top 10% holds {recall:.0%} of the flipped labels (random order: {baseline:.0%})"
    flipped_rows = [i for i in range(len(table)) if table.key(i) in planted]
    # Each flipped region's suggestion is its true class, i.e. the label it had before the flip.
    assert sum(suspects.suggested[i] not in ("", table.labels[i]) for i in flipped_rows) == len(flipped_rows)
