"""`roiscope export s3://... --engine ray`: images and annotations on object storage, read
through pyarrow filesystems from a real S3 server on localhost (moto), give the rows of the
local export of the same files on disk."""
import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
from PIL import Image

from app.cli import main as cli_main
from app.formats import labelme
from tests.app.test_export_ray import ray_local  # noqa: F401 (the session's one Ray instance)
from tests.local_s3 import local_s3

# under pytest-xdist one worker runs every Ray test: one local Ray instance, not one per worker
pytestmark = pytest.mark.xdist_group("ray")

BUCKET = "roiscope-test"


@pytest.fixture(scope="module")
def s3_server():
    pytest.importorskip("moto.server")
    with local_s3() as server:  # the AWS_* variables pyarrow reads are set while it runs
        yield server


@pytest.fixture
def s3(s3_server):
    filesystem = s3_server.filesystem(allow_bucket_deletion=True)
    filesystem.create_dir(BUCKET)
    yield filesystem
    filesystem.delete_dir(BUCKET)


def _upload(filesystem, folder: Path, prefix: str):
    for f in sorted(folder.iterdir()):
        with filesystem.open_output_stream(f"{prefix}/{f.name}") as out:
            out.write(f.read_bytes())


def _turned_jpeg(samples: Path):
    """A JPEG stored on its side with EXIF orientation 6, and a box on the displayed image."""
    stored = Image.open(samples / "chelsea.png").convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(samples / "turned.jpg", exif=exif.tobytes(), quality=95)
    box = {"label": "cat", "points": [[20, 30], [200, 150]], "shape_type": "rectangle"}
    (samples / "turned.json").write_text(json.dumps({"imagePath": "turned.jpg", "shapes": [box]}))


def _rows(table, prefix):
    rows = {}
    for row in table.to_pylist():
        name = row.pop("image")
        assert name.startswith(prefix), name
        rows[(name[len(prefix):], row["region_id"])] = row
    return rows


def _manifest(path, prefix):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    for row in rows[1:]:
        assert row[1].startswith(prefix), row
        row[1] = row[1][len(prefix):]
    return rows


def test_inputs_on_s3_give_the_local_export_rows(ray_local, s3, samples, tmp_path, capsys):  # noqa: F811
    _turned_jpeg(samples)
    (samples / "notes.txt").write_text("not an image")
    _upload(s3, samples, f"{BUCKET}/data")
    common = ["--crops", "--op", "roi_align", "--size", "3x4"]
    assert cli_main(["export", str(samples), "--out", str(tmp_path / "local"), *common]) == 0
    local_text = capsys.readouterr().out
    rc = cli_main(["export", f"s3://{BUCKET}/data", "--out", str(tmp_path / "ray"), "--engine", "ray",
                   "--batch-size", "2", *common])
    ray_text = capsys.readouterr().out
    assert rc == 0, ray_text
    assert "exported 8 regions from 4 images" in ray_text and "exported 8 regions from 4 images" in local_text
    local = _rows(pads.dataset(tmp_path / "local" / "embeddings.parquet").to_table(), f"{samples}/")
    remote = _rows(pads.dataset(tmp_path / "ray" / "embeddings").to_table(), f"s3://{BUCKET}/data/")
    assert remote.keys() == local.keys() and ("turned.jpg", 0) in remote
    for key, row in local.items():
        assert remote[key] == row, key  # every column, the embedding bit for bit
    assert _manifest(tmp_path / "ray" / "manifest.csv", f"s3://{BUCKET}/data/") == \
        _manifest(tmp_path / "local" / "manifest.csv", f"{samples}/")
    crops = sorted((tmp_path / "local" / "crops").iterdir())
    assert [p.name for p in crops] == sorted(p.name for p in (tmp_path / "ray" / "crops").iterdir())
    assert all((tmp_path / "ray" / "crops" / p.name).read_bytes() == p.read_bytes() for p in crops)


def test_annotations_file_on_s3_and_a_bad_image_named_by_uri(ray_local, s3, samples, tmp_path, capsys):  # noqa: F811
    coco = {"images": [{"id": 1, "file_name": "images/coffee.png", "width": 451, "height": 300}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 100, 80]}],
            "categories": [{"id": 1, "name": "cup"}]}
    with s3.open_output_stream(f"{BUCKET}/ds/annotations/instances.json") as out:
        out.write(json.dumps(coco).encode())
    with s3.open_output_stream(f"{BUCKET}/ds/images/coffee.png") as out:
        out.write((samples / "coffee.png").read_bytes())
    with s3.open_output_stream(f"{BUCKET}/ds/images/broken.png") as out:
        out.write(b"\x89PNG not really")
    rc = cli_main(["export", f"s3://{BUCKET}/ds/images", "--annotations", f"s3://{BUCKET}/ds/annotations/instances.json",
                   "--out", str(tmp_path / "o"), "--engine", "ray"])
    text = capsys.readouterr().out
    assert rc == 1 and "exported 1 regions from 1 images" in text
    assert f"s3://{BUCKET}/ds/images/broken.png: not a readable image" in text
    table = pads.dataset(tmp_path / "o" / "embeddings").to_table()
    assert table.column("image").to_pylist() == [f"s3://{BUCKET}/ds/images/coffee.png"]
    assert table.column("label").to_pylist() == ["cup"]
    np.testing.assert_allclose([table.column(c)[0].as_py() for c in ("x1", "y1", "x2", "y2")], [10, 20, 110, 100])


@pytest.mark.parametrize("uri, says", [
    (f"s3://{BUCKET}/no-such-prefix", "no such file or folder"),
    ("s3://no-such-bucket-roiscope/data", "s3://no-such-bucket-roiscope/data: "),
    ("bogus://somewhere/data", "cannot open"),
])
def test_a_bad_uri_is_named_and_the_run_exits_1(ray_local, s3, tmp_path, capsys, uri, says):  # noqa: F811
    rc = cli_main(["export", uri, "--out", str(tmp_path / "o"), "--engine", "ray"])
    captured = capsys.readouterr()
    assert rc == 1
    assert f"{uri}: " in captured.out and says in captured.out
    assert "exported 0 regions from 0 images" in captured.out


def test_uris_need_the_ray_engine_and_a_local_output(s3, tmp_path, capsys):
    assert cli_main(["export", f"s3://{BUCKET}/data", "--out", str(tmp_path / "o")]) == 1
    assert f"s3://{BUCKET}/data: inputs given as URIs need --engine ray" in capsys.readouterr().out
    assert cli_main(["export", f"s3://{BUCKET}/data", "--out", f"s3://{BUCKET}/out", "--engine", "ray"]) == 1
    assert f"--out s3://{BUCKET}/out: the output must be a local or shared folder" in capsys.readouterr().err


def test_file_uris_list_images_and_sidecars_as_on_disk(samples):
    from app.export_ray.remote import collect_remote_jobs

    (samples / "chelsea.json").write_text("{ not json")
    remote = collect_remote_jobs([samples.as_uri()])
    assert remote.root == samples.as_uri()
    assert [str(image) for image, _ in remote.jobs] == [(samples / n).as_uri() for n in ("astronaut.png", "chelsea.png", "coffee.png")]
    coffee = remote.jobs[2][1]
    assert [(b.label, b.corners()) for b in coffee] == \
        [(b.label, b.corners()) for b in labelme.read(samples / "coffee.json", derived=True).boxes]
    assert remote.jobs[1][1] == [] and len(remote.problems) == 1
    assert remote.problems[0].startswith(f"{(samples / 'chelsea.json').as_uri()}: ")  # named by its URI, not the temp copy
