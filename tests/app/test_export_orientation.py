"""Boxes refer to the displayed image: an EXIF-rotated file's crops and embeddings come from the
pixels the user saw when drawing the box."""
import csv

import cv2
import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from app import export as export_mod
from app.pooling import PoolSettings
from app.regions import Box


def test_crop_of_an_exif_rotated_png_is_the_displayed_region(tmp_path):
    shown = np.zeros((40, 60, 3), np.uint8)  # displayed: 60 wide, 40 high, a red block top-left
    shown[5:15, 10:30] = (255, 0, 0)
    stored = np.rot90(shown, 1)  # orientation 6: viewers turn it 90 degrees clockwise back
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "turned.png", exif=exif)
    box = Box(10, 5, 30, 15, "red")
    out = tmp_path / "out"
    summary = export_mod.export([(tmp_path / "turned.png", [box])],
                                export_mod.ExportOptions(out, crops=True, extractor="pixels",
                                                         settings=PoolSettings("roi_pool", (2, 2))))
    assert summary.regions == 1 and not summary.failures
    crop = cv2.cvtColor(cv2.imread(str(out / next(csv.DictReader(open(out / "manifest.csv")))["crop"])), cv2.COLOR_BGR2RGB)
    assert crop.shape == (10, 20, 3) and (crop == (255, 0, 0)).all()
    emb = np.asarray(pq.read_table(out / "embeddings.parquet")["embedding"][0].as_py())
    assert emb.reshape(2, 2, -1)[..., 0].min() > 0.9 * emb.max()  # pooled from the red block
