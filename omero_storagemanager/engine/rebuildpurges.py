"""Purge records back for a rebuild (engine/rebuild.py, issue 20), decided now.

From a bag's own records (purgetags.py), each kept only while it is still true: its
primary missing from the repository (or, for a symlink-mode purge, the link into the
copy), OMERO still holding rows for it, the bag holding the file with that SHA1. For
the files no bag records (bags written before the records, S3 copies, bags out of
reach when the purge ran): a file of a collection's inventory in OMERO that is
missing from the repository and that a verified copy holds was purged; those are
counted apart as inferred. A file missing and held by no copy is not a purge's doing
and gets no record.

Nothing is decided while an OMERO root lacks the marker archives left in it: an
unmounted share's bare mount point would make every file look purged.
"""
import os

from ..catalog import membership
from ..catalog.collections import parse_key
from ..catalog.inventory import PYRAMID, PYRAMID_LOCK, FileRecord
from ..catalog.referenced import gone_from_omero
from ..models import Collection, Copy, CopyFile, Location, PurgedFile, RepositoryRoot
from . import beneath, roots
from .disk import stat_inventory


def repository_roots(paths, report):
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


def collection_of(key, cache):
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


def records_from_tags(conn, paths, found, report):
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
            collection = collection_of(item["collection"], cache)
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


def inventory_of(reader, paths, collection, inventories):
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


def inferred_records(reader, paths, found, inventories, report):
    """Purge records of files whose bags carry none: the collection's file in OMERO,
    missing from the repository (or a link into a location), held by a verified copy."""
    known, cache, touched = _known_records(), {}, set()
    location_roots = [str(loc.backend().root) + "/" for loc in Location.objects.all()
                      if loc.type != Location.S3]
    for collection in Collection.objects.filter(pk__in={f.copy.collection_id for f in found},
                                                gone=False).order_by("pk"):
        inventory = inventory_of(reader, paths, collection, inventories)
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
                c for c in (collection_of(k, cache) for k in record.shared_with
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


