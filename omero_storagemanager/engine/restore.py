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

Given a catalog connection, the restore asks OMERO (catalog/referenced.py), a slice of
files at a time, which purged files it still has: one whose rows were deleted since the
purge (a user deleted the Images) is not written back, and its purge records go; its
copy stays on the archive.
"""
import os
import sys
from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass, field
from typing import List

from django.db import transaction

from ..catalog.referenced import gone_from_omero
from ..models import Collection, Copy, CopyFile, PrimaryFile, PurgedFile
from .batchcopy import copy_in_processes
from .copyfile import MANIFEST_ALGORITHM, CopyError, fsync_dirs
from .copyworker import Done, Job
from .locks import collection_lock
from . import purgetags, roots
from .progress import NullProgress
from .archive import record_primaries
from .purge import ARCHIVED_PREFIX, collection_state, state_pairs


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


class WaitReason(str):
    """What a restore waits for, as the admin reads it (paths and all), with `kind`
    (medium: a disk or cache to connect, or a copy to put back; cache: a copy to come
    back from tape; archiver: a copy an automated archive's software was asked for by
    an XML order) and `public`: the same without server paths, for the users who asked."""

    def __new__(cls, text, kind, public):
        reason = super().__new__(cls, text)
        reason.kind, reason.public = kind, public
        return reason


def wait_reason(backend, location, text):
    """The WaitReason for a copy at `location` that `backend` cannot give now."""
    where = f"{backend.noun} '{location.name}'"
    if not backend.is_online():
        return WaitReason(text, "medium", f"waiting for {where} to be {backend.connect_verb}ed")
    if backend.has_read_cache:
        return WaitReason(text, backend.cache_wait_kind,
                          f"waiting for the copy on {where} to come back into its read cache")
    return WaitReason(text, "medium",
                      f"waiting for an administrator to put the copy back on {where}")


@dataclass
class RestoreResult:
    collection: str
    restored: int = 0
    bytes: int = 0
    problems: List[str] = field(default_factory=list)
    not_in_omero: int = 0  # purged files OMERO deleted since: not written back


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
        reason = None if path else wait_reason(
            backend, copy.location, backend.request_restore(copy.bag_path, order_for(copy)))
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


def _mtime_ns(entry):
    """The copied file's mtime in ns (rows of older versions kept only a float)."""
    if entry.source_mtime_ns is not None:
        return entry.source_mtime_ns
    return None if entry.source_mtime is None else round(entry.source_mtime * 1e9)


class _Attempt:
    """One purged file on its way back: the copies that can give it, in order of
    preference, and what went wrong with them."""

    _location_roots = {}  # (location id, mount) -> <mount>/<id>: its backend's root

    def __init__(self, row, sources, reasons, targets=None):
        self.row, self.sources, self.reasons = row, list(sources), reasons
        self.targets = targets  # roots.Targets: the OMERO roots written beneath
        self.problems = []

    def source_path(self, bag):
        return f"{bag}/data/{self.row.relpath}"

    @classmethod
    def _location_root(cls, location):
        key = (location.pk, location.mount)
        root = cls._location_roots.get(key)
        if root is None:
            root = cls._location_roots[key] = str(location.backend().root)
        return root

    def _source(self, bag, entry):
        """(root, path below it) of the file in the bag: read beneath the location's
        root, so a symbolic link to a directory anywhere below it is refused."""
        root, bag = self._location_root(entry.copy.location), str(bag)
        if bag.startswith(root + "/"):
            return root, f"{bag[len(root) + 1:]}/data/{self.row.relpath}"
        return bag, f"data/{self.row.relpath}"

    def job(self):
        """What a copy worker does: the first source that reads right, checked against
        the SHA1 the copies and OMERO agreed on, with the file's mode; the modification
        time of the copy used is given back after the rename (an archive after the
        restore then sees the file unchanged instead of copying it again). With
        targets, the file is written beneath its OMERO root and read beneath its
        location's root (engine/beneath.py): no symbolic link to a directory is
        followed on either side."""
        row = self.row
        mtimes = tuple(_mtime_ns(entry) for _, entry in self.sources)
        if self.targets is None:
            return Job(tuple(self.source_path(bag) for bag, _ in self.sources), row.path,
                       row.sha1, MANIFEST_ALGORITHM, row.mode, mtimes,
                       make_dirs=True, size=row.size or 0)
        root, target = self.targets.split(row.path)
        sources = [self._source(bag, entry) for bag, entry in self.sources]
        return Job(tuple(rel for _, rel in sources), target, row.sha1, MANIFEST_ALGORITHM,
                   row.mode, mtimes, make_dirs=True, size=row.size or 0, target_root=root,
                   source_roots=tuple(r for r, _ in sources))

    def unusable(self, index, exc):
        """Source `index` could not give the file (None: the file could not be written
        where it belongs, a symbolic link on the way: exc says so)."""
        if index is None:
            self.problems.append(str(exc))
            return
        entry = self.sources[index][1]
        self.problems.append(f"{self.row.path}: copy {entry.copy.bag_path} unusable: {exc}")


