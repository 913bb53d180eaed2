"""Archive: a verified BagIt copy of a collection's files at the current location.

Incremental: only files that have no verified copy at this location yet are copied (a
collection unchanged since its last copy is not copied again). Each file is copied
with copyfile.py's verified copy (one read pass with its checksum, checked against
OMERO's; temporary name, made durable, read back, rename), small files made durable in
batches (batchcopy.py). A CopyFile row is written per verified file, so a
killed archive resumes where it stopped; the bag is written in a ".partial" directory
and renamed when complete, and the Copy counts as VERIFIED only after that and after
the backend published it (read cache, XML order).
"""
import os
import shutil
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from django.db import transaction
from django.db.models import Sum

from ..backends.bag import BagError, BagWriter, validate_bag
from ..backends.base import LocationError, Order, bag_relpath
from ..backends.layout import safe_relpath
from ..models import Collection, Copy, CopyFile, PrimaryFile
from . import archiveplan, beneath, capacity, filetags, roots
# ArchiveError lives with the plan (which raises it first); callers import it from here.
from .archiveplan import ArchiveError, plan
from .batchcopy import copy_in_processes
from .copyfile import MANIFEST_ALGORITHM, CopyError, PrimaryDamaged, SourceChanged
from .copyworker import Failed, Job, exception
from .locks import collection_lock
from .progress import NullProgress

BATCH = 256  # CopyFile rows written per batch: one row per file, few round trips


class LocationFull(ArchiveError):
    pass


@dataclass
class ArchiveResult:
    collection: str
    state: str  # "archived" or "unchanged"
    copy_id: int = None
    files: int = 0
    bytes: int = 0


def order_of(copy):
    """The archiver's order for a copy, from its bag path (the ids it was archived under:
    a purge may have moved the collection to another owner and group since)."""
    return Order.from_relpath(copy.bag_path)


def _check_capacity(location, nbytes):
    # A tape or automated location counts what its cache disk holds now (capacity.py).
    used, needed = capacity.used_bytes(location), capacity.needed_bytes(location, nbytes)
    if used + needed > location.max_bytes:
        raise LocationFull(
            f"location {location.name!r} (id {location.pk}) would exceed its maximum size: "
            f"{used} + {needed} > {location.max_bytes} bytes; add a location and make it current"
            + (" (or purge its read cache)" if location.type in capacity.CACHE_TYPES else ""))


def _bag_info(collection, image_ids, copy):
    info = {
        "External-Identifier": collection.key,
        "External-Description": collection.name,
        "OMERO-Collection-Kind": collection.kind,
        "OMERO-Collection-Id": str(collection.omero_id),
        "OMERO-Collection-Name": collection.name,
        "OMERO-Owner": f"{collection.owner_name} (id {collection.owner_id})",
        "OMERO-Group": f"{collection.group_name} (id {collection.group_id})",
        "OMERO-Image-Ids": " ".join(str(i) for i in image_ids),
        "Source-Organization": "OMERO (omero-storagemanager)",
        # Exact, where the bag's name has whole seconds: a rebuild gives it back.
        "OMERO-Copy-Created": copy.created.isoformat(),
    }
    if copy.parent_id:
        info["OMERO-Parent-Bag"] = copy.parent.bag_path
    return info


def _open_copy(collection, location, backend, now):
    """The Copy being written for this collection here (a killed run's), or a new one."""
    copy = (Copy.objects.filter(collection=collection, location=location, state=Copy.WRITING)
            .order_by("-created").first())
    if copy is None:
        parent = (Copy.objects.filter(collection=collection, location=location,
                                      state=Copy.VERIFIED).order_by("-created").first())
        # Bag names have one-second resolution: never reuse one (two archives of a
        # collection within a second would otherwise share a bag directory).
        while True:
            relpath = bag_relpath(collection.kind, collection.group_id, collection.owner_id,
                                  collection.omero_id, now)
            final = str(backend.bag_dir(relpath))
            taken = Copy.objects.filter(location=location, bag_path=relpath).exists()
            if not (taken or os.path.lexists(final) or os.path.lexists(final + ".partial")):
                break
            now += timedelta(seconds=1)
        copy = Copy.objects.create(collection=collection, location=location, parent=parent,
                                   bag_path=relpath, state=Copy.WRITING, created=now)
    return copy


