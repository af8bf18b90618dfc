"""Headless export and the `roiscope export` CLI, end to end on the bundled samples."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from app import export as export_mod
from app.cli import main as cli_main
from app.formats import labelme
from app.images import capped_for_extraction, read_image
from app.regions import Box
from roi_core import roi_align, roi_pool
from roi_core.backbones import get_extractor





def _sidecar_boxes(folder):
    return {p.with_suffix(".png").name: labelme.read(p).boxes for p in sorted(folder.glob("*.json"))}


def test_cli_exports_sample_embeddings_equal_to_roi_core(samples, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli_main(["export", str(samples), "--out", str(out), "--crops", "--op", "roi_pool", "--size", "5x4"])
    assert rc == 0
    assert "exported 7 regions from 3 images" in capsys.readouterr().out
    table = pq.read_table(out / "embeddings.parquet").to_pandas()
    assert list(table.columns) == ["image", "region_id", "label", "x1", "y1", "x2", "y2", "extractor", "layer", "op",
                                   "output_size", "embedding", "shape"]
    assert len(table) == 7
    boxes = _sidecar_boxes(samples)
    ext = get_extractor("filters")
    for image_name, group in table.groupby(table["image"].map(lambda p: Path(p).name)):
        feats = ext.extract(capped_for_extraction(read_image(samples / image_name))[0], "stride 4")
        expect_boxes = boxes[image_name]
        rows = np.array([[0, *b.corners()] for b in expect_boxes], np.float32)
        want = roi_pool(feats.features, rows, (5, 4), 1 / feats.stride).numpy()
        assert list(group["label"]) == [b.label for b in expect_boxes]
        for (_, row), w in zip(group.iterrows(), want):
            assert list(row["shape"]) == list(w.shape) and list(row["output_size"]) == [5, 4]
            np.testing.assert_array_equal(np.asarray(row["embedding"], np.float32).reshape(w.shape), w)
    manifest = list(csv.DictReader(open(out / "manifest.csv", encoding="utf-8")))
    assert len(manifest) == 7 and all((out / m["crop"]).is_file() for m in manifest)
    crop = cv2.imread(str(out / manifest[0]["crop"]))
    b = boxes[Path(manifest[0]["image"]).name][0]
    assert crop.shape[:2] == (round(b.height), round(b.width))
    assert json.loads((out / "manifest.json").read_text())[0]["label"] == manifest[0]["label"]


def test_npz_output_and_align(samples, tmp_path):
    out = tmp_path / "out"
    assert cli_main(["export", str(samples / "coffee.png"), "--out", str(out), "--format", "npz"]) == 0
    data = np.load(out / "embeddings.npz")
    assert data["embedding"].shape[0] == 2 and list(data["label"]) == ["cup", "saucer"]
    ext = get_extractor("filters")
    feats = ext.extract(read_image(samples / "coffee.png"), "stride 4")
    rows = np.array([[0, *b.corners()] for b in labelme.read(samples / "coffee.json").boxes], np.float32)
    want = roi_align(feats.features, rows, 7, 0.25, -1, True).numpy()
    np.testing.assert_array_equal(data["embedding"].reshape(want.shape), want)


def test_bad_inputs_are_listed_and_the_rest_exported(samples, tmp_path, capsys):
    (samples / "broken.png").write_bytes(b"\x89PNG broken")
    (samples / "broken.json").write_text(json.dumps({"shapes": [{"label": "x", "points": [[0, 0], [5, 5]], "shape_type": "rectangle"}]}))
    (samples / "chelsea.json").write_text("{ not json")
    out = tmp_path / "out"
    rc = cli_main(["export", str(samples), "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 1
    assert "broken.png" in text and "chelsea.json" in text and "not valid JSON" in text
    assert len(pq.read_table(out / "embeddings.parquet")) == 5  # astronaut 3 + coffee 2


def test_missing_image_in_coco_file_is_reported(samples, tmp_path, capsys):
    coco = {"images": [{"id": 1, "file_name": "coffee.png"}, {"id": 2, "file_name": "gone.png"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 40]},
                            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5]}],
            "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    rc = cli_main(["export", str(samples), "--annotations", str(tmp_path / "coco.json"), "--out", str(tmp_path / "out")])
    assert rc == 1 and "gone.png" in capsys.readouterr().out
    table = pq.read_table(tmp_path / "out" / "embeddings.parquet").to_pandas()
    assert list(table["label"]) == ["thing"] and table["x2"][0] == 60


def test_degenerate_boxes_are_kept_pooled_and_flagged(tmp_path):
    img = tmp_path / "img.png"
    cv2.imwrite(str(img), np.full((50, 60, 3), 128, np.uint8))
    boxes = [Box.from_corners(40, 30, 10, 5, "inverted"), Box(20, 20, 20, 30, "flat"), Box(100, 100, 120, 130, "outside"),
             Box(-10, -10, 20, 20, "partly")]
    summary = export_mod.export([(img, boxes)], export_mod.ExportOptions(tmp_path / "out", crops=True))
    assert summary.regions == 4 and not summary.failures
    manifest = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv")))
    assert [m["flags"] for m in manifest] == ["", "zero-area;no-crop", "outside-image;no-crop", "partly-outside"]
    assert manifest[0]["x1"] == "10.0"  # inverted corners were normalized
    emb = pq.read_table(tmp_path / "out" / "embeddings.parquet").to_pandas()["embedding"]
    assert all(np.all(np.isfinite(np.asarray(e))) for e in emb)


def test_interrupted_export_leaves_no_half_file_and_rerun_completes(samples, tmp_path, monkeypatch):
    out = tmp_path / "out"
    jobs = [(samples / f"{n}.png", labelme.read(samples / f"{n}.json").boxes) for n in ("astronaut", "chelsea", "coffee")]
    calls = {"n": 0}
    real = export_mod.pool_boxes

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(export_mod, "pool_boxes", flaky)
    with pytest.raises(KeyboardInterrupt):
        export_mod.export(jobs, export_mod.ExportOptions(out))
    assert not (out / "embeddings.parquet").exists() and not (out / "manifest.csv").exists()
    monkeypatch.setattr(export_mod, "pool_boxes", real)
    summary = export_mod.export(jobs, export_mod.ExportOptions(out))
    assert summary.regions == 7
    assert len(pq.read_table(out / "embeddings.parquet")) == 7
    assert not list(out.glob("*.partial"))


def test_cli_usage_errors_exit_2(tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli_main(["export", str(tmp_path), "--out", str(tmp_path / "o"), "--size", "0x3"])
    assert exc.value.code == 2


def test_export_imports_no_qt(samples, tmp_path):
    code = ("import sys; from app.cli import main; rc = main(['export', sys.argv[1], '--out', sys.argv[2]]);"
            "sys.exit(10 + rc if 'PySide6' in sys.modules else rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(samples / "coffee.png"), str(tmp_path / "o")], capture_output=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_cli_with_a_user_model_and_safe_mode(samples, tmp_path, capsys):
    import keras

    inp = keras.Input(shape=(None, None, 3))
    out = keras.layers.Conv2D(6, 3, strides=4, padding="same", name="feat")(inp)
    keras.Model(inp, out).save(tmp_path / "mine.keras")
    rc = cli_main(["export", str(samples / "coffee.png"), "--out", str(tmp_path / "o"),
                   "--extractor", str(tmp_path / "mine.keras"), "--layer", "feat", "--size", "3"])
    assert rc == 0
    table = pq.read_table(tmp_path / "o" / "embeddings.parquet").to_pandas()
    assert list(table["shape"][0]) == [3, 3, 6] and table["layer"][0] == "feat"
    lam = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    keras.Model(inp, lam).save(tmp_path / "lambda.keras")
    rc = cli_main(["export", str(samples / "coffee.png"), "--out", str(tmp_path / "o2"), "--extractor", str(tmp_path / "lambda.keras")])
    err = capsys.readouterr().err
    assert rc == 1 and "lambda.keras" in err and "cannot load" in err


def test_cli_import_summary_and_derived_regions_as_the_window_reads_them(samples, tmp_path, capsys):
    # A polygon in a sidecar is a region (derived) for the CLI export as for the window; a point
    # is skipped; with --annotations the import's per-file summary is printed.
    data = json.loads((samples / "coffee.json").read_text())
    data["shapes"] += [{"label": "rim", "points": [[5, 5], [40, 8], [30, 30]], "shape_type": "polygon"},
                       {"label": "dot", "points": [[3, 3]], "shape_type": "point"}]
    (samples / "coffee.json").write_text(json.dumps(data))
    assert cli_main(["export", str(samples / "coffee.png"), "--out", str(tmp_path / "a")]) == 0
    table = pq.read_table(tmp_path / "a" / "embeddings.parquet").to_pandas()
    assert list(table["label"]) == ["cup", "saucer", "rim"] and table["x2"][2] == 40
    folder = tmp_path / "ann"
    folder.mkdir()
    (folder / "coffee.json").write_text(json.dumps(data))
    capsys.readouterr()
    assert cli_main(["export", str(samples / "coffee.png"), "--annotations", str(folder), "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "1 derived from other shapes" in err and "1 shape(s) skipped" in err
