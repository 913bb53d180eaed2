"""Restore: every purged file back at its original path, verified, then OMERO as before.

Each file comes back through copyfile.py's verified copy (temporary name beside it,
made durable, read back, rename: the rename also replaces a symlink left by a
symlink-mode purge), in copy worker processes with small files made durable in batches
(batchcopy.py), checked against the SHA1 its copy's manifest and OMERO agreed on when
it was purged, with its original mode. A file is taken from any verified copy holding
it; copies that failed an audit are tried last. When no copy is reachable the restore
waits (RestoreWaiting) instead of failing: the location's backend says what to do
(connect a disk, restore a tape, an XML order written), and running the restore again
resumes it.
"""
import os
from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass, field
from typing import List

from ..models import Collection, Copy, CopyFile, PurgedFile
from .batchcopy import copy_in_processes
from .copyfile import MANIFEST_ALGORITHM, CopyError, fsync_dirs
from .copyworker import Done, Job
from .locks import collection_lock
from .progress import NullProgress
from .purge import ARCHIVED_PREFIX, state_pairs


BATCH = 256  # files whose restored state is recorded at once
CHUNK_ROWS = 2000  # purge records read (and planned) at once


class RestoreWaiting(Exception):
    """Some files cannot be reached now; the message says what the job waits for."""

    def __init__(self, reasons, restored=0):
        self.reasons = sorted(set(reasons))
        self.restored = restored
        super().__init__("; ".join(self.reasons))


class RestoreError(Exception):
    pass


@dataclass
class RestoreResult:
    collection: str
    restored: int = 0
    bytes: int = 0
    problems: List[str] = field(default_factory=list)


def _candidates(rows):
    """(relpath, sha1) -> CopyFiles holding that content, for all rows in one query:
    audited-good copies first, failed audits last."""
    found = defaultdict(list)
    query = (CopyFile.objects.filter(relpath__in={r.relpath for r in rows}, verified=True,
                                     copy__state__in=[Copy.VERIFIED, Copy.FAILED_AUDIT])
             .select_related("copy__location").order_by("copy__created"))
    for entry in query.iterator():
        found[(entry.relpath, entry.checksum)].append(entry)
    for entries in found.values():
        entries.sort(key=lambda c: (c.copy.state == Copy.FAILED_AUDIT,
                                    c.copy.last_audit_ok is False))
    return found


def _source(copy, cache, order_for):
    """Path of a reachable complete bag of `copy`, or (None, reason to wait)."""
    if copy.pk not in cache:
        backend = copy.location.backend()
        path = backend.restore_source(copy.bag_path)
        reason = None if path else backend.request_restore(copy.bag_path, order_for(copy))
        cache[copy.pk] = (path, reason)
    return cache[copy.pk]


def _plans(rows, cache, order_for, waiting):
    """[(row, reachable sources, reasons to wait)] of rows that some copy can give back
    now; the reasons of rows that none can go to `waiting`."""
    candidates = _candidates(rows)
    plans = []
    for row in rows:
        sources, reasons = [], []
        for entry in candidates.get((row.relpath, row.sha1), []):
            bag, reason = _source(entry.copy, cache, order_for)
            if bag is None:
                reasons.append(reason)
            else:
                sources.append((bag, entry))
        if sources:
            plans.append((row, sources, reasons))
        elif reasons:
            waiting.extend(reasons)
        else:
            raise RestoreError(f"{row.path}: no verified copy holds it")
    return plans


class _Attempt:
    """One purged file on its way back: the copies that can give it, in order of
    preference, and what went wrong with them."""

    def __init__(self, row, sources, reasons):
        self.row, self.sources, self.reasons = row, list(sources), reasons
        self.problems = []

    def source_path(self, bag):
        return f"{bag}/data/{self.row.relpath}"

    def job(self):
        """What a copy worker does: the first source that reads right, checked against
        the SHA1 the copies and OMERO agreed on, with the file's mode; the modification
        time of the copy used is given back after the rename (an archive after the
        restore then sees the file unchanged instead of copying it again)."""
        row = self.row
        return Job(tuple(self.source_path(bag) for bag, _ in self.sources), row.path,
                   row.sha1, MANIFEST_ALGORITHM, row.mode,
                   tuple(entry.source_mtime for _, entry in self.sources),
                   make_dirs=True, size=row.size or 0)

    def unusable(self, entry, exc):
        self.problems.append(f"{self.row.path}: copy {entry.copy.bag_path} unusable: {exc}")


