"""The export on Ray Data (the driver). Ray is imported here, lazily: `roiscope` runs without it.

Pipeline: the plan's chunks (``from_items``) -> ``read_chunk`` (tasks) -> ``EmbedChunk`` (an actor
pool; GPU actors with ``gpus_per_worker``) -> one Parquet part per chunk, committed by a rename.
On CPU-only pools Ray fuses the read into the actors (no image crosses the object store); with
GPU actors the remote arguments differ, so reads stay CPU tasks that feed the GPUs.
Images on object storage (``RemoteImage``, listed by ``remote.py``) are read by the read tasks
through the pyarrow filesystem passed in; the output stays a local or shared folder.
Ray does the scheduling, retries, back-pressure and streaming; the driver only iterates over
one small result row per chunk (counts and seconds), so its memory does not grow with the
number of regions; it holds the plan (the annotations it was given, a key per chunk), whose
pickled rows ``from_items`` moves into the object store.

Why not ``Dataset.write_parquet``: its file names come from the run (a write id and a block
index), and a re-run after a killed driver either duplicates the rows of finished blocks or,
with ``mode="overwrite"``, redoes everything; blocks are not aligned with images. Parts named by
a content/settings key make the unit of work and of resumption the same: a re-run skips the
parts that exist and removes the ones no longer planned, once every planned part is written.
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.export import ExportOptions, ExportSummary, extractor_and_layer, output_lock
from app.export_ray.parts import (EMBEDDINGS_DIR, compact_manifests, read_receipt, remove_leftovers,
                                  remove_stale_parts)
from app.export_ray.notices import actor_notices_dropped, auth_notice_held_back
from app.export_ray.plan import plan_chunks, settings_fingerprint
from app.export_ray.stages import STAGES, EmbedChunk, read_chunk

_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Warning): ")
INSTALL_HINT = "--engine ray needs Ray Data: pip install 'roiscope[ray]' (or pip install 'ray[data]')"


@dataclass
class RayOptions:
    address: str | None = None  # an existing cluster ("auto", "ray://host:10001"); None: a local one
    workers: int | None = None  # actor pool size; None: autoscale from 1 to what the cluster holds
    gpus_per_worker: float = 0.0
    batch_size: int = 16  # images per chunk: one Ray batch, one Parquet part
    verbose: bool = False  # let the workers' TensorFlow start-up lines through to the terminal

    def __post_init__(self):
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise ValueError(f"--gpus-per-worker must be 0 or more, got {self.gpus_per_worker}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")


@dataclass
class RayExportSummary(ExportSummary):
    chunks: int = 0
    resumed: int = 0  # chunks whose part an earlier run had written
    computed_regions: int = 0  # regions computed by this run (the rest were resumed)
    stale_removed: int = 0
    stages: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    # the driver's own seconds: planning (stat and keys), joining Ray, waiting for the first
    # chunk (actors starting, the model built), and rebuilding the manifests from the parts
    driver: dict = field(default_factory=lambda: dict.fromkeys(("plan", "connect", "first chunk", "manifests"), 0.0))

    def text(self) -> str:
        rate = self.computed_regions / self.seconds if self.seconds else 0.0
        head = (f"ray: {self.chunks} chunks, {self.resumed} already written by an earlier run; "
                f"{self.computed_regions} regions computed, {rate:.3g} regions/s (stage times are worker-seconds)"
                + (f"; {self.stale_removed} outdated parts removed" if self.stale_removed else ""))
        driver = "driver: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.driver.items())
        return head + "\n" + driver + "\n" + super().text()


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(INSTALL_HINT) from exc
    return ray


def worker_runtime_env(ray, verbose: bool) -> dict:
    """The job's workers import TensorFlow through ``app.tf_quiet`` before any task runs, so its
    C++ start-up lines (which ``TF_CPP_MIN_LOG_LEVEL`` does not stop) are not forwarded to the
    driver's terminal; ``--verbose`` lets them through. The hook is shipped by value: imported
    by name it would import ``app`` before Ray puts the job's code paths in place, and a worker
    could then run another installed copy of the project."""
    if verbose:
        return {}
    from app import tf_quiet

    ray.cloudpickle.register_pickle_by_value(tf_quiet)
    return {"worker_process_setup_hook": tf_quiet.import_tensorflow}


def _connect(ray, ray_options: RayOptions) -> bool:
    """Join ``address`` or the running instance, else start a local one. True if we started it.
    (A caller that started Ray itself chose its workers' runtime environment.)"""
    if ray.is_initialized():
        return False
    if ray_options.address is None:  # an instance of our own: it reports no usage statistics unless asked to
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with auth_notice_held_back(ray_options.verbose):
        ray.init(address=ray_options.address, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=True, runtime_env=worker_runtime_env(ray, ray_options.verbose))
    return True


def check_gpus(ray, options: RayOptions) -> None:
    """Ray Data waits for resources without end: GPUs the cluster does not have are refused now."""
    if not options.gpus_per_worker:
        return
    have = ray.cluster_resources().get("GPU", 0)
    need = options.gpus_per_worker * (options.workers or 1)
    if need > have:
        asked = f"--gpus-per-worker {options.gpus_per_worker:g}" + (f" with --workers {options.workers}" if options.workers else "")
        raise ValueError(f"{asked} needs {need:g} GPU(s), but the Ray cluster has {have:g}; join a cluster with "
                         "GPUs (--address, its GPU nodes started), ask for fewer, or drop --gpus-per-worker")


def _actor_pool(ray, options: RayOptions):
    if options.workers:
        return ray.data.ActorPoolStrategy(size=options.workers)
    resources = ray.cluster_resources()
    most = resources.get("GPU", 0) / options.gpus_per_worker if options.gpus_per_worker else resources.get("CPU", 1)
    return ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, int(most)))


