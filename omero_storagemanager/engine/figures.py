"""Figures of one collection from its inventory (after the stat/verify steps if run)."""
from datetime import datetime, timezone

from ..catalog.inventory import PYRAMID, PYRAMID_LOCK
from ..catalog.membership import collection_keys
from ..catalog.totals import Figures


def _when(timestamp):
    return None if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc)


def figures_from_inventory(inventory, mode, verify_results=None):
    """Figures of an inventory. In catalog mode sizes are OMERO's records; in stat and
    verify modes they are the disk's, and missing files and mismatches are counted."""
    f = Figures()
    files = inventory.files
    f.images = len(inventory.image_ids)
    f.files = len(files)
    f.thumbnails = len(inventory.thumbnails)
    f.unhashed_files = sum(1 for r in files if not r.hash)
    # Shared: held by another collection too (as the all-collections scan counts it);
    # shared_with also names holders outside every collection, which only purge minds.
    shared = [r for r in files if r.shared_with and collection_keys(r.shared_with)]
    f.shared_filesets = len({r.fileset_id for r in shared if r.fileset_id})
    if mode == "catalog":
        f.bytes = sum(r.size or 0 for r in files)
        f.shared_bytes = sum(r.size or 0 for r in shared)
        return f

    def disk_bytes(r):
        return r.disk_size or 0

    f.bytes = sum(disk_bytes(r) for r in files)
    f.shared_bytes = sum(disk_bytes(r) for r in shared)
    f.missing_files = sum(1 for r in files if r.exists is False)
    f.size_mismatches = sum(
        1 for r in files if r.exists and r.size is not None and r.disk_size != r.size)
    f.symlinks = sum(1 for r in files if r.symlink_target)
    f.pyramids = sum(1 for r in files if r.kind in (PYRAMID, PYRAMID_LOCK))
    present = [r for r in files if r.exists]
    f.newest_file = _when(max((r.mtime for r in present), default=None))
    f.last_access = _when(max((r.atime for r in present), default=None))
    f.thumbnail_bytes = sum(t.disk_size or 0 for t in inventory.thumbnails)
    if verify_results is not None:
        f.checksum_mismatches = sum(1 for result in verify_results.values() if result == "mismatch")
    return f


def problems(inventory, verify_results=None, limit=1000):
    """Per-file problems worth an admin's attention (at most `limit` of them)."""
    found = []
    for r in inventory.files:
        if r.exists is False:
            found.append({"path": r.path, "problem": "missing"})
        elif r.exists and r.size is not None and r.disk_size != r.size:
            found.append({"path": r.path, "problem": "size mismatch",
                          "omero_size": r.size, "disk_size": r.disk_size})
        result = (verify_results or {}).get(r.path)
        if result in ("mismatch", "unreadable", "unsupported"):
            found.append({"path": r.path, "problem": f"checksum {result}", "algorithm": r.hasher})
        if len(found) >= limit:
            break
    return found
