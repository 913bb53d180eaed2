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
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from typing import Dict, List

from django.core.management.color import no_style
from django.db import connection, transaction

from ..backends.base import MARKER, LocationError, validate_mount
from ..catalog import membership
from ..catalog.collections import parse_key
from ..catalog.inventory import PYRAMID, PYRAMID_LOCK, FileRecord, InventoryReader
from ..catalog.referenced import gone_from_omero
from ..models import Collection, Copy, CopyFile, Location, PurgedFile, RepositoryRoot
from . import beneath, purgetags, roots
from .disk import stat_inventory
from .locationfile import read_description
from .purge import ARCHIVED_PREFIX
from .rescan import register_bag
from .sync import sync_collections

_OWNER = re.compile(r"(.*) \(id (\d+)\)")


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
    bag_dir: object  # a disk path, None for S3
    info: dict
    tag: object = None  # purgetags.PurgeTag


def refusal():
    """Why a rebuild without merge must not run here, or None."""
    copies, purged = Copy.objects.count(), PurgedFile.objects.count()
    if copies or purged:
        return (f"the app database already holds {copies} copies and {purged} purge "
                "records: rebuild adds to an empty one only (--merge adds what is missing)")
    return None


def rebuild(conn, paths, mounts=(), location_type=Location.HDD, merge=False,
            include_attachments=True, log=print):
    """Rebuild what the bags can tell; returns the RebuildReport."""
    why = refusal()
    if why and not merge:
        raise RebuildRefused(why)
    report = RebuildReport()
    for mount in mounts:
        _locations_at(mount, location_type, report)
    sync_collections(conn)
    found = []
    for location in Location.objects.order_by("pk"):
        found += _bags_at(location, report, log)
    touched = {f.copy.collection_id for f in found if f.copy.pk in report.added_ids}
    _link_parents(found)
    found.sort(key=lambda f: f.copy.created, reverse=True)  # the newest bag's word first
    reader = InventoryReader(conn, paths, include_attachments)
    inventories = {}
    if _repository_roots(paths, report):  # else "missing" would mean "not mounted"
        touched |= _records_from_tags(conn, paths, found, report)
        touched |= _inferred_records(reader, paths, found, inventories, report)
    _settle_collections(reader, paths, found, inventories, touched, report)
    return report


# -- locations ---------------------------------------------------------------------------

def _locations_at(mount, location_type, report):
    """Locations back from their markers at `mount`: <mount>/<id>/ with a marker."""
    try:
        mount = validate_mount(mount)
    except LocationError as exc:
        report.undecided.append(str(exc))
        return
    for entry in sorted(os.scandir(mount), key=lambda e: e.name):
        if not (entry.name.isdigit() and entry.is_dir(follow_symlinks=False)):
            continue
        try:
            with open(os.path.join(entry.path, MARKER), encoding="ascii") as f:
                marker = f.read().strip()
        except (OSError, UnicodeDecodeError):
            continue  # not a location's folder (or not one with a marker)
        lid = int(entry.name)
        known = Location.objects.filter(pk=lid).first()
        if known is not None:
            if known.marker == marker and known.mount == mount:
                report.locations.append(f"{known}: already known")
            else:
                report.undecided.append(
                    f"{entry.path}: its marker names location {lid}, but id {lid} is "
                    f"{known.name!r} at {known.mount} with another marker: not added")
            continue
        report.locations.append(_add_back(lid, mount, marker, entry.path, location_type))


def _add_back(lid, mount, marker, root, location_type):
    described = read_description(root) or {}
    name = str(described.get("name") or f"Location {lid}")
    if Location.objects.filter(name=name).exists():
        name = f"{name} (id {lid})"
    with transaction.atomic():
        location = Location.objects.create(
            pk=lid, name=name, type=described.get("type", location_type), mount=mount,
            max_bytes=int(described.get("max_bytes") or shutil.disk_usage(mount).total),
            purge_watermark=int(described.get("purge_watermark", 80)),
            purge_enabled=bool(described.get("purge_enabled", False)),
            xml_folder=str(described.get("xml_folder", "")), marker=marker)
        # An id given explicitly: the next location added must not take it again.
        with connection.cursor() as cur:
            for statement in connection.ops.sequence_reset_sql(no_style(), [Location]):
                cur.execute(statement)
    how = "its settings file" if described else f"type {location.type}, size of its disk"
    return f"{location}: added back from its marker ({how})"