def _refusal(exc):
    """The archive refused the collection's data (a primary not matching OMERO's
    checksum, or changing while read), as opposed to failing to write at the location
    (disk full, read-only, an I/O error: the work done so far is kept for the re-run
    once the location is fixed)."""
    while exc is not None:
        if isinstance(exc, (PrimaryDamaged, SourceChanged)):
            return True
        exc = exc.__cause__
    return False


def _drop_if_unused(copy, final_dir):
    """A copy opened by this run that holds no verified file is removed, its
    "<bag>.partial" folder first, then its row: a refused archive leaves nothing behind.
    One holding verified files stays for a re-run to resume. Best effort: whatever
    cannot be removed stays a WRITING copy, which the next run resumes (or removes)."""
    if CopyFile.objects.filter(copy=copy).exists():
        return
    work = str(final_dir) + ".partial"
    try:
        if os.path.lexists(work):
            shutil.rmtree(work)  # never follows a symbolic link
    except OSError:
        return
    Copy.objects.filter(pk=copy.pk, state=Copy.WRITING).delete()
    try:
        os.rmdir(os.path.dirname(final_dir))  # the collection's folder, if now empty
    except OSError:
        pass


def _resume_writer(copy, final_dir):
    """A BagWriter for the copy and how many files it re-recorded: the files verified
    before a crash are recorded again, anything written but never recorded (it was not
    verified) is removed. In slices (keyset over the copy's rows, a batch of a folder's
    files at a time): a resumed archive holds no list of the copy's files either."""
    if os.path.isdir(str(final_dir) + ".partial"):
        writer = BagWriter.resume(final_dir)
    else:
        writer = BagWriter(final_dir)
    chunk = archiveplan.CHUNK  # read here, not imported: one place to patch
    recorded, last = 0, 0
    while True:
        rows = list(CopyFile.objects.filter(copy=copy, pk__gt=last).order_by("pk")
                    .values_list("pk", "relpath", "checksum", "size")[:chunk])
        if not rows:
            break
        last, gone = rows[-1][0], []
        for pk, relpath, checksum, size in rows:
            target = writer.payload_path(relpath)
            if os.path.isfile(target) and os.path.getsize(target) == size:
                writer.record(relpath, checksum, size)
                recorded += 1
            else:
                gone.append(pk)
        if gone:
            CopyFile.objects.filter(pk__in=gone).delete()
    data = os.path.join(writer.work_dir, "data")

    def drop_unrecorded(batch):  # {relpath: full path}
        known = set(CopyFile.objects.filter(copy=copy, relpath__in=list(batch))
                    .values_list("relpath", flat=True))
        for rel in batch.keys() - known:
            os.unlink(batch[rel])
        batch.clear()

    batch, folders = {}, [data]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                    continue
                batch[os.path.relpath(entry.path, data)] = entry.path
                if len(batch) >= chunk:
                    drop_unrecorded(batch)
    if batch:
        drop_unrecorded(batch)
    return writer, recorded


