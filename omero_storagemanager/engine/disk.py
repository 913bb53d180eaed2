"""The stat and verify steps of a scan: what the disk says about an inventory's files.

Read only: nothing here writes, renames or touches a file's times (files are opened
read only, and atime is read before the file is hashed).
"""
import errno
import os
from concurrent.futures import ThreadPoolExecutor

from ..catalog.inventory import PYRAMID, PYRAMID_LOCK, FileRecord
from .hashing import UnsupportedAlgorithm, hash_file


class RepositoryUnreadable(OSError):
    """The binary repository itself cannot be read (unmounted, no permission)."""


def check_repository(paths):
    for where in (paths.data_dir, paths.managed_dir):
        if not os.path.isdir(where) or not os.access(where, os.R_OK | os.X_OK):
            raise RepositoryUnreadable(errno.EACCES, f"OMERO repository {where} is not readable")


def stat_record(record: FileRecord):
    """Fill exists, disk_size, mtime, atime and symlink_target from the disk."""
    try:
        st = os.lstat(record.path)
    except FileNotFoundError:
        record.exists = False
        return record
    if (st.st_mode & 0o170000) == 0o120000:  # a symlink: in-place import
        record.symlink_target = os.path.realpath(record.path)
        try:
            st = os.stat(record.path)
        except OSError:
            record.exists = False  # a dangling link: the data is gone
            return record
    else:
        record.identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        record.nlink = st.st_nlink
    record.exists = True
    record.disk_size = st.st_size
    record.mtime = st.st_mtime
    record.atime = st.st_atime
    return record


def add_pyramids(inventory, paths):
    """Pyramids are not in OMERO's database: look for them beside each Pixels path."""
    found = []
    for pid in inventory.pixels_ids:
        shared = inventory.pixels_shared_with.get(pid, [])
        for kind, path in ((PYRAMID, paths.pyramid(pid)), (PYRAMID_LOCK, paths.pyramid_lock(pid))):
            if os.path.lexists(path):
                found.append(FileRecord(path, kind, None, pixels_id=pid, shared_with=list(shared)))
    if found:
        inventory.files = sorted(inventory.files + found, key=lambda f: f.path)
    return found


def pyramid_records(pixels_ids, paths):
    """The pyramid files found on disk beside these pixels (no shared_with: the
    streamed archive does not need it)."""
    return [FileRecord(path, kind, None, pixels_id=pid) for pid in pixels_ids
            for kind, path in ((PYRAMID, paths.pyramid(pid)), (PYRAMID_LOCK, paths.pyramid_lock(pid)))
            if os.path.lexists(path)]


def stat_records(records, pool):
    """Stat a slice of records in the pool's threads (streamed reads reuse one pool)."""
    list(pool.map(stat_record, records))
    return records


def stat_inventory(inventory, paths, workers=8):
    """Stat every file and thumbnail; threads overlap the disk's latency."""
    add_pyramids(inventory, paths)
    records = inventory.files + inventory.thumbnails
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(stat_record, records))
    return inventory


def verify_record(record: FileRecord):
    """Hash a file with OMERO's algorithm; returns 'ok', 'mismatch', 'missing',
    'no checksum', 'unsupported' or 'unreadable'."""
    if record.exists is False:
        return "missing"
    if not record.hash:
        return "no checksum"
    try:
        digest, _ = hash_file(record.path, record.hasher)
    except UnsupportedAlgorithm:
        return "unsupported"
    except OSError:
        return "unreadable"
    return "ok" if digest.lower() == record.hash.lower() else "mismatch"
