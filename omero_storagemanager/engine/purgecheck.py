"""What purge checks against reality before it deletes a primary file.

Purge never trusts the app's own rows alone: a CopyFile row says a copy was verified
once, not that it is there now. For each file a purge would free:

  the copy   exists now at its location, below the location's root without a symbolic
             link on the way, as a regular file of the recorded size; its content is
             read and its SHA1 compared (whole file; above `sample_above` bytes, 16
             places compared with the primary file). A copy that cannot be read now
             (a tape, a disk not connected) counts only with an audit that found it
             whole within `audit_max_age` (a copy that the tape software or archiver
             took off a connected cache disk: the archive's own verification too).
  the primary is the file whose bytes were copied: same device, inode, size and mtime
             in ns as recorded when it was copied or restored (PrimaryFile), a regular
             file with one link. Without such a record, or when it differs, its bytes
             are read now and must equal the copy's.

Each check is made in the plan (a dry run: stats only, and how much the content checks
will read) and again at the moment of the delete (purge.py), on directory descriptors
(beneath.py).

What a check finds wrong with a copy (missing on a connected disk, another size, other
bytes) is evidence the purge records (purge.record_damage, as an audit would: the file
unverified, its copy failed), so that no later purge trusts an older audit of that copy
once its disk is away.
"""
import hashlib
import os
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional

from ..models import Location
from . import beneath, s3check
from .copyfile import identity_of
from .hashing import read_buffer

# Locations whose software moves copies off the disk we see (tape, an archive system):
# a bag missing from write/ there may be on its medium; an audit vouches for it.
NEARLINE = (Location.TAPE, Location.AUTOMATED)
SAMPLES = 16
SAMPLE_BYTES = 64 << 10


@dataclass
class CopyAt:
    """One copy of one file at one location, as found on disk now."""
    copy_file: object  # CopyFile
    root: Optional[str]  # the location's <mount>/<id>; None when not reachable now
    rel: Optional[str]  # the copy's file below root
    identity: Optional[tuple] = None  # copyfile.identity_of when stat'ed
    audited: Optional[datetime] = None  # trusted on this audit instead of read now
    damaged: bool = False  # the content check found other bytes than recorded

    @property
    def location_id(self):
        return self.copy_file.copy.location_id

    @property
    def path(self):
        return os.path.join(self.root, self.rel) if self.root else None


class Locations:
    """Per location: reachable now or why not; cached for one purge."""

    def __init__(self, audit_max_age_days):
        self.max_age = timedelta(days=audit_max_age_days)
        self._state = {}
        self.folders = beneath.ReadFolders()  # closed by close()
        self.damaged = {}  # CopyFile -> what was found wrong with it on a connected disk

    def close(self):
        self.folders.close()

    def backend(self, location):
        if location.pk not in self._state:
            backend = location.backend()
            try:
                backend.check_online()
                self._state[location.pk] = (backend, None)
            except Exception as exc:  # LocationOffline, a wrong marker: say it, go on
                self._state[location.pk] = (backend, str(exc))
        return self._state[location.pk]

    def find(self, copy_file):
        """A CopyAt for the copy file as it is now, or (None, why it does not count)."""
        copy = copy_file.copy
        backend, offline = self.backend(copy.location)
        if copy.location.type == Location.S3:  # objects, asked of the server now
            return s3check.find(copy_file, backend, offline)
        if offline is None:
            root = str(backend.root)
            for area in ("write", "read"):
                rel = f"{area}/{copy.bag_path}/data/{copy_file.relpath}"
                try:
                    st = self.folders.lstat(root, rel)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    return None, f"copy {copy.bag_path} at {copy.location.name}: {exc.strerror}"
                if not beneath.is_regular(st):
                    return self._damaged(copy_file, (
                        f"copy {copy.bag_path} at {copy.location.name}: {rel} is not a "
                        "regular file"))
                if st.st_size != copy_file.size:
                    return self._damaged(copy_file, (
                        f"copy {copy.bag_path} at {copy.location.name} has {st.st_size} "
                        f"bytes, not {copy_file.size}"))
                return CopyAt(copy_file, root, rel, identity_of(st)), None
            if copy.location.type not in NEARLINE:
                # A disk that is there but lacks the file: the copy is gone, whatever an
                # earlier audit found.
                return self._damaged(copy_file, (
                    f"copy {copy.bag_path} at {copy.location.name} is missing "
                    f"{copy_file.relpath}"))
        # Reached online only on tape and automated locations: the copy left the disk
        # for the archive medium.
        audited = self._fresh_audit(copy, on_medium=offline is None)
        if audited is not None:
            return CopyAt(copy_file, None, None, audited=audited), None
        where = offline or "its file is missing there"
        return None, (f"copy {copy.bag_path} at {copy.location.name} cannot be read now "
                      f"({where}) and no audit found it whole in the last "
                      f"{self.max_age.days} days")

    def _damaged(self, copy_file, why):
        self.damaged[copy_file] = why
        return None, why

    def _fresh_audit(self, copy, on_medium=False):
        """When the copy was last found whole, if within max_age: its last audit or,
        for a copy on the archive medium only (`on_medium`: a tape or automated
        location, online, whose software took the copy off the disk), the archive's own
        verification (every file read back and compared): no audit can read such a copy
        again, and without it a copy that left the read cache could never be relied on.
        A disk or share that is away can be connected and audited instead. A failed
        audit ends it."""
        if copy.location.type == Location.SYMLINK:
            return None  # its copies must be online: OMERO reads them through links
        if copy.last_audit_ok is False:
            return None
        verified = copy.verified_at if on_medium else None
        checked = max(filter(None, (copy.last_audit if copy.last_audit_ok else None,
                                    verified)), default=None)
        if checked and checked >= datetime.now(timezone.utc) - self.max_age:
            return checked
        return None


