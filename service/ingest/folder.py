"""A folder of photo files into the library, one photo per transaction, resumable (``withsense ingest folder``)."""
from __future__ import annotations

from dataclasses import dataclass, field

from tqdm import tqdm

from service.accounts import audit
from service.config import Settings
from service.ingest.embedding_worker import drain
from service.ingest.loader import remove_orphan_files
from service.photos import uploads
from service.photos.images import ImageRejected
from service.store import photo_files
from service.store.db import session_scope


@dataclass
class FilesReport:
    """What a batch of files came to: added, already stored (duplicates), rejected with the reason."""

    added: list[tuple[str, int]] = field(default_factory=list)
    duplicates: list[tuple[str, int]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    near_duplicates: list[tuple[str, list[uploads.NearDuplicate]]] = field(default_factory=list)
    orphans_removed: int = 0
    embedded: int = 0

    @property
    def processed(self) -> int:
        return len(self.added) + len(self.duplicates)

    def lines(self) -> list[str]:
        out = [f"added: {len(self.added)}, duplicates: {len(self.duplicates)}, rejected: {len(self.rejected)}"]
        if self.embedded:
            out.append(f"image vectors computed: {self.embedded} photo(s), now searchable")
        if self.orphans_removed:
            out.append(f"removed {self.orphans_removed} orphan file(s) left in the photo store by an interrupted run")
        out += [f"rejected {name}: {reason}" for name, reason in self.rejected]
        out += [f"near duplicate {name}: of photo(s) {', '.join(str(n.photo_id) for n in near)}"
                for name, near in self.near_duplicates]
        return out


def add_files(paths, *, engine, settings: Settings, encoders, progress: bool = True, **metadata) -> FilesReport:
    """Add photo files one by one, each in its own transaction, so an interrupted batch resumes;
    then compute their image vectors in batches (the upload queue, drained here).

    Files whose sha256 is already stored are skipped after hashing (no decoding, no encoding).
    First, store files that an interrupted run left without a row are removed (past the grace period).
    """
    report = FilesReport()
    report.orphans_removed = len(remove_orphan_files(engine, settings))
    with session_scope(engine) as session:
        known = uploads.known_sha256(session=session)
    for path in tqdm(list(paths), desc="photos", unit="photo", disable=not progress):
        try:
            data = path.read_bytes()
        except OSError as exc:
            report.rejected.append((str(path), f"cannot read: {exc.strerror or exc}"))
            continue
        try:
            if photo_files.sha256_hex(data) in known:
                with session_scope(engine) as session:
                    report.duplicates.append((str(path), uploads.id_for_sha256(
                        session=session, sha256=photo_files.sha256_hex(data))))
                continue
            with session_scope(engine) as session:
                added = uploads.add_photo(data, session=session, settings=settings, encoders=encoders,
                                  file_name=path.name, **metadata)
                # The command line's operator has no user row: actor NULL, marked as the CLI's.
                audit.record(session, actor_id=None, action="upload", photo_id=added.photo_id,
                             details={"via": "cli", "duplicate_of": added.duplicate_of})
        except (ImageRejected, uploads.DeletedBefore) as exc:
            report.rejected.append((str(path), str(exc)))
            continue
        known.add(photo_files.sha256_hex(data))
        if added.duplicate_of is not None:
            report.duplicates.append((str(path), added.duplicate_of))
        else:
            report.added.append((str(path), added.photo_id))
            if added.near_duplicates:
                report.near_duplicates.append((str(path), added.near_duplicates))
    # Batched CNN passes over everything queued (this run's photos, and any a crash left behind).
    report.embedded = drain(engine, settings, encoders.image, progress=progress)
    return report