def _restore_collection(collection, gateway=None, log=print, order_for=None, workers=4,
                        progress=None):
    """Bring back the purged files of a collection; raises RestoreWaiting if some wait."""
    progress = progress or NullProgress()
    from .archive import order_of

    order_for = order_for or order_of
    pending = PurgedFile.objects.filter(collection=collection).exclude(
        state=PurgedFile.RESTORED)
    total = pending.count()
    if total and collection.state != Collection.RESTORING:
        Collection.objects.filter(pk=collection.pk).update(state=Collection.RESTORING)
    result, waiting, cache = RestoreResult(collection.key), [], {}
    failed = []  # (row, reasons to wait) of files no reachable copy gave back
    done = []

    def flush():
        # Directories first, then the records: a row says RESTORED only once the
        # file's name is durable too.
        fsync_dirs(os.path.dirname(r.path) for r in done)
        PurgedFile.objects.filter(pk__in=[r.pk for r in done]).update(state=PurgedFile.RESTORED)
        done.clear()

    def attempts():
        # A slice of rows at a time (keyset on the primary key): memory stays flat
        # whatever the number of files.
        last = 0
        while True:
            rows = list(pending.filter(pk__gt=last).order_by("pk")[:CHUNK_ROWS])
            if not rows:
                return
            last = rows[-1].pk
            for row, sources, reasons in _plans(rows, cache, order_for, waiting):
                yield _Attempt(row, sources, reasons)

    progress.start(total)
    try:
        with closing(copy_in_processes(attempts(), _Attempt.job, workers, fail_fast=False,
                                       list_targets=True)) as copies:
            for attempt, outcome in copies:
                for index, message in outcome.problems:
                    attempt.unusable(attempt.sources[index][1], message)
                result.problems.extend(attempt.problems)
                if isinstance(outcome, Done):
                    done.append(attempt.row)
                    result.restored += 1
                    result.bytes += attempt.row.size
                    progress.advance(0, 1, attempt.row.size)
                    if len(done) >= BATCH:
                        flush()
                else:
                    failed.append((attempt.row, attempt.reasons))
    except OSError as exc:  # flushing the restored files to the disk failed
        raise RestoreError(f"{collection.key}: writing the restored files failed: "
                           f"{exc.strerror or exc} ({exc.filename or ''}); "
                           "running the restore again resumes it") from exc
    except CopyError as exc:  # a copy worker died
        raise RestoreError(f"{collection.key}: {exc}; running the restore again "
                           "resumes it") from exc
    finally:
        if done:
            flush()
    progress.done()
    for row, reasons in failed:
        if not reasons:
            raise RestoreError(f"{row.path}: no usable verified copy: "
                               + "; ".join(result.problems[-3:] or ["none recorded"]))
        waiting.extend(reasons)
    if waiting:
        log(f"{collection.key}: restored {result.restored} file(s); waiting: "
            + "; ".join(sorted(set(waiting))))
        raise RestoreWaiting(waiting, result.restored)
    Collection.objects.filter(pk=collection.pk).update(state=Collection.ARCHIVED)
    collection.state = Collection.ARCHIVED
    if gateway is not None:
        undo_omero_changes(gateway, collection)
    log(f"{collection.key}: restored {result.restored} file(s), {result.bytes} bytes")
    return result


def undo_omero_changes(gateway, collection):
    """Give back the original name, owner and group; the annotation says 'archived'."""
    current = gateway.describe(collection.kind, collection.omero_id)
    if collection.original_owner_id is not None and current["owner_id"] != collection.original_owner_id:
        gateway.chown(collection.kind, collection.omero_id, collection.original_owner_id)
    if collection.original_group_id is not None and current["group_id"] != collection.original_group_id:
        gateway.chgrp(collection.kind, collection.omero_id, collection.original_group_id)
    if collection.original_name is not None and current["name"] != collection.original_name:
        gateway.rename(collection.kind, collection.omero_id, collection.original_name)
    elif current["name"].startswith(ARCHIVED_PREFIX):
        gateway.rename(collection.kind, collection.omero_id, current["name"][len(ARCHIVED_PREFIX):])
    Collection.objects.filter(pk=collection.pk).update(
        original_name=None, original_owner_id=None, original_group_id=None)
    gateway.set_state(collection.kind, collection.omero_id,
                      state_pairs(collection, Collection.ARCHIVED))


def restore_collection(collection, gateway=None, log=print, order_for=None, workers=4,
                       progress=None):
    """Restore under the collection's lock (locks.py): refused at once while
    another archive, purge or restore of the same collection runs (CollectionBusy)."""
    with collection_lock(collection, "restore"):
        return _restore_collection(collection, gateway, log, order_for, workers, progress)