# -- copies ------------------------------------------------------------------------------

def _bags_at(location, report, log):
    """_Found for every complete bag at the location, new ones registered."""
    backend = location.backend()
    try:
        backend.check_online()
        bags = list(backend.find_bags())
    except LocationError as exc:
        report.undecided.append(f"location {location.name!r} (id {location.pk}): {exc}")
        return []
    known = {c.bag_path: c for c in Copy.objects.filter(location=location)}
    found, seen = [], set()
    for bag in bags:
        if bag.relpath in seen:
            continue  # a tape's bag both in write/ and in its read cache
        seen.add(bag.relpath)
        report.bags += 1
        where = f"{location.name!r}: {bag.relpath}"
        if bag.error:
            report.undecided.append(f"bag {where} cannot be read: {bag.error}")
            continue
        copy = known.get(bag.relpath)
        if copy is not None:
            report.copies_known += 1
        else:
            copy = register_bag(location, backend, bag)
            if copy is None:
                report.undecided.append(f"bag {where} names no Project or Screen in its "
                                        "bag-info: not registered")
                continue
            report.copies_added += 1
            report.added_ids.add(copy.pk)
            log(f"registered {where} ({copy.state})")
            if copy.state != Copy.VERIFIED:
                report.copies_failed.append(where)
        bag_dir = None if location.type == Location.S3 else bag.contents.path
        item = _Found(copy, bag_dir, bag.contents.info)
        if bag_dir is not None:
            try:
                item.tag = purgetags.read(bag_dir)
            except purgetags.TagError as exc:
                report.undecided.append(f"bag {where}: {exc}")
        found.append(item)
    return found


def _link_parents(found):
    """Incremental copies chain to the bag named in their bag-info (same location)."""
    by_place = {(f.copy.location_id, f.copy.bag_path): f.copy for f in found}
    for f in found:
        parent = by_place.get((f.copy.location_id,
                               f.info.get("OMERO-Parent-Bag", [""])[0]))
        if parent is not None and f.copy.parent_id is None:
            Copy.objects.filter(pk=f.copy.pk).update(parent=parent)
            f.copy.parent_id = parent.pk


# -- purge records -----------------------------------------------------------------------

def _repository_roots(paths, report):
    """Record the OMERO roots with the markers archives left in them (roots.py), which
    a restore checks. False when one has none: an unmounted share's bare mount point,
    where every file would look purged; no purge record is then decided."""
    ok = True
    for root in dict.fromkeys((paths.data_dir, paths.managed_dir)):
        try:
            marker, device = roots.read_marker(root), os.stat(root).st_dev
        except OSError as exc:
            marker, device = None, f"{exc.strerror or exc}"
        if marker is None:
            ok = False
            report.undecided.append(
                f"the repository {root} carries no marker of an archive ({device or 'none'}"
                "): is it mounted? no purge record was decided")
            continue
        RepositoryRoot.objects.get_or_create(path=root, defaults={"device": device,
                                                                  "marker": marker})
    return ok


def _primary_now(paths, relpath):
    """'present', 'missing' or 'link' (a symbolic link: a symlink-mode purge's)."""
    try:
        st = beneath.lstat(*paths.root_of(relpath))
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "present"  # a folder on the way is a link: not ours to say purged
    return "link" if (st.st_mode & 0o170000) == 0o120000 else "present"


def _collection_of(key, cache):
    if key not in cache:
        try:
            kind, oid = parse_key(key)
        except ValueError:
            cache[key] = None
        else:
            cache[key] = Collection.objects.filter(kind=kind, omero_id=oid).first()
    return cache[key]


