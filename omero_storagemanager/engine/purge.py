"""Purge: free primary storage, only where verified copies exist.

A primary file is deleted (or, when its copy lies at a symlink-type location, replaced by
a link to that copy, so OMERO keeps serving it) only when:
  - at least `copies_required` verified copies of exactly its content exist, at distinct
    locations (content: OMERO's SHA1 when it recorded one, else the file hashed now);
  - no collection that stays online needs it (a fileset shared with one);
  - it is OMERO's: an in-place import's symlink target is never touched.
Each file gets a PurgedFile row (INTENT) before it is touched and is marked PURGED after,
so a purge killed at any instant is completed by running it again.
"""
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import List, Tuple

from ..catalog.inventory import InventoryReader
from ..models import Collection, Copy, CopyFile, Location, PurgedFile
from .locks import collection_lock
from .copyfile import MANIFEST_ALGORITHM, _fsync_dir
from .disk import stat_inventory
from .hashing import hash_file
from .progress import NullProgress

ARCHIVED_PREFIX = "(archived) "


class PurgeError(Exception):
    pass


@dataclass
class PurgePlan:
    collection: str
    freed: List[Tuple[object, CopyFile, bool]] = field(default_factory=list)  # record, copy, link?
    blocked: List[Tuple[str, str]] = field(default_factory=list)  # path, reason
    already: int = 0

    @property
    def freed_bytes(self):
        return sum(record.disk_size or 0 for record, _, _ in self.freed)


def _verified_copies(relpaths):
    """relpath -> [CopyFile] in verified copies (any collection's bag: shared files)."""
    rows = (CopyFile.objects.filter(relpath__in=relpaths, verified=True,
                                    copy__state=Copy.VERIFIED)
            .select_related("copy__location"))
    found = {}
    for row in rows:
        found.setdefault(row.relpath, []).append(row)
    return found


def _content_sha1(record):
    """SHA1 of the primary's content: OMERO's record when it is SHA1, else read now."""
    if record.hash and record.hasher == MANIFEST_ALGORITHM:
        return record.hash.lower()
    return hash_file(record.path, MANIFEST_ALGORITHM)[0]


def plan_purge(conn, paths, collection, copies_required=1, along_with=(),
               include_attachments=True):
    """What a purge of `collection` would free, and what blocks the rest (a dry run)."""
    inventory = InventoryReader(conn, paths, include_attachments).read(
        collection.kind, collection.omero_id)
    stat_inventory(inventory, paths)
    done = dict(PurgedFile.objects.filter(collection=collection)
                .exclude(state=PurgedFile.RESTORED).values_list("path", "state"))
    states = {c.key: c.state for c in Collection.objects.filter(gone=False)}
    allowed = set(along_with) | {collection.key}
    relpaths = {r.path: paths.relative(r.path) for r in inventory.files}
    copies = _verified_copies(list(relpaths.values()))
    result = PurgePlan(collection.key)
    for record in inventory.files:
        if done.get(record.path) == PurgedFile.PURGED:
            result.already += 1
            continue
        if record.symlink_target and record.path not in done:
            result.blocked.append((record.path, "in-place import: the link's target is not "
                                                "OMERO's and is never purged"))
            continue
        if record.exists is False:
            result.blocked.append((record.path, "missing from the repository"))
            continue
        online = [h for h in record.shared_with
                  if h not in allowed and states.get(h) != Collection.PURGED]
        if online:
            result.blocked.append((record.path, "also in " + ", ".join(online)
                                   + ", which stays online"))
            continue
        candidates = [c for c in copies.get(relpaths[record.path], [])
                      if c.size == record.disk_size]
        if len({c.copy.location_id for c in candidates}) < copies_required:
            result.blocked.append((record.path, f"{len(candidates)} verified copies, "
                                                f"{copies_required} required"))
            continue
        sha1 = _content_sha1(record)
        matching = [c for c in candidates if c.checksum == sha1]
        locations = {c.copy.location_id for c in matching}
        if len(locations) < copies_required:
            result.blocked.append((record.path, "changed since it was archived: "
                                                "archive it again first"))
            continue
        symlinked = [c for c in matching if c.copy.location.type == Location.SYMLINK]
        chosen = symlinked[0] if symlinked else matching[0]
        result.freed.append((record, chosen, bool(symlinked)))
    return result


def _link_target(copy_file):
    backend = copy_file.copy.location.backend()
    backend.check_online()
    return os.path.join(backend.bag_dir(copy_file.copy.bag_path), "data", copy_file.relpath)