def _nothing_to_restore(collection, log):
    """None when a restore has work: purged files to bring back, or a purge or an
    earlier restore to settle (state purged or restoring, OMERO still renamed or moved).
    Else nothing is changed, in the app or in OMERO: a collection never archived is
    refused (RestoreError); one whose files are online says so and gets an empty
    RestoreResult (a restore run again after it completed finds this)."""
    if PurgedFile.objects.filter(collection=collection).exclude(
            state=PurgedFile.RESTORED).exists():
        return None
    now = Collection.objects.filter(pk=collection.pk).values(
        "state", "original_name", "original_owner_id", "original_group_id").first() or {}
    if now.get("state") in (Collection.PURGED, Collection.PARTIALLY_PURGED,
                            Collection.RESTORING):
        return None
    if any(now.get(k) is not None for k in ("original_name", "original_owner_id",
                                            "original_group_id")):
        return None  # OMERO still shows the purge: the restore's end undoes it
    archived = (PurgedFile.objects.filter(collection=collection).exists()
                or Copy.objects.filter(collection=collection,
                                       state__in=[Copy.VERIFIED, Copy.FAILED_AUDIT]).exists())
    if not archived:
        raise RestoreError(f"{collection.key}: never archived: nothing to restore")
    log(f"{collection.key}: nothing to restore: its files are online")
    return RestoreResult(collection.key)


def _forget_deleted(collection, rows, holders, log):
    """Purged files whose OMERO objects were deleted since the purge: their purge
    records go, for every holder purged with them (whose state is then settled like
    that of holders whose files came back); their copies stay where they are."""
    paths = [r.path for r in rows]
    with transaction.atomic():
        records = PurgedFile.objects.filter(path__in=paths).exclude(state=PurgedFile.RESTORED)
        holders.update(records.exclude(collection=collection)
                       .values_list("collection_id", flat=True))
        records.delete()
    log(f"{collection.key}: {len(rows)} purged file(s) deleted in OMERO since the purge "
        f"are not written back (their copies stay on the archive), e.g. {rows[0].relpath}")


def _restore_collection(collection, gateway=None, log=print, order_for=None, workers=4,
                        progress=None, paths=None, conn=None):
    """Bring back the purged files of a collection; raises RestoreWaiting if some wait.
    paths: the repository's (catalog/paths.py), the configuration's when None.
    conn: a catalog connection; when given, files OMERO deleted since are left out."""
    online = _nothing_to_restore(collection, log)
    if online is not None:
        return online
    targets = roots.check(paths, collection)  # the repository is the one archived from
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
    done, identities = [], []  # restored rows, their files' identities (Done.target_id)
    holders = set()  # other collections whose purged files came back with these

    def flush():
        # Directories first, then the records: a row says RESTORED only once the
        # file's name is durable too. The file is back for every holder purged with
        # it (a shared fileset): their rows say so too.
        fsync_dirs(os.path.dirname(r.path) for r in done)
        record_primaries([PrimaryFile(relpath=r.relpath, device=i[0], inode=i[1], size=i[2],
                                      mtime_ns=i[3], ctime_ns=i[4], sha1=r.sha1)
                          for r, i in zip(done, identities) if i is not None])
        with transaction.atomic():
            PurgedFile.objects.filter(pk__in=[r.pk for r in done]).update(
                state=PurgedFile.RESTORED)
            others = PurgedFile.objects.filter(path__in=[r.path for r in done]).exclude(
                collection=collection).exclude(state=PurgedFile.RESTORED)
            holders.update(others.values_list("collection_id", flat=True))
            others.update(state=PurgedFile.RESTORED)
        done.clear()
        identities.clear()

    def attempts():
        # A slice of rows at a time (keyset on the primary key): memory stays flat
        # whatever the number of files.
        last = 0
        while True:
            rows = list(pending.filter(pk__gt=last).order_by("pk")[:CHUNK_ROWS])
            if not rows:
                return
            last = rows[-1].pk
            # Again before each slice: a share unmounted since the start leaves a bare
            # mount point, which must never receive the files (RestoreError).
            try:
                roots.check(paths, collection)
            except RestoreError as exc:
                raise RestoreError(str(exc).replace(
                    "nothing was restored", "the restore stopped there; run it again once "
                    "the repository is back")) from None
            if conn is not None:
                gone = gone_from_omero(conn, [r.relpath for r in rows])
                if gone:
                    _forget_deleted(collection, [r for r in rows if r.relpath in gone],
                                    holders, log)
                    result.not_in_omero += len(gone)
                    rows = [r for r in rows if r.relpath not in gone]
            for row, sources, reasons in _plans(rows, cache, order_for, waiting):
                yield _Attempt(row, sources, reasons, targets)

    progress.start(total)
    try:
        with closing(copy_in_processes(attempts(), _Attempt.job, workers, fail_fast=False,
                                       list_targets=True)) as copies:
            for attempt, outcome in copies:
                for index, message in outcome.problems:
                    attempt.unusable(index, message)
                result.problems.extend(attempt.problems)
                if isinstance(outcome, Done):
                    done.append(attempt.row)
                    identities.append(outcome.target_id)
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
            try:
                flush()
            except OSError:
                # Already leaving with an error (the one that says what to do): these
                # files stay unrecorded, and running the restore again copies them anew.
                if sys.exc_info()[0] is None:
                    raise
        # Holders purged along whose shared files came back: their state says so now,
        # whether this restore finishes, waits or fails half-way.
        _settle_holders(holders, gateway, log)
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
    state = _online_state(collection)
    Collection.objects.filter(pk=collection.pk).update(state=state)
    collection.state = state
    if gateway is not None:
        undo_omero_changes(gateway, collection)
    # Its bags forget the records of what came back (purgetags.py).
    purgetags.write_for_collection(collection, lambda line: log(f"{collection.key}: {line}"))
    log(f"{collection.key}: restored {result.restored} file(s), {result.bytes} bytes")
    return result


