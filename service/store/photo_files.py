"""Content-addressed photo store on disk: a file's name is its sha256, so a photo is stored once.

Writes go to a temporary file in the same folder and are renamed into place, so a crash never
leaves a half-written photo under its final name.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def storage_key(sha256: str, extension: str) -> str:
    return f"{sha256[:2]}/{sha256}{extension}"


# Derived files (thumbnails) live in their own folder of the store: regenerable, never orphans.
THUMBNAILS = "thumbnails"


def thumbnail_key(sha256: str) -> str:
    return f"{THUMBNAILS}/{sha256[:2]}/{sha256}.jpg"


def path_for(root: Path, key: str) -> Path:
    path = (root / key).resolve()
    if root.resolve() not in path.parents:
        raise ValueError(f"storage key {key!r} leaves the photo store")
    return path


def put(root: Path, key: str, data: bytes) -> Path:
    """Store ``data`` under ``key`` atomically; an existing file with that key is kept as it is."""
    path = path_for(root, key)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def orphans(root: Path, known_keys: set[str]) -> list[Path]:
    """Files in the store that no photo row points at (left by a crash before commit), and temp files."""
    if not root.is_dir():
        return []
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            key = path.relative_to(root).as_posix()
            if key not in known_keys and not key.startswith(THUMBNAILS + "/"):
                found.append(path)
    return found


def remove_orphans(root: Path, known_keys: set[str], *, grace_seconds: float, now: float | None = None) -> list[Path]:
    """Delete orphans (see ``orphans``) last modified more than ``grace_seconds`` ago; returns them.

    The grace period spares files of uploads in flight: a photo's file is written before its row
    is committed, so a young file without a row may be a moment from having one.
    """
    import time

    cutoff = (time.time() if now is None else now) - grace_seconds
    removed = []
    for path in orphans(root, known_keys):
        try:
            if path.stat().st_mtime <= cutoff:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # removed meanwhile (a concurrent sweep, or the temp file was renamed)
            continue
    return removed
