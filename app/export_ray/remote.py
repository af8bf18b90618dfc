"""Inputs on object storage for the Ray export (driver side): ``s3://``, ``gs://``, ``hdfs://``,
``file://`` ... URIs, through the pyarrow filesystem that ``FileSystem.from_uri`` picks, with
its own conventions for endpoints and credentials (``AWS_*`` variables, ``?region=`` ...).

The driver lists the images (as ``list_images``: a folder's images, not recursive) and copies
the small annotation files into a temporary folder that mirrors the storage's paths, so the
existing readers match boxes to images by relative path exactly as on disk. Images stay where
they are: each read task fetches an image's bytes through the (picklable) filesystem and decodes
them with the local export's code (``decode_image_bytes``).
"""
from __future__ import annotations

import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from app.formats import labelme, read_annotations
from app.images import decode_image_bytes, is_image
from app.problems import describe, reason, safe_text

_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_FETCHERS = 16  # annotation files fetched at once (latency-bound, not CPU-bound)


def is_uri(text) -> bool:
    return bool(_URI.match(str(text)))


@dataclass(frozen=True)
class RemoteImage:
    """An image on a filesystem. Rows, manifests and messages name it by ``uri``; ``Path(image)``
    gives the URI too, so crop names are its path relative to the root URI, as on disk."""

    uri: str
    path: str  # the filesystem's own path (``bucket/key`` for S3)
    size: int
    mtime_ns: int

    def __str__(self) -> str:
        return self.uri

    def __fspath__(self) -> str:
        return self.uri

    @property
    def stamp(self) -> list:
        """What the plan's chunk keys take from a local file's ``stat``."""
        return [self.size, self.mtime_ns]


def read_remote_image(image: RemoteImage, filesystem):
    """(RGB, ImageInfo) of ``image``, read through ``filesystem`` (in a Ray task)."""
    try:
        with filesystem.open_input_file(image.path) as handle:
            data = handle.readall()
    except OSError as exc:
        raise OSError(f"{image.uri}: cannot read ({reason(exc)})") from exc
    return decode_image_bytes(data, image.uri)


def open_uri(uri: str):
    """(filesystem, path) for ``uri``; ValueError naming the URI when pyarrow cannot open it."""
    from pyarrow import fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # ArrowInvalid (unknown scheme), OSError (bucket region lookup)
        raise ValueError(f"{uri}: cannot open ({reason(exc)})") from exc


@dataclass
class RemoteJobs:
    jobs: list  # [(RemoteImage, [Box])]
    root: str  # the folder URI that crop names are relative to
    problems: list
    filesystem: object  # the images' pyarrow filesystem (None when nothing was found)


class _Listing:
    """The images named by the command line's URIs, all on one filesystem."""

    def __init__(self):
        self.filesystem, self.scheme, self.images, self.folders, self.problems = None, None, [], [], []
        self.others = {}  # fs path -> FileInfo of a non-image file beside the images (sidecars)

    def add(self, uri: str) -> None:
        from pyarrow import fs as pafs

        try:
            filesystem, path = open_uri(uri)
            if self.filesystem is not None and not filesystem.equals(self.filesystem):
                raise ValueError("all image URIs must be on one filesystem (same scheme and settings)")
            info = filesystem.get_file_info(path)
            if info.type == pafs.FileType.NotFound:
                raise ValueError("no such file or folder")
            self.filesystem, self.scheme = filesystem, _URI.match(uri).group(1)
            if info.type == pafs.FileType.Directory:
                self.folders.append(path)
                entries = sorted(filesystem.get_file_info(pafs.FileSelector(path)), key=lambda i: i.path)
            else:
                entries = [info]
        except Exception as exc:  # a bad URI, a missing bucket, no credentials: named, not fatal
            self.problems.append(describe(uri, exc))
            return
        for entry in entries:
            if entry.type != pafs.FileType.File:
                continue
            if is_image(entry.path):
                self.images.append(RemoteImage(self.uri(entry.path), entry.path, int(entry.size or 0),
                                               int(entry.mtime_ns if entry.mtime_ns is not None else -1)))
            elif entry is info:
                self.problems.append(f"{uri}: not an image or folder")
            else:
                self.others[entry.path] = entry

    def uri(self, path: str) -> str:
        return f"{self.scheme}://{path}"

    def root(self) -> str:
        if len(self.folders) == 1:
            return self.uri(self.folders[0])
        return self.uri(self.images[0].path.rsplit("/", 1)[0]) if self.images else "."