def _archive_collection(conn, paths, collection, location, include_attachments=True,
                       workers=4, progress=None, log=print, now=None):
    """Archive one collection to one location. Idempotent: safe to run again at any time."""
    progress = progress or NullProgress()
    roots.remember(paths, log, write=False)  # a root recorded before: still the same?
    backend = location.backend()
    backend.check_online()
    todo = plan(conn, paths, collection, location, include_attachments)
    pending = Copy.objects.filter(collection=collection, location=location,
                                  state=Copy.WRITING).exists()
    if not todo.seen and not pending:
        raise ArchiveError(f"{collection.key} holds no files: there is nothing to archive")
    if not todo and not pending:
        if collection.state == Collection.ONLINE:
            Collection.objects.filter(pk=collection.pk).update(state=Collection.ARCHIVED)
        log(f"{collection.key}: unchanged since its last verified copy, nothing to copy")
        return ArchiveResult(collection.key, "unchanged")
    # The roots and their markers, which a restore checks: only now that the plan found
    # the files to copy there (an unmounted share's bare mount point holds none).
    roots.remember(paths, log)
    now = now or datetime.now(timezone.utc)
    if not pending:  # refused before anything is made for it (a resumed copy passed it)
        _check_capacity(location, todo.bytes)
    if backend.type == "s3":  # objects, not files: engine/s3archive.py
        from .s3archive import archive_to_s3

        copy = archive_to_s3(collection, location, backend, todo, pending,
                             lambda c: _bag_info(collection, todo.image_ids, c), progress,
                             log, now)
        log(f"{collection.key}: verified copy {copy.bag_path} at {location.name!r}: "
            f"{copy.files} files, {copy.bytes} bytes")
        return ArchiveResult(collection.key, "archived", copy.pk, copy.files, copy.bytes)
    copy = _open_copy(collection, location, backend, now)
    _real_folders(backend, copy.bag_path)
    final_dir = backend.bag_dir(copy.bag_path)
    if os.path.isdir(final_dir):  # killed after the bag was complete: just check it
        problems = validate_bag(final_dir, check_hashes=True)
        if problems:
            raise ArchiveError(f"{collection.key}: bag {final_dir} is invalid: {problems[0]}")
    else:
        try:
            writer, recorded = _resume_writer(copy, final_dir)
            todo.leave_out(copy, recorded)  # the second pass skips what the copy holds
            log(f"{collection.key}: copying {len(todo)} file(s) to {final_dir}"
                + (f" ({recorded} already verified)" if recorded else ""))
            _copy_files(todo, writer, copy, workers, progress)
            # Each payload file was made durable before its rename; finish() fsyncs the directories.
            writer.finish(_bag_info(collection, todo.image_ids, copy), fsync_payload=False)
        except (ArchiveError, BagError, OSError) as exc:
            backend.check_online()  # the location went away mid-copy: say that
            if not pending and _refusal(exc):  # the data refused, not the location failing
                _drop_if_unused(copy, final_dir)
            if isinstance(exc, ArchiveError):
                raise
            raise ArchiveError(_write_failure(final_dir, exc)) from exc
        problems = validate_bag(final_dir, check_hashes=False)
        if problems:
            raise ArchiveError(f"{collection.key}: bag {final_dir} is invalid: {problems[0]}")
    publish_verified(backend, collection, copy, log)
    capacity.add_copy(location, backend, copy.bag_path)  # the figures pages show
    log(f"{collection.key}: verified copy {copy.bag_path} at {location.name!r}: "
        f"{copy.files} files, {copy.bytes} bytes")
    return ArchiveResult(collection.key, "archived", copy.pk, copy.files, copy.bytes)


def publish_verified(backend, collection, copy, log=print):
    """The copy is whole and checked (a disk's or S3's): publish it on the location
    (its completion marker, last), then mark it VERIFIED with its counts, and an online
    collection ARCHIVED, in one transaction."""
    backend.publish(copy.bag_path, order_of(copy))
    # Modes, times and primaries' identities, for a rebuild (filetags.py).
    filetags.write_for_copy(copy, backend, log)
    with transaction.atomic():
        copy.state = Copy.VERIFIED
        copy.verified_at = datetime.now(timezone.utc)
        copy.files = copy.entries.count()
        copy.bytes = copy.entries.aggregate(total=Sum("size"))["total"] or 0
        copy.save()
        if collection.state == Collection.ONLINE:
            Collection.objects.filter(pk=collection.pk).update(state=Collection.ARCHIVED)


def _real_folders(backend, bag_path):
    """Make (or find) the bag's folders below the location's root, each a real
    directory: a folder of the location replaced by a symbolic link is refused before
    anything is written through it (beneath.py)."""
    parts = ["write", *beneath.split(bag_path)[:-1]]
    root = beneath.open_root(backend.root)
    try:
        os.close(beneath.open_dir(root, parts, create=True, root_name=str(backend.root)))
    except beneath.OutsideRoot as exc:
        raise ArchiveError(f"{backend.describe()}: {exc.strerror}; nothing was written")
    except OSError as exc:
        backend.check_online()  # the location went away: say that
        raise ArchiveError(_write_failure(backend.write_root, exc)) from exc
    finally:
        os.close(root)


def record_primaries(rows):
    """Remember, per primary file, the identity it had when its bytes were copied or
    written (one row per relpath, the newest wins): purge deletes it only while it
    still has that identity."""
    if rows:
        PrimaryFile.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["relpath"],
            update_fields=["device", "inode", "size", "mtime_ns", "ctime_ns", "sha1",
                           "recorded"])


def _write_failure(where, exc):
    if isinstance(exc, OSError):
        return (f"writing {where} failed: {exc.strerror or exc} "
                f"({getattr(exc, 'filename', '') or ''}); the primary files are untouched")
    return f"{exc}; the primary files are untouched"


def _payload_path(writer, relpath):
    """Where relpath's copy goes in the bag being written (nothing is made)."""
    return os.path.join(writer.work_dir, "data", *safe_relpath(relpath, "payload path").parts)


