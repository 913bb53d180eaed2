"""Rebuild the app database from the bags on the locations (issue 20).

After losing the app database with no backup, an admin migrates an empty database and
runs `storagemanager rebuild`: the copies at the locations are orphans until the app
knows them again, and the purged files' bytes can only be found through purge
records. Everything is decided against what is on disk and in OMERO now:

- Locations: those in the database, and those found at `--location MOUNT` (each
  <mount>/<id>/ holding a marker comes back with its id and marker; its type and
  settings from locationfile.py, else the options given).
- Collections: from OMERO (sync.py).
- Copies: each complete bag (a ".partial" one is never taken) registered by rescan's
  register_bag: every file hashed against the manifest now, VERIFIED only when all
  match (else FAILED_AUDIT); created from bag-info, verified_at the time of this
  check; incremental copies chained to their parent bag.
- Purge records: from each bag's storagemanager-purged.txt (purgetags.py), each
  record kept only while its primary is missing from the repository (or is the
  purge's link into the copy) and OMERO still has rows for it. Bags without that file
  (written before it, or on S3): a file of a collection's inventory in OMERO that a
  verified copy holds and that is missing from the repository was purged; these
  records are counted apart as inferred.
- Each collection's state and, for a purged one, the original name, owner and group
  the purge moved it from (the bag's records, else the bag-info of its newest copy).

Nothing is deleted, on disk or in the database. On a database that already holds
copies or purge records it refuses unless merge is asked, and then only adds what is
missing: running it twice changes nothing the second time. Killed half-way, running
it again with merge completes it.
"""
from dataclasses import dataclass, field
from typing import Dict, List

from ..backends.base import LocationError
from ..catalog.inventory import InventoryReader
from ..models import Collection, Copy, Location, PrimaryFile, PurgedFile
from . import filetags, purgetags, rebuildpurges
from .locationfile import locations_at, s3_locations_at
from .purge import ARCHIVED_PREFIX
from .rescan import bag_owner, register_bag
from .sync import sync_collections

class RebuildRefused(Exception):
    pass


@dataclass
class RebuildReport:
    locations: List[str] = field(default_factory=list)
    bags: int = 0
    copies_added: int = 0
    copies_known: int = 0  # already in the database (merge)
    copies_failed: List[str] = field(default_factory=list)  # registered FAILED_AUDIT
    collections: Dict[str, int] = field(default_factory=dict)  # state -> count
    purged_from_bags: int = 0
    purged_inferred: int = 0
    purged_known: int = 0
    restored_since: int = 0  # recorded purged in a bag, back in the repository now
    deleted_in_omero: int = 0  # recorded purged, OMERO has no rows for it any more
    inferred_collections: List[str] = field(default_factory=list)
    undecided: List[str] = field(default_factory=list)
    added_ids: set = field(default_factory=set, repr=False)  # the copies registered now

    @property
    def decided(self):
        return not self.undecided


@dataclass
class _Found:
    copy: Copy
    info: dict  # its bag-info
    tag: object = None  # purgetags.PurgeTag, None for a bag without one (or on S3)


def refusal():
    """Why a rebuild without merge must not run here, or None."""
    copies, purged = Copy.objects.count(), PurgedFile.objects.count()
    if copies or purged:
        return (f"the app database already holds {copies} copies and {purged} purge "
                "records: rebuild adds to an empty one only (--merge adds what is missing)")
    return None


def rebuild(conn, paths, mounts=(), location_type=Location.HDD, merge=False,
            include_attachments=True, log=print, buckets=()):
    """Rebuild what the bags can tell; returns the RebuildReport. buckets: (S3 settings,
    local staging folder) pairs, whose prefixes hold S3 locations (their markers)."""
    why = refusal()
    if why and not merge:
        raise RebuildRefused(why)
    report = RebuildReport()
    found_at = [locations_at(mount, location_type) for mount in mounts]
    found_at += [s3_locations_at(options, staging) for options, staging in buckets]
    for done, undecided in found_at:
        report.locations += done
        report.undecided += undecided
    sync_collections(conn)
    found = []
    for location in Location.objects.order_by("pk"):
        found += _bags_at(location, paths, report, log)
    touched = {f.copy.collection_id for f in found if f.copy.pk in report.added_ids}
    _link_parents(found)
    found.sort(key=lambda f: f.copy.created, reverse=True)  # the newest bag's word first
    reader = InventoryReader(conn, paths, include_attachments)
    inventories = {}
    # No bag, no purge to decide; else the roots must be the ones archived from.
    if found and rebuildpurges.repository_roots(paths, report):
        touched |= rebuildpurges.records_from_tags(conn, paths, found, report)
        touched |= rebuildpurges.inferred_records(reader, paths, found, inventories, report)
    touched |= _unsettled({f.copy.collection_id for f in found})
    _settle_collections(reader, paths, found, inventories, touched, report)
    return report


def _unsettled(collection_ids):
    """Collections an earlier rebuild, killed before its end, left unsettled: purge
    records under a state that does not say so, a verified copy under 'online'."""
    purged = (PurgedFile.objects.filter(state=PurgedFile.PURGED)
              .exclude(collection__state__in=[Collection.PURGED, Collection.PARTIALLY_PURGED,
                                              Collection.RESTORING])
              .values_list("collection_id", flat=True))
    online = (Copy.objects.filter(collection_id__in=collection_ids, state=Copy.VERIFIED,
                                  collection__state=Collection.ONLINE)
              .values_list("collection_id", flat=True))
    return set(purged) | set(online)


