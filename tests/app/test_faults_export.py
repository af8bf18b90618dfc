"""One bad item never costs the rest: every per-image and per-file failure of an export, of any
exception type, is named (file and reason), counted, and the other images are exported."""
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import app.export_cli as export_cli
from app import export as export_mod
from app.cli import main as cli_main
from app.formats import labelme





def _rows(out):
    return pq.read_table(out / "embeddings.parquet").to_pandas()


def _no_leftovers(out):
    return not [p.name for p in out.iterdir() if p.name.endswith((".partial", ".tmp")) or p.name.startswith(".roiscope")]


def test_permission_denied_on_one_image_costs_only_that_image(samples, tmp_path, capsys, monkeypatch):
    real = np.fromfile

    def fromfile(path, *args, **kwargs):
        if Path(path).name == "chelsea.png":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(np, "fromfile", fromfile)
    out = tmp_path / "out"
    rc = cli_main(["export", str(samples), "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 1
    assert "chelsea.png" in text and "Permission denied" in text and "1 images skipped" in text
    assert sorted(set(_rows(out)["image"].map(lambda p: Path(p).name))) == ["astronaut.png", "coffee.png"]
    assert _no_leftovers(out)


@pytest.mark.parametrize("error", [KeyError("shapes"), TypeError("'int' object is not iterable"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")])
def test_any_exception_from_one_sidecar_is_named(samples, tmp_path, capsys, monkeypatch, error):
    real = labelme.read

    def read(path, **kwargs):
        if Path(path).name == "coffee.json":
            raise error
        return real(path, **kwargs)

    monkeypatch.setattr(export_cli.labelme, "read", read)
    rc = cli_main(["export", str(samples), "--out", str(tmp_path / "out")])
    text = capsys.readouterr().out
    assert rc == 1 and "coffee.json" in text and type(error).__name__ in text
    assert len(_rows(tmp_path / "out")) == 5  # astronaut 3 + chelsea 2


@pytest.mark.parametrize("coco", [
    {"images": [{"id": 1, "file_name": "coffee.png"}], "annotations": [{"id": 1, "image_id": [1], "bbox": [1, 1, 5, 5]}], "categories": []},
    {"images": [{"id": 1, "file_name": "coffee.png"}], "annotations": [], "categories": 5},
])
def test_malformed_coco_file_is_named_and_the_images_still_run(samples, tmp_path, capsys, coco):
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    out = tmp_path / "out"
    rc = cli_main(["export", str(samples), "--annotations", str(tmp_path / "coco.json"), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 1 and "coco.json" in captured.out and "Traceback" not in captured.err
    assert "exported 0 regions from 3 images" in captured.out
    assert len(_rows(out)) == 0 and _no_leftovers(out)


def test_annotation_reader_raising_anything_is_one_named_problem(samples, tmp_path, capsys, monkeypatch):
    labels = tmp_path / "labels"
    labels.mkdir()
    monkeypatch.setattr(export_cli, "read_annotations", lambda *a: (_ for _ in ()).throw(
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")))
    rc = cli_main(["export", str(samples), "--annotations", str(labels), "--out", str(tmp_path / "out")])
    text = capsys.readouterr().out
    assert rc == 1 and f"{labels}: UnicodeDecodeError" in text


def test_box_beyond_float32_is_skipped_and_its_neighbours_exported(samples, tmp_path, capsys):
    sidecar = samples / "coffee.json"
    data = json.loads(sidecar.read_text())
    data["shapes"][1]["points"] = [[10, 10], [1e300, 40]]
    sidecar.write_text(json.dumps(data))
    out = tmp_path / "out"
    rc = cli_main(["export", str(samples / "coffee.png"), "--out", str(out), "--crops"])
    text = capsys.readouterr().out
    assert rc == 1
    assert "coffee.png: region 1" in text and "float32" in text and "1 regions skipped" in text
    rows = _rows(out)
    assert list(rows["region_id"]) == [0] and list(rows["label"]) == [data["shapes"][0]["label"]]
    assert len((out / "manifest.csv").read_text().splitlines()) == 2


def test_non_utf8_file_name_is_exported_and_kept_exactly(samples, tmp_path, capsys):
    folder = tmp_path / "odd"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9")  # Latin-1 bytes: not UTF-8
    shutil.copy(samples / "coffee.png", folder / f"{name}.png")
    shutil.copy(samples / "coffee.json", folder / f"{name}.json")
    out = tmp_path / "out"
    rc = cli_main(["export", str(folder), "--out", str(out), "--crops"])
    capsys.readouterr()
    assert rc == 0
    assert len(_rows(out)) == 2 and "\\udce9" in _rows(out)["image"][0]
    manifest = json.loads((out / "manifest.json").read_bytes())
    assert os.fsencode(manifest[0]["image"]) == os.fsencode(folder / f"{name}.png")  # the exact bytes
    assert all((out / m["crop"]).is_file() for m in manifest)


def test_annotated_image_in_an_unreadable_format_is_reported(samples, tmp_path, capsys):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(samples / "anim.gif")
    shutil.copy(samples / "coffee.json", samples / "anim.json")
    (samples / "notes.txt").write_text("not an image, not reported")
    shutil.copy(samples / "coffee.json", samples / "notes.json")
    rc = cli_main(["export", str(samples), "--out", str(tmp_path / "out")])
    text = capsys.readouterr().out
    assert rc == 1
    assert "anim.gif: annotated by anim.json" in text and "notes.txt" not in text
    assert len(_rows(tmp_path / "out")) == 7


def test_multi_page_tiff_is_exported_with_a_warning(tmp_path, capsys):
    folder = tmp_path / "stack"
    folder.mkdir()
    assert cv2.imwritemulti(str(folder / "stack.tif"), [np.full((40, 50, 3), v, np.uint8) for v in (10, 200)])
    labelme.write(folder / "stack.json", folder / "stack.tif", [_box()])
    rc = cli_main(["export", str(folder), "--out", str(tmp_path / "out")])
    text = capsys.readouterr().out
    assert rc == 0  # a warning, nothing lost
    assert "warning" in text and "stack.tif: has 2 pages" in text
    assert len(_rows(tmp_path / "out")) == 1


def _box():
    from app.regions import Box

    return Box(5, 5, 30, 20, "thing")


def test_failure_inside_one_image_after_reading_costs_only_that_image(samples, tmp_path, monkeypatch):
    real = export_mod.pool_boxes
    calls = []

    def pool(feats, boxes, settings):
        calls.append(1)
        if len(calls) == 2:
            raise IndexError("pooling blew up")
        return real(feats, boxes, settings)

    monkeypatch.setattr(export_mod, "pool_boxes", pool)
    jobs = [(samples / f"{n}.png", labelme.read(samples / f"{n}.json").boxes) for n in ("astronaut", "chelsea", "coffee")]
    summary = export_mod.export(jobs, export_mod.ExportOptions(tmp_path / "out", crops=True))
    assert summary.skipped == 1 and summary.regions == 5
    assert summary.failures == [f"{samples / 'chelsea.png'}: IndexError: pooling blew up"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {Path(m["image"]).name for m in manifest} == {"astronaut.png", "coffee.png"}
    assert sorted(p.name for p in (tmp_path / "out" / "crops").iterdir()) == sorted(Path(m["crop"]).name for m in manifest)
