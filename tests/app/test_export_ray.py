"""`roiscope export --engine ray`: the same rows and manifests as the local export, bad images
named, a killed driver's run completed by a re-run. One local Ray instance for the whole file."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest

from app.cli import main as cli_main
from app.export import MANIFEST_COLUMNS, ExportOptions
from app.pooling import PoolSettings
from app.regionmap.parquet_source import read_parquet_table
from app.export_ray.engine import root_cause
from app.export_ray.parts import compact_manifests, read_receipt
from app.export_ray.plan import chunk_key, plan_chunks, settings_fingerprint
from app.regions import Box

# under pytest-xdist one worker runs every Ray test: one local Ray instance, not one per worker
pytestmark = pytest.mark.xdist_group("ray")

ROOT = Path(__file__).resolve().parents[2]


def checkout_env() -> dict:
    """The environment for a driver in a subprocess: this checkout's code first (its Ray workers
    get the driver's sys.path), whichever copy of the project is installed, and the variables
    ``ray.init`` set in this process (``RAY_AUTH_MODE``: the session instance wants its token)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for every Ray test module (they import this fixture)."""
    ray = pytest.importorskip("ray")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # no network at test time
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    if ray.is_initialized():
        ray.shutdown()


def _by_region(table):
    return {(Path(row["image"]).name, row["region_id"]): row for row in table.to_pylist()}


def _problems(text):
    return text[text.index("problem(s):"):].splitlines()[1:]


def test_ray_export_equals_the_local_export(ray_local, samples, tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    coffee = json.loads((samples / "coffee.json").read_text())
    coffee["shapes"].append({"label": "huge", "points": [[10, 10], [1e300, 40]], "shape_type": "rectangle"})
    (samples / "coffee.json").write_text(json.dumps(coffee))  # a box no engine can pool
    common = [str(samples), "--crops", "--op", "roi_pool", "--size", "5x4"]
    assert cli_main(["export", *common, "--out", str(tmp_path / "local")]) == 1
    local_text = capsys.readouterr().out
    assert cli_main(["export", *common, "--out", str(tmp_path / "ray"), "--engine", "ray", "--batch-size", "2"]) == 1
    ray_text = capsys.readouterr().out
    assert "exported 7 regions from 3 images" in ray_text and "1 regions skipped" in ray_text
    assert _problems(ray_text) == _problems(local_text) and "region 2 (huge)" in ray_text
    parts = sorted((tmp_path / "ray" / "embeddings").iterdir())
    assert len(parts) == 2 and all(p.name.startswith("part-") and p.suffix == ".parquet" for p in parts)
    local = pads.dataset(tmp_path / "local" / "embeddings.parquet").to_table()
    ray_table = pads.dataset(tmp_path / "ray" / "embeddings").to_table()
    assert ray_table.schema.remove_metadata() == local.schema.remove_metadata()
    assert ray_table.num_rows == 7
    want, got = _by_region(local), _by_region(ray_table)
    assert got.keys() == want.keys()
    for key, row in want.items():
        assert got[key]["label"] == row["label"] and got[key]["shape"] == row["shape"] == [5, 4, row["shape"][2]]
        np.testing.assert_array_equal(np.asarray(got[key]["embedding"], np.float32), np.asarray(row["embedding"], np.float32))
    assert len(pd.read_parquet(tmp_path / "ray" / "embeddings")) == 7
    on_map = read_parquet_table(tmp_path / "ray" / "embeddings")  # the region map opens the folder
    local_map = read_parquet_table(tmp_path / "local" / "embeddings.parquet")
    assert on_map.settings == local_map.settings and list(on_map.labels) == list(local_map.labels)
    np.testing.assert_array_equal(on_map.embeddings, local_map.embeddings)
    for name in ("manifest.csv", "manifest.json"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    crops = sorted(p.name for p in (tmp_path / "local" / "crops").iterdir())
    assert len(crops) == 7 and sorted(p.name for p in (tmp_path / "ray" / "crops").iterdir()) == crops


def _many_images(samples, copies):
    """The samples under several names (more chunks), their labelme sidecars alongside."""
    for i in range(1, copies):
        for name in ("astronaut", "chelsea", "coffee"):
            shutil.copy(samples / f"{name}.png", samples / f"{name}{i}.png")
            sidecar = json.loads((samples / f"{name}.json").read_text())
            sidecar["imagePath"] = f"{name}{i}.png"
            (samples / f"{name}{i}.json").write_text(json.dumps(sidecar))


def test_killed_driver_rerun_completes_without_duplicates(ray_local, samples, tmp_path, capsys):
    _many_images(samples, copies=2)  # 6 images, 7 x 2 = 14 regions
    (samples / "broken.png").write_bytes(b"\x89PNG broken")
    (samples / "broken.json").write_text(json.dumps({"shapes": [{"label": "x", "points": [[0, 0], [5, 5]], "shape_type": "rectangle"}]}))
    out = tmp_path / "out"
    args = ["export", str(samples), "--out", str(out), "--engine", "ray", "--batch-size", "1", "--workers", "1"]
    # a driver of its own on the session's Ray instance, killed once its first part is written
    address = ray_local.get_runtime_context().gcs_address
    code = "import sys; from app.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *args, "--address", address], cwd=ROOT, env=checkout_env(),
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "driver.err", "w"))
    emb = out / "embeddings"
    deadline = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline and not list(emb.glob("part-*.parquet")):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = [read_receipt(p) for p in emb.glob("part-*.parquet")]
    assert 1 <= len(written) < 7, "the driver should have been killed part-way"
    complete = sum(not r["failures"] for r in written)  # broken.png's chunk is redone
    (emb / ".part-00000006-deadbeef.parquet.abc.tmp").write_bytes(b"PAR1 half")  # a write cut short
    capsys.readouterr()

    assert cli_main(args) == 1  # broken.png is named: exit 1, as the local export
    text = capsys.readouterr().out
    assert "broken.png" in text and "exported 14 regions from 6 images" in text
    assert f"{complete} already written by an earlier run" in text
    table = pads.dataset(emb).to_table()
    keys = [(Path(r["image"]).name, r["region_id"]) for r in table.select(["image", "region_id"]).to_pylist()]
    assert len(keys) == 14 and len(set(keys)) == 14
    assert not list(emb.glob(".*"))  # the half-written temp file is gone
    assert len(list(emb.glob("part-*.parquet"))) == 7

    # other settings: every part recomputed, the old ones removed once the new ones exist
    assert cli_main([*args, "--size", "3"]) == 1
    text = capsys.readouterr().out
    assert "0 already written" in text and "7 outdated parts removed" in text
    table = pads.dataset(emb).to_table()
    assert table.num_rows == 14 and {tuple(s[:2]) for s in table.column("shape").to_pylist()} == {(3, 3)}


def test_gpus_asked_of_a_local_instance_without_gpus_fail_at_once(ray_local, samples, tmp_path, capsys):
    rc = cli_main(["export", str(samples / "coffee.png"), "--out", str(tmp_path / "o"), "--engine", "ray",
                   "--gpus-per-worker", "1"])
    assert rc == 1 and "--gpus-per-worker 1 needs 1 GPU(s), but the Ray cluster has 0" in capsys.readouterr().err
    assert not list((tmp_path / "o" / "embeddings").glob("part-*"))


def test_without_ray_a_clear_message_and_the_local_engine_unchanged(samples, tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from app.cli import main; "
            "rc = main(['export', sys.argv[1], '--out', sys.argv[2], '--engine', 'ray']); "
            "local = main(['export', sys.argv[1], '--out', sys.argv[3]]); sys.exit(rc * 10 + local)")
    proc = subprocess.run([sys.executable, "-c", code, str(samples / "coffee.png"), str(tmp_path / "r"), str(tmp_path / "l")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 10, proc.stderr[-2000:]
    assert "pip install 'roiscope[ray]'" in proc.stderr
    assert (tmp_path / "l" / "embeddings.parquet").is_file()


def test_chunk_keys_follow_images_boxes_and_settings(samples, tmp_path):
    options = ExportOptions(tmp_path / "o")
    fingerprint = settings_fingerprint(options, "stride 4", samples)
    jobs = [(samples / "coffee.png", [Box(1, 2, 30, 40, "cup")]), (samples / "chelsea.png", [])]
    key = chunk_key(jobs, fingerprint)
    assert chunk_key(list(jobs), dict(fingerprint)) == key
    assert chunk_key([(jobs[0][0], [Box(1, 2, 30, 41, "cup")]), jobs[1]], fingerprint) != key
    assert chunk_key([(jobs[0][0], [Box(1, 2, 30, 40, "mug")]), jobs[1]], fingerprint) != key
    assert chunk_key(jobs, settings_fingerprint(ExportOptions(tmp_path / "o", settings=PoolSettings(output_size=(3, 3))), "stride 4", samples)) != key
    assert chunk_key(jobs, settings_fingerprint(options, "stride 8", samples)) != key
    os.utime(samples / "chelsea.png", ns=(1, 1))  # the image was replaced
    assert chunk_key(jobs, fingerprint) != key
    chunks = plan_chunks(jobs * 3, 4, fingerprint)
    assert [c.images for c in chunks] == [4, 2] and chunks[0].part_name < chunks[1].part_name
    with pytest.raises(ValueError, match="batch-size"):
        plan_chunks(jobs, 0, fingerprint)


@pytest.mark.parametrize("count", [0, 1, 3])
def test_streamed_manifests_equal_the_local_format(tmp_path, count):
    rows = [[f"crops/a_{i:04d}.png", "/d/a.png", i, "cup", 1.5, 2.0, 30.0, 40.25, "partly-outside" if i else ""]
            for i in range(count)]
    compact_manifests(tmp_path, [{"manifest": rows[:1]}, {"manifest": []}, {"manifest": rows[1:]}])
    want = json.dumps([dict(zip(MANIFEST_COLUMNS, row)) for row in rows], indent=1, ensure_ascii=False)
    assert (tmp_path / "manifest.json").read_text(encoding="utf-8") == want
    lines = (tmp_path / "manifest.csv").read_text().splitlines()
    assert lines[0] == ",".join(MANIFEST_COLUMNS) and len(lines) == count + 1
    assert not list(tmp_path.glob(".*"))


def test_a_worker_failure_is_reported_by_its_own_exception_line():
    ray_text = ("ray::MapWorker(Map(read_chunk)->MapBatches(EmbedChunk)).submit() (pid=1, ip=10.0.0.1)\n"
                "  File \"x.py\", line 3, in write_part\n"
                "IsADirectoryError: [Errno 21] Is a directory: '/o/embeddings/part-1.parquet'\n\n"
                "The above exception was the direct cause of the following exception:\n\n"
                "ray.exceptions.UserCodeException: UDF failed to process a data block.\n"
                "To change retry attempts, configure `ray.data.DataContext.get_current()`.")
    assert root_cause(RuntimeError(ray_text)) == "IsADirectoryError: [Errno 21] Is a directory: '/o/embeddings/part-1.parquet'"
    assert root_cause(RuntimeError("something\nlast line")) == "last line"