class _Mirror:
    """A temporary folder holding copies of annotation files at their storage paths."""

    def __init__(self, folder: Path, listing: _Listing):
        self.folder, self.listing = folder, listing

    def local(self, path: str) -> Path:
        return self.folder / path.lstrip("/")

    def fetch(self, filesystem, paths) -> list:
        """Copies ``paths``; the problems (path: reason) of those that failed."""
        def one(path):
            try:
                target = self.local(path)
                target.parent.mkdir(parents=True, exist_ok=True)
                with filesystem.open_input_file(path) as handle:
                    target.write_bytes(handle.readall())
            except Exception as exc:
                return describe(self.listing.uri(path), exc)
            return None

        with ThreadPoolExecutor(_FETCHERS) as pool:
            return [p for p in pool.map(one, paths) if p]

    def storage_text(self, text: str) -> str:
        """A reader's message with the temporary folder's paths turned back into URIs."""
        absolute = bool(self.listing.images) and self.listing.images[0].path.startswith("/")  # file:///x
        return text.replace(f"{self.folder}/", f"{self.listing.scheme}://" + ("/" if absolute else ""))


def collect_remote_jobs(images, annotations=None, fmt=None) -> RemoteJobs:
    """The CLI's ``collect_jobs`` for URIs: nothing here stops the run, each problem is named."""
    listing = _Listing()
    for uri in images:
        if is_uri(uri):
            listing.add(str(uri))
        else:
            listing.problems.append(f"{uri}: give every input as a URI (e.g. file://{Path(uri).absolute()}) "
                                    "when any is one")
    boxes, problems = {}, list(listing.problems)
    if listing.images:
        with tempfile.TemporaryDirectory(prefix="roiscope-annotations-") as folder:
            mirror = _Mirror(Path(folder), listing)
            if annotations:
                boxes, more = _read_annotation_files(mirror, annotations, fmt)
            else:
                boxes, more = _read_sidecars(mirror)
            problems += more
    jobs = [(image, boxes.get(image, [])) for image in listing.images]
    return RemoteJobs(jobs, listing.root(), problems, listing.filesystem)


def _read_annotation_files(mirror: _Mirror, annotations: str, fmt):
    """An annotation file or folder (a URI, or a local path) read against the listed images."""
    from pyarrow import fs as pafs

    listing = mirror.listing
    if is_uri(annotations):
        try:
            filesystem, path = open_uri(annotations)
            info = filesystem.get_file_info(path)
            if info.type == pafs.FileType.NotFound:
                raise ValueError("no such file or folder")
            if info.type == pafs.FileType.Directory:
                found = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
                files = [i.path for i in found if i.type == pafs.FileType.File and not is_image(i.path)]
            else:
                files = [path]
        except Exception as exc:
            return {}, [describe(annotations, exc)]
        problems = mirror.fetch(filesystem, files)
        local = mirror.local(path)
    else:
        problems, local = [], Path(annotations)
    local_images = {mirror.local(image.path): image for image in listing.images}
    try:
        result = read_annotations(local, list(local_images), mirror.local(listing.root().split("://", 1)[1]), fmt)
    except Exception as exc:  # the readers name their problems; anything else still must not stop the run
        return {}, problems + [describe(annotations, exc)]
    problems += [mirror.storage_text(safe_text(e)) for e in result.errors]
    print(mirror.storage_text(safe_text(result.summary_text())), file=sys.stderr)
    return {local_images[k]: v for k, v in result.boxes.items() if k in local_images}, problems


def _read_sidecars(mirror: _Mirror):
    """labelme sidecars beside the images (``photo.json`` for ``photo.png``), as on disk."""
    listing = mirror.listing
    sidecars = {}
    for image in listing.images:
        path = image.path.rsplit(".", 1)[0] + ".json"
        if path in listing.others:
            sidecars[image] = path
    problems = mirror.fetch(listing.filesystem, sorted(set(sidecars.values())))
    boxes = {}
    for image, path in sidecars.items():
        try:
            boxes[image] = labelme.read(mirror.local(path), derived=True).boxes
        except FileNotFoundError:
            continue  # its fetch failed: already named
        except Exception as exc:
            problems.append(mirror.storage_text(describe(mirror.local(path), exc)))
    return boxes, problems
