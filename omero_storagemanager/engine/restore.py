"""Restore: every purged file back at its original path, verified, then OMERO as before.

Each file comes back through copy_verified (temporary name beside it, fsync, read back,
rename: the rename also replaces a symlink left by a symlink-mode purge), checked against
the SHA1 its copy's manifest and OMERO agreed on when it was purged, with its original
mode. A file is taken from any verified copy holding it; copies that failed an audit
are tried last. When no copy is reachable the restore waits (RestoreWaiting) instead of
failing: the location's backend says what to do (connect a disk, restore a tape, an
XML order written), and running the restore again resumes it.
"""
from dataclasses import dataclass, field
from typing import List

from ..models import Collection, Copy, CopyFile, PurgedFile
from .locks import collection_lock
from .copyfile import MANIFEST_ALGORITHM, CopyError, copy_verified
from .purge import ARCHIVED_PREFIX, state_pairs


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


def _candidates(row):
    """Copies holding this file's content: audited-good first, failed audits last."""
    rows = (CopyFile.objects.filter(relpath=row.relpath, checksum=row.sha1, verified=True,
                                    copy__state__in=[Copy.VERIFIED, Copy.FAILED_AUDIT])
            .select_related("copy__location").order_by("copy__created"))
    return sorted(rows, key=lambda c: (c.copy.state == Copy.FAILED_AUDIT,
                                       c.copy.last_audit_ok is False))


def _source(copy, cache, order_for):
    """Path of a reachable complete bag of `copy`, or (None, reason to wait)."""
    if copy.pk not in cache:
        backend = copy.location.backend()
        path = backend.restore_source(copy.bag_path)
        reason = None if path else backend.request_restore(copy.bag_path, order_for(copy))
        cache[copy.pk] = (path, reason)
    return cache[copy.pk]


def _restore_collection(collection, gateway=None, log=print, order_for=None):
    """Bring back the purged files of a collection; raises RestoreWaiting if some wait."""
    from .archive import order_of

    order_for = order_for or order_of
    rows = list(PurgedFile.objects.filter(collection=collection)
                .exclude(state=PurgedFile.RESTORED).order_by("path"))
    if rows and collection.state != Collection.RESTORING:
        Collection.objects.filter(pk=collection.pk).update(state=Collection.RESTORING)
    result, waiting, cache = RestoreResult(collection.key), [], {}
    for row in rows:
        reasons, done = [], False
        for candidate in _candidates(row):
            bag, reason = _source(candidate.copy, cache, order_for)
            if bag is None:
                reasons.append(reason)
                continue
            try:
                copy_verified(f"{bag}/data/{row.relpath}", row.path, row.sha1,
                              MANIFEST_ALGORITHM, mode=row.mode)
            except (CopyError, OSError) as exc:
                result.problems.append(f"{row.path}: copy {candidate.copy.bag_path} "
                                       f"unusable: {exc}")
                continue
            PurgedFile.objects.filter(pk=row.pk).update(state=PurgedFile.RESTORED)
            result.restored += 1
            result.bytes += row.size
            done = True
            break
        if not done:
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


def restore_collection(collection, gateway=None, log=print, order_for=None):
    """Restore under the collection's lock (locks.py): refused at once while
    another archive, purge or restore of the same collection runs (CollectionBusy)."""
    with collection_lock(collection, "restore"):
        return _restore_collection(collection, gateway, log, order_for)