def build_dataset(ray, todo, options: ExportOptions, ray_options: RayOptions, layer_root, filesystem=None):
    """The pipeline, not yet run. ``filesystem``: the pyarrow filesystem of remote images."""
    ds = ray.data.from_items([chunk.row() for chunk in todo], override_num_blocks=len(todo))
    ds = ds.map(read_chunk, fn_kwargs={"filesystem": filesystem})
    return ds.map_batches(
        EmbedChunk, batch_size=1, batch_format="numpy", compute=_actor_pool(ray, ray_options),
        num_gpus=ray_options.gpus_per_worker or None,
        # Ray Data restarts a lost actor and redoes its chunk (max_restarts=-1 and
        # max_task_retries=-1 by default; a test kills one): the redone part replaces the same
        # keyed file by a rename, so no row is written twice. Not passed here: remote arguments
        # the read stage lacks would stop Ray from fusing the read into the actors.
        fn_constructor_kwargs={"options": options, "out_dir": str(options.out_dir), "root": str(layer_root)})


def _results(ray, todo, options: ExportOptions, ray_options: RayOptions, layer_root, filesystem):
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the caller's bar counts images; Ray's would count chunks
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # not a line per dataset execution
    if not ray_options.verbose:  # nor its note that the progress bars we just turned off are off
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    check_gpus(ray, ray_options)
    ds = build_dataset(ray, todo, options, ray_options, layer_root, filesystem)
    return ds.iter_batches(batch_size=None, batch_format="numpy")


class _Sized:
    """An iterator with a length, so that a progress bar (tqdm) knows the total."""

    def __init__(self, iterator, total):
        self.iterator, self.total = iterator, total

    def __len__(self):
        return self.total

    def __iter__(self):
        return self.iterator


def _ticks(results, summary: RayExportSummary):
    """Adds each chunk's result to the summary; yields once per image, for the progress bar."""
    started = time.perf_counter()
    for batch in results:
        if not summary.driver["first chunk"]:
            summary.driver["first chunk"] = time.perf_counter() - started
        for i in range(len(batch["part"])):
            summary.computed_regions += int(batch["regions"][i])
            for stage in STAGES:
                summary.stages[stage] += float(batch[f"{stage}_s"][i])
            for _ in range(int(batch["images"][i])):
                yield None


