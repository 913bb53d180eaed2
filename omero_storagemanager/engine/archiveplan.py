"""Archive planning: which of a collection's files an archive at a location must copy.

Apart from archive.py (which copies, writes the bag and records the copy) because the
plan is a read-only pass of its own: the inventory in slices, each stat'ed and matched
against purged files and earlier verified copies, in memory flat in the collection's
size. ArchiveError is defined here, not in archive.py, because the plan is the first to
raise it (files missing from the repository) and archive.py imports this module, not the
other way round; archive.py re-exports it, so callers import it from there as before.
"""
from concurrent.futures import ThreadPoolExecutor
from itertools import chain

from ..catalog.inventory import InventoryReader
from ..models import Copy, CopyFile, PrimaryFile, PurgedFile
from .copyfile import MANIFEST_ALGORITHM
from .disk import pyramid_records, stat_records

# Files per slice of the inventory (and of a resumed copy's rows): an archive's memory is
# a few slices, whatever the collection's size; larger slices save only round trips.
# Read at call time by Plan and by archive._resume_writer: patch archiveplan.CHUNK.
CHUNK = 2000


class ArchiveError(Exception):
    """The archive of a collection cannot go on; nothing of it counts as archived."""


def _already_copied(collection, location, relpaths):
    """relpath -> CopyFile of this collection's verified copies at this location, for
    these relpaths only (one slice of the inventory: one query per slice, never a
    dictionary of the whole collection). The latest copy's row wins."""
    rows = CopyFile.objects.filter(
        copy__collection=collection, copy__location=location, copy__state=Copy.VERIFIED,
        relpath__in=relpaths).only("relpath", "size", "checksum", "source_mtime"
                                   ).order_by("copy__created")
    return {row.relpath: row for row in rows}


def _needs_copy(record, relpath, copied, primaries):
    """A file needs copying unless a verified copy of this very content exists. A file
    that is no longer the one last copied or restored (another inode, size or mtime:
    re-imported, rewritten in place) is copied again even when OMERO's checksum has not
    changed: purge keeps such a file until a copy of its current bytes exists."""
    previous = copied.get(relpath)
    if previous is None or previous.size != record.disk_size:
        return True
    known = primaries.get(relpath)
    # Not the ctime: a chmod alone does not make a file worth copying again.
    if known is not None and record.identity is not None \
            and known.identity()[:4] != tuple(record.identity)[:4]:
        return True
    if record.hash and record.hasher == MANIFEST_ALGORITHM:
        return record.hash.lower() != previous.checksum
    return previous.source_mtime is None or abs(previous.source_mtime - record.mtime) > 1e-6


class Plan:
    """What an archive of one collection at one location has to copy, streamed.

    The inventory is read in slices of CHUNK records (a server-side cursor),
    each slice stat'ed and matched against the purged files and earlier verified copies
    with one query each, then dropped: memory stays one slice whatever the collection's
    size. The constructor runs a first pass (counts, bytes, missing files: the archive
    refuses before copying anything); iterating runs a second pass that yields the
    (record, relpath) pairs to copy, so it holds no to-do list either. len() is the
    first pass's count (for progress: files changed between the passes move it a bit).
    """

    def __init__(self, conn, paths, collection, location, include_attachments=True,
                 chunk=None):
        self.paths, self.collection, self.location = paths, collection, location
        self.chunk = chunk or CHUNK
        self.reader = InventoryReader(conn, paths, include_attachments)
        self.image_ids = self.reader.image_ids(collection.kind, collection.omero_id)
        self.skip_copy, self.skipped = None, 0  # see leave_out()
        self.files = self.bytes = missing = resized = 0
        self.seen = 0  # files the collection holds (an empty one has nothing to archive)
        example = other = None
        for records, purged, _ in self._slices(first_pass=True):
            self.seen += len(records)
            for record in records:
                if record.path in purged:
                    continue
                if record.exists is False:
                    missing += 1
                    example = example or record.path
                elif _not_as_recorded(record):
                    resized += 1
                    other = other or record
        if missing:
            raise ArchiveError(f"{collection.key}: {missing} file(s) missing from the "
                               f"repository, e.g. {example}; scan it, fix it, then archive")
        if resized:
            # Its bytes cannot be OMERO's: the copy would be refused at its checksum,
            # after copying the rest. Refused here, before anything is written.
            raise ArchiveError(
                f"{collection.key}: {resized} file(s) differ in size from OMERO's record, "
                f"e.g. {other.path} ({other.disk_size} bytes on disk, {other.size} "
                "recorded); scan it, fix it, then archive")

    def _slices(self, first_pass=False):
        """(stat'ed records, purged paths among them, [(record, relpath) to copy]) per slice."""
        kind, cid = self.collection.kind, self.collection.omero_id
        pyramids = (pyramid_records(pids, self.paths)
                    for pids in self.reader.iter_pixels_ids(kind, cid, self.chunk))
        with ThreadPoolExecutor(8) as pool:  # threads overlap the disk's latency
            for records in chain(self.reader.iter_files(kind, cid, self.chunk), pyramids):
                if not records:
                    continue
                stat_records(records, pool)
                purged = set(PurgedFile.objects.filter(
                    collection=self.collection, path__in=[r.path for r in records]).exclude(
                    state=PurgedFile.RESTORED).values_list("path", flat=True))
                # A purged file's copy exists already: that is how it could be purged.
                kept = [(r, self.paths.relative(r.path)) for r in records if r.path not in purged]
                if first_pass and any(r.exists is False for r, _ in kept):
                    yield records, purged, []  # the archive refuses: no need to go on
                    continue
                rels = [rel for _, rel in kept]
                copied = _already_copied(self.collection, self.location, rels)
                primaries = {p.relpath: p for p in PrimaryFile.objects.filter(relpath__in=rels)}
                todo = [(r, rel) for r, rel in kept if _needs_copy(r, rel, copied, primaries)]
                if self.skip_copy is not None and todo:
                    done = set(CopyFile.objects.filter(
                        copy=self.skip_copy, relpath__in=[rel for _, rel in todo]
                    ).values_list("relpath", flat=True))
                    todo = [(r, rel) for r, rel in todo if rel not in done]
                if first_pass:
                    self.files += len(todo)
                    self.bytes += sum(r.disk_size or 0 for r, _ in todo)
                yield records, purged, todo

    def leave_out(self, copy, recorded):
        """The second pass leaves out what `copy` (a resumed one) records already;
        `recorded` of them come off the count."""
        self.skip_copy, self.skipped = copy, recorded

    def __len__(self):
        return max(0, self.files - self.skipped)

    def __bool__(self):
        return self.files > 0

    def __iter__(self):
        for _, _, todo in self._slices():
            yield from todo


def _not_as_recorded(record):
    """A file on disk whose size is not the one OMERO records (an upload cut short):
    only where OMERO records a size and a checksum to hold the bytes to."""
    return (record.exists and record.size is not None and record.hash
            and record.disk_size is not None and record.disk_size != record.size)


def plan(conn, paths, collection, location, include_attachments=True):
    """The Plan (files to copy, streamed) of one collection at one location."""
    return Plan(conn, paths, collection, location, include_attachments)