def _known_records():
    return set(PurgedFile.objects.exclude(state=PurgedFile.RESTORED)
               .values_list("collection_id", "path"))


def _records_from_tags(conn, paths, found, report):
    """PurgedFile rows from the bags' purge records still true now; the collections
    that got some."""
    known, cache, rows, touched = _known_records(), {}, [], set()
    for f in found:
        if f.tag is None or not f.tag.files:
            continue
        entries, checks = {}, {}
        for relpath, pk, checksum in CopyFile.objects.filter(copy=f.copy).values_list(
                "relpath", "pk", "checksum"):
            entries[relpath], checks[relpath] = pk, checksum
        candidates = []
        for item in f.tag.files:
            relpath = item["file"]
            collection = _collection_of(item["collection"], cache)
            if relpath not in entries or checks[relpath] != item["sha1"]:
                report.undecided.append(f"{item['collection']}: {relpath}: recorded purged "
                                        f"relying on {f.copy.bag_path}, which does not hold "
                                        "it with that SHA1")
                continue
            if collection is None:
                report.undecided.append(f"{item['collection']}: not in OMERO nor in any "
                                        f"bag; its purge record of {relpath} is left out")
                continue
            path = os.path.join(*paths.root_of(relpath))
            if (collection.pk, path) in known:
                report.purged_known += 1
                continue
            now = _primary_now(paths, relpath)
            if now == "present" or (now == "link") != bool(item.get("linked")):
                report.restored_since += 1
                continue
            candidates.append((item, collection, path, entries[relpath]))
        gone = gone_from_omero(conn, [item["file"] for item, *_ in candidates])
        for item, collection, path, copy_file_id in candidates:
            if item["file"] in gone:
                report.deleted_in_omero += 1
                continue
            known.add((collection.pk, path))
            touched.add(collection.pk)
            rows.append(PurgedFile(
                collection=collection, path=path, relpath=item["file"], size=item["size"],
                sha1=item["sha1"], mode=item["mode"], copy_file_id=copy_file_id,
                linked=bool(item.get("linked")), state=PurgedFile.PURGED))
    PurgedFile.objects.bulk_create(rows, batch_size=1000)
    report.purged_from_bags += len(rows)
    return touched


def _inventory(reader, paths, collection, inventories):
    if collection.pk not in inventories:
        inventory = reader.read(collection.kind, collection.omero_id)
        stat_inventory(inventory, paths)
        inventories[collection.pk] = inventory
    return inventories[collection.pk]


def _absent_pyramids(inventory, paths):
    """Records of the pyramids beside the collection's Pixels that are not on disk: OMERO
    does not list them (disk.add_pyramids finds them there), so a purged one is known
    only from a copy holding it."""
    listed = {r.path for r in inventory.files}
    found = []
    for pid in inventory.pixels_ids:
        shared = inventory.pixels_shared_with.get(pid, [])
        for kind, path in ((PYRAMID, paths.pyramid(pid)), (PYRAMID_LOCK, paths.pyramid_lock(pid))):
            if path not in listed and not os.path.lexists(path):
                found.append(FileRecord(path, kind, None, pixels_id=pid,
                                        shared_with=list(shared), exists=False))
    return found


def _copy_rows(relpaths):
    """relpath -> verified CopyFiles holding it, newest copy first (purge's order)."""
    rows = (CopyFile.objects.filter(relpath__in=relpaths, verified=True,
                                    copy__state=Copy.VERIFIED)
            .select_related("copy__location").order_by("-copy__created"))
    found = {}
    for row in rows:
        found.setdefault(row.relpath, []).append(row)
    return found


