"""ExportOptions holds one PoolSettings (the GUI's and the exporter's single description of
pooling), and the embeddings file has one schema whether it has rows or not."""
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from app import export as export_mod
from app.formats import labelme
from app.pooling import PoolSettings

from tests.app.conftest import SAMPLES


def test_options_hold_pool_settings_and_the_export_uses_them(tmp_path):
    settings = PoolSettings("roi_pool", (5, 4), 2)
    options = export_mod.ExportOptions(tmp_path / "out", settings=settings)
    assert options.settings is settings
    assert (options.op, options.output_size, options.sampling_ratio) == ("roi_pool", (5, 4), 2)
    boxes = labelme.read(SAMPLES / "coffee.json").boxes
    export_mod.export([(SAMPLES / "coffee.png", boxes)], options)
    table = pq.read_table(tmp_path / "out" / "embeddings.parquet").to_pandas()
    assert set(table["op"]) == {"roi_pool"} and list(table["output_size"][0]) == [5, 4]
    assert list(table["shape"][0])[:2] == [5, 4]
    with pytest.raises(ValueError, match="settings"):
        export_mod.ExportOptions(tmp_path / "o", settings="roi_pool")


def test_empty_and_full_embeddings_share_the_one_schema(tmp_path):
    img = tmp_path / "img.png"
    shutil.copy(SAMPLES / "coffee.png", img)
    export_mod.export([(img, [])], export_mod.ExportOptions(tmp_path / "empty"))
    export_mod.export([(img, labelme.read(SAMPLES / "coffee.json").boxes)], export_mod.ExportOptions(tmp_path / "full"))
    empty = pq.read_schema(tmp_path / "empty" / "embeddings.parquet")
    full = pq.read_schema(tmp_path / "full" / "embeddings.parquet")
    assert empty.remove_metadata() == full.remove_metadata() == export_mod.EMBEDDING_SCHEMA
    assert pq.read_table(tmp_path / "empty" / "embeddings.parquet").num_rows == 0


def test_embedding_table_round_trips_values(tmp_path):
    emb = np.arange(12, dtype=np.float32).reshape(2, 6)
    cols = {"image": np.array(["a.png", "a.png"]), "region_id": np.array([0, 3], np.int32), "label": np.array(["x", "y"]),
            "x1": np.zeros(2), "y1": np.zeros(2), "x2": np.ones(2), "y2": np.ones(2),
            "extractor": np.array(["filters"] * 2), "layer": np.array(["stride 4"] * 2), "op": np.array(["roi_align"] * 2),
            "output_size": np.array([1, 2], np.int32), "embedding": emb, "shape": np.array([1, 2, 3], np.int32)}
    table = export_mod.embedding_table(cols).to_pydict()
    assert table["embedding"] == emb.tolist() and table["shape"] == [[1, 2, 3]] * 2 and table["output_size"] == [[1, 2]] * 2
    assert table["region_id"] == [0, 3]