def _online_state(collection):
    """A collection whose files are all online again: archived when a verified copy of
    it exists; online when it was purged only on copies of other collections (files
    shared with them), with no copy of its own."""
    if Copy.objects.filter(collection=collection, state=Copy.VERIFIED).exists():
        return Collection.ARCHIVED
    return Collection.ONLINE


def _settle_holders(holder_ids, gateway, log):
    """Collections purged with this one whose shared files came back: all of their
    files back -> archived, OMERO as before; some -> partially purged."""
    for holder in Collection.objects.filter(pk__in=holder_ids):
        state = collection_state(holder, complete=False)  # some of its files came back
        if state in (Collection.PURGED, Collection.PARTIALLY_PURGED):
            if gateway is not None:  # its annotation says what is true now
                gateway.set_state(holder.kind, holder.omero_id, state_pairs(holder, state))
            continue
        holder.state = _online_state(holder)
        Collection.objects.filter(pk=holder.pk).update(state=holder.state)
        if gateway is not None and holder.original_name is not None:
            undo_omero_changes(gateway, holder)
        log(f"{holder.key}: every purged file is back (restored with a collection "
            f"sharing them): {holder.state}")


def undo_omero_changes(gateway, collection):
    """Give back the original name, owner and group; the annotation says 'archived'."""
    current = gateway.describe(collection.kind, collection.omero_id)
    if collection.original_owner_id is not None and current["owner_id"] != collection.original_owner_id:
        gateway.chown(collection.kind, collection.omero_id, collection.original_owner_id)
    if collection.original_group_id is not None and current["group_id"] != collection.original_group_id:
        gateway.chgrp(collection.kind, collection.omero_id, collection.original_group_id)
    name = current["name"]
    if collection.original_name is not None and current["name"] != collection.original_name:
        name = collection.original_name
    elif current["name"].startswith(ARCHIVED_PREFIX):
        name = current["name"][len(ARCHIVED_PREFIX):]
    if name != current["name"]:
        gateway.rename(collection.kind, collection.omero_id, name)
    # The name OMERO has now, at once: the catalogue would learn it only at its next
    # refresh, and until then the owner would see the purge's name on a restored one.
    Collection.objects.filter(pk=collection.pk).update(
        name=name, original_name=None, original_owner_id=None, original_group_id=None)
    gateway.set_state(collection.kind, collection.omero_id,
                      state_pairs(collection, _online_state(collection)))


def restore_collection(collection, gateway=None, log=print, order_for=None, workers=4,
                       progress=None, paths=None, conn=None):
    """Restore under the collection's lock (locks.py): refused at once while
    another archive, purge or restore of the same collection runs (CollectionBusy)."""
    with collection_lock(collection, "restore"):
        return _restore_collection(collection, gateway, log, order_for, workers, progress,
                                   paths, conn)
