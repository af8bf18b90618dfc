"""Writing outputs: file modes (new files by the umask, replaced files keep theirs), a full disk
(temporary files removed, the path named), and two exports into one folder (the second refused)."""
import errno
import os
import stat
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from app import atomic, outlock
from app import export as export_mod
from app.cli import main as cli_main
from app.formats import labelme





@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(old)


def _jobs(samples):
    return [(samples / f"{n}.png", labelme.read(samples / f"{n}.json").boxes) for n in ("astronaut", "chelsea", "coffee")]


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _leftovers(folder):
    return sorted(p.name for p in Path(folder).rglob("*") if p.name.endswith((".partial", ".tmp")))


def test_new_files_get_the_umask_mode(tmp_path, umask):
    atomic.atomic_write_text(tmp_path / "a.txt", "x")
    assert _mode(tmp_path / "a.txt") == 0o644
    umask(0o077)
    atomic.atomic_write_text(tmp_path / "b.txt", "x")
    assert _mode(tmp_path / "b.txt") == 0o600


def test_replaced_files_keep_their_mode(tmp_path, umask, samples):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    os.chmod(target, 0o640)
    atomic.atomic_write_text(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o640
    sidecar = samples / "coffee.json"
    os.chmod(sidecar, 0o644)
    umask(0o077)  # a stricter umask now does not tighten a file the user made readable
    labelme.write(sidecar, samples / "coffee.png", labelme.read(sidecar).boxes)
    assert _mode(sidecar) == 0o644


def test_export_outputs_get_the_umask_mode(samples, tmp_path, umask):
    out = tmp_path / "out"
    export_mod.export(_jobs(samples)[2:], export_mod.ExportOptions(out, crops=True))
    files = [out / "embeddings.parquet", out / "manifest.csv", out / "manifest.json", *(out / "crops").iterdir()]
    assert {p.name: _mode(p) for p in files} == {p.name: 0o644 for p in files}


def test_failed_atomic_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    (tmp_path / "f.txt").write_text("before")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OSError):
        atomic.atomic_write_text(tmp_path / "f.txt", "after")
    assert (tmp_path / "f.txt").read_text() == "before" and _leftovers(tmp_path) == []


def _disk_full_on(monkeypatch, owner, name, after=1):
    """Make ``owner.name`` fail with ENOSPC from its ``after``-th call on."""
    real, calls = getattr(owner, name), []

    def full(*args, **kwargs):
        calls.append(1)
        if len(calls) >= after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, full)


def test_disk_full_while_streaming_embeddings(samples, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _disk_full_on(monkeypatch, export_mod.EmbeddingWriter, "add", after=2)
    with pytest.raises(export_mod.ExportWriteError) as exc:
        export_mod.export(_jobs(samples), export_mod.ExportOptions(out))
    assert str(out / "embeddings.parquet") in str(exc.value) and "No space left" in str(exc.value)
    assert _leftovers(out) == [] and not (out / "embeddings.parquet").exists()
    assert not (out / outlock.LOCK_NAME).exists()


def test_disk_full_on_a_crop_names_the_crop(samples, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _disk_full_on(monkeypatch, export_mod, "atomic_write_bytes", after=2)
    with pytest.raises(export_mod.ExportWriteError, match=r"crops/astronaut_0001\.png: No space left"):
        export_mod.export(_jobs(samples), export_mod.ExportOptions(out, crops=True))
    assert _leftovers(out) == [] and not (out / "manifest.csv").exists()


def test_disk_full_on_the_manifest_removes_the_finished_embeddings_too(samples, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _disk_full_on(monkeypatch, export_mod, "open_temp", after=2)  # manifest.csv is fine, manifest.json is not
    with pytest.raises(export_mod.ExportWriteError, match="manifest.json"):
        export_mod.export(_jobs(samples), export_mod.ExportOptions(out))
    assert sorted(p.name for p in out.iterdir()) == []


def test_cli_reports_a_full_disk_with_the_path(samples, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    _disk_full_on(monkeypatch, export_mod.EmbeddingWriter, "add")
    assert cli_main(["export", str(samples), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {out / 'embeddings.parquet'}: No space left on device" in err and "Traceback" not in err


def test_second_export_into_a_busy_folder_is_refused_and_touches_nothing(samples, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    fd = outlock.acquire(out)  # the first run, still writing
    try:
        partial = out / "embeddings.parquet.partial"
        partial.write_bytes(b"the first run's rows")
        assert cli_main(["export", str(samples), "--out", str(out), "--crops"]) == 1
        err = capsys.readouterr().err
        assert str(out) in err and f"process {os.getpid()}" in err and "another export" in err
        assert partial.read_bytes() == b"the first run's rows" and not (out / "crops").exists()
    finally:
        outlock.release(out, fd)
    assert cli_main(["export", str(samples), "--out", str(out)]) == 0
    assert len(pq.read_table(out / "embeddings.parquet")) == 7 and not partial.exists()


def test_stale_lock_of_a_dead_process_is_taken_over(samples, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / outlock.LOCK_NAME).write_text("999999999\n")  # left by a run that was killed
    summary = export_mod.export(_jobs(samples), export_mod.ExportOptions(out))
    assert summary.regions == 7 and not (out / outlock.LOCK_NAME).exists()


def test_lock_held_by_another_process_refuses_and_its_death_frees_the_folder(samples, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from app import outlock; outlock.acquire(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(120)", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(outlock.OutputInUse, match=f"process {holder.pid}"):
            export_mod.export(_jobs(samples), export_mod.ExportOptions(out))
    finally:
        holder.kill()  # dies without releasing: its lock file stays behind
        holder.wait()
    assert (out / outlock.LOCK_NAME).read_text().strip() == str(holder.pid)
    assert export_mod.export(_jobs(samples), export_mod.ExportOptions(out)).regions == 7


def test_temporary_files_of_a_killed_run_are_cleared(samples, tmp_path):
    out = tmp_path / "out"
    (out / "crops").mkdir(parents=True)
    left = [out / "embeddings.parquet.partial", out / ".manifest.csv.0badf00d.tmp", out / "crops" / ".a_0000.png.0badf00d.tmp"]
    for p in left:
        p.write_bytes(b"half")
    export_mod.export(_jobs(samples)[2:], export_mod.ExportOptions(out, crops=True))
    assert _leftovers(out) == []