def export_ray(jobs, options: ExportOptions, images_root=None, ray_options: RayOptions | None = None,
               progress=None, filesystem=None) -> RayExportSummary:
    """The local export's job list and options, run on Ray Data; output in ``out/embeddings/``.
    ``filesystem``: the pyarrow filesystem holding the images when they are ``RemoteImage``s.
    Raises ValueError (bad options), RuntimeError (no Ray, or the run stopped: re-run it),
    OutputInUse (another run writes into ``out``)."""
    ray_options = ray_options or RayOptions()
    if options.fmt != "parquet":
        raise ValueError(f"--engine ray writes a Parquet dataset; --format {options.fmt} is for the local engine")
    ray = _import_ray()  # before any work: without Ray, say so at once
    started = time.perf_counter()
    _, layer = extractor_and_layer(options)  # a wrong layer or model file fails here, clearly
    out = options.out_dir
    (out / EMBEDDINGS_DIR).mkdir(parents=True, exist_ok=True)
    with output_lock(out):  # the local export's lock: one run per folder, whichever engine
        summary = _run(ray, jobs, options, layer, images_root, ray_options, progress, filesystem)
    summary.seconds = time.perf_counter() - started
    return summary


def _run(ray, jobs, options, layer, images_root, ray_options, progress, filesystem) -> RayExportSummary:
    t_plan = time.perf_counter()
    out = options.out_dir
    emb_dir = out / EMBEDDINGS_DIR
    remove_leftovers(out)
    root = Path(images_root or (Path(jobs[0][0]).parent if jobs else out))
    if options.crops:
        (out / "crops").mkdir(exist_ok=True)
    chunks = plan_chunks(jobs, ray_options.batch_size, settings_fingerprint(options, layer, root))
    todo = [c for c in chunks if not _complete(emb_dir / c.part_name)]
    summary = RayExportSummary(chunks=len(chunks), resumed=len(chunks) - len(todo))
    summary.driver["plan"] = time.perf_counter() - t_plan
    if todo:
        t_connect = time.perf_counter()
        owned = _connect(ray, ray_options)
        summary.driver["connect"] = time.perf_counter() - t_connect
        try:
            with actor_notices_dropped(owned and not ray_options.verbose):  # our own driver's terminal only
                ticks = _ticks(_results(ray, todo, options, ray_options, root, filesystem), summary)
                for _ in (progress(_Sized(ticks, sum(c.images for c in todo))) if progress else ticks):
                    pass
        except ray.exceptions.RayError as exc:
            raise RuntimeError(f"the Ray export stopped: {root_cause(exc)} (re-run to complete it)") from exc
        finally:
            if owned:
                ray.shutdown()
    _finish(out, chunks, summary)
    return summary


def _complete(part: Path) -> bool:
    """A part a re-run may keep: written, readable, and without failed images (those chunks are
    redone, so a transient failure heals and a bad file is named again)."""
    if not part.is_file():
        return False
    try:
        return not read_receipt(part)["failures"]
    except Exception:  # a damaged part is simply written again
        return False


def _finish(out: Path, chunks, summary: RayExportSummary) -> None:
    """Counts and failures of every part (this run's and resumed ones), the manifests, and the
    removal of parts that no longer belong to the output."""
    t0 = time.perf_counter()
    emb_dir = out / EMBEDDINGS_DIR

    def receipts():
        for chunk in chunks:
            receipt = read_receipt(emb_dir / chunk.part_name)
            summary.images += receipt["images"]
            summary.skipped += receipt["skipped"]
            summary.regions += receipt["regions"]
            summary.skipped_regions += receipt["skipped_regions"]
            summary.failures += receipt["failures"]
            summary.warnings += receipt["warnings"]
            yield receipt

    compact_manifests(out, receipts())
    remove_leftovers(out)  # temporary files of an actor killed while writing (it was redone)
    summary.stale_removed = len(remove_stale_parts(emb_dir, {c.part_name for c in chunks}))
    summary.driver["manifests"] = time.perf_counter() - t0


def root_cause(exc) -> str:
    """The worker's own exception line out of Ray's wrapped traceback text (Ray's wrappers do
    not chain it), e.g. ``IsADirectoryError: [Errno 21] ...``; Ray's last line otherwise."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    own = [line for line in lines if _EXCEPTION_LINE.match(line) and not line.startswith("ray.")]
    return own[0] if own else (lines[-1] if lines else type(exc).__name__)