def _payload_target(writer, relpath, made):
    """The payload path of relpath, its folders made one by one below the bag's data/
    (never with parents: if the location went away mid-copy, this fails instead of
    re-creating <mount>/<id>/... on the bare mount point, i.e. on the wrong disk).
    made: the folders known to exist already (then a vanished location makes the
    copy's own open() fail)."""
    parts = safe_relpath(relpath, "payload path").parts
    folder = os.path.join(writer.work_dir, "data", *parts[:-1])
    if folder not in made:
        folder = os.path.join(writer.work_dir, "data")
        for part in parts[:-1]:
            folder = os.path.join(folder, part)
            if folder not in made and not os.path.isdir(folder):
                try:
                    os.mkdir(folder)
                except FileExistsError:
                    pass  # made meanwhile (a killed run's folder is known by isdir)
            made.add(folder)
    return os.path.join(folder, parts[-1])


def _job(item, writer, made):
    """What a copy worker does for one file: the folders are made here, one by one
    (_payload_target), never by the worker (make_dirs=False)."""
    record, relpath = item
    return Job((record.path,), _payload_target(writer, relpath, made), record.hash,
               record.hasher, make_dirs=False, size=record.disk_size or 0)


def _failure(item, outcome, writer):
    """The exception a failed copy raises; a write error names the file (an ENOSPC
    carries no name)."""
    exc = exception(outcome.error)
    if outcome.stage == "write" and isinstance(exc, OSError):
        record, relpath = item
        target = _payload_path(writer, relpath)  # only named: a failing disk makes nothing
        error = CopyError(f"copying {record.path} to {target} failed: "
                          f"{exc.strerror or exc}"
                          + (f" ({exc.filename})" if exc.filename else "")
                          + "; the primary files are untouched")
        error.__cause__ = exc
        return error
    return exc


def _copy_files(todo, writer, copy, workers, progress):
    """Copy in worker processes, small files made durable in batches (batchcopy.py);
    verified files are recorded in batches of CopyFile rows, as they come back."""
    progress.start(len(todo))
    batch = []

    def flush():
        rows = batch[:]
        batch.clear()  # taken before anything can fail: never inserted twice
        CopyFile.objects.bulk_create(rows)
        record_primaries(list(identities.values()))
        identities.clear()
        try:
            for row in rows:
                writer.record(row.relpath, row.checksum, row.size)
        finally:
            writer.close_records()

    made = set()  # payload folders made so far
    identities = {}  # relpath -> PrimaryFile of the batch
    try:
        with closing(copy_in_processes(todo, lambda item: _job(item, writer, made),
                                       workers, fail_fast=True)) as copies:
            for item, outcome in copies:
                if isinstance(outcome, Failed):
                    raise _failure(item, outcome, writer)
                record, relpath = item
                source = outcome.source_id  # the primary as it was read: what purge checks
                batch.append(CopyFile(copy=copy, relpath=relpath, size=outcome.size,
                                      checksum=outcome.sha1, algorithm=MANIFEST_ALGORITHM,
                                      mode=outcome.mode, verified=True,
                                      source_mtime=source[3] / 1e9,
                                      source_mtime_ns=source[3]))
                identities[relpath] = PrimaryFile(
                    relpath=relpath, device=source[0], inode=source[1], size=source[2],
                    mtime_ns=source[3], ctime_ns=source[4], sha1=outcome.sha1)
                progress.advance(1, 1, outcome.size)
                if len(batch) >= BATCH:
                    flush()
        if batch:
            flush()
    except (CopyError, LocationError) as exc:
        raise ArchiveError(str(exc)) from exc
    except OSError as exc:
        raise ArchiveError(
            f"copy to {writer.work_dir} failed: {exc.strerror or exc} "
            f"({getattr(exc, 'filename', '') or ''}); the primary files are untouched") from exc
    finally:
        if batch:  # stopped by an error: record what was verified before it
            try:
                flush()
            except OSError:
                # The bag's records file could not be written (the location went
                # read-only or away): the rows are in the database, and a resume
                # re-records the bag from them. The error that stopped us is the news.
                pass
    progress.done()


def archive_collection(conn, paths, collection, location, include_attachments=True, workers=4, progress=None,
                       log=print, now=None):
    """Archive under the collection's lock (locks.py): refused at once while
    another archive, purge or restore of the same collection runs (CollectionBusy)."""
    with collection_lock(collection, "archive"):
        return _archive_collection(conn, paths, collection, location, include_attachments, workers, progress, log, now)