def _free(row):
    """Delete the primary file, or replace it by a link to its copy (atomic rename)."""
    if row.linked:
        target = _link_target(row.copy_file)
        if os.path.islink(row.path) and os.readlink(row.path) == target:
            return
        tmp = row.path + ".sm-link"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, row.path)
    elif os.path.lexists(row.path):
        os.unlink(row.path)
    _fsync_dir(os.path.dirname(row.path))


def _purge_collection(conn, paths, collection, gateway=None, copies_required=1,
                     along_with=(), rename=False, archive_user_id=None, archive_group_id=None,
                     include_attachments=True, log=print, progress=None):
    """Purge what can be purged; returns the PurgePlan that was carried out."""
    progress = progress or NullProgress()
    # A purge killed between INTENT and PURGED: finish those first (they were checked).
    for row in PurgedFile.objects.filter(collection=collection, state=PurgedFile.INTENT):
        _free(row)
        PurgedFile.objects.filter(pk=row.pk).update(state=PurgedFile.PURGED)
    result = plan_purge(conn, paths, collection, copies_required, along_with,
                        include_attachments)
    progress.start(len(result.freed))
    for record, copy_file, link in result.freed:
        row = PurgedFile.objects.create(
            collection=collection, path=record.path, relpath=copy_file.relpath,
            size=record.disk_size, sha1=copy_file.checksum, mode=copy_file.mode,
            copy_file=copy_file, linked=link, state=PurgedFile.INTENT)
        _free(row)
        PurgedFile.objects.filter(pk=row.pk).update(state=PurgedFile.PURGED)
        progress.advance(0, 1, record.disk_size or 0)
    progress.done()
    state = Collection.PARTIALLY_PURGED if result.blocked else Collection.PURGED
    if not result.freed and not result.already and result.blocked:
        state = collection.state  # nothing freed: nothing changes
    Collection.objects.filter(pk=collection.pk).update(state=state)
    collection.state = state
    if gateway is not None and state in (Collection.PURGED, Collection.PARTIALLY_PURGED):
        mark_purged_in_omero(gateway, collection, rename, archive_user_id, archive_group_id)
    log(f"{collection.key}: purged {len(result.freed)} file(s), "
        f"{result.freed_bytes} bytes; {len(result.blocked)} blocked; state {state}")
    return result


def state_pairs(collection, state):
    copies = Copy.objects.filter(collection=collection, state=Copy.VERIFIED).select_related(
        "location").order_by("created")
    pairs = [("state", state), ("since", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))]
    for copy in copies:
        pairs.append(("copy", f"{copy.location.name} (id {copy.location_id}): {copy.bag_path}"))
    if state in (Collection.PURGED, Collection.PARTIALLY_PURGED):
        pairs.append(("how to get it back", "Storage tab in OMERO.web: request a restore"))
    return pairs


def mark_purged_in_omero(gateway, collection, rename, archive_user_id, archive_group_id):
    """Manual 6.4: rename, move to the archive user and group (remembering the originals),
    and in every case the state annotation. Each step is skipped when already done."""
    current = gateway.describe(collection.kind, collection.omero_id)
    updates = {}
    if collection.original_name is None:
        updates.update(original_name=current["name"], original_owner_id=current["owner_id"],
                       original_group_id=current["group_id"])
        Collection.objects.filter(pk=collection.pk).update(**updates)
        for key, value in updates.items():
            setattr(collection, key, value)
    if rename and not current["name"].startswith(ARCHIVED_PREFIX):
        gateway.rename(collection.kind, collection.omero_id, ARCHIVED_PREFIX + current["name"])
    if archive_group_id is not None and current["group_id"] != archive_group_id:
        gateway.chgrp(collection.kind, collection.omero_id, archive_group_id)
    if archive_user_id is not None and current["owner_id"] != archive_user_id:
        gateway.chown(collection.kind, collection.omero_id, archive_user_id)
    gateway.set_state(collection.kind, collection.omero_id,
                      state_pairs(collection, collection.state))


def purge_collection(conn, paths, collection, gateway=None, copies_required=1, along_with=(),
                     rename=False, archive_user_id=None, archive_group_id=None,
                     include_attachments=True, log=print, progress=None):
    """Purge under the collection's lock (locks.py): refused at once while
    another archive, purge or restore of the same collection runs (CollectionBusy)."""
    with collection_lock(collection, "purge"):
        return _purge_collection(conn, paths, collection, gateway, copies_required,
                                 along_with, rename, archive_user_id, archive_group_id,
                                 include_attachments, log, progress)
