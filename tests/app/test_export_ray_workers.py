"""The Ray export's workers: an extraction actor killed mid-run, TensorFlow's and Ray's start-up
lines kept off the driver's terminal, and GPU actors (asked for, and refused when the cluster has none)."""
import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest

from app.export import ExportOptions, export
from app.export_ray import RayOptions, export_ray
from app.export_ray.engine import build_dataset, check_gpus
from app.export_ray.parts import read_receipt
from app.export_ray.plan import plan_chunks, settings_fingerprint
from app.formats import labelme
from tests.app.test_export_ray import ROOT, _by_region, _many_images, checkout_env, ray_local  # noqa: F401

# under pytest-xdist one worker runs every Ray test: one local Ray instance, not one per worker
pytestmark = pytest.mark.xdist_group("ray")


def _jobs(samples):
    return [(p, labelme.read(labelme.sidecar_path(p), derived=True).boxes) for p in sorted(samples.glob("*.png"))]


def _actor_pids():
    """This test process's Ray extraction actors (its own Ray instance's workers are its
    descendants: other Ray instances on the machine are never touched)."""
    import psutil

    pids = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "EmbedChunk" in " ".join(proc.cmdline()):
                pids.append(proc.pid)
        except psutil.Error:
            continue
    return pids


def test_a_killed_extraction_actor_is_restarted_and_the_run_completes(ray_local, samples, tmp_path):  # noqa: F811
    _many_images(samples, copies=2)  # 6 images, 14 regions: 6 chunks of one image
    jobs = _jobs(samples)
    out = tmp_path / "ray"
    killed = {}

    def kill_after_first_chunk(ticks):
        for i, tick in enumerate(ticks):
            if i == 0:
                pids = _actor_pids()
                assert len(pids) == 1, pids  # --workers 1
                killed["parts"] = len(list((out / "embeddings").glob("part-*.parquet")))
                os.kill(pids[0], signal.SIGKILL)
                killed["pid"] = pids[0]
            yield tick

    summary = export_ray(jobs, ExportOptions(out), samples, RayOptions(workers=1, batch_size=1),
                         progress=kill_after_first_chunk)
    assert killed["parts"] < 6, "the actor should have been killed with chunks left to do"
    assert killed["pid"] not in _actor_pids()
    assert summary.images == 6 and summary.regions == 14 and not summary.failures
    parts = sorted((out / "embeddings").glob("part-*.parquet"))
    assert len(parts) == 6 and not list((out / "embeddings").glob(".*"))  # no half-written part left
    assert sum(read_receipt(p)["regions"] for p in parts) == 14
    local = export(jobs, ExportOptions(tmp_path / "local"), samples)
    want = _by_region(pads.dataset(tmp_path / "local" / "embeddings.parquet").to_table())
    table = pads.dataset(out / "embeddings").to_table()
    got = _by_region(table)
    assert table.num_rows == local.regions == 14 and got.keys() == want.keys()  # no row twice, none lost
    for key, row in want.items():
        np.testing.assert_array_equal(np.asarray(got[key]["embedding"], np.float32), np.asarray(row["embedding"], np.float32))


TF_START_UP = ("absl::InitializeLog", "cudart_stub", "cpu_feature_guard", "cuInit", "oneDNN")
# Ray's own notices (see app/export_ray/notices.py): a new local instance's token-authentication
# notice, the driver's C++ line for each Ray Data actor, Ray Data's progress-bar note
RAY_NOTICES = ("Token authentication is", "has constructor arguments in the object store", "Progress bars disabled")


def _tf_lines(text):
    return [line for line in text.splitlines() if any(marker in line for marker in TF_START_UP)]


def _ray_lines(text):
    return [line for line in text.splitlines() if any(marker in line for marker in RAY_NOTICES)]


def test_start_up_lines_of_tensorflow_and_ray_only_with_verbose(ray_local, samples, tmp_path):  # noqa: F811
    code = "import sys; from app.cli import main; sys.exit(main(sys.argv[1:]))"
    # quiet: a driver that starts a local instance of its own, as a user's first run does (the
    # token notice comes only then); verbose: a driver on the session's instance
    user = {k: v for k, v in checkout_env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    own = {k: v for k, v in user.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    session = ["--address", ray_local.get_runtime_context().gcs_address, "--verbose"]
    runs = {}
    for name, extra, env in (("quiet", [], own), ("verbose", session, user)):
        args = ["export", str(samples / "coffee.png"), "--out", str(tmp_path / name), "--engine", "ray", "--workers", "1", *extra]
        runs[name] = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                                    capture_output=True, text=True, timeout=300)
        assert runs[name].returncode == 0, runs[name].stderr[-3000:]
        assert "exported 2 regions from 1 images" in runs[name].stdout
    quiet, verbose = runs["quiet"].stderr, runs["verbose"].stderr
    assert _tf_lines(quiet) == [] and _ray_lines(quiet) == [], quiet[-3000:]
    # --verbose lets Ray's lines through, and the workers' own, prefixed with the actor's name and pid
    assert any("constructor arguments" in line for line in _ray_lines(verbose)), verbose[-3000:]
    if not any("pid=" in line for line in _tf_lines(verbose)):  # fine only if this TensorFlow build prints none
        bare = subprocess.run([sys.executable, "-c", "import tensorflow as tf; tf.config.list_physical_devices()"],
                              capture_output=True, text=True, env=user)
        assert _tf_lines(bare.stderr) == [], verbose[-3000:]


def test_gpus_per_worker_is_the_actor_pools_num_gpus(ray_local, samples, tmp_path):  # noqa: F811
    options = ExportOptions(tmp_path / "o")
    chunks = plan_chunks(_jobs(samples), 2, settings_fingerprint(options, "stride 4", samples))
    for gpus, workers in ((1, None), (0.5, 3), (0, 2)):
        ds = build_dataset(ray_local, chunks, options, RayOptions(workers=workers, gpus_per_worker=gpus), samples)
        embed = ds._logical_plan.dag  # the last stage: what Ray Data will ask of the cluster per actor
        assert "EmbedChunk" in embed.name
        assert embed.ray_remote_args.get("num_gpus") == (gpus or None)
        assert isinstance(embed.compute, ray_local.data.ActorPoolStrategy)
        if workers:
            assert embed.compute.min_size == embed.compute.max_size == workers
        read = embed.input_dependencies[0]
        assert "read_chunk" in read.name and not read.ray_remote_args.get("num_gpus")  # reads stay on CPUs


def _cluster(gpus):
    return types.SimpleNamespace(cluster_resources=lambda: {"CPU": 8.0, **({"GPU": float(gpus)} if gpus else {})})


def test_more_gpus_than_the_cluster_has_are_refused_before_anything_waits():
    check_gpus(_cluster(0), RayOptions())
    check_gpus(_cluster(2), RayOptions(workers=2, gpus_per_worker=1))
    check_gpus(_cluster(1), RayOptions(gpus_per_worker=0.5))
    with pytest.raises(ValueError, match=r"--gpus-per-worker 1 with --workers 3 needs 3 GPU\(s\), but the Ray cluster has 2"):
        check_gpus(_cluster(2), RayOptions(workers=3, gpus_per_worker=1))
    with pytest.raises(ValueError, match=r"--gpus-per-worker 1 needs 1 GPU\(s\), but the Ray cluster has 0"):
        check_gpus(_cluster(0), RayOptions(gpus_per_worker=1))