def _inferred_records(reader, paths, found, inventories, report):
    """Purge records of files whose bags carry none: the collection's file in OMERO,
    missing from the repository (or a link into a location), held by a verified copy."""
    known, cache, touched = _known_records(), {}, set()
    location_roots = [str(loc.backend().root) + "/" for loc in Location.objects.all()
                      if loc.type != Location.S3]
    for collection in Collection.objects.filter(pk__in={f.copy.collection_id for f in found},
                                                gone=False).order_by("pk"):
        inventory = _inventory(reader, paths, collection, inventories)
        gone = [r for r in inventory.files if r.exists is False or (
            r.symlink_target and any(r.symlink_target.startswith(root) for root in location_roots))]
        gone += _absent_pyramids(inventory, paths)
        copies = _copy_rows([paths.relative(r.path) for r in gone])
        rows = []
        for record in gone:
            linked = record.exists is not False
            holding = sorted(copies.get(paths.relative(record.path), []),
                             key=lambda c: (c.copy.location.type == Location.SYMLINK) != linked)
            if not holding:
                continue  # missing, never copied: not a purge's doing
            chosen = holding[0]
            holders = [collection] + [
                c for c in (_collection_of(k, cache) for k in record.shared_with
                            if membership.is_collection_key(k)) if c is not None]
            for holder in holders:
                if (holder.pk, record.path) in known:
                    continue
                known.add((holder.pk, record.path))
                touched.add(holder.pk)
                rows.append(PurgedFile(
                    collection=holder, path=record.path, relpath=chosen.relpath,
                    size=chosen.size, sha1=chosen.checksum, mode=chosen.mode,
                    copy_file=chosen, linked=linked, state=PurgedFile.PURGED))
        if rows:
            report.inferred_collections.append(collection.key)
        PurgedFile.objects.bulk_create(rows, batch_size=1000)
        report.purged_inferred += len(rows)
    return touched


# -- collections -------------------------------------------------------------------------

def _headers(found):
    """key -> the collection line of the newest bag's purge records naming it."""
    headers = {}
    for f in found:  # newest first
        for key, header in (f.tag.collections.items() if f.tag else ()):
            headers.setdefault(key, header)
    return headers


def _bag_owner(collection, found):
    """(owner id, owner name, group id, group name) in its newest bag's bag-info: the
    ones it had when archived (a moved collection's row keeps them: sync.py)."""
    for f in found:  # newest first
        if f.copy.collection_id != collection.pk:
            continue
        owner = _OWNER.fullmatch(f.info.get("OMERO-Owner", [""])[0])
        group = _OWNER.fullmatch(f.info.get("OMERO-Group", [""])[0])
        if owner and group:
            return int(owner.group(2)), owner.group(1), int(group.group(2)), group.group(1)
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
        inventory = _inventory(reader, paths, collection, inventories) \
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


def summary(report, now=None):
    """The one-screen report, as lines."""
    now = now or datetime.now()
    lines = [f"rebuild of the app database ({now:%Y-%m-%d %H:%M})"]
    lines += [f"  location {text}" for text in report.locations]
    lines.append(f"  bags found: {report.bags}; copies registered: {report.copies_added} "
                 f"(verified: {report.copies_added - len(report.copies_failed)}, failed "
                 f"their check: {len(report.copies_failed)}); already known: "
                 f"{report.copies_known}")
    lines += [f"    failed its check (marked failed audit): {w}" for w in report.copies_failed]
    states = ", ".join(f"{state} {count}" for state, count in sorted(report.collections.items()))
    lines.append(f"  collections: {states or 'none'}")
    lines.append(f"  purge records: {report.purged_from_bags} from the bags' records, "
                 f"{report.purged_inferred} inferred from OMERO and the repository, "
                 f"{report.purged_known} already known")
    if report.inferred_collections:
        lines.append("    inferred (bags without purge records) for: "
                     + ", ".join(report.inferred_collections))
    if report.restored_since or report.deleted_in_omero:
        lines.append(f"  left out: {report.restored_since} recorded purged but back in the "
                     f"repository, {report.deleted_in_omero} deleted in OMERO since")
    if report.undecided:
        lines.append(f"  NOT DECIDED ({len(report.undecided)}):")
        lines += [f"    {text}" for text in report.undecided[:20]]
        if len(report.undecided) > 20:
            lines.append(f"    ... and {len(report.undecided) - 20} more")
    else:
        lines.append("  everything found was decided")
    return lines
