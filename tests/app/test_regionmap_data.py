"""Where the map's regions come from: computed through export's code, cached per image, or read
back from an export's Parquet; and the headless suspects CSV."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.export import ExportOptions, export
from app.formats import labelme
from app.pooling import PoolSettings
from app.project import Box
from app.regionmap.cache import EmbeddingCache
from app.regionmap.compute import MapSettings, compute_table, folder_jobs
from app.regionmap.parquet_source import read_parquet_table
from app.regionmap import suspects_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ROISCOPE_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        img = cv2.GaussianBlur(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8), (0, 0), 1)
        cv2.imwrite(str(images / f"im{i}.png"), img)
        boxes = [Box(4, 4, 30, 40, "cat"), Box(20 + i, 10, 70, 50, "dog"), Box(0, 30, 50, 60, "cat")]
        labelme.write(images / f"im{i}.json", images / f"im{i}.png", boxes)
    return images


def test_embeddings_equal_the_exported_ones(folder, tmp_path):
    jobs, problems = folder_jobs([folder])
    assert not problems and len(jobs) == 3
    result = compute_table(jobs, MapSettings())
    export(jobs, ExportOptions(tmp_path / "out"), folder)
    exported = read_parquet_table(tmp_path / "out" / "embeddings.parquet")
    assert len(result.table) == len(exported) == 9
    np.testing.assert_array_equal(result.table.embeddings, exported.embeddings)
    assert list(result.table.labels) == list(exported.labels)
    np.testing.assert_array_equal(result.table.corners, exported.corners)
    # Box ids are the window's (1-based per image); the export numbers regions from 0.
    assert list(result.table.box_ids[:3]) == [1, 2, 3] and list(exported.box_ids[:3]) == [0, 1, 2]
    assert exported.settings == {"extractor": "filters", "layer": "stride 4", "op": "roi_align", "output_size": [7, 7]}
    assert result.table.dim == 7 * 7 * exported.embeddings.shape[1] // 49


def test_cache_hits_on_reopen_and_misses_on_changed_content_settings_or_boxes(folder):
    jobs, _ = folder_jobs([folder])
    first = compute_table(jobs)
    assert (first.hits, first.computed) == (0, 3)
    again = compute_table(jobs)
    assert (again.hits, again.computed) == (3, 0)
    np.testing.assert_array_equal(again.table.embeddings, first.table.embeddings)
    img = cv2.imread(str(folder / "im1.png"))
    img[0, 0] = 255 - img[0, 0]  # one pixel: the content hash changes
    cv2.imwrite(str(folder / "im1.png"), img)
    changed = compute_table(jobs)
    assert (changed.hits, changed.computed) == (2, 1)
    other = compute_table(jobs, MapSettings(op="roi_pool"))
    assert other.computed == 3
    assert not np.array_equal(other.table.embeddings, changed.table.embeddings)
    size = compute_table(jobs, MapSettings(output_size=(3, 3)))
    assert size.computed == 3 and size.table.dim == 9 * (first.table.dim // 49)
    moved = [(p, [b.moved_to(b.x1 + 1, b.y1, b.x2 + 1, b.y2) for b in boxes]) if p.name == "im2.png" else (p, boxes) for p, boxes in jobs]
    assert compute_table(moved).computed == 1


def test_a_damaged_cache_entry_is_recomputed_and_a_bad_image_costs_only_itself(folder, tmp_path):
    jobs, _ = folder_jobs([folder])
    cache = EmbeddingCache(tmp_path / "c2")
    compute_table(jobs, cache=cache)
    for entry in (tmp_path / "c2").rglob("*.npz"):
        entry.write_bytes(b"not a zip")
    (folder / "im0.png").write_bytes(b"garbage")
    result = compute_table(jobs, cache=cache)
    assert result.computed == 2 and len(result.table) == 6
    assert len(result.problems) == 1 and "im0.png" in result.problems[0]


def test_progress_and_cancel(folder):
    jobs, _ = folder_jobs([folder])
    seen = []
    result = compute_table(jobs, cache=False, progress=lambda d, t, p: seen.append((d, t)), cancelled=lambda: len(seen) >= 2)
    assert result.cancelled and seen == [(1, 3), (2, 3)] and len(result.table) == 6


def test_parquet_folder_with_mixed_settings_is_refused(folder, tmp_path):
    jobs, _ = folder_jobs([folder])
    export(jobs, ExportOptions(tmp_path / "parts" / "a"), folder)
    export(jobs, ExportOptions(tmp_path / "parts" / "b", settings=PoolSettings(op="roi_pool")), folder)
    with pytest.raises(ValueError, match="one setting"):
        read_parquet_table(tmp_path / "parts")
    (tmp_path / "parts" / "b" / "embeddings.parquet").unlink()
    export(jobs[:1], ExportOptions(tmp_path / "parts" / "b"), folder)
    assert len(read_parquet_table(tmp_path / "parts")) == 12
    (tmp_path / "bad.parquet").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.parquet"):
        read_parquet_table(tmp_path / "bad.parquet")


def test_suspects_csv_from_an_export(folder, tmp_path, capsys):
    jobs, _ = folder_jobs([folder])
    export(jobs, ExportOptions(tmp_path / "out"), folder)
    out = tmp_path / "suspects.csv"
    assert suspects_cli.main([str(tmp_path / "out" / "embeddings.parquet"), "--k", "3", "--out", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["image", "region_id", "label", "suggested_label", "score"]
    assert len(rows) == 10
    scores = [float(r[4]) for r in rows[1:]]
    assert scores == sorted(scores, reverse=True)
    assert {(r[0], r[1]) for r in rows[1:]} == {(str(p), str(i)) for p, _ in jobs for i in range(3)}
    for r in rows[1:]:
        assert (r[3] == "") == (float(r[4]) == 0) and r[3] != r[2]
    assert suspects_cli.main([str(tmp_path / "missing.parquet"), "--out", str(out)]) == 1
    assert "missing.parquet" in capsys.readouterr().err


def test_roiscope_suspects_imports_no_qt(folder, tmp_path):
    code = ("import sys; from app.cli import main; rc = main(sys.argv[1:]); "
            "assert not [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph'))]; sys.exit(rc)")
    env = {**os.environ, "ROISCOPE_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "s.csv"
    proc = subprocess.run([sys.executable, "-c", code, "suspects", str(folder), "--k", "2", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 10


def test_crops_are_cut_from_the_image_and_unreachable_images_give_none(tmp_path):
    from app.regionmap.crops import CropCache

    img = np.zeros((100, 200, 3), np.uint8)
    img[20:60, 50:150] = (255, 0, 0)  # a red block (RGB) where the box is
    cv2.imwrite(str(tmp_path / "r.png"), img[:, :, ::-1])
    crops = CropCache(size=50, margin=0)
    thumb = crops.crop(tmp_path / "r.png", (50, 20, 150, 60))
    assert thumb.shape == (20, 50, 3) and (thumb[..., 0] > 200).all() and (thumb[..., 2] < 50).all()
    assert crops.crop(tmp_path / "r.png", (300, 300, 400, 400)) is None  # outside the image
    assert crops.crop(tmp_path / "gone.png", (0, 0, 5, 5)) is None and "gone.png" in next(iter(crops.unreadable))


def test_a_folder_of_images_with_an_export_inside_is_still_a_folder_of_images(folder, tmp_path):
    from app.regionmap.sources import is_parquet_source

    jobs, _ = folder_jobs([folder])
    export(jobs, ExportOptions(folder / "out"), folder)
    assert not is_parquet_source(folder)
    assert is_parquet_source(folder / "out") and is_parquet_source(folder / "out" / "embeddings.parquet")


def test_an_unwritable_cache_costs_no_embeddings(folder, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    jobs, _ = folder_jobs([folder])
    result = compute_table(jobs, cache=EmbeddingCache(blocker / "cache"))
    assert len(result.table) == 9 and result.computed == 3
    assert len(result.problems) == 1 and "not writable" in result.problems[0]