# -- copies ------------------------------------------------------------------------------

def _bags_at(location, paths, report, log):
    """_Found for every complete bag at the location, new ones registered. The bags are
    read one at a time (a manifest can list a million files)."""
    backend = location.backend()
    known = {c.bag_path: c for c in Copy.objects.filter(location=location)}
    found, seen = [], set()
    try:
        backend.check_online()
        for bag in backend.find_bags():
            if bag.relpath not in seen:  # a tape's bag both in write/ and its read cache
                seen.add(bag.relpath)
                item = _one_bag(location, backend, bag, known, paths, report, log)
                if item is not None:
                    found.append(item)
    except LocationError as exc:
        report.undecided.append(f"location {location.name!r} (id {location.pk}): {exc}")
    return found


def _one_bag(location, backend, bag, known, paths, report, log):
    report.bags += 1
    where = f"{location.name!r}: {bag.relpath}"
    if bag.error:
        report.undecided.append(f"bag {where} cannot be read: {bag.error}")
        return None
    copy = known.get(bag.relpath)
    if copy is not None:
        report.copies_known += 1
    else:
        copy = register_bag(location, backend, bag)
        if copy is None:
            report.undecided.append(f"bag {where} names no Project or Screen in its "
                                    "bag-info: not registered")
            return None
        report.copies_added += 1
        report.added_ids.add(copy.pk)
        if location.type != Location.S3:
            _primaries(bag, paths)
        log(f"registered {where} ({copy.state})")
        if copy.state != Copy.VERIFIED:
            report.copies_failed.append(where)
    item = _Found(copy, bag.contents.info)
    if location.type != Location.S3:
        try:
            item.tag = purgetags.read(bag.contents.path)
        except purgetags.TagError as exc:
            report.undecided.append(f"bag {where}: {exc}")
    return item


def _primaries(bag, paths):
    """PrimaryFile rows back for the bag's files whose primary still has the identity
    recorded when copied (filetags.py); one already known stays."""
    records = filetags.read(bag.contents.path) or {}
    manifest = bag.contents.manifest
    rows = filetags.primaries_still_there(
        {relpath: record for relpath, record in records.items() if relpath in manifest}, paths)
    PrimaryFile.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)


def _link_parents(found):
    """Incremental copies chain to the bag named in their bag-info (same location)."""
    by_place = {(f.copy.location_id, f.copy.bag_path): f.copy for f in found}
    for f in found:
        parent = by_place.get((f.copy.location_id,
                               f.info.get("OMERO-Parent-Bag", [""])[0]))
        if parent is not None and f.copy.parent_id is None:
            Copy.objects.filter(pk=f.copy.pk).update(parent=parent)
            f.copy.parent_id = parent.pk


# -- collections -------------------------------------------------------------------------

def _headers(found):
    """key -> the collection line of the newest bag's purge records naming it."""
    headers = {}
    for f in found:  # newest first
        for key, header in (f.tag.collections.items() if f.tag else ()):
            headers.setdefault(key, header)
    return headers


def _bag_owner(collection, found):
    """The owner and group in its newest bag-info: the ones it had when archived (a
    moved collection's row keeps them: sync.py)."""
    for f in found:  # newest first
        if f.copy.collection_id == collection.pk and bag_owner(f.info):
            return bag_owner(f.info)
    return (collection.owner_id, collection.owner_name, collection.group_id,
            collection.group_name)


def _settle_collections(reader, paths, found, inventories, touched, report):
    """Each touched collection's state, and a purged one's originals."""
    headers = _headers(found)
    for collection in Collection.objects.filter(pk__in=touched).order_by("pk"):
        purged = set(PurgedFile.objects.filter(collection=collection, state=PurgedFile.PURGED)
                     .values_list("path", flat=True))
        if not purged:
            if Copy.objects.filter(collection=collection, state=Copy.VERIFIED).exists():
                Collection.objects.filter(pk=collection.pk, state=Collection.ONLINE).update(
                    state=Collection.ARCHIVED)
            continue
        inventory = rebuildpurges.inventory_of(reader, paths, collection, inventories) \
            if not collection.gone else None
        complete = inventory is not None and all(r.path in purged for r in inventory.files)
        updates = {"state": Collection.PURGED if complete else Collection.PARTIALLY_PURGED}
        header = headers.get(collection.key)
        if collection.original_owner_id is None:
            if header is not None:
                updates.update({k: header.get(k) for k in (
                    "original_name", "original_owner_id", "original_group_id",
                    "owner_id", "owner_name", "group_id", "group_name")
                    if header.get(k) is not None or k.startswith("original_")})
            else:
                owner_id, owner_name, group_id, group_name = _bag_owner(collection, found)
                name = collection.name
                if name.startswith(ARCHIVED_PREFIX):
                    name = name[len(ARCHIVED_PREFIX):]
                updates.update(original_name=name, original_owner_id=owner_id,
                               original_group_id=group_id, owner_id=owner_id,
                               owner_name=owner_name, group_id=group_id,
                               group_name=group_name)
        Collection.objects.filter(pk=collection.pk).update(**updates)
    for state, count in _state_counts().items():
        report.collections[state] = count


def _state_counts():
    counts = {}
    for state in Collection.objects.filter(gone=False).values_list("state", flat=True):
        counts[state] = counts.get(state, 0) + 1
    return counts