def reads_for(copy_at, sample_above):
    """Bytes the content check of this copy will read (copy and, sampled, primary)."""
    if copy_at.root is None:
        return 0
    size = copy_at.copy_file.size
    if sample_above and size > sample_above:
        return 2 * min(size, SAMPLES * SAMPLE_BYTES)
    return size


def _read_fd_sha1(fd):
    h = hashlib.sha1()
    buf, view = read_buffer()
    while True:
        n = os.readv(fd, [buf])
        if not n:
            return h.hexdigest()
        h.update(view[:n])


def sha1_beneath(root, rel):
    """(sha1, identity before, identity after) of root/rel read once, no link followed."""
    fd = beneath.open_file(root, rel, os.O_RDONLY | getattr(os, "O_NOATIME", 0))
    try:
        before = identity_of(os.fstat(fd))
        digest = _read_fd_sha1(fd)
        after = identity_of(os.fstat(fd))
    finally:
        os.close(fd)
    return digest, before, after


def _offsets(size):
    """The sampled places: first and last block, and 14 between, the same for a given
    size (a re-run checks the same places)."""
    last = max(0, size - SAMPLE_BYTES)
    rng = random.Random(size)
    middle = sorted(rng.randrange(0, last + 1) for _ in range(SAMPLES - 2)) if last else []
    return sorted({0, last, *middle})


def _same_samples(copy_fd, primary_fd, size):
    for offset in _offsets(size):
        if os.pread(copy_fd, SAMPLE_BYTES, offset) != os.pread(primary_fd, SAMPLE_BYTES, offset):
            return False
    return True


def check_copy_content(copy_at, primary_root, primary_rel, sample_above):
    """None when the copy holds the file's bytes now; else why not. Updates
    copy_at.identity to the copy as read (the delete re-checks it is still that file)."""
    if copy_at.root is None:
        return None  # trusted on a fresh audit (Locations.find)
    if isinstance(copy_at, s3check.S3CopyAt):
        return s3check.check_content(copy_at, primary_root, primary_rel, sample_above)
    entry = copy_at.copy_file
    try:
        if sample_above and entry.size > sample_above:
            fd = beneath.open_file(copy_at.root, copy_at.rel)
            try:
                pfd = beneath.open_file(primary_root, primary_rel)
                try:
                    before = identity_of(os.fstat(fd))
                    same = _same_samples(fd, pfd, entry.size)
                    after = identity_of(os.fstat(fd))
                finally:
                    os.close(pfd)
            finally:
                os.close(fd)
            if not same:
                copy_at.damaged = True
                return f"copy {entry.copy.bag_path} differs from the primary file"
        else:
            digest, before, after = sha1_beneath(copy_at.root, copy_at.rel)
            if digest != entry.checksum:
                copy_at.damaged = True
                return (f"copy {entry.copy.bag_path} at {entry.copy.location.name} is "
                        f"damaged: SHA1 {digest}, recorded {entry.checksum}")
    except OSError as exc:
        return f"copy {entry.copy.bag_path}: {exc.strerror or exc}"
    if before != after or before[2] != entry.size:
        return f"copy {entry.copy.bag_path} changed while it was read"
    copy_at.identity = before
    return None


def copy_unchanged(copy_at, folders):
    """Re-check just before a delete: the copy is still the file that was checked.
    folders: a beneath.ReadFolders."""
    if copy_at.root is None:
        return None
    if isinstance(copy_at, s3check.S3CopyAt):
        return s3check.unchanged(copy_at)
    try:
        st = folders.lstat(copy_at.root, copy_at.rel)
    except OSError as exc:
        return f"copy {copy_at.copy_file.copy.bag_path} is gone: {exc.strerror or exc}"
    if identity_of(st) != copy_at.identity:
        return f"copy {copy_at.copy_file.copy.bag_path} changed since it was checked"
    return None


def primary_problem(st, expected_identity):
    """Why the primary file (lstat result) must be kept, or None."""
    if not beneath.is_regular(st):
        return "not a regular file"
    if st.st_nlink != 1:
        return f"hard-linked ({st.st_nlink} names): deleting one frees no space"
    if expected_identity is not None and identity_of(st) != tuple(expected_identity):
        return "changed since it was checked: archive it again first"
    return None

